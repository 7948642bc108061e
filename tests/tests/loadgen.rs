//! The load generator against real gateway nodes: its counts agree with the gateways' own
//! metrics and with Redis, and its audit tells a limited target from an over-admitting one.

use llmrl_tests::*;

const KEYS: &str = r#"
[[keys]]
name = "low"
key = "sk-low"
rpm = 40
itpm = 100000
otpm = 100000

[[keys]]
name = "other"
key = "sk-other"
rpm = 25
itpm = 100000
otpm = 200

[[keys]]
name = "over"
key = "sk-over"
rpm = 5
shadow = true
"#;

/// 200 responses counted by a gateway's /metrics for the chat route.
fn gateway_successes(port: u16) -> u64 {
    metric(
        port,
        "llmrl_gateway_requests_total",
        &["route=\"chat\"", "status=\"200\""],
    )
}

#[test]
fn many_clients_on_three_nodes_never_exceed_the_limits() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, KEYS);
    let nodes: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start(redis.port, &keys, &[]))
        .collect();
    let urls: Vec<String> = nodes
        .iter()
        .map(|g| format!("http://127.0.0.1:{}", g.port))
        .collect();
    let json = redis.dir.join("report.json");
    let hgrm = redis.dir.join("latency.hgrm");
    let mut args: Vec<String> = Vec::new();
    for url in &urls {
        args.extend(["--node".into(), url.clone()]);
    }
    args.extend(
        [
            "--key",
            "sk-low",
            "--key",
            "sk-other",
            "--concurrency",
            "200",
            "--duration",
            "3",
            "--prompt-tokens",
            "10-60",
            "--max-tokens",
            "4",
            "--audit",
            "--keys-file",
        ]
        .map(String::from),
    );
    args.push(keys.display().to_string());
    args.extend(["--hgrm".into(), hgrm.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, output, report) = run_loadgen_report(&refs, &json);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("audit violations: 0"), "{output}");
    let ok = report["status_codes"]["200"].as_u64().unwrap();
    let limited = report["status_codes"]["429"].as_u64().unwrap();
    assert_eq!(ok + limited, report["total_requests"].as_u64().unwrap());
    assert_eq!(report["transport_errors"], 0);
    assert_eq!(ok, 40 + 25, "every key used exactly its request limit");
    assert!(report["limited_by"]["requests"].as_u64().unwrap() > 0);

    // The per-node table agrees with each gateway's own metrics.
    for (row, gateway) in report["nodes"].as_array().unwrap().iter().zip(&nodes) {
        assert_eq!(
            row["successes"].as_u64().unwrap(),
            gateway_successes(gateway.port)
        );
    }
    let per_key: Vec<u64> = report["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["successes"].as_u64().unwrap())
        .collect();
    assert_eq!(per_key, [40, 25]);
    let total_by_node: u64 = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total_by_node, report["total_requests"].as_u64().unwrap());

    // Audit: full utilization of the request limits, nothing over.
    for key in report["audit"].as_array().unwrap() {
        let requests = &key["dimensions"][0];
        assert_eq!(requests["dimension"], "requests");
        assert_eq!(requests["violations"], 0);
        assert!(
            requests["utilization"].as_f64().unwrap() >= 0.99,
            "{requests}"
        );
    }

    // Redis agrees: both keys are exactly at their request limits.
    let mut con = redis.client();
    let limiter_keys: Vec<String> = redis::cmd("KEYS").arg("llmrl:*").query(&mut con).unwrap();
    assert_eq!(limiter_keys.len(), 2);
    let mut used: Vec<i64> = limiter_keys
        .iter()
        .map(|key| {
            // PEEK reports what would remain after one more request.
            999 - decision(&mut con, &["LLMRL.PEEK", key, "1000", "0", "0", "0", "0"]).remaining[0]
        })
        .collect();
    used.sort_unstable();
    assert_eq!(used, [25, 40]);
    let hgrm_text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(hgrm_text.starts_with("       Value     Percentile TotalCount"));
    assert!(hgrm_text.contains("#[Max     ="));
}

