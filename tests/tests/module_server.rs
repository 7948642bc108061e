//! The module as part of the server: memory per key, config, INFO, key positions.

use llmrl_tests::*;
use redis::Value;
use std::time::Duration;

#[test]
fn memory_per_key_is_bounded() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    // A key with all 61 buckets in use, realistic counts: built with LLMRL.LOAD.
    let head = (server_ms(&mut con) / 1000).to_string();
    let mut args = vec![
        "LLMRL.LOAD".to_string(),
        "full".into(),
        "60000".into(),
        head,
    ];
    args.extend(["500", "2000000", "400000", "61"].map(String::from));
    for _ in 0..61 {
        args.extend(["1000", "1000000", "200000"].map(String::from));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    exec(&mut con, &refs).unwrap();
    let full = int(&mut con, &["MEMORY", "USAGE", "full"]);
    assert!(full <= 1024, "a full key takes {full} bytes");

    // The same, filled for real with a 60 ms window (1 ms buckets).
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(90) {
        decision(
            &mut con,
            &[
                "LLMRL.CHECK",
                "real",
                "0",
                "0",
                "0",
                "70000",
                "9000",
                "WINDOW",
                "60",
            ],
        );
    }
    let (_, usage, state): (Value, i64, Value) = redis::pipe()
        .cmd("LLMRL.CHECK")
        .arg(&["real", "0", "0", "0", "70000", "9000", "WINDOW", "60"])
        .cmd("MEMORY")
        .arg(&["USAGE", "real"])
        .cmd("LLMRL.INSPECT")
        .arg("real")
        .query(&mut con)
        .unwrap();
    let Value::Array(buckets) = inspect_field(&state, "buckets") else {
        panic!()
    };
    assert!(buckets.len() >= 20, "only {} buckets in use", buckets.len());
    assert!(usage <= 1024, "a real full key takes {usage} bytes");

    decision(
        &mut con,
        &["LLMRL.CHECK", "sparse", "10", "1000", "1000", "100", "100"],
    );
    let sparse = int(&mut con, &["MEMORY", "USAGE", "sparse"]);
    assert!(
        sparse <= full / 3,
        "a one-bucket key takes {sparse} bytes, a full one {full}"
    );
}

#[test]
fn config_info_and_key_positions() {
    let server = RedisServer::start_with_module_args(&[], &["default-window-ms", "1200"]);
    let mut con = server.client();
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "llmrl.default-window-ms"])
        .query(&mut con)
        .unwrap();
    assert_eq!(config, ["llmrl.default-window-ms", "1200"]);
    // MODULE LIST reports the contract's version, which clients check (the gateway at startup).
    let modules = format!("{:?}", exec(&mut con, &["MODULE", "LIST"]).unwrap());
    let version = llmrl_core::protocol::MODULE_VERSION;
    assert!(
        modules.contains(&format!("bulk-string('\"ver\"'), int({version})")),
        "{modules}"
    );
    decision(&mut con, &["LLMRL.CHECK", "a", "0", "0", "0", "1", "1"]);
    assert_eq!(
        as_int(&inspect_field(&inspect(&mut con, "a"), "window_ms")),
        1200
    );

    assert!(exec(
        &mut con,
        &["CONFIG", "SET", "llmrl.default-window-ms", "1000"]
    )
    .is_err());
    exec(
        &mut con,
        &["CONFIG", "SET", "llmrl.default-window-ms", "6000"],
    )
    .unwrap();
    decision(&mut con, &["LLMRL.CHECK", "b", "0", "0", "0", "1", "1"]);
    assert_eq!(
        as_int(&inspect_field(&inspect(&mut con, "b"), "window_ms")),
        6000
    );
    // An existing key keeps its window whatever the default becomes.
    decision(&mut con, &["LLMRL.CHECK", "a", "0", "0", "0", "1", "1"]);
    assert_eq!(
        as_int(&inspect_field(&inspect(&mut con, "a"), "window_ms")),
        1200
    );
    assert_eq!(info_field(&mut con, "default_window_ms"), 6000);

    // The key is the first argument of every command (cluster routing, ACL key patterns).
    for args in [
        &[
            "COMMAND",
            "GETKEYS",
            "LLMRL.CHECK",
            "user:1",
            "1",
            "1",
            "1",
            "1",
            "1",
        ][..],
        &["COMMAND", "GETKEYS", "LLMRL.PEEK", "user:1", "1", "1", "1"],
        &[
            "COMMAND",
            "GETKEYS",
            "LLMRL.SETTLE",
            "user:1",
            "1",
            "1",
            "1",
            "1",
            "1",
        ],
        &["COMMAND", "GETKEYS", "LLMRL.INSPECT", "user:1"],
    ] {
        let keys: Vec<String> = {
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            cmd.query(&mut con).unwrap()
        };
        assert_eq!(keys, ["user:1"], "{args:?}");
    }
}

/// `major.minor` of the server, and whether it is Valkey.
fn server_version(con: &mut redis::Connection) -> ((u32, u32), bool) {
    let info = string(con, &["INFO", "server"]);
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let valkey = field("valkey_version:");
    let version = valkey
        .clone()
        .or(field("redis_version:"))
        .unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major_minor = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major_minor, valkey.is_some())
}

