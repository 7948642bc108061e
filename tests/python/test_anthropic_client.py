"""The official `anthropic` Python package against real gateway nodes: Messages (whole and
streamed), token counting, rate-limit errors and the SDK's own retry, and the same through a
proxy whose "upstream" is a second gateway answering in mock mode.

Run by `make test` (scripts/python-tests.sh installs anthropic and pytest in a virtualenv).
"""

import time

import anthropic
import pytest

from conftest import answered, budget_keys, stack

KEYS = """
[[keys]]
name = "claude"
key = "sk-claude"
rpm = 100
itpm = 100000
otpm = 100000

[[keys]]
name = "one-per-window"
key = "sk-once"
rpm = 1
window_ms = 600

[[keys]]
name = "upstream-account"
key = "sk-upstream"
""" + budget_keys("claude-haiku-4-5")


@pytest.fixture(scope="module")
def urls():
    with stack(KEYS, ["--mock-tokens", "16"]) as urls:
        yield urls


@pytest.fixture(scope="module")
def proxied(urls):
    """A second gateway whose Anthropic upstream is the first (with its own key there)."""
    mock_url = urls[0]
    env = {"LLMRL_ANTHROPIC_API_KEY": "sk-upstream"}
    with stack(KEYS, [{"env": env}, "--anthropic-upstream", mock_url]) as (url,):
        yield url


def client(url, key="sk-claude", retries=0):
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=retries, timeout=10)


def test_create_message(urls):
    raw = client(urls[0]).messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "Say hello"}],
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert message.usage.input_tokens > 0
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "100"
    assert int(raw.headers["anthropic-ratelimit-requests-remaining"]) < 100
    assert raw.headers["anthropic-ratelimit-input-tokens-reset"].endswith("Z")
    assert raw.headers["request-id"].startswith("req_")


def test_stream_message(urls):
    with client(urls[0]).messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, system="Be brief.",
        messages=[{"role": "user", "content": "Stream"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("The quick brown fox")
    assert final.usage.output_tokens == 16
    assert final.stop_reason == "end_turn"


def test_count_tokens(urls):
    counted = client(urls[0]).messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Hello there"}],
    )
    assert counted.input_tokens > 0


def test_rate_limit_error(urls):
    c = client(urls[0], key="sk-once")
    c.messages.create(model="claude-haiku-4-5", max_tokens=1, messages=[{"role": "user", "content": "one"}])
    with pytest.raises(anthropic.RateLimitError) as caught:
        c.messages.create(model="claude-haiku-4-5", max_tokens=1, messages=[{"role": "user", "content": "two"}])
    error = caught.value
    assert error.status_code == 429
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == "rate_limit_error"
    assert "Limit 1, Used 1" in error.body["error"]["message"]
    headers = error.response.headers
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert int(headers["retry-after"]) >= 1
    assert 0 < int(headers["retry-after-ms"]) <= 610


def test_automatic_retry_honours_retry_after(urls):
    c = client(urls[0], key="sk-once", retries=3)
    time.sleep(0.7)  # let the previous test's request age out
    c.messages.create(model="claude-haiku-4-5", max_tokens=1, messages=[{"role": "user", "content": "first"}])
    started = time.monotonic()
    # Refused at first; the SDK waits retry-after-ms and tries again by itself.
    message = c.messages.create(model="claude-haiku-4-5", max_tokens=1, messages=[{"role": "user", "content": "second"}])
    assert message.usage.output_tokens == 1
    assert time.monotonic() - started >= 0.3


def test_an_exhausted_budget_is_refused_and_not_retried(urls):
    c = client(urls[0], key="sk-budget", retries=3)
    refused_before = answered(urls[0], 429)
    # A day's budget of 50 micro-dollars at 1 USD per million tokens: a few requests fit.
    admitted = 0
    with pytest.raises(anthropic.RateLimitError) as caught:
        for _ in range(20):
            c.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
            admitted += 1
    assert 1 <= admitted < 20
    error = caught.value
    assert error.body["error"]["type"] == "rate_limit_error"
    message = error.body["error"]["message"]
    assert message.startswith("You exceeded your current quota: the budget of organization py-org "
                              "on spend per day is $0.00005,"), message
    assert error.response.headers["x-should-retry"] == "false"
    assert error.response.headers["x-llmrl-binding-scope"] == "org:py-org"
    # The SDK honoured x-should-retry: false: the gateway refused one request, not four.
    assert answered(urls[0], 429) - refused_before == 1


def test_errors_in_anthropics_shape(urls):
    with pytest.raises(anthropic.AuthenticationError):
        client(urls[0], key="sk-nobody").messages.create(
            model="claude-sonnet-4-5", max_tokens=1, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(urls[0]).messages.create(model="claude-sonnet-4-5", max_tokens=1, messages=[])
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert caught.value.body["request_id"].startswith("req_")


def test_through_an_upstream(proxied):
    c = client(proxied)
    message = c.messages.create(
        model="claude-sonnet-4-5", max_tokens=3, messages=[{"role": "user", "content": "via proxy"}],
    )
    assert message.usage.output_tokens == 3
    with c.messages.stream(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "stream via proxy"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("The quick brown fox")
    assert final.usage.output_tokens == 8
