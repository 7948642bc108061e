"""The official `openai` Python package against a real gateway node (and real Redis with llmrl).

Run by `make test` (scripts/python-tests.sh installs openai and pytest in a virtualenv).
"""

import time

import openai
import pytest

from conftest import stack

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
"""


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


def test_bad_key_is_an_authentication_error(gateway_url):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway_url, key="sk-nobody").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "invalid_api_key"


def test_bad_request_is_a_bad_request_error(gateway_url):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway_url).chat.completions.create(model="gpt-4o", messages=[], max_tokens=1)
    assert "messages" in caught.value.message