#[test]
fn the_audit_catches_an_over_admitting_target() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, KEYS);
    let gateway = Gateway::start(redis.port, &keys, &[]);
    let url = format!("http://127.0.0.1:{}", gateway.port);
    let keys_arg = keys.display().to_string();
    // The "over" key is in shadow mode: the gateway serves everything, so 5 RPM is exceeded.
    let (code, output) = run_loadgen(&[
        "--node",
        &url,
        "--key",
        "sk-over",
        "--concurrency",
        "8",
        "--requests",
        "60",
        "--max-tokens",
        "2",
        "--audit",
        "--keys-file",
        &keys_arg,
    ]);
    assert_eq!(code, 1, "violations make the exit code 1: {output}");
    let violations: u64 = output
        .lines()
        .find_map(|l| l.strip_prefix("audit violations: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(violations > 0, "{output}");

    // Open loop, bounded by a request count; --limits instead of a keys file.
    let (code, output) = run_loadgen(&[
        "--node",
        &url,
        "--key",
        "sk-low",
        "--rate",
        "200",
        "--requests",
        "100",
        "--max-tokens",
        "2",
        "--audit",
        "--limits",
        "40,0,0",
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("requests 100 "), "{output}");
    assert!(output.contains("open loop"), "{output}");
    // Never early: the 100th request's time is 99 intervals after the first, whichever lane
    // sends it, so the run cannot average more than 200 x 100/99 requests a second.
    let throughput: f64 = output
        .split("throughput ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no throughput in {output}"));
    assert!(throughput <= 200.0 * 100.0 / 99.0, "{output}");

    // The open loop works through its schedule on --concurrency keep-alive connections, however
    // the requests bunch up: it never opens more (each /metrics read below is one more).
    let accepted = || metric(gateway.port, "llmrl_gateway_connections_total", &[]);
    let before = accepted();
    let (code, output) = run_loadgen(&[
        "--node",
        &url,
        "--key",
        "sk-over",
        "--rate",
        "3000",
        "--concurrency",
        "2",
        "--requests",
        "600",
        "--max-tokens",
        "2",
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("requests 600 "), "{output}");
    assert!(output.contains("over 2 connections"), "{output}");
    let opened = accepted() - before - 1;
    assert!((1..=2).contains(&opened), "{opened} connections: {output}");

    // Streamed responses: usage comes from the stream's usage chunk and is audited too.
    let json = redis.dir.join("stream.json");
    let (code, output, report) = run_loadgen_report(
        &[
            "--node",
            &url,
            "--key",
            "sk-other",
            "--concurrency",
            "4",
            "--requests",
            "40",
            "--stream",
            "--max-tokens",
            "4",
            "--audit",
            "--keys-file",
            &keys_arg,
        ],
        &json,
    );
    assert_eq!(code, 0, "{output}");
    assert_eq!(report["status_codes"]["200"], 25, "{output}");
    let output_tokens = &report["audit"][0]["dimensions"][2];
    assert_eq!(output_tokens["dimension"], "output_tokens");
    assert_eq!(
        output_tokens["admitted"],
        25 * 4,
        "usage read from the streams"
    );
}

/// Every API the gateway speaks, driven and audited by the load generator: each key's request
/// limit is reached exactly, usage is read back from each API's own answers and streams, and
/// the gateway counts the same on each route.
#[test]
fn every_api_is_driven_and_audited() {
    let redis = RedisServer::start(&[]);
    let toml: String = ["responses", "messages", "embeddings"]
        .iter()
        .map(|api| {
            format!("[[keys]]\nname = \"{api}\"\nkey = \"sk-{api}\"\nrpm = 12\notpm = 100000\n\n")
        })
        .collect();
    let keys = write_keys(&redis.dir, &toml);
    let gw = Gateway::start(redis.port, &keys, &[]);
    let url = format!("http://127.0.0.1:{}", gw.port);
    let keys_arg = keys.display().to_string();
    // Each admitted answer produces 6 output tokens (none for embeddings).
    for (api, model, stream, produced) in [
        ("responses", "gpt-4o", true, 72),
        ("messages", "claude-haiku-4-5", true, 72),
        ("embeddings", "text-embedding-3-small", false, 0),
    ] {
        let key = format!("sk-{api}");
        let mut args = vec![
            "--node",
            &url,
            "--key",
            &key,
            "--api",
            api,
            "--model",
            model,
            "--concurrency",
            "4",
            "--duration",
            "1",
            "--max-tokens",
            "6",
            "--audit",
            "--keys-file",
            &keys_arg,
        ];
        if stream {
            args.push("--stream");
        }
        let json = redis.dir.join(format!("{api}.json"));
        let (code, output, report) = run_loadgen_report(&args, &json);
        assert_eq!(code, 0, "{api}: {output}");
        assert_eq!(report["status_codes"]["200"], 12, "{api}: {output}");
        let audit = &report["audit"][0];
        assert_eq!(audit["violations"], 0, "{api}");
        assert_eq!(audit["dimensions"][0]["admitted"], 12, "{api}");
        assert_eq!(audit["dimensions"][1]["dimension"], "output_tokens");
        assert_eq!(
            audit["dimensions"][1]["admitted"], produced,
            "{api}: usage read back"
        );
        let route = format!("route=\"{api}\"");
        let served = metric(
            gw.port,
            "llmrl_gateway_requests_total",
            &[&route, "status=\"200\""],
        );
        assert_eq!(served, 12, "{api}");
    }
}
