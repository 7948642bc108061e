//! Real gateway processes against real Redis with the module, over real sockets.

use llmrl_tests::*;
use std::thread::sleep;
use std::time::{Duration, Instant};

const KEYS: &str = r#"
[[keys]]
name = "tight"
key = "sk-tight"
rpm = 20
itpm = 100000
otpm = 100000
default_output_reservation = 100

[[keys]]
name = "one"
key = "sk-one"
rpm = 1

[[keys]]
name = "tokens"
key = "sk-tokens"
itpm = 5000
otpm = 1000
default_output_reservation = 100

[[keys]]
name = "shadow"
key = "sk-shadow"
rpm = 1
shadow = true

[[keys]]
name = "fast"
key = "sk-fast"
rpm = 2
window_ms = 600
"#;

struct Stack {
    redis: RedisServer,
    keys: std::path::PathBuf,
}

fn stack() -> Stack {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, KEYS);
    Stack { redis, keys }
}

/// The single limiter key in Redis (the tests use one API key each).
fn limiter_key(con: &mut redis::Connection) -> String {
    let keys: Vec<String> = redis::cmd("KEYS").arg("llmrl:*").query(con).unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0].clone()
}

fn peek(con: &mut redis::Connection, key: &str, limits: [&str; 3]) -> Decision {
    decision(
        con,
        &["LLMRL.PEEK", key, limits[0], limits[1], limits[2], "0", "0"],
    )
}

#[test]
fn rejects_bad_requests_with_openai_errors_and_touches_nothing() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &["--body-limit", "2000"]);
    let body = chat_body("gpt-4o", "hi", "");

    let r = http(gw.port, "POST", "/v1/chat/completions", None, Some(&body));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = post_chat(gw.port, "sk-wrong", &body);
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("sk-wrong"), "the key is not echoed");

    let cases: &[(&str, u16, &str)] = &[
        ("{not json", 400, "could not parse the JSON body"),
        (
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            400,
            "model",
        ),
        (r#"{"model":"gpt-4o"}"#, 400, "'messages'"),
        (r#"{"model":"gpt-4o","messages":"x"}"#, 400, "'messages'"),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":-5}"#,
            400,
            "'max_tokens'",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"max_tokens":99999999999999999999999}"#,
            400,
            "'max_tokens'",
        ),
        (
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"n":0}"#,
            400,
            "'n'",
        ),
    ];
    for (body, status, expected) in cases {
        let r = post_chat(gw.port, "sk-tight", body);
        assert_eq!(r.status, *status, "{body}");
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains(expected), "{body}: {message}");
        assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    }
    let deep = format!(r#"{{"model":"gpt-4o","messages":{}}}"#, "[".repeat(1500));
    assert_eq!(post_chat(gw.port, "sk-tight", &deep).status, 400);

    let big = chat_body("gpt-4o", &"x".repeat(3000), "");
    let r = post_chat(gw.port, "sk-tight", &big);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2000 bytes"));

    let r = http(
        gw.port,
        "POST",
        "/v1/nothing",
        Some("sk-tight"),
        Some(&body),
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["error"]["message"],
        "Invalid URL (POST /v1/nothing)"
    );
    let r = http(
        gw.port,
        "GET",
        "/v1/chat/completions",
        Some("sk-tight"),
        None,
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    let form = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer sk-tight\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(raw_http(gw.port, form.as_bytes()).unwrap().status, 415);
    let garbage = raw_http(gw.port, b"\x16\x03\x01 not http at all\r\n\r\n").unwrap();
    assert_eq!(garbage.status, 400);

    let mut con = s.redis.client();
    assert_eq!(
        int(&mut con, &["DBSIZE"]),
        0,
        "rejected requests never reach the limiter"
    );
    assert!(
        !gw.log_text().contains("sk-tight") && !gw.log_text().contains("sk-wrong"),
        "keys are never logged"
    );
}

#[test]
fn limits_hold_across_three_nodes_hammered_at_once() {
    let s = stack();
    let nodes: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start(s.redis.port, &s.keys, &[]))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|g| g.port).collect();
    let threads: Vec<_> = (0..9)
        .map(|t| {
            let ports = ports.clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..10 {
                    let port = ports[(t + i) % ports.len()];
                    let body = chat_body("gpt-4o-mini", "count me", "\"max_tokens\":5");
                    statuses.push(post_chat(port, "sk-tight", &body).status);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (ok, limited),
        (20, 70),
        "exactly the limit is admitted across all nodes"
    );
    let mut con = s.redis.client();
    let key = limiter_key(&mut con);
    assert!(
        !key.contains("sk-tight"),
        "Redis holds a hash of the key, not the key"
    );
    assert_eq!(
        peek(&mut con, &key, ["20", "100000", "100000"]).remaining[0],
        0
    );
    // Each node counted its own share, and the shares add up.
    let total: u64 = ports
        .iter()
        .map(|p| {
            metric(
                *p,
                "llmrl_gateway_requests_total",
                &["route=\"chat\"", "status=\"200\""],
            )
        })
        .sum();
    assert_eq!(total, 20);
}

#[test]
fn rate_limited_responses_match_openai_and_the_module() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &[]);
    let body = chat_body("gpt-4o", "hello", "\"max_tokens\":3");
    let ok = post_chat(gw.port, "sk-one", &body);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-ratelimit-limit-requests"), Some("1"));
    assert_eq!(ok.header("x-ratelimit-remaining-requests"), Some("0"));
    let reset = ok.header("x-ratelimit-reset-requests").unwrap();
    assert!(
        reset.starts_with("1m0.") || reset == "1m0s" || reset.starts_with("59."),
        "{reset}"
    );
    assert!(ok.header("x-request-id").unwrap().starts_with("req_"));
    // A CORS header, only for allowed browser origins (CORS is off here).
    assert_eq!(ok.header("access-control-expose-headers"), None);
    // Only limited dimensions get headers.
    assert_eq!(ok.header("x-ratelimit-limit-tokens"), None);

    let sent = Instant::now();
    let denied = post_chat(gw.port, "sk-one", &body);
    assert_eq!(denied.status, 429);
    let error = &denied.json()["error"];
    assert_eq!(error["type"], "requests");
    assert_eq!(error["code"], "rate_limit_exceeded");
    assert!(error["param"].is_null());
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Rate limit reached for gpt-4o on requests per min (RPM): Limit 1, Used 1, Requested 1. Please try again in "),
        "{message}"
    );
    assert_eq!(denied.header("x-should-retry"), Some("true"));
    let retry_ms: u64 = denied.header("retry-after-ms").unwrap().parse().unwrap();
    let retry_s: u64 = denied.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(retry_s, retry_ms.div_ceil(1000));
    // One request in a 60 s window: it comes back one window after its 1 s bucket ends.
    assert!((59_000..=61_000).contains(&retry_ms), "{retry_ms}");
    assert!(message.ends_with("s."), "{message}");
    // The module, asked a moment later, agrees to within the time that passed.
    let mut con = s.redis.client();
    let key = limiter_key(&mut con);
    let module = peek(&mut con, &key, ["1", "0", "0"]);
    let elapsed = sent.elapsed().as_millis() as i64 + 2;
    assert!(
        module.retry_after_ms <= retry_ms as i64
            && retry_ms as i64 - module.retry_after_ms <= elapsed,
        "{module:?} vs {retry_ms}"
    );
}

