// The official `openai` npm package against a real gateway node (and real Redis with llmrl),
// started by tests/python/test_openai_node_sdk.py, which passes the node's URL in
// LLMRL_GATEWAY_URL. Exits non-zero on the first check that fails.
"use strict";
const assert = require("node:assert/strict");
const OpenAI = require("openai");

const base = process.env.LLMRL_GATEWAY_URL;
const ask = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }], max_tokens: 8 };

function client(apiKey, maxRetries = 0) {
  return new OpenAI({ baseURL: base + "/v1", apiKey, maxRetries, timeout: 10_000 });
}

// Headers are a fetch `Headers` in current versions, a plain object in older ones.
function header(headers, name) {
  return typeof headers.get === "function" ? headers.get(name) : headers[name];
}

// How many requests the gateway answered with `status`, from its /metrics.
async function answered(status) {
  const text = await (await fetch(base + "/metrics")).text();
  return text.split("\n")
    .filter((line) => line.startsWith("llmrl_gateway_requests_total{") && line.includes(`status="${status}"`))
    .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
}

async function main() {
  // A completion, with the rate-limit headers.
  const { data, response } = await client("sk-node").chat.completions.create(ask).withResponse();
  assert.equal(data.object, "chat.completion");
  assert.equal(data.usage.completion_tokens, 8);
  assert.equal(header(response.headers, "x-ratelimit-limit-requests"), "100");
  assert.equal(header(response.headers, "x-ratelimit-remaining-requests"), "99");

  // A stream, with the usage chunk asked for.
  const stream = await client("sk-node").chat.completions.create(
    { ...ask, stream: true, stream_options: { include_usage: true } });
  let text = "";
  let usage = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(text.length > 0);
  assert.equal(usage.completion_tokens, 8);

  // A refusal is the SDK's RateLimitError, with the gateway's headers.
  const once = client("sk-node-once");
  await once.chat.completions.create(ask);
  await assert.rejects(once.chat.completions.create(ask), (error) => {
    assert.ok(error instanceof OpenAI.RateLimitError, String(error));
    assert.equal(error.status, 429);
    assert.equal(error.code, "rate_limit_exceeded");
    assert.match(error.message, /Rate limit reached for gpt-4o-mini on requests per 600ms: Limit 1, Used 1/);
    assert.equal(header(error.headers, "x-should-retry"), "true");
    const wait = Number(header(error.headers, "retry-after-ms"));
    assert.ok(wait > 0 && wait <= 610, String(wait));
    return true;
  });

  // The SDK's own retry waits retry-after-ms and then succeeds.
  await new Promise((resolve) => setTimeout(resolve, 700));
  const retrying = client("sk-node-once", 3);
  await retrying.chat.completions.create(ask);
  const started = Date.now();
  const retried = await retrying.chat.completions.create(ask);
  assert.equal(retried.usage.completion_tokens, 8);
  assert.ok(Date.now() - started >= 300, String(Date.now() - started));

  // An exhausted budget: insufficient_quota, and x-should-retry: false keeps the SDK from
  // retrying it (the gateway counts one refusal, not four).
  const budgeted = client("sk-budget", 3);
  let admitted = 0;
  const refusedBefore = await answered(429);
  await assert.rejects((async () => {
    for (let i = 0; i < 20; i += 1) {
      await budgeted.chat.completions.create({ ...ask, max_tokens: 5 });
      admitted += 1;
    }
  })(), (error) => {
    assert.ok(error instanceof OpenAI.RateLimitError, String(error));
    assert.equal(error.code, "insufficient_quota");
    assert.match(error.message, /the budget of organization py-org on spend per day is \$0\.00005,/);
    assert.equal(header(error.headers, "x-should-retry"), "false");
    assert.equal(header(error.headers, "x-llmrl-binding-scope"), "org:py-org");
    return true;
  });
  assert.ok(admitted >= 1 && admitted < 20, String(admitted));
  assert.equal(await answered(429) - refusedBefore, 1);

  console.log(`openai ${OpenAI.VERSION ?? ""} (npm): every check passed`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
