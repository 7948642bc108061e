//! Policies across real gateway nodes: a key, its team and organisation, day limits, concurrency
//! slots and spend budgets, all decided by one LLMRL.MCHECK per request.

use llmrl_tests::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The `error.message` of an error answer.
fn error_message(response: &HttpResponse) -> String {
    response.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Wait until a request for `key` is admitted again.
fn eventually_admitted(port: u16, key: &str, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while post_chat(port, key, &chat_body("m", "x", "")).status != 200 {
        assert!(Instant::now() < deadline, "{what}");
        sleep(Duration::from_millis(100));
    }
}

/// Send `requests` chat requests per thread from `threads` threads (spread over `ports`) at
/// once; every status with the response.
fn burst(ports: &[u16], key: &str, threads: usize, requests: usize) -> Vec<HttpResponse> {
    let barrier = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (ports, key, barrier) = (ports.to_vec(), key.to_string(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                (0..requests)
                    .map(|i| {
                        let port = ports[(t + i) % ports.len()];
                        let body = chat_body("gpt-4o-mini", "count me", "\"max_tokens\":5");
                        post_chat(port, &key, &body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect()
}

const TEAM: &str = r#"
[[teams]]
name = "ml"
rpm = 15

[[keys]]
name = "a"
key = "sk-a"
team = "ml"
rpm = 10

[[keys]]
name = "b"
key = "sk-b"
team = "ml"
rpm = 10
"#;

#[test]
fn a_team_cap_and_each_keys_own_cap_hold_across_three_nodes() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, TEAM);
    let nodes: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start(redis.port, &keys, &[]))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|g| g.port).collect();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| burst(&ports, "sk-a", 4, 6));
        let b = s.spawn(|| burst(&ports, "sk-b", 4, 6));
        (a.join().unwrap(), b.join().unwrap())
    });
    let ok = |responses: &[HttpResponse]| responses.iter().filter(|r| r.status == 200).count();
    assert!(a
        .iter()
        .chain(&b)
        .all(|r| r.status == 200 || r.status == 429));
    assert_eq!(
        ok(&a) + ok(&b),
        15,
        "exactly the team's cap, across all nodes"
    );
    assert!(
        ok(&a) <= 10 && ok(&b) <= 10,
        "each key's own cap: {} {}",
        ok(&a),
        ok(&b)
    );
    // Each refusal names the scope that refused; headers never promise more than any scope has.
    for refused in a.iter().chain(&b).filter(|r| r.status == 429) {
        let message = error_message(refused);
        assert!(
            message
                .starts_with("Rate limit reached for team ml on requests per min (RPM): Limit 15")
                || message.starts_with("Rate limit reached for key "),
            "{message}"
        );
        assert_eq!(refused.header("x-ratelimit-remaining-requests"), Some("0"));
        assert!(refused.header("retry-after-ms").is_some());
        // The binding-scope header names the scope that refused.
        let binding = refused.header("x-llmrl-binding-scope").unwrap();
        if message.contains("for team ml ") {
            assert_eq!(binding, "team:ml", "{message}");
        } else {
            assert!(
                binding == "key:a" || binding == "key:b",
                "{binding}: {message}"
            );
        }
    }
    let first = a.iter().chain(&b).find(|r| r.status == 200).unwrap();
    assert!(first.header("x-llmrl-binding-scope").is_some());
    // The audit by scope, from Redis: the team holds all 15, each key its own share.
    let mut con = redis.client();
    for (key, responses) in [("sk-a", &a), ("sk-b", &b)] {
        let scopes = policy_scopes(&keys, key, "gpt-4o-mini");
        assert_eq!(
            scope_used(&mut con, &scopes[0], 0),
            ok(responses) as u64,
            "{key}"
        );
        assert_eq!(scope_used(&mut con, &scopes[1], 0), 15, "team");
    }
}