#[test]
fn request_too_large_is_not_retryable() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &[]);
    let body = chat_body("gpt-4o", "hello", "\"max_tokens\":600,\"n\":2");
    let r = post_chat(gw.port, "sk-tokens", &body);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-should-retry"), Some("false"));
    assert_eq!(r.header("retry-after"), None);
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("Request too large for gpt-4o on output tokens per min (OTPM): Limit 1000, Requested 1200"), "{message}");
    assert!(message.contains("The input or output tokens must be reduced"));
    assert_eq!(r.json()["error"]["type"], "output_tokens");
    let mut con = s.redis.client();
    assert_eq!(int(&mut con, &["DBSIZE"]), 0);
}

#[test]
fn settlement_refunds_unused_reservation() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &["--mock-tokens", "32"]);
    // No max_tokens: 100 output tokens are reserved, the mock produces 32.
    let r = post_chat(gw.port, "sk-tokens", &chat_body("gpt-4o", "hello", ""));
    assert_eq!(r.status, 200);
    let usage = &r.json()["usage"];
    assert_eq!(usage["completion_tokens"], 32);
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        r.header("x-ratelimit-remaining-output-tokens"),
        Some("900"),
        "reserved at admission"
    );
    let mut con = s.redis.client();
    let key = limiter_key(&mut con);
    assert!(
        eventually(Duration::from_secs(5), || {
            peek(&mut con, &key, ["0", "5000", "1000"]).remaining
                == [-1, 5000 - prompt as i64, 1000 - 32]
        }),
        "the unused 68 tokens are refunded: {:?}",
        peek(&mut con, &key, ["0", "5000", "1000"])
    );
    assert_eq!(
        metric(
            gw.port,
            "llmrl_gateway_tokens_settled_total",
            &["dimension=\"output\"", "direction=\"refund\""]
        ),
        68
    );
}

