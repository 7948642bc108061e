//! Operating llmrl: the policy stored in Redis and followed by every node, the admin API and
//! CLI, and what a client reads at /v1/usage — on real gateway processes over one real Redis.

use llmrl_tests::*;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

const TOKEN: &str = "admin-token-for-tests";

const POLICY: &str = r#"
[[keys]]
name = "a"
key = "sk-op-a"
team = "t"
rpm = 100

[[keys]]
name = "file-only"
key = "sk-op-file"

[[keys]]
name = "steady"
key = "sk-op-steady"

[[teams]]
name = "t"
rpm = 1000
"#;

/// `llmrl-gateway admin ...` against `redis_port`: exit code, stdout, stderr.
fn admin_cli(redis_port: u16, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(gateway_path())
        .arg("admin")
        .args(["--redis-url", &format!("redis://127.0.0.1:{redis_port}/")])
        .args(args)
        .output()
        .expect("run llmrl-gateway admin");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A node on the stored policy, with its admin listener on `admin_port`.
fn node(redis: &RedisServer, keys: &Path, admin_port: u16) -> Gateway {
    let admin = format!("127.0.0.1:{admin_port}");
    Gateway::start_with_env(
        redis.port,
        keys,
        &["--policies", "redis", "--admin-listen", &admin],
        &[("LLMRL_ADMIN_TOKEN", TOKEN)],
    )
}

fn policy_version(port: u16) -> Option<String> {
    http(port, "GET", "/health", None, None).json()["policy_version"]
        .as_str()
        .map(str::to_string)
}

/// Wait until every node enforces `version`; the longest wait.
fn all_follow(ports: &[u16], version: &str) -> Duration {
    let started = Instant::now();
    for &port in ports {
        while policy_version(port).as_deref() != Some(version) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "node {port} never took version {version}"
            );
            sleep(Duration::from_millis(10));
        }
    }
    let waited = started.elapsed();
    eprintln!("version {version} on every node after {waited:?}");
    waited
}

fn stored_version(redis: &RedisServer) -> String {
    string(&mut redis.client(), &["HGET", "llmrl:policy", "version"])
}

fn chat(port: u16, key: &str) -> u16 {
    post_chat(
        port,
        key,
        &chat_body("gpt-4o-mini", "hello", "\"max_tokens\":5"),
    )
    .status
}