#[test]
fn day_limits_rolling_and_at_midnight() {
    let redis = RedisServer::start(&[]);
    let mut con = redis.client();
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(&mut con).unwrap();
    let now_ms = seconds * 1000 + micros / 1000;
    // An offset that puts local midnight about 20 minutes from now.
    let utc_minute = (now_ms / 60_000) % 1440;
    let offset = ((1420 + 1440 - utc_minute) % 1440) as i64;
    let text = format!(
        r#"
[[keys]]
name = "rolling"
key = "sk-rolling"
rpd = 3
day_window_ms = 3000

[[keys]]
name = "midnight"
key = "sk-midnight"
rpd = 2
day_reset = "midnight"
utc_offset_minutes = {offset}
"#
    );
    let keys = write_keys(&redis.dir, &text);
    let gateway = Gateway::start(redis.port, &keys, &[]);
    let body = chat_body("gpt-4o-mini", "hi", "\"max_tokens\":5");
    for _ in 0..3 {
        assert_eq!(post_chat(gateway.port, "sk-rolling", &body).status, 200);
    }
    let refused = post_chat(gateway.port, "sk-rolling", &body);
    assert_eq!(refused.status, 429);
    let message = error_message(&refused);
    assert!(
        message.starts_with("Rate limit reached for key rolling on requests per day (RPD): Limit 3, Used 3, Requested 1."),
        "{message}"
    );
    let wait: u64 = refused.header("retry-after-ms").unwrap().parse().unwrap();
    // A request counts until one window after its bucket (a 60th of the window) ends.
    assert!(wait > 0 && wait <= 3000 + 50, "{wait}");
    sleep(Duration::from_millis(wait + 50));
    assert_eq!(post_chat(gateway.port, "sk-rolling", &body).status, 200);

    for _ in 0..2 {
        assert_eq!(post_chat(gateway.port, "sk-midnight", &body).status, 200);
    }
    let refused = post_chat(gateway.port, "sk-midnight", &body);
    assert_eq!(refused.status, 429);
    let wait: i64 = refused.header("retry-after-ms").unwrap().parse().unwrap();
    let midnight_utc_ms = {
        let local = now_ms as i64 + offset * 60_000;
        let next_local_midnight = (local / 86_400_000 + 1) * 86_400_000;
        next_local_midnight - offset * 60_000
    };
    let expected = midnight_utc_ms - now_ms as i64;
    assert!(
        (wait - expected).abs() < 10_000,
        "waits until midnight at UTC{offset:+} min: {wait} vs {expected}"
    );
}

/// Open a streamed chat request and read its status line; the stream stays open.
fn open_stream(port: u16, key: &str) -> (u16, TcpStream) {
    let body = chat_body("gpt-4o-mini", "stream please", "\"stream\":true");
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, stream)
}

fn drain(mut stream: TcpStream) {
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

const SLOTS: &str = r#"
[[keys]]
name = "slots"
key = "sk-slots"
max_parallel_requests = 3
"#;

#[test]
fn exactly_max_parallel_requests_in_flight_and_slots_come_back() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, SLOTS);
    // 8 chunks of 250 ms: each stream holds its slot for about 2 s.
    let slow = ["--mock-chunk-delay-ms", "250"];
    let nodes: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start(redis.port, &keys, &slow))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|g| g.port).collect();
    let barrier = Arc::new(Barrier::new(8));
    let opened: Vec<(u16, TcpStream)> = (0..8)
        .map(|i| {
            let (port, barrier) = (ports[i % 3], Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                open_stream(port, "sk-slots")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let admitted = opened.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(admitted, 3, "exactly the slots, across three nodes");
    assert_eq!(
        opened.iter().filter(|(status, _)| *status == 429).count(),
        5
    );
    let refused = post_chat(ports[0], "sk-slots", &chat_body("m", "x", ""));
    assert_eq!(refused.status, 429);
    let message = error_message(&refused);
    assert!(
        message.starts_with("Too many concurrent requests for key slots: Limit 3"),
        "{message}"
    );
    let hint: u64 = refused.header("retry-after-ms").unwrap().parse().unwrap();
    assert!((1..=1000).contains(&hint), "a short hint: {hint}");

    // Finished streams give their slots back.
    for (_, stream) in opened {
        drain(stream);
    }
    let back = "slots of finished streams never came back";
    eventually_admitted(ports[1], "sk-slots", Duration::from_secs(5), back);

    // A client that leaves mid-stream gives its slot back too.
    let held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let (status, stream) = open_stream(ports[i], "sk-slots");
            assert_eq!(status, 200);
            stream
        })
        .collect();
    assert_eq!(
        post_chat(ports[0], "sk-slots", &chat_body("m", "x", "")).status,
        429
    );
    drop(held);
    let back = "slots of aborted streams never came back";
    eventually_admitted(ports[2], "sk-slots", Duration::from_secs(5), back);
}

#[test]
fn a_killed_gateway_leaks_no_slot_beyond_its_lease() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, SLOTS);
    let lease = ["--mock-chunk-delay-ms", "1000", "--slot-lease-ms", "1500"];
    let mut doomed = Gateway::start(redis.port, &keys, &lease);
    let survivor = Gateway::start(redis.port, &keys, &lease);
    let streams: Vec<TcpStream> = (0..3)
        .map(|_| {
            let (status, stream) = open_stream(doomed.port, "sk-slots");
            assert_eq!(status, 200);
            stream
        })
        .collect();
    let killed_at = Instant::now();
    doomed.kill();
    drop(streams);
    let body = chat_body("m", "x", "");
    assert_eq!(post_chat(survivor.port, "sk-slots", &body).status, 429);
    let back = "the dead gateway's slots never came back";
    eventually_admitted(survivor.port, "sk-slots", Duration::from_secs(10), back);
    assert!(
        killed_at.elapsed() < Duration::from_millis(1500 + 2000),
        "slots came back within about the lease: {:?}",
        killed_at.elapsed()
    );
}