#[test]
fn streams_chunks_usage_and_done() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &["--mock-tokens", "20"]);
    let body = chat_body(
        "gpt-4o",
        "stream please",
        "\"stream\":true,\"stream_options\":{\"include_usage\":true}",
    );
    let r = post_chat(gw.port, "sk-tokens", &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(
        r.header("x-ratelimit-remaining-output-tokens").is_some(),
        "headers are sent before the stream"
    );
    let events = sse_events(&r.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.starts_with("The quick brown fox"));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"]["completion_tokens"], 20);
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "stop"
    );

    // Without include_usage there is no usage chunk, but the stream is still settled exactly.
    let body = chat_body("gpt-4o", "stream please", "\"stream\":true");
    let r = post_chat(gw.port, "sk-tokens", &body);
    let events = sse_events(&r.body);
    assert!(events.iter().all(|e| !e.contains("\"usage\"")));
    let mut con = s.redis.client();
    let key = limiter_key(&mut con);
    assert!(eventually(Duration::from_secs(5), || {
        peek(&mut con, &key, ["0", "5000", "1000"]).remaining[2] == 1000 - 40
    }));
}

#[test]
fn shadow_keys_are_reported_not_blocked() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &[]);
    let body = chat_body("gpt-4o", "hello", "\"max_tokens\":2");
    let statuses: Vec<u16> = (0..3)
        .map(|_| post_chat(gw.port, "sk-shadow", &body).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200]);
    assert_eq!(metric(gw.port, "llmrl_gateway_shadow_denied_total", &[]), 2);
    let mut con = s.redis.client();
    let key = limiter_key(&mut con);
    // Only the admitted request was recorded.
    // PEEK counts one more request: with a limit of 2, exactly one is in use.
    let p = peek(&mut con, &key, ["2", "0", "0"]);
    assert!(p.allowed && p.remaining[0] == 0, "{p:?}");
}

#[test]
fn sighup_reloads_limits_and_keeps_usage() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &[]);
    let body = chat_body("gpt-4o", "hello", "\"max_tokens\":2");
    assert_eq!(post_chat(gw.port, "sk-one", &body).status, 200);
    assert_eq!(post_chat(gw.port, "sk-one", &body).status, 429);
    assert_eq!(post_chat(gw.port, "sk-new", &body).status, 401);
    let reloaded = KEYS.replace(
        "name = \"one\"\nkey = \"sk-one\"\nrpm = 1",
        "name = \"one\"\nkey = \"sk-one\"\nrpm = 3",
    ) + "\n[[keys]]\nname = \"new\"\nkey = \"sk-new\"\n";
    write_keys(&s.redis.dir, &reloaded);
    gw.signal("HUP");
    assert!(gw.log_shows("keys file reloaded", Duration::from_secs(5)));
    // Usage was kept: one request already counts against the new limit of 3.
    let statuses: Vec<u16> = (0..3)
        .map(|_| post_chat(gw.port, "sk-one", &body).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(post_chat(gw.port, "sk-new", &body).status, 200);

    // Changing a key's window starts a fresh limiter key rather than failing every CHECK.
    write_keys(
        &s.redis.dir,
        &reloaded.replace(
            "name = \"new\"\nkey = \"sk-new\"\n",
            "name = \"new\"\nkey = \"sk-new\"\nwindow_ms = 600\n",
        ),
    );
    gw.signal("HUP");
    assert!(eventually(Duration::from_secs(5), || gw
        .log_text()
        .matches("keys file reloaded")
        .count()
        == 2));
    assert_eq!(post_chat(gw.port, "sk-new", &body).status, 200);

    // A broken file is refused and the keys in force stay.
    write_keys(&s.redis.dir, "this is not toml [");
    gw.signal("HUP");
    assert!(gw.log_shows("reload failed", Duration::from_secs(5)));
    assert_eq!(post_chat(gw.port, "sk-new", &body).status, 200);
}