#[test]
fn a_change_reaches_every_node_within_a_second_and_keeps_usage() {
    let redis = RedisServer::start(&[]);
    let dir = redis.dir.clone();
    let keys = write_keys(&dir, POLICY);
    let (code, out, err) = admin_cli(redis.port, &["import", &keys.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let admin_port = free_port();
    let nodes = [
        node(&redis, &keys, admin_port),
        node(&redis, &keys, free_port()),
        node(&redis, &keys, free_port()),
    ];
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    // Traffic that no change concerns runs through every change: not one request dropped.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let steady = {
        let (stop, ports) = (std::sync::Arc::clone(&stop), ports.clone());
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            for port in ports.iter().cycle() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                statuses.push(chat(*port, "sk-op-steady"));
                sleep(Duration::from_millis(5));
            }
            statuses
        })
    };
    for (i, port) in ports.iter().cycle().take(5).enumerate() {
        assert_eq!(chat(*port, "sk-op-a"), 200, "request {i}");
    }

    // A key created through one node's admin API is accepted by every node within a second.
    let created = http(
        admin_port,
        "POST",
        "/admin/keys",
        Some(TOKEN),
        Some(r#"{"name": "b", "team": "t", "rpm": 2}"#),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let secret = created.json()["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("sk-llmrl-"));
    let waited = all_follow(&ports, &stored_version(&redis));
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    let statuses: Vec<u16> = ports.iter().map(|&p| chat(p, &secret)).collect();
    assert_eq!(
        statuses,
        [200, 200, 429],
        "its rpm of 2 holds across the nodes"
    );

    // Raising a limit keeps the usage already recorded: 5 used, 6 allowed, one more fits.
    let raised = http(
        admin_port,
        "PATCH",
        "/admin/keys/a",
        Some(TOKEN),
        Some(r#"{"rpm": 6}"#),
    );
    assert_eq!(raised.status, 200, "{}", raised.text());
    assert_eq!(raised.json()["rpm"], 6);
    assert_eq!(raised.json()["team"], "t", "the rest of the key kept");
    let waited = all_follow(&ports, &stored_version(&redis));
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    assert_eq!(chat(ports[2], "sk-op-a"), 200);
    assert_eq!(chat(ports[1], "sk-op-a"), 429);

    // The client sees every scope: its own and its team's, counted over all nodes.
    let usage = http(ports[1], "GET", "/v1/usage", Some("sk-op-a"), None);
    assert_eq!(usage.status, 200, "{}", usage.text());
    let scopes = usage.json()["scopes"].as_array().unwrap().clone();
    let requests = |label: &str| {
        scopes
            .iter()
            .find(|s| s["scope"] == label)
            .and_then(|s| s["limits"].as_array())
            .and_then(|l| l.iter().find(|d| d["dimension"] == "requests"))
            .cloned()
            .unwrap_or_else(|| panic!("no {label} in {scopes:?}"))
    };
    let own = requests("key:a");
    assert_eq!(
        (
            own["limit"].clone(),
            own["used"].clone(),
            own["remaining"].clone()
        ),
        (6.into(), 6.into(), 0.into())
    );
    assert!(own["reset_ms"].as_i64().unwrap() > 0);
    let team = requests("team:t");
    assert_eq!(team["used"], 8, "a's 6 and b's 2 admissions");
    assert_eq!(team["limit"], 1000);

    // Disabled from the CLI: refused everywhere within a second, with its own message.
    let (code, out, err) = admin_cli(redis.port, &["keys", "disable", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    let waited = all_follow(&ports, &stored_version(&redis));
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    for &port in &ports {
        let refused = post_chat(port, "sk-op-a", &chat_body("m", "x", ""));
        assert_eq!(refused.status, 401);
        assert!(refused.text().contains("disabled"), "{}", refused.text());
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = steady.join().unwrap();
    assert!(statuses.len() > 20, "{}", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // Redis restarts empty (no persistence): the nodes keep enforcing what they had...
    let before = stored_version(&redis);
    let mut redis = redis;
    redis.restart(&[]);
    sleep(Duration::from_millis(600));
    for &port in &ports {
        assert_eq!(policy_version(port).as_deref(), Some(before.as_str()));
        assert_eq!(chat(port, "sk-op-a"), 401, "still disabled");
    }
    // ...and take the policy imported again, whose version is new even though the hash is.
    let (code, out, err) = admin_cli(redis.port, &["import", &keys.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let after = stored_version(&redis);
    assert_ne!(after, before);
    let waited = all_follow(&ports, &after);
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    for &port in &ports {
        assert_eq!(chat(port, "sk-op-a"), 200, "enabled again by the file");
        assert_eq!(chat(port, &secret), 401, "b is not in the file");
    }
    for node in &nodes {
        assert!(
            !node.log_text().contains(&secret) && !node.log_text().contains(TOKEN),
            "secrets never logged"
        );
    }
}

#[test]
fn the_admin_api_checks_every_change_and_keeps_secrets_out() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, POLICY);
    let (code, out, err) = admin_cli(redis.port, &["import", &keys.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let admin_port = free_port();
    let gateway = node(&redis, &keys, admin_port);
    let admin = |method: &str, path: &str, token: Option<&str>, body: Option<&str>| {
        http(admin_port, method, path, token, body)
    };

    // Only with the token; never on the public port.
    assert_eq!(admin("GET", "/admin/keys", None, None).status, 401);
    assert_eq!(admin("GET", "/admin/keys", Some("wrong"), None).status, 401);
    assert_eq!(
        http(gateway.port, "GET", "/admin/keys", Some(TOKEN), None).status,
        404
    );
    let openapi = admin("GET", "/admin/openapi.json", None, None);
    assert_eq!(openapi.status, 200);
    let paths = openapi.json()["paths"].as_object().unwrap().clone();
    for path in [
        "/admin/{kind}",
        "/admin/{kind}/{name}",
        "/admin/usage/{kind}/{name}",
        "/admin/policy",
    ] {
        assert!(paths.contains_key(path), "{path} documented");
    }
    let page = admin("GET", "/admin/", None, None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/admin/dashboard.js"));

    // Every bad change is a clear 4xx, and nothing is written.
    let version = stored_version(&redis);
    let cases = [
        (
            "PATCH",
            "/admin/teams/nope",
            r#"{"rpm": 1}"#,
            404,
            "not_found",
        ),
        (
            "PUT",
            "/admin/keys/x",
            r#"{"key": "sk-x", "team": "missing"}"#,
            422,
            "invalid_policy",
        ),
        (
            "PUT",
            "/admin/keys/x",
            r#"{"key": "sk-x", "rpn": 1}"#,
            422,
            "invalid_policy",
        ),
        (
            "PUT",
            "/admin/teams/t",
            r#"{"day_reset": "noon", "rpd": 1}"#,
            422,
            "invalid_policy",
        ),
        ("DELETE", "/admin/teams/t", "", 422, "invalid_policy"),
        (
            "POST",
            "/admin/keys",
            r#"{"name": "a"}"#,
            409,
            "already_exists",
        ),
        (
            "POST",
            "/admin/keys",
            r#"{"rpm": 1}"#,
            422,
            "invalid_policy",
        ),
        (
            "POST",
            "/admin/keys",
            r#"{"name": "my key"}"#,
            422,
            "invalid_policy",
        ),
        ("POST", "/admin/keys", "{not json", 400, "invalid_json"),
        (
            "PUT",
            "/admin/keys/x",
            r#"{"key": "sk-op-a"}"#,
            422,
            "invalid_policy",
        ),
        ("GET", "/admin/colors", "", 404, "not_found"),
        (
            "POST",
            "/admin/teams",
            r#"{"name": "x"}"#,
            405,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, kind) in cases {
        let body = (!body.is_empty()).then_some(body);
        let answer = admin(method, path, Some(TOKEN), body);
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.text());
        assert_eq!(answer.json()["error"]["type"], kind, "{method} {path}");
        assert!(!answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .is_empty());
    }
    assert_eq!(stored_version(&redis), version, "nothing written");

    // A team is created, a price set, a key rotated; the policy read back holds no secret.
    let team = admin(
        "PUT",
        "/admin/teams/new-team",
        Some(TOKEN),
        Some(r#"{"rpm": 9}"#),
    );
    assert_eq!(team.status, 200, "{}", team.text());
    let price = admin(
        "PUT",
        "/admin/prices/gpt-4o",
        Some(TOKEN),
        Some(r#"{"input": 2.5, "output": 10}"#),
    );
    assert_eq!(price.status, 200, "{}", price.text());
    let rotated = admin(
        "PATCH",
        "/admin/keys/a",
        Some(TOKEN),
        Some(r#"{"key": "sk-op-rotated"}"#),
    );
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    assert_eq!(
        chat(gateway.port, "sk-op-rotated"),
        200,
        "this node takes its change at once"
    );
    assert_eq!(chat(gateway.port, "sk-op-a"), 401);
    let policy = admin("GET", "/admin/policy", Some(TOKEN), None);
    assert_eq!(policy.status, 200);
    assert_eq!(policy.json()["source"], "redis");
    let stored = exec(&mut redis.client(), &["HGETALL", "llmrl:policy"]).unwrap();
    for text in [policy.text(), format!("{stored:?}")] {
        assert!(
            !text.contains("sk-op"),
            "API keys are stored as digests only: {text}"
        );
    }

    // Usage of a group, and its reset.
    for _ in 0..3 {
        assert_eq!(chat(gateway.port, "sk-op-rotated"), 200);
    }
    let usage = admin("GET", "/admin/usage/team/t", Some(TOKEN), None);
    assert_eq!(usage.status, 200, "{}", usage.text());
    assert_eq!(usage.json()["scopes"][0]["limits"][0]["used"], 4);
    let wrong_window = admin(
        "POST",
        "/admin/usage/team/t/reset?window=month",
        Some(TOKEN),
        None,
    );
    assert_eq!(wrong_window.status, 404, "{}", wrong_window.text());
    let reset = admin(
        "POST",
        "/admin/usage/team/t/reset?window=minute",
        Some(TOKEN),
        None,
    );
    assert_eq!(reset.json()["scopes_reset"], 1);
    let usage = admin("GET", "/admin/usage/team/t", Some(TOKEN), None);
    assert_eq!(usage.json()["scopes"][0]["limits"][0]["used"], 0);
    assert_eq!(
        admin("GET", "/admin/usage/team/none", Some(TOKEN), None).status,
        404
    );
    let overview = admin("GET", "/admin/overview", Some(TOKEN), None).json();
    assert!(overview["entities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == "new-team"));

    // A node on a keys file shows its policy but refuses changes.
    let file_admin = free_port();
    let _file_node = Gateway::start_with_env(
        redis.port,
        &keys,
        &["--admin-listen", &format!("127.0.0.1:{file_admin}")],
        &[("LLMRL_ADMIN_TOKEN", TOKEN)],
    );
    let read_only = http(
        file_admin,
        "PATCH",
        "/admin/keys/a",
        Some(TOKEN),
        Some(r#"{"rpm": 1}"#),
    );
    assert_eq!(read_only.status, 409);
    assert_eq!(read_only.json()["error"]["type"], "read_only");
    assert_eq!(
        http(file_admin, "GET", "/admin/keys", Some(TOKEN), None).json()["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn the_cli_manages_keys_and_reads_usage() {
    let redis = RedisServer::start(&[]);
    let keys = write_keys(&redis.dir, POLICY);
    let file = keys.display().to_string();
    assert_eq!(admin_cli(redis.port, &["import", &file]).0, 0);
    let (code, out, _) = admin_cli(redis.port, &["import", "--if-empty", &file]);
    assert_eq!(code, 0);
    assert!(out.contains("kept"), "{out}");
    let gateway = node(&redis, &keys, free_port());

    let (code, secret, err) = admin_cli(redis.port, &["keys", "add", "cli", "rpm=2", "team=t"]);
    assert_eq!(code, 0, "{err}");
    let secret = secret.trim().to_string();
    assert!(secret.starts_with("sk-llmrl-"), "{secret}");
    let (code, list, _) = admin_cli(redis.port, &["keys", "list"]);
    assert_eq!(code, 0);
    assert!(
        list.lines()
            .any(|l| l.starts_with("cli ") && l.contains("\"rpm\":2")),
        "{list}"
    );
    assert!(!list.contains(&secret));

    let deadline = Instant::now() + Duration::from_secs(2);
    while chat(gateway.port, &secret) == 401 {
        assert!(
            Instant::now() < deadline,
            "the new key never reached the node"
        );
        sleep(Duration::from_millis(20));
    }
    assert_eq!(chat(gateway.port, &secret), 200);
    assert_eq!(chat(gateway.port, &secret), 429);
    let (code, table, _) = admin_cli(redis.port, &["usage", "key", "cli"]);
    assert_eq!(code, 0);
    let row = table
        .lines()
        .find(|l| l.starts_with("key:cli ") && l.contains("requests"))
        .unwrap_or_else(|| panic!("{table}"));
    let numbers: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&numbers[3..6], ["2", "2", "0"], "{row}");
    assert!(table.lines().any(|l| l.starts_with("team:t ")), "{table}");

    let (code, out, _) = admin_cli(redis.port, &["reset", "key", "cli"]);
    assert_eq!(code, 0);
    assert!(out.contains("1 scope"), "{out}");
    assert_eq!(chat(gateway.port, &secret), 200, "usage forgotten");

    let (code, _, err) = admin_cli(redis.port, &["set", "team", "t", "rpm=1", "rpd=5"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = admin_cli(redis.port, &["set", "team", "t", "rpm=oops"]);
    assert_eq!(code, 1);
    assert!(err.contains("\"oops\", expected u64"), "{err}");
    let (code, _, err) = admin_cli(redis.port, &["keys", "set", "nobody", "rpm=1"]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    let (code, export, _) = admin_cli(redis.port, &["export"]);
    assert_eq!(code, 0);
    let exported: serde_json::Value = serde_json::from_str(&export).unwrap();
    let team = exported["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "t")
        .unwrap();
    assert_eq!(
        (team["rpm"].clone(), team["rpd"].clone()),
        (1.into(), 5.into())
    );
    assert!(!export.contains("sk-op"), "digests only");
}