const BUDGET: &str = r#"
[[orgs]]
name = "acme"
budget_usd = 0.005
budget_period = "day"

[[keys]]
name = "spender"
key = "sk-spender"
org = "acme"

[prices."gpt-4o-mini"]
input = 1.0
output = 2.0
"#;

#[test]
fn a_spend_budget_holds_under_200_concurrent_requests() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, BUDGET);
    let nodes: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start(redis.port, &keys, &["--mock-tokens", "16"]))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|g| g.port).collect();
    let barrier = Arc::new(Barrier::new(200));
    let responses: Vec<HttpResponse> = (0..200)
        .map(|i| {
            let (port, barrier) = (ports[i % 3], Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let body = chat_body("gpt-4o-mini", "spend a little", "\"max_tokens\":200");
                post_chat(port, "sk-spender", &body)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    // Real cost per answer: its usage at the file's prices, in micro-dollars rounded up.
    let mut spent = 0u64;
    let mut admitted = 0;
    for response in &responses {
        match response.status {
            200 => {
                admitted += 1;
                let usage = &response.json()["usage"];
                let input = usage["prompt_tokens"].as_u64().unwrap() as f64;
                let output = usage["completion_tokens"].as_u64().unwrap() as f64;
                let cost = (input * 1.0 + output * 2.0).ceil() as u64;
                spent += cost;
                // The reservation (200 output tokens) and what the answer really cost.
                let reserved: f64 = response
                    .header("x-llmrl-reserved-cost-usd")
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(reserved * 1e6 > cost as f64, "{reserved} {cost}");
                let actual = format!("0.{cost:06}");
                assert_eq!(response.header("x-llmrl-cost-usd"), Some(actual.as_str()));
            }
            429 => {
                let error = &response.json()["error"];
                assert_eq!(error["type"], "insufficient_quota", "{error}");
                assert_eq!(error["code"], "insufficient_quota");
                // The budget and the amounts to the micro-dollar, and the org as the binding
                // scope (a budget has no rate-limit header of its own).
                let message = error["message"].as_str().unwrap();
                assert!(
                    message.starts_with(
                        "You exceeded your current quota: the budget of organization acme on spend per day is $0.005, $0.00"
                    ),
                    "{message}"
                );
                assert_eq!(response.header("x-llmrl-binding-scope"), Some("org:acme"));
            }
            other => panic!("unexpected {other}: {}", response.text()),
        }
    }
    assert!(admitted > 0 && admitted < 200, "{admitted} admitted");
    assert!(spent <= 5_000, "spent {spent} µUSD of a 5,000 µUSD budget");
    // After every request ended, the recorded spend is exactly the real cost (no phantom
    // reservation left behind).
    let scopes = policy_scopes(&keys, "sk-spender", "gpt-4o-mini");
    let budget = scopes.iter().find(|s| s.limits.summed[3] > 0).unwrap();
    let mut con = redis.client();
    let deadline = Instant::now() + Duration::from_secs(5);
    while scope_used(&mut con, budget, 3) != spent && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    assert_eq!(scope_used(&mut con, budget, 3), spent);
    assert_eq!(scope_used(&mut con, budget, 0), admitted as u64);
}

#[test]
fn slots_come_back_when_the_upstream_fails_or_times_out() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(
        &redis.dir,
        "[[keys]]\nname = \"one-slot\"\nkey = \"sk-one\"\nmax_parallel_requests = 1\n",
    );
    // Nobody listens on this port: every upstream call fails at once.
    let dead = format!("http://127.0.0.1:{}", free_port());
    // This one accepts connections and never answers: every call times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    for upstream in [dead, silent_url] {
        let gateway = Gateway::start(
            redis.port,
            &keys,
            &["--upstream", &upstream, "--upstream-timeout-ms", "300"],
        );
        for attempt in 0..3 {
            let response = post_chat(gateway.port, "sk-one", &chat_body("m", "x", ""));
            assert!(
                response.status >= 500,
                "attempt {attempt} via {upstream}: {} {}",
                response.status,
                response.text()
            );
        }
    }
}