#[test]
fn redis_outage_fails_closed_or_open_and_recovers() {
    let mut s = stack();
    let closed = Gateway::start(s.redis.port, &s.keys, &["--redis-timeout-ms", "100"]);
    let open = Gateway::start(s.redis.port, &s.keys, &["--on-redis-error", "open"]);
    let body = chat_body("gpt-4o", "hello", "\"max_tokens\":2");
    assert_eq!(post_chat(closed.port, "sk-tight", &body).status, 200);
    assert_eq!(post_chat(open.port, "sk-tight", &body).status, 200);

    s.redis.kill();
    let started = Instant::now();
    let r = post_chat(closed.port, "sk-tight", &body);
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "rate_limiter_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "503 comes quickly, took {:?}",
        started.elapsed()
    );
    // Anthropic's Messages answers as Anthropic does when overloaded: 529, which its SDKs retry.
    let messages = r#"{"model":"claude-haiku-4-5","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = http(
        closed.port,
        "POST",
        "/v1/messages",
        Some("sk-tight"),
        Some(messages),
    );
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
    assert_eq!(r.json()["request_id"].as_str(), r.header("request-id"));
    let r = post_chat(open.port, "sk-tight", &body);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-ratelimit-limit-requests"),
        None,
        "served unchecked"
    );
    assert_eq!(metric(open.port, "llmrl_gateway_fail_open_total", &[]), 1);
    assert!(metric(closed.port, "llmrl_gateway_redis_errors_total", &[]) >= 1);
    let health = http(closed.port, "GET", "/health", None, None).json();
    assert_eq!(health["redis"], "down");

    // Redis comes back on the same port: limiting resumes without restarting the gateways.
    s.redis.restart(&[]);
    assert!(eventually(Duration::from_secs(10), || {
        post_chat(closed.port, "sk-tight", &body).status == 200
    }));
    let r = post_chat(closed.port, "sk-tight", &body);
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("20"));
    assert_eq!(
        http(closed.port, "GET", "/health", None, None).json()["redis"],
        "up"
    );
}

#[test]
fn slow_redis_counts_as_an_outage() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &["--redis-timeout-ms", "50"]);
    let body = chat_body("gpt-4o", "hello", "\"max_tokens\":2");
    assert_eq!(post_chat(gw.port, "sk-tight", &body).status, 200);
    let port = s.redis.port;
    let sleeper = std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let mut con = client.get_connection().unwrap();
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg("1").query(&mut con);
    });
    sleep(Duration::from_millis(100));
    let started = Instant::now();
    let r = post_chat(gw.port, "sk-tight", &body);
    assert_eq!(r.status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    sleeper.join().unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        post_chat(gw.port, "sk-tight", &body).status == 200
    }));
}

