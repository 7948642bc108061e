"""The official `openai` Python package against a real gateway node (and real Redis with llmrl).

Run by `make test` (scripts/python-tests.sh installs openai and pytest in a virtualenv).
"""

import time

import openai
import pytest

from conftest import answered, budget_keys, stack

KEYS = """
[[keys]]
name = "python"
key = "sk-python"
rpm = 100
itpm = 100000
otpm = 100000

[[keys]]
name = "one-per-window"
key = "sk-once"
rpm = 1
window_ms = 600
""" + budget_keys("gpt-4o-mini")


@pytest.fixture(scope="module")
def gateway_url():
    with stack(KEYS, ["--mock-tokens", "16"]) as urls:
        yield urls[0] + "/v1"


def client(url, key="sk-python", retries=0):
    return openai.OpenAI(base_url=url, api_key=key, max_retries=retries, timeout=10)


def test_chat_completion(gateway_url):
    raw = client(gateway_url).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], max_tokens=5,
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5
    assert completion.usage.prompt_tokens > 0
    assert raw.headers["x-ratelimit-limit-requests"] == "100"
    assert int(raw.headers["x-ratelimit-remaining-requests"]) < 100


def test_streamed_chat_completion(gateway_url):
    stream = client(gateway_url).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Stream"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("The quick brown fox")
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 16
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_models_list_and_retrieve(gateway_url):
    c = client(gateway_url)
    ids = [m.id for m in c.models.list()]
    assert "gpt-4o" in ids
    model = c.models.retrieve("gpt-4o-mini")
    assert model.id == "gpt-4o-mini"
    assert model.object == "model"


def test_legacy_completion(gateway_url):
    completion = client(gateway_url).completions.create(model="gpt-3.5-turbo-instruct", prompt="Hi", max_tokens=3)
    assert completion.object == "text_completion"
    assert completion.usage.completion_tokens == 3


def test_rate_limit_error_carries_the_headers(gateway_url):
    c = client(gateway_url, key="sk-once")
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "one"}], max_tokens=1)
    with pytest.raises(openai.RateLimitError) as caught:
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "two"}], max_tokens=1)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    # The key's window is 600 ms, and the message says so (a minute says "per min (RPM)").
    assert "Rate limit reached for gpt-4o on requests per 600ms: Limit 1, Used 1" in error.message
    headers = error.response.headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 0 < int(headers["retry-after-ms"]) <= 610
    assert headers["x-should-retry"] == "true"


def test_automatic_retry_succeeds_once_the_window_allows(gateway_url):
    c = client(gateway_url, key="sk-once", retries=3)
    time.sleep(0.7)  # let the previous test's request age out
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "first"}], max_tokens=1)
    started = time.monotonic()
    # Denied at first; the client waits retry-after-ms and tries again by itself.
    completion = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "second"}], max_tokens=1)
    assert completion.usage.completion_tokens == 1
    assert time.monotonic() - started >= 0.3


def test_an_exhausted_budget_is_insufficient_quota_and_not_retried(gateway_url):
    c = client(gateway_url, key="sk-budget", retries=3)
    refused_before = answered(gateway_url.removesuffix("/v1"), 429)
    ask = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    # A day's budget of 50 micro-dollars at 1 USD per million tokens: a few requests fit.
    admitted = 0
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(20):
            c.chat.completions.create(**ask)
            admitted += 1
    assert 1 <= admitted < 20
    error = caught.value
    assert error.code == "insufficient_quota" and error.type == "insufficient_quota"
    assert ("You exceeded your current quota: the budget of organization py-org "
            "on spend per day is $0.00005,") in error.message, error.message
    assert "The budget resets in " in error.message
    headers = error.response.headers
    assert headers["x-should-retry"] == "false"
    assert headers["x-llmrl-binding-scope"] == "org:py-org"
    # The SDK honoured x-should-retry: false: the gateway refused one request, not four.
    assert answered(gateway_url.removesuffix("/v1"), 429) - refused_before == 1


def test_bad_key_is_an_authentication_error(gateway_url):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway_url, key="sk-nobody").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "invalid_api_key"


def test_bad_request_is_a_bad_request_error(gateway_url):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway_url).chat.completions.create(model="gpt-4o", messages=[], max_tokens=1)
    assert "messages" in caught.value.message


def test_responses_create(gateway_url):
    raw = client(gateway_url).responses.with_raw_response.create(
        model="gpt-4o", input="Say hello", instructions="Be brief.", max_output_tokens=5,
    )
    response = raw.parse()
    assert response.object == "response"
    assert response.output_text.startswith("The quick")
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 5
    assert response.usage.input_tokens > 0
    assert raw.headers["x-ratelimit-limit-requests"] == "100"


def test_responses_stream(gateway_url):
    stream = client(gateway_url).responses.create(
        model="gpt-4o", input=[{"role": "user", "content": [{"type": "input_text", "text": "Stream"}]}],
        stream=True,
    )
    events = list(stream)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("The quick brown fox")
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.output_tokens == 16
    assert events[-1].response.output_text == text


def test_responses_rate_limited(gateway_url):
    c = client(gateway_url, key="sk-once")
    time.sleep(0.7)
    c.responses.create(model="gpt-4o", input="one", max_output_tokens=1)
    with pytest.raises(openai.RateLimitError) as caught:
        c.responses.create(model="gpt-4o", input="two", max_output_tokens=1)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_embeddings(gateway_url):
    c = client(gateway_url)
    # The SDK asks for base64 by default and decodes it.
    result = c.embeddings.create(model="text-embedding-3-small", input=["hello", "world"], dimensions=8)
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in result.data)
    norm = sum(v * v for v in result.data[0].embedding) ** 0.5
    assert abs(norm - 1.0) < 1e-3
    again = c.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=8,
                                encoding_format="float")
    assert again.data[0].embedding == pytest.approx(result.data[0].embedding, abs=1e-6)
    assert result.usage.prompt_tokens == 2 and result.usage.total_tokens == 2
    first = c.embeddings.with_raw_response.create(model="text-embedding-3-small", input=[[1, 2, 3]])
    assert first.parse().usage.prompt_tokens == 3
    assert len(first.parse().data[0].embedding) == 1536
    # Input tokens only: the next request takes 3 more input tokens and no output tokens.
    second = c.embeddings.with_raw_response.create(model="text-embedding-3-small", input=[[1, 2, 3]])
    remaining = lambda raw, what: int(raw.headers[f"x-ratelimit-remaining-{what}-tokens"])
    assert remaining(first, "input") - remaining(second, "input") == 3
    assert remaining(first, "output") == remaining(second, "output")


@pytest.fixture(scope="module")
def proxied(gateway_url):
    """A second gateway whose OpenAI upstream is the first (with a key of its own there)."""
    env = {"LLMRL_UPSTREAM_API_KEY": "sk-python"}
    with stack(KEYS, [{"env": env}, "--upstream", gateway_url.removesuffix("/v1")]) as (url,):
        yield url + "/v1"


def test_responses_and_embeddings_through_an_upstream(proxied):
    c = client(proxied)
    response = c.responses.create(model="gpt-4o", input="via proxy", max_output_tokens=3)
    assert response.usage.output_tokens == 3
    events = list(c.responses.create(model="gpt-4o", input="stream via proxy", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.output_tokens == 16
    embedded = c.embeddings.create(model="text-embedding-3-small", input="via proxy", dimensions=4)
    assert len(embedded.data[0].embedding) == 4
    assert embedded.usage.prompt_tokens > 0