#[test]
fn command_docs_describe_every_command() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    // COMMAND DOCS of `command` mentions every one of `expected`.
    let mut docs_mention = |command: &str, expected: &[&str]| {
        let docs = format!(
            "{:?}",
            exec(&mut con, &["COMMAND", "DOCS", command]).unwrap()
        );
        for text in expected {
            assert!(docs.contains(text), "{command} docs lack {text}: {docs}");
        }
    };
    for command in [
        "llmrl.check",
        "llmrl.peek",
        "llmrl.settle",
        "llmrl.apply",
        "llmrl.load",
        "llmrl.inspect",
        "llmrl.mcheck",
        "llmrl.mpeek",
        "llmrl.msettle",
        "llmrl.mcancel",
        "llmrl.mapply",
        "llmrl.mload",
    ] {
        docs_mention(
            command,
            &["summary", "since", "complexity", "arguments", "\"key\""],
        );
    }
    docs_mention(
        "llmrl.check",
        &[
            "input_tokens",
            "output_tokens",
            "WINDOW",
            "BINARY",
            "optional",
            "O(1)",
        ],
    );
    docs_mention("llmrl.peek", &["WINDOW", "BINARY"]);
    docs_mention("llmrl.settle", &["actual_output", "BINARY"]);
    // `[LEASE ms] [DETAIL [PACKED | BINARY] | PACKED | BINARY] [SCOPES] scope...`
    docs_mention(
        "llmrl.mcheck",
        &[
            "LEASE",
            "oneof",
            "DETAIL",
            "PACKED",
            "BINARY",
            "SCOPES",
            "concurrency",
        ],
    );
}

#[test]
fn read_only_acl_users_can_peek_and_inspect_but_not_check() {
    let server = RedisServer::start(&[]);
    let mut admin = server.client();
    decision(
        &mut admin,
        &["LLMRL.CHECK", "llmrl:a", "5", "0", "0", "0", "0"],
    );
    exec(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">secret",
            "%R~llmrl:*",
            "+llmrl.peek",
            "+llmrl.inspect",
            "+llmrl.check",
        ],
    )
    .unwrap();
    // The key specs say which access each command needs.
    let peek_info = format!(
        "{:?}",
        exec(&mut admin, &["COMMAND", "INFO", "llmrl.peek"]).unwrap()
    );
    assert!(
        peek_info.contains("RO") && !peek_info.contains("RW"),
        "{peek_info}"
    );
    let check_info = format!(
        "{:?}",
        exec(&mut admin, &["COMMAND", "INFO", "llmrl.check"]).unwrap()
    );
    assert!(check_info.contains("RW"), "{check_info}");

    let url = format!("redis://reader:secret@127.0.0.1:{}/", server.port);
    let mut reader = redis::Client::open(url).unwrap().get_connection().unwrap();
    // PEEK answers as CHECK would: one used, one more would leave 3.
    let d = decision(&mut reader, &["LLMRL.PEEK", "llmrl:a", "5", "0", "0"]);
    assert_eq!(d.remaining[0], 3);
    assert!(exec(&mut reader, &["LLMRL.INSPECT", "llmrl:a"]).is_ok());
    let refused = error(
        &mut reader,
        &["LLMRL.CHECK", "llmrl:a", "5", "0", "0", "0", "0"],
    );
    assert!(refused.starts_with("NOPERM"), "{refused}");
    let d = decision(&mut admin, &["LLMRL.PEEK", "llmrl:a", "5", "0", "0"]);
    assert_eq!(d.remaining[0], 3, "the refused CHECK recorded nothing");
}

#[test]
fn an_acl_category_where_the_server_has_them() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let ((major, minor), valkey) = server_version(&mut con);
    let supported = valkey || (major, minor) >= (7, 4);
    let categories: Vec<String> = redis::cmd("ACL").arg("CAT").query(&mut con).unwrap();
    assert_eq!(
        categories.iter().any(|c| c == "llmrl"),
        supported,
        "version {major}.{minor}, valkey {valkey}: {categories:?}"
    );
    if !supported {
        // Redis 7.0 has no module categories: the module loads and works without one.
        decision(&mut con, &["LLMRL.CHECK", "k", "1", "0", "0", "0", "0"]);
        return;
    }
    let mut members: Vec<String> = redis::cmd("ACL")
        .arg("CAT")
        .arg("llmrl")
        .query(&mut con)
        .unwrap();
    let mut commands: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("llmrl")
        .query(&mut con)
        .unwrap();
    members.sort();
    commands.sort();
    assert_eq!(members, commands, "every llmrl command, nothing else");
    exec(
        &mut con,
        &["ACL", "SETUSER", "operator", "on", ">pw", "~*", "+@llmrl"],
    )
    .unwrap();
    let url = format!("redis://operator:pw@127.0.0.1:{}/", server.port);
    let mut operator = redis::Client::open(url).unwrap().get_connection().unwrap();
    let d = decision(
        &mut operator,
        &["LLMRL.CHECK", "k", "1", "0", "0", "0", "0"],
    );
    assert!(d.allowed);
    let get = error(&mut operator, &["GET", "k"]);
    assert!(get.starts_with("NOPERM"), "{get}");
}