/// Two keys of a team of an organisation behind an upstream pool, each scope with a different
/// kind of limit: per minute, a rolling day, a calendar day's spend, tokens, concurrency.
const AUDITED: &str = r#"
[[orgs]]
name = "acme"
upstream = "openai"
budget_usd = 50
budget_period = "day"

[[teams]]
name = "ml"
org = "acme"
rpm = 24
max_parallel_requests = 3

[[upstreams]]
name = "openai"
[[upstreams.pools]]
name = "all"
models = ["*"]
tpm = 100000

[prices."gpt-4o-mini"]
input = 0.15
output = 0.6

[[keys]]
name = "a"
key = "sk-a"
team = "ml"
rpm = 15
rpd = 1000

[[keys]]
name = "b"
key = "sk-b"
team = "ml"
rpm = 15
"#;

/// The load generator's audit by scope on three nodes: every scope of both keys is audited
/// from what the clients saw, the binding ones reach their limits and none is exceeded; the
/// same run judged against a tighter file is caught.
#[test]
fn the_audit_checks_every_scope_of_a_policy_on_three_nodes() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, AUDITED);
    // Streams of four 100 ms chunks (16 tokens): a slot is held for about 0.4 s; the audit takes it as held
    // until 50 ms before the last chunk arrives (the slot may be freed before it is delivered).
    let nodes: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start(redis.port, &keys, &["--mock-chunk-delay-ms", "100"]))
        .collect();
    let run = |keys_file: &std::path::Path, json: &str| {
        let mut args: Vec<String> = Vec::new();
        for gw in &nodes {
            args.extend(["--node".into(), format!("http://127.0.0.1:{}", gw.port)]);
        }
        let keys_arg = keys_file.display().to_string();
        args.extend(
            [
                "--key",
                "sk-a",
                "--key",
                "sk-b",
                "--concurrency",
                "12",
                "--duration",
                "4",
                "--stream",
                "--max-tokens",
                "16",
                "--timeout-ms",
                "5000",
                "--audit",
                "--audit-slack-ms",
                "50",
                "--keys-file",
                &keys_arg,
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_loadgen_report(&args, &redis.dir.join(json))
    };
    let (code, output, report) = run(&keys, "audit.json");
    assert_eq!(code, 0, "{output}");
    let scopes = report["audit"].as_array().unwrap();
    let scope = |name: &str| {
        scopes
            .iter()
            .find(|s| s["scope"] == name)
            .unwrap_or_else(|| panic!("no scope {name}: {output}"))
    };
    let dimension = |scope: &serde_json::Value, name: &str| {
        scope["dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["dimension"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {scope}"))
    };
    for s in scopes {
        assert_eq!(s["violations"], 0, "{s}");
    }
    // The team's 24 a minute bind (each key's 15 cannot both be reached), over both keys.
    let team = scope("team:ml any 60000 ms");
    assert_eq!(team["keys"], serde_json::json!([0, 1]));
    assert_eq!(dimension(team, "requests")["admitted"], 24, "{output}");
    // Exactly three streams were seen in flight at once, never four.
    assert_eq!(
        dimension(team, "concurrency")["max_in_window"],
        3,
        "{output}"
    );
    let key_a = dimension(scope("key:a any 60000 ms"), "requests");
    let key_b = dimension(scope("key:b any 60000 ms"), "requests");
    assert_eq!(
        key_a["admitted"].as_u64().unwrap() + key_b["admitted"].as_u64().unwrap(),
        24
    );
    assert_eq!(
        dimension(scope("key:a any 86400000 ms"), "requests")["admitted"],
        key_a["admitted"]
    );
    // Spend at the file's prices and tokens, summed over both keys.
    let spend = dimension(scope("org:acme each day"), "spend_micro_usd");
    let tokens = dimension(scope("pool:openai/all any 60000 ms"), "tokens");
    assert!(spend["admitted"].as_u64().unwrap() > 0, "{spend}");
    assert!(tokens["admitted"].as_u64().unwrap() > 24 * 16, "{tokens}");
    assert!(output.contains("audit by scope"), "{output}");

    // Judged against limits the gateways did not enforce, the same load (on fresh counters) is
    // an excess.
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.client()).unwrap();
    let other = redis.dir.join("tighter");
    std::fs::create_dir_all(&other).unwrap();
    let tighter = write_keys(
        &other,
        &AUDITED
            .replace("rpm = 24", "rpm = 20")
            .replace("max_parallel_requests = 3", "max_parallel_requests = 2"),
    );
    let (code, output, report) = run(&tighter, "tighter.json");
    assert_eq!(code, 1, "{output}");
    let team = &report["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scope"] == "team:ml any 60000 ms")
        .cloned()
        .unwrap();
    assert!(team["violations"].as_u64().unwrap() > 0, "{output}");
}