#[test]
fn graceful_shutdown_finishes_streams_in_flight() {
    use std::io::{Read, Write};
    let s = stack();
    let mut gw = Gateway::start(
        s.redis.port,
        &s.keys,
        &["--mock-chunk-delay-ms", "100", "--mock-tokens", "40"],
    );
    let body = chat_body("gpt-4o", "slow", "\"stream\":true");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer sk-tokens\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Wait until the stream is under way, then ask the gateway to stop.
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("data: ") {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "connection closed early");
        received.extend_from_slice(&buffer[..n]);
    }
    gw.signal("TERM");
    assert!(
        eventually(Duration::from_secs(2), || std::net::TcpStream::connect((
            "127.0.0.1",
            gw.port
        ))
        .is_err()),
        "no new connections once stopping"
    );
    stream.read_to_end(&mut received).unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("data: [DONE]"),
        "the stream in flight finished: {text}"
    );
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn health_models_metrics_and_completions_endpoint() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &["--node-id", "edge-7"]);
    let health = http(gw.port, "GET", "/health", None, None).json();
    assert_eq!(
        (health["node"].as_str(), health["redis"].as_str()),
        (Some("edge-7"), Some("up"))
    );
    assert!(health["version"].is_string());
    assert_eq!(http(gw.port, "GET", "/v1/models", None, None).status, 401);
    let models = http(gw.port, "GET", "/v1/models", Some("sk-tight"), None).json();
    assert_eq!(models["object"], "list");
    assert!(models["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "gpt-4o"));

    let body =
        r#"{"model":"gpt-3.5-turbo-instruct","prompt":["Say this","and that"],"max_tokens":7}"#;
    let r = http(
        gw.port,
        "POST",
        "/v1/completions",
        Some("sk-tokens"),
        Some(body),
    );
    assert_eq!(r.status, 200);
    let json = r.json();
    assert_eq!(json["object"], "text_completion");
    assert_eq!(json["usage"]["completion_tokens"], 7);
    assert_eq!(json["usage"]["prompt_tokens"], 4);
    assert_eq!(json["choices"][0]["finish_reason"], "length");

    let metrics = http(gw.port, "GET", "/metrics", None, None).text();
    for name in [
        "llmrl_gateway_requests_total",
        "llmrl_gateway_limiter_seconds_bucket",
        "llmrl_gateway_tokens_reserved_total",
        "llmrl_gateway_in_flight_requests",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains("node=\"edge-7\""));
}

#[test]
fn proxies_to_an_upstream_and_settles_with_its_usage() {
    let s = stack();
    // The upstream is another gateway (mock answers, no limits for the proxy's key).
    let dir = s.redis.dir.join("upstream");
    std::fs::create_dir_all(&dir).unwrap();
    let upstream_keys = write_keys(&dir, "[[keys]]\nname = \"proxy\"\nkey = \"sk-upstream\"\n");
    let upstream = Gateway::start(s.redis.port, &upstream_keys, &["--mock-tokens", "12"]);
    let url = format!("http://127.0.0.1:{}", upstream.port);
    let gw = Gateway::start_with_env(
        s.redis.port,
        &s.keys,
        &["--upstream", &url],
        &[("LLMRL_UPSTREAM_API_KEY", "sk-upstream")],
    );
    let r = post_chat(
        gw.port,
        "sk-tokens",
        &chat_body("gpt-4o", "via upstream", ""),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["usage"]["completion_tokens"], 12);
    assert_eq!(r.header("x-ratelimit-limit-output-tokens"), Some("1000"));

    // Streaming without include_usage: the proxy asks upstream for usage and strips it.
    let body = chat_body("gpt-4o", "via upstream", "\"stream\":true");
    let r = post_chat(gw.port, "sk-tokens", &body);
    let events = sse_events(&r.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        events.iter().all(|e| !e.contains("\"usage\"")),
        "{events:?}"
    );
    let mut con = s.redis.client();
    let keys: Vec<String> = redis::cmd("KEYS").arg("llmrl:*").query(&mut con).unwrap();
    let proxy_key = keys.into_iter().find(|k| {
        decision(&mut con, &["LLMRL.PEEK", k, "0", "5000", "1000", "0", "0"]).remaining[2] != -1
    });
    let proxy_key = proxy_key.expect("the proxy's limiter key");
    assert!(
        eventually(Duration::from_secs(5), || {
            peek(&mut con, &proxy_key, ["0", "5000", "1000"]).remaining[2] == 1000 - 24
        }),
        "both requests settled to the 12 tokens the upstream produced"
    );

    // Upstream errors pass through (here: the upstream rejects a bad key).
    let bad = Gateway::start_with_env(
        s.redis.port,
        &s.keys,
        &["--upstream", &url],
        &[("LLMRL_UPSTREAM_API_KEY", "sk-bad")],
    );
    let r = post_chat(bad.port, "sk-tight", &chat_body("gpt-4o", "x", ""));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    // An unreachable upstream is a 502 in OpenAI's format.
    let dead = Gateway::start(
        s.redis.port,
        &s.keys,
        &["--upstream", &format!("http://127.0.0.1:{}", free_port())],
    );
    let r = post_chat(dead.port, "sk-tight", &chat_body("gpt-4o", "x", ""));
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream_unavailable");
}

#[test]
fn capacity_returns_after_retry_after_ms() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &[]);
    let body = chat_body("gpt-4o", "hello", "\"max_tokens\":2");
    assert_eq!(post_chat(gw.port, "sk-fast", &body).status, 200);
    assert_eq!(post_chat(gw.port, "sk-fast", &body).status, 200);
    let denied = post_chat(gw.port, "sk-fast", &body);
    assert_eq!(denied.status, 429);
    let wait: u64 = denied.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(wait <= 610);
    sleep(Duration::from_millis(wait));
    assert_eq!(post_chat(gw.port, "sk-fast", &body).status, 200);
}

/// At startup the gateway reads the module's version (`MODULE LIST`): with the module it logs
/// the version it found; pointed at a Redis without it, an error that says so, where otherwise
/// only every limited request's failure would.
#[test]
fn the_gateway_says_whether_redis_has_the_module() {
    let s = stack();
    let gw = Gateway::start(s.redis.port, &s.keys, &[]);
    let found = format!("version={}", llmrl_core::protocol::MODULE_VERSION);
    assert!(
        gw.log_shows("llmrl module found", Duration::from_secs(10)),
        "{}",
        gw.log_text()
    );
    assert!(gw.log_text().contains(&found), "{}", gw.log_text());

    let plain = RedisServer::start_without_module();
    let keys = write_keys(&plain.dir, KEYS);
    let gw = Gateway::start(plain.port, &keys, &[]);
    assert!(
        gw.log_shows("Redis has no llmrl module loaded", Duration::from_secs(10)),
        "{}",
        gw.log_text()
    );
    assert!(!gw.log_text().contains("llmrl module found"));
}
