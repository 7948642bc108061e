//! The module against a real redis-server: every reply field, every error, persistence,
//! replication, TTLs, memory and concurrency.

use llmrl_tests::*;
use redis::Value;
use std::thread::sleep;
use std::time::Duration;

fn server_ms(con: &mut redis::Connection) -> i64 {
    let (secs, micros): (String, String) = redis::cmd("TIME").query(con).unwrap();
    secs.parse::<i64>().unwrap() * 1000 + micros.parse::<i64>().unwrap() / 1000
}

fn digest(con: &mut redis::Connection, key: &str) -> String {
    let digests: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query(con)
        .unwrap();
    digests.concat()
}

fn db_digest(con: &mut redis::Connection) -> String {
    string(con, &["DEBUG", "DIGEST"])
}

fn inspect(con: &mut redis::Connection, key: &str) -> Value {
    exec(con, &["LLMRL.INSPECT", key]).unwrap()
}

/// Field `name` of INSPECT's flat name/value reply.
fn inspect_field(value: &Value, name: &str) -> Value {
    let Value::Array(items) = value else {
        panic!("INSPECT reply is not an array: {value:?}")
    };
    for pair in items.chunks(2) {
        if pair[0] == Value::BulkString(name.as_bytes().to_vec()) {
            return pair[1].clone();
        }
    }
    panic!("INSPECT has no field {name}: {value:?}")
}

fn as_int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn info_field(con: &mut redis::Connection, field: &str) -> i64 {
    let info = string(con, &["INFO", "llmrl"]);
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("llmrl_{field}:")))
        .unwrap_or_else(|| panic!("INFO llmrl has no {field}:\n{info}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn check_reports_every_field() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();

    let before = server_ms(&mut con);
    let d = decision(
        &mut con,
        &["LLMRL.CHECK", "k", "3", "100", "50", "10", "20"],
    );
    let after = server_ms(&mut con);
    assert!(d.allowed);
    assert_eq!(d.reason, "ok");
    assert_eq!(d.retry_after_ms, 0);
    assert_eq!(d.remaining, [2, 90, 30]);
    // The ticket names the charged bucket: the time it ends, a multiple of the 1 s bucket width.
    assert_eq!(d.ticket % 1000, 0);
    assert!(d.ticket > before && d.ticket <= after + 1000, "{d:?}");
    // Usage is replenished one window after the bucket ends.
    for reset in d.reset_ms {
        assert!(reset >= d.ticket + 60_000 - after && reset <= d.ticket + 60_000 - before);
    }

    // Unlimited dimensions report -1 remaining.
    let d = decision(&mut con, &["LLMRL.CHECK", "free", "0", "0", "0", "5", "5"]);
    assert!(d.allowed);
    assert_eq!(d.remaining, [-1, -1, -1]);

    // Fill the request limit; the denial charges nothing and says when to come back.
    decision(&mut con, &["LLMRL.CHECK", "k", "3", "100", "50", "1", "1"]);
    decision(&mut con, &["LLMRL.CHECK", "k", "3", "100", "50", "1", "1"]);
    let state = inspect(&mut con, "k");
    let d = decision(&mut con, &["LLMRL.CHECK", "k", "3", "100", "50", "1", "1"]);
    assert!(!d.allowed);
    assert_eq!(d.reason, "rpm");
    assert_eq!(d.ticket, 0);
    assert_eq!(d.remaining, [0, 88, 28]);
    assert!(d.retry_after_ms > 0 && d.retry_after_ms <= 61_000);
    assert_eq!(d.retry_after_ms, d.reset_ms[0]);
    assert_eq!(
        inspect(&mut con, "k"),
        state,
        "a denied check records nothing"
    );

    // A request whose own cost exceeds a limit can never be admitted.
    let d = decision(
        &mut con,
        &["LLMRL.CHECK", "k", "0", "100", "50", "101", "0"],
    );
    assert!(!d.allowed);
    assert_eq!((d.reason.as_str(), d.retry_after_ms), ("itpm", -1));
    assert_eq!(info_field(&mut con, "too_large"), 1);
    assert_eq!(info_field(&mut con, "denied_rpm"), 1);
    assert_eq!(info_field(&mut con, "allowed"), 4);
    assert_eq!(info_field(&mut con, "checks"), 6);
}

#[test]
fn denial_names_the_dimension_with_the_longest_wait() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    // 10 ms buckets: the input tokens are charged several buckets before the output tokens.
    decision(
        &mut con,
        &[
            "LLMRL.CHECK",
            "k",
            "0",
            "100",
            "100",
            "90",
            "0",
            "WINDOW",
            "600",
        ],
    );
    sleep(Duration::from_millis(40));
    decision(
        &mut con,
        &[
            "LLMRL.CHECK",
            "k",
            "0",
            "100",
            "100",
            "0",
            "90",
            "WINDOW",
            "600",
        ],
    );
    let d = decision(
        &mut con,
        &[
            "LLMRL.CHECK",
            "k",
            "0",
            "100",
            "100",
            "20",
            "20",
            "WINDOW",
            "600",
        ],
    );
    assert!(!d.allowed);
    assert_eq!(d.reason, "otpm");
    assert_eq!(d.retry_after_ms, d.reset_ms[2]);
    assert!(d.reset_ms[2] > d.reset_ms[1], "{d:?}");
}

#[test]
fn capacity_comes_back_after_retry_after_ms() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let check = ["LLMRL.CHECK", "k", "2", "0", "0", "0", "0", "WINDOW", "600"];
    assert!(decision(&mut con, &check).allowed);
    assert!(decision(&mut con, &check).allowed);
    let denied = decision(&mut con, &check);
    assert!(!denied.allowed);
    // At most one window plus one 10 ms bucket.
    assert!(
        denied.retry_after_ms > 0 && denied.retry_after_ms <= 610,
        "{denied:?}"
    );
    sleep(Duration::from_millis(denied.retry_after_ms as u64));
    assert!(
        decision(&mut con, &check).allowed,
        "admitted once retry_after_ms has passed"
    );
}

#[test]
fn bad_arguments_get_clear_errors_and_record_nothing() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let cases: &[(&[&str], &str)] = &[
        (&["LLMRL.CHECK"], "wrong number of arguments"),
        (
            &["LLMRL.CHECK", "k", "1", "2", "3", "4"],
            "wrong number of arguments",
        ),
        (
            &["LLMRL.CHECK", "k", "1", "2", "3", "4", "5", "WINDOW"],
            "wrong number of arguments",
        ),
        (
            &["LLMRL.CHECK", "k", "x", "2", "3", "4", "5"],
            "rpm must be a non-negative integer",
        ),
        (
            &["LLMRL.CHECK", "k", "1", "-2", "3", "4", "5"],
            "itpm must be a non-negative integer",
        ),
        (
            &["LLMRL.CHECK", "k", "1", "2", "3.5", "4", "5"],
            "otpm must be a non-negative integer",
        ),
        (
            &[
                "LLMRL.CHECK",
                "k",
                "1",
                "2",
                "3",
                "18446744073709551616",
                "5",
            ],
            "input_tokens is out of range",
        ),
        (
            &["LLMRL.CHECK", "k", "1", "2", "3", "4", "5", "SIZE", "600"],
            "unknown option",
        ),
        (
            &["LLMRL.CHECK", "k", "1", "2", "3", "4", "5", "WINDOW", "601"],
            "positive multiple of 60",
        ),
        (
            &["LLMRL.CHECK", "k", "1", "2", "3", "4", "5", "WINDOW", "0"],
            "positive multiple of 60",
        ),
        (
            &[
                "LLMRL.CHECK",
                "k",
                "1",
                "2",
                "3",
                "4",
                "5",
                "WINDOW",
                "18446744073709551600",
            ],
            "at most 9223372036854775800",
        ),
        (&["LLMRL.PEEK", "k", "1", "2"], "wrong number of arguments"),
        (
            &["LLMRL.PEEK", "k", "1", "2", "3", "4"],
            "wrong number of arguments",
        ),
        (
            &["LLMRL.SETTLE", "k", "1000", "1", "2", "3"],
            "wrong number of arguments",
        ),
        (
            &["LLMRL.SETTLE", "k", "0", "1", "2", "3", "4"],
            "invalid ticket",
        ),
        (
            &["LLMRL.SETTLE", "k", "-5", "1", "2", "3", "4"],
            "ticket must be a non-negative integer",
        ),
        (
            &["LLMRL.APPLY", "k", "600", "1"],
            "wrong number of arguments",
        ),
        (
            &[
                "LLMRL.APPLY",
                "k",
                "601",
                "1",
                "0",
                "0",
                "0",
                "1",
                "0",
                "0",
                "0",
                "0",
                "0",
            ],
            "positive multiple of 60",
        ),
        (
            &[
                "LLMRL.LOAD",
                "k",
                "600",
                "100",
                "0",
                "0",
                "0",
                "2",
                "1",
                "1",
                "1",
            ],
            "wrong number of arguments",
        ),
        (
            &["LLMRL.LOAD", "k", "600", "100", "0", "0", "0", "62"],
            "more than 61 buckets",
        ),
        (
            &[
                "LLMRL.LOAD",
                "k",
                "600",
                "0",
                "0",
                "0",
                "0",
                "2",
                "1",
                "1",
                "1",
                "1",
                "1",
                "1",
            ],
            "before time zero",
        ),
        (
            &["LLMRL.INSPECT", "k", "extra"],
            "wrong number of arguments",
        ),
    ];
    for (args, expected) in cases {
        let message = error(&mut con, args);
        assert!(message.starts_with("ERR"), "{args:?}: {message}");
        assert!(
            message.contains(expected),
            "{args:?}: {message:?} lacks {expected:?}"
        );
    }
    assert_eq!(
        int(&mut con, &["EXISTS", "k"]),
        0,
        "no bad command created the key"
    );
    assert_eq!(info_field(&mut con, "errors"), cases.len() as i64);

    // Non-UTF-8 and NUL bytes in arguments are just bad integers.
    let reply: redis::RedisResult<Value> = redis::cmd("LLMRL.CHECK")
        .arg("k")
        .arg(&b"\xff\x00"[..])
        .arg("1")
        .arg("1")
        .arg("1")
        .arg("1")
        .query(&mut con);
    assert!(reply.is_err());

    // A key of another type.
    exec(&mut con, &["SET", "s", "x"]).unwrap();
    for args in [
        &["LLMRL.CHECK", "s", "1", "1", "1", "1", "1"][..],
        &["LLMRL.PEEK", "s", "1", "1", "1"],
        &["LLMRL.SETTLE", "s", "1000", "1", "1", "1", "1"],
        &["LLMRL.INSPECT", "s"],
    ] {
        assert!(error(&mut con, args).starts_with("WRONGTYPE"), "{args:?}");
    }
    assert_eq!(string(&mut con, &["GET", "s"]), "x");

    // A key keeps its window; tickets must name one of its buckets in the past.
    let d = decision(
        &mut con,
        &["LLMRL.CHECK", "w", "0", "0", "0", "5", "5", "WINDOW", "600"],
    );
    let state = inspect(&mut con, "w");
    let mismatch = error(
        &mut con,
        &[
            "LLMRL.CHECK",
            "w",
            "0",
            "0",
            "0",
            "5",
            "5",
            "WINDOW",
            "60000",
        ],
    );
    assert!(mismatch.contains("window mismatch"), "{mismatch}");
    let future = (d.ticket + 10_000).to_string();
    assert!(error(
        &mut con,
        &["LLMRL.SETTLE", "w", &future, "5", "0", "5", "0"]
    )
    .contains("ticket is in the future"));
    let misaligned = (d.ticket + 1).to_string();
    assert!(error(
        &mut con,
        &["LLMRL.SETTLE", "w", &misaligned, "5", "0", "5", "0"]
    )
    .contains("invalid ticket"));
    let apply = [
        "LLMRL.APPLY",
        "w",
        "6000",
        "1",
        "0",
        "0",
        "0",
        "1",
        "0",
        "0",
        "0",
        "0",
        "0",
    ];
    assert!(error(&mut con, &apply).contains("window mismatch"));
    assert_eq!(inspect(&mut con, "w"), state, "errors changed nothing");
}

#[test]
fn peek_is_read_only() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let d = decision(
        &mut con,
        &["LLMRL.PEEK", "k", "5", "100", "100", "10", "20"],
    );
    assert!(d.allowed);
    assert_eq!(
        d.remaining,
        [4, 90, 80],
        "full capacity minus the peeked cost"
    );
    // The same reply CHECK would give: the peeked cost would count for one window and a bucket.
    assert!(
        d.reset_ms.iter().all(|r| *r > 60_000 && *r <= 61_000),
        "{d:?}"
    );
    assert_eq!(int(&mut con, &["EXISTS", "k"]), 0, "PEEK creates no key");

    decision(
        &mut con,
        &["LLMRL.CHECK", "k", "5", "100", "100", "10", "20"],
    );
    let expire = int(&mut con, &["PEXPIRETIME", "k"]);
    let state = inspect(&mut con, "k");
    let d = decision(&mut con, &["LLMRL.PEEK", "k", "5", "100", "100"]);
    assert_eq!(d.remaining, [3, 90, 80]);
    let d = decision(&mut con, &["LLMRL.PEEK", "k", "5", "100", "100", "95", "0"]);
    assert!(!d.allowed);
    assert_eq!(d.reason, "itpm");
    assert_eq!(
        int(&mut con, &["PEXPIRETIME", "k"]),
        expire,
        "PEEK touches no TTL"
    );
    assert_eq!(inspect(&mut con, "k"), state);

    let info = exec(&mut con, &["COMMAND", "INFO", "llmrl.peek"]).unwrap();
    assert!(format!("{info:?}").contains("readonly"), "{info:?}");
}

#[test]
fn settle_refunds_and_charges() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let d = decision(
        &mut con,
        &["LLMRL.CHECK", "k", "0", "1000", "1000", "100", "200"],
    );
    let ticket = d.ticket.to_string();
    assert_eq!(d.remaining, [-1, 900, 800]);

    // Used less input than reserved, more output: refund 60 input, charge 50 output.
    let s = decision(
        &mut con,
        &["LLMRL.SETTLE", "k", &ticket, "100", "40", "200", "250"],
    );
    assert!(s.allowed);
    assert_eq!(
        (s.reason.as_str(), s.retry_after_ms, s.ticket),
        ("ok", 0, d.ticket)
    );
    assert_eq!(
        s.remaining,
        [-1, 960, 750],
        "reported against the remembered limits"
    );
    let p = decision(
        &mut con,
        &["LLMRL.PEEK", "k", "0", "1000", "1000", "0", "0"],
    );
    assert_eq!(p.remaining, [-1, 960, 750]);

    // A refund never goes below zero.
    decision(
        &mut con,
        &["LLMRL.SETTLE", "k", &ticket, "5000", "0", "0", "0"],
    );
    let p = decision(
        &mut con,
        &["LLMRL.PEEK", "k", "0", "1000", "1000", "0", "0"],
    );
    assert_eq!(p.remaining, [-1, 1000, 750]);
    assert_eq!(info_field(&mut con, "settles"), 2);

    // A settle on a missing key is a no-op that still replies.
    let s = decision(
        &mut con,
        &["LLMRL.SETTLE", "gone", &ticket, "10", "0", "10", "0"],
    );
    assert!(s.allowed);
    assert_eq!(s.remaining, [-1, -1, -1]);
    assert_eq!(int(&mut con, &["EXISTS", "gone"]), 0);

    // A ticket older than the window is a no-op.
    let d = decision(
        &mut con,
        &[
            "LLMRL.CHECK",
            "short",
            "0",
            "0",
            "0",
            "100",
            "100",
            "WINDOW",
            "600",
        ],
    );
    let keep = decision(
        &mut con,
        &[
            "LLMRL.CHECK",
            "short",
            "0",
            "0",
            "0",
            "1",
            "1",
            "WINDOW",
            "600",
        ],
    );
    sleep(Duration::from_millis(700));
    // Keep the key alive with a fresh charge, then settle the expired ticket.
    decision(
        &mut con,
        &[
            "LLMRL.CHECK",
            "short",
            "0",
            "0",
            "0",
            "1",
            "1",
            "WINDOW",
            "600",
        ],
    );
    let state = inspect(&mut con, "short");
    let s = decision(
        &mut con,
        &[
            "LLMRL.SETTLE",
            "short",
            &d.ticket.to_string(),
            "100",
            "0",
            "100",
            "0",
        ],
    );
    assert_eq!(s.ticket, d.ticket);
    assert!(keep.allowed);
    assert_eq!(inspect(&mut con, "short"), state);
    assert_eq!(info_field(&mut con, "settle_noops"), 2);
}

#[test]
fn ttl_is_absolute_and_idle_keys_expire() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    decision(&mut con, &["LLMRL.CHECK", "k", "0", "0", "0", "1", "1"]);
    let state = inspect(&mut con, "k");
    let head = as_int(&inspect_field(&state, "head_bucket"));
    let expire_at = as_int(&inspect_field(&state, "expire_at_ms"));
    assert_eq!(
        expire_at,
        (head + 61) * 1000,
        "end of the newest bucket plus one window"
    );
    assert_eq!(int(&mut con, &["PEXPIRETIME", "k"]), expire_at);

    // With a 60 ms window the key is gone soon after its last request.
    decision(
        &mut con,
        &[
            "LLMRL.CHECK",
            "tiny",
            "0",
            "0",
            "0",
            "1",
            "1",
            "WINDOW",
            "60",
        ],
    );
    assert!(eventually(Duration::from_secs(3), || int(
        &mut con,
        &["EXISTS", "tiny"]
    ) == 0));
}

#[test]
fn denied_checks_do_not_touch_watched_keys() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let mut other = server.client();
    decision(&mut con, &["LLMRL.CHECK", "k", "1", "0", "0", "0", "0"]);

    exec(&mut con, &["WATCH", "k"]).unwrap();
    assert!(!decision(&mut other, &["LLMRL.CHECK", "k", "1", "0", "0", "0", "0"]).allowed);
    exec(&mut con, &["MULTI"]).unwrap();
    exec(&mut con, &["PING"]).unwrap();
    assert_ne!(
        exec(&mut con, &["EXEC"]).unwrap(),
        Value::Nil,
        "a denial modified nothing"
    );

    exec(&mut con, &["WATCH", "k"]).unwrap();
    assert!(decision(&mut other, &["LLMRL.CHECK", "k", "2", "0", "0", "0", "0"]).allowed);
    exec(&mut con, &["MULTI"]).unwrap();
    exec(&mut con, &["PING"]).unwrap();
    assert_eq!(
        exec(&mut con, &["EXEC"]).unwrap(),
        Value::Nil,
        "an admission modifies the key"
    );
}

/// Keys with various windows, checks and settles, for persistence tests.
fn populate(con: &mut redis::Connection) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..20 {
        let key = format!("api:{i}");
        let window = ["60000", "6000", "600000"][i % 3];
        for j in 0..(i + 1) {
            let input = (j * 37 % 500).to_string();
            let d = decision(
                con,
                &[
                    "LLMRL.CHECK",
                    &key,
                    "50",
                    "5000",
                    "3000",
                    &input,
                    "64",
                    "WINDOW",
                    window,
                ],
            );
            if j % 3 == 0 && d.allowed {
                decision(
                    con,
                    &[
                        "LLMRL.SETTLE",
                        &key,
                        &d.ticket.to_string(),
                        &input,
                        "7",
                        "64",
                        "100",
                    ],
                );
            }
        }
        keys.push(key);
    }
    keys
}

fn fingerprint(con: &mut redis::Connection, keys: &[String]) -> Vec<(String, i64, Value)> {
    keys.iter()
        .map(|k| {
            (
                digest(con, k),
                int(con, &["PEXPIRETIME", k]),
                inspect(con, k),
            )
        })
        .collect()
}

#[test]
fn survives_debug_reload_and_rdb_restart() {
    let mut server = RedisServer::start(&[]);
    let mut con = server.client();
    let keys = populate(&mut con);
    let before = fingerprint(&mut con, &keys);
    let db = db_digest(&mut con);
    assert!(before.iter().all(|(_, ttl, _)| *ttl > 0));

    exec(&mut con, &["DEBUG", "RELOAD"]).unwrap();
    assert_eq!(fingerprint(&mut con, &keys), before);
    assert_eq!(db_digest(&mut con), db);

    exec(&mut con, &["SAVE"]).unwrap();
    server.shutdown(false);
    server.restart(&[]);
    let mut con = server.client();
    assert_eq!(
        fingerprint(&mut con, &keys),
        before,
        "state and TTLs survive an RDB restart"
    );
    assert_eq!(db_digest(&mut con), db);
}

#[test]
fn survives_aof_rewrite_and_replay() {
    let aof = [
        "--appendonly",
        "yes",
        "--aof-use-rdb-preamble",
        "no",
        "--appendfsync",
        "always",
    ];
    let mut server = RedisServer::start(&aof);
    let mut con = server.client();
    let keys = populate(&mut con);
    exec(&mut con, &["BGREWRITEAOF"]).unwrap();
    assert!(eventually(Duration::from_secs(20), || {
        let info = string(&mut con, &["INFO", "persistence"]);
        info.contains("aof_rewrite_in_progress:0")
            && info.contains("aof_rewrite_scheduled:0")
            && info.contains("aof_last_bgrewrite_status:ok")
    }));
    // More traffic after the rewrite lands in the incremental AOF as LLMRL.APPLY.
    let more = populate(&mut con);
    assert_eq!(keys, more);
    let before = fingerprint(&mut con, &keys);
    let db = db_digest(&mut con);

    let mut aof_text = String::new();
    for entry in std::fs::read_dir(server.dir.join("appendonlydir")).unwrap() {
        aof_text.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry.unwrap().path()).unwrap(),
        ));
    }
    assert!(
        aof_text.contains("LLMRL.LOAD"),
        "the rewrite emitted LLMRL.LOAD"
    );
    assert!(
        aof_text.contains("LLMRL.APPLY"),
        "later traffic is logged as LLMRL.APPLY"
    );
    assert!(
        !aof_text.contains("LLMRL.CHECK"),
        "the AOF never replays a clock-reading CHECK"
    );

    server.shutdown(false);
    server.restart(&[]);
    let mut con = server.client();
    assert_eq!(
        fingerprint(&mut con, &keys),
        before,
        "state and TTLs survive an AOF restart"
    );
    assert_eq!(db_digest(&mut con), db);
}

/// The 64-bit id an RDB stores for a module type: 9 name characters of 6 bits, then the
/// 10-bit encoding version.
fn module_type_id(encver: u64) -> u64 {
    const CHARSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let name = b"llmrl-win";
    let id = name.iter().fold(0u64, |id, c| {
        (id << 6) | CHARSET.iter().position(|x| x == c).unwrap() as u64
    });
    (id << 10) | encver
}

#[test]
fn refuses_an_rdb_from_a_newer_encoding() {
    // Without a checksum the RDB can be edited: claim the keys were written by encoding 2.
    let mut server = RedisServer::start(&["--rdbchecksum", "no"]);
    let mut con = server.client();
    populate(&mut con);
    exec(&mut con, &["SAVE"]).unwrap();
    server.shutdown(false);
    let path = server.dir.join("dump.rdb");
    let mut rdb = std::fs::read(&path).unwrap();
    let (current, newer) = (
        module_type_id(1).to_be_bytes(),
        module_type_id(2).to_be_bytes(),
    );
    let mut patched = 0;
    for i in 0..rdb.len().saturating_sub(8) {
        if rdb[i..i + 8] == current {
            rdb[i..i + 8].copy_from_slice(&newer);
            patched += 1;
        }
    }
    assert_eq!(patched, 20, "one type id per key");
    std::fs::write(&path, rdb).unwrap();
    assert!(
        !server.try_restart(),
        "Redis must not start on data it cannot read"
    );
    assert!(
        server
            .log()
            .contains("cannot load a key with encoding version 2"),
        "{}",
        server.log()
    );
}

#[test]
fn replica_matches_primary_and_takes_over() {
    let primary = RedisServer::start(&[]);
    let port = primary.port.to_string();
    let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &port]);
    let mut p = primary.client();
    let mut r = replica.client();
    assert!(eventually(Duration::from_secs(20), || {
        string(&mut r, &["INFO", "replication"]).contains("master_link_status:up")
    }));

    let keys = populate(&mut p);
    let mut tickets = Vec::new();
    for i in 0..300 {
        let key = format!("burst:{}", i % 7);
        let d = decision(
            &mut p,
            &["LLMRL.CHECK", &key, "40", "2000", "2000", "30", "60"],
        );
        if d.allowed {
            tickets.push((key, d.ticket));
        }
    }
    for (key, ticket) in tickets.iter().step_by(2) {
        decision(
            &mut p,
            &[
                "LLMRL.SETTLE",
                key,
                &ticket.to_string(),
                "30",
                "10",
                "60",
                "90",
            ],
        );
    }
    assert_eq!(int(&mut p, &["WAIT", "1", "5000"]), 1);
    let all: Vec<String> = keys
        .iter()
        .cloned()
        .chain((0..7).map(|i| format!("burst:{i}")))
        .collect();
    assert!(eventually(Duration::from_secs(10), || db_digest(&mut p)
        == db_digest(&mut r)));
    assert_eq!(
        fingerprint(&mut r, &all),
        fingerprint(&mut p, &all),
        "digests and absolute TTLs match"
    );

    // PEEK works on the read-only replica and agrees; CHECK is refused there.
    let peek = ["LLMRL.PEEK", "burst:1", "40", "2000", "2000", "0", "0"];
    assert_eq!(
        decision(&mut r, &peek).remaining,
        decision(&mut p, &peek).remaining
    );
    assert!(
        error(&mut r, &["LLMRL.CHECK", "burst:1", "1", "1", "1", "0", "0"]).starts_with("READONLY")
    );

    // Promote the replica: it answers as the primary did and keeps enforcing.
    let requests_only = ["LLMRL.PEEK", "burst:1", "40", "0", "0", "0", "0"];
    let expected = decision(&mut p, &requests_only);
    drop(primary);
    exec(&mut r, &["REPLICAOF", "NO", "ONE"]).unwrap();
    assert_eq!(
        decision(&mut r, &requests_only).remaining,
        expected.remaining
    );
    let limits = ["LLMRL.CHECK", "burst:1", "40", "0", "0", "0", "0"];
    let mut admitted = 0;
    while decision(&mut r, &limits).allowed {
        admitted += 1;
        assert!(admitted <= 40);
    }
    // PEEK reports what would remain after one more request.
    assert_eq!(
        admitted as i64,
        expected.remaining[0] + 1,
        "the new primary admits exactly what was left"
    );
}

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
fn concurrent_clients_never_exceed_the_limit() {
    let server = RedisServer::start(&[]);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let mut con = server.client();
            std::thread::spawn(move || {
                let mut admitted = 0u32;
                for _ in 0..150 {
                    // rpm 100 binds; itpm 1000 would allow 142 of these.
                    if decision(
                        &mut con,
                        &["LLMRL.CHECK", "hot", "100", "1000", "0", "7", "3"],
                    )
                    .allowed
                    {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(admitted, 100);
    let mut con = server.client();
    let p = decision(
        &mut con,
        &["LLMRL.PEEK", "hot", "100", "1000", "0", "0", "0"],
    );
    assert_eq!(p.remaining, [0, 300, -1]);
    assert_eq!(info_field(&mut con, "allowed"), 100);
    assert_eq!(info_field(&mut con, "denied_rpm"), 1100);
}

#[test]
fn resp3_clients_get_a_map() {
    let server = RedisServer::start(&[]);
    let mut con = server.client_resp3();
    let reply = exec(&mut con, &["LLMRL.CHECK", "k", "10", "100", "0", "5", "5"]).unwrap();
    let Value::Map(pairs) = reply else {
        panic!("expected a map, got {reply:?}")
    };
    let names: Vec<String> = pairs
        .iter()
        .map(|(k, _)| match k {
            Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "allowed",
            "reason",
            "retry_after_ms",
            "remaining_requests",
            "remaining_input_tokens",
            "remaining_output_tokens",
            "reset_requests_ms",
            "reset_input_tokens_ms",
            "reset_output_tokens_ms",
            "ticket"
        ]
    );
    assert_eq!(pairs[3].1, Value::Int(9));
    assert_eq!(pairs[5].1, Value::Int(-1));
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

#[test]
fn load_and_apply_rebuild_state_exactly() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let d = decision(
        &mut con,
        &[
            "LLMRL.CHECK",
            "src",
            "9",
            "900",
            "800",
            "10",
            "20",
            "WINDOW",
            "6000",
        ],
    );
    decision(
        &mut con,
        &[
            "LLMRL.SETTLE",
            "src",
            &d.ticket.to_string(),
            "10",
            "3",
            "20",
            "20",
        ],
    );
    let state = inspect(&mut con, "src");
    let Value::Array(buckets) = inspect_field(&state, "buckets") else {
        panic!()
    };
    let head = as_int(&inspect_field(&state, "head_bucket")).to_string();
    let mut args = vec!["LLMRL.LOAD".to_string(), "copy".into(), "6000".into(), head];
    args.extend(["9", "900", "800"].map(String::from));
    args.push(buckets.len().to_string());
    for bucket in &buckets {
        let Value::Array(fields) = bucket else {
            panic!()
        };
        args.extend(fields[1..].iter().map(|v| as_int(v).to_string()));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(string(&mut con, &refs), "OK");
    assert_eq!(digest(&mut con, "copy"), digest(&mut con, "src"));
    assert_eq!(
        int(&mut con, &["PEXPIRETIME", "copy"]),
        int(&mut con, &["PEXPIRETIME", "src"])
    );

    // COPY duplicates the value too.
    assert_eq!(int(&mut con, &["COPY", "src", "dup"]), 1);
    assert_eq!(digest(&mut con, "dup"), digest(&mut con, "src"));

    // APPLY replays an effect with its own timestamp and no clock: a refund on a missing key
    // creates nothing; a charge creates the key at that time.
    let refund = [
        "LLMRL.APPLY",
        "none",
        "600",
        "1000000",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "1010",
        "5",
        "5",
    ];
    assert_eq!(string(&mut con, &refund), "OK");
    assert_eq!(int(&mut con, &["EXISTS", "none"]), 0);
    let far_future = "4102444800000"; // 2100-01-01
    let charge = [
        "LLMRL.APPLY",
        "later",
        "600",
        far_future,
        "1",
        "2",
        "3",
        "1",
        "2",
        "3",
        "0",
        "0",
        "0",
    ];
    assert_eq!(string(&mut con, &charge), "OK");
    let state = inspect(&mut con, "later");
    assert_eq!(
        as_int(&inspect_field(&state, "head_bucket")),
        4102444800000 / 10
    );
    assert_eq!(
        int(&mut con, &["PEXPIRETIME", "later"]),
        4102444800000 + 610
    );
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Sum of every bucket of a key, per dimension, from INSPECT.
fn inspect_totals(con: &mut redis::Connection, key: &str) -> [i64; 3] {
    let Value::Array(buckets) = inspect_field(&inspect(con, key), "buckets") else {
        panic!("INSPECT buckets is not an array")
    };
    let mut totals = [0i64; 3];
    for bucket in &buckets {
        let Value::Array(fields) = bucket else {
            panic!("a bucket is not an array: {bucket:?}")
        };
        // [bucket_index, requests, input, output]
        for (total, field) in totals.iter_mut().zip(&fields[fields.len() - 3..]) {
            *total += as_int(field);
        }
    }
    totals
}

/// What the ledger keys were sent, to check usage against what was admitted.
#[derive(Default, Clone)]
struct Ledger {
    admitted_requests: i64,
    admitted_input: i64,
    admitted_output: i64,
    /// Input/output SETTLE may add (actual above reserved).
    settle_charges: [i64; 2],
    tickets: Vec<(String, i64, i64)>,
}

/// A command sent to a ledger key: (ledger, cost or reserved, actual, is it a CHECK).
type LedgerCommand = (usize, [i64; 2], [i64; 2], bool);

const RANDOM_BATCHES: usize = 400;
const RANDOM_BATCH: usize = 500;

#[test]
fn random_commands_never_break_the_server() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    // A far-future APPLY and the largest window: state that must still save and load.
    for args in [
        &[
            "LLMRL.APPLY",
            "far",
            "60",
            "18446744073709551615",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            "0",
            "0",
            "0",
        ][..],
        &[
            "LLMRL.APPLY",
            "far2",
            "9223372036854775800",
            "5",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            "0",
            "0",
            "0",
        ],
    ] {
        exec(&mut con, args).unwrap();
    }
    decision(
        &mut con,
        &[
            "LLMRL.CHECK",
            "huge-window",
            "1",
            "1",
            "1",
            "1",
            "1",
            "WINDOW",
            "9223372036854775800",
        ],
    );
    let now_ms = server_ms(&mut con);
    // Tickets of the 600 ms window (10 ms buckets): current, recent, ancient and in the future.
    let tickets: Vec<String> = [1, 0, -1, -3, -61, -1_000, 2, 500, 1_000_000]
        .iter()
        .map(|offset| ((now_ms / 10 + offset) * 10).to_string())
        .collect();
    // Mostly valid numbers (edge values included), sometimes garbage.
    let mut valid: Vec<Vec<u8>> = [
        "0",
        "1",
        "2",
        "7",
        "59",
        "60",
        "61",
        "600",
        "6000",
        "60000",
        "4294967295",
        "4294967296",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    valid.push((now_ms / 10).to_string().into_bytes());
    valid.extend(tickets.iter().map(|t| t.clone().into_bytes()));
    let mut invalid: Vec<Vec<u8>> = [
        "18446744073709551616",
        "99999999999999999999999999",
        "-1",
        "-9223372036854775808",
        "-0",
        "+5",
        "1.5",
        "1e3",
        "",
        " 1",
        "abc",
        "WINDOW",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    invalid.push(b"\xff\x00\xfe".to_vec());
    invalid.push(b"1\x00".to_vec());
    invalid.push("１２".as_bytes().to_vec());
    let commands = [
        "LLMRL.CHECK",
        "LLMRL.PEEK",
        "LLMRL.SETTLE",
        "LLMRL.APPLY",
        "LLMRL.LOAD",
        "LLMRL.INSPECT",
    ];
    let keys: [&[u8]; 6] = [b"a", b"b", b"c", b"str", b"list", b"\xff\xfekey"];
    exec(&mut con, &["SET", "str", "not a limiter"]).unwrap();
    exec(&mut con, &["RPUSH", "list", "x"]).unwrap();
    let ledger_keys = ["ledger:0", "ledger:1", "ledger:2"];
    let mut ledgers = vec![Ledger::default(); ledger_keys.len()];
    let started = std::time::Instant::now();
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let (mut sent, mut errors, mut decisions) = (0, 0, 0);
    for _batch in 0..RANDOM_BATCHES {
        let mut pipe = redis::pipe();
        // What each ledger command of the batch was.
        let mut ledger_sent: Vec<Option<LedgerCommand>> = Vec::new();
        for _ in 0..RANDOM_BATCH {
            if random.next().is_multiple_of(5) {
                // A ledger key: well-formed CHECKs (random limits) and SETTLEs of real tickets
                // or of random ones, so usage can be compared with what was admitted.
                let which = (random.next() % ledger_keys.len() as u64) as usize;
                let key = ledger_keys[which];
                let ledger = &ledgers[which];
                if ledger.tickets.is_empty() || random.next().is_multiple_of(2) {
                    let cost = [(random.next() % 50) as i64, (random.next() % 50) as i64];
                    let limits = [
                        random.next() % 5_000,
                        random.next() % 1_000_000,
                        random.next() % 1_000_000,
                    ];
                    pipe.cmd("LLMRL.CHECK")
                        .arg(key)
                        .arg(limits[0])
                        .arg(limits[1])
                        .arg(limits[2])
                        .arg(cost[0])
                        .arg(cost[1]);
                    ledger_sent.push(Some((which, cost, [0, 0], true)));
                } else {
                    let (ticket, reserved_in, reserved_out) = if random.next().is_multiple_of(4) {
                        (random.pick(&tickets).clone(), 10, 10)
                    } else {
                        random.pick(&ledger.tickets).clone()
                    };
                    let actual = [(random.next() % 60) as i64, (random.next() % 60) as i64];
                    pipe.cmd("LLMRL.SETTLE")
                        .arg(key)
                        .arg(&ticket)
                        .arg(reserved_in)
                        .arg(actual[0])
                        .arg(reserved_out)
                        .arg(actual[1]);
                    ledger_sent.push(Some((which, [reserved_in, reserved_out], actual, false)));
                }
                sent += 1;
                continue;
            }
            ledger_sent.push(None);
            let command = *random.pick(&commands);
            let arity = match command {
                // Mostly well-formed arity, sometimes not.
                "LLMRL.CHECK" => *random.pick(&[5, 5, 5, 7, 7, 4, 6, 8]),
                "LLMRL.PEEK" => *random.pick(&[3, 5, 5, 7, 2, 4]),
                "LLMRL.SETTLE" => *random.pick(&[5, 5, 5, 4, 6]),
                "LLMRL.APPLY" => *random.pick(&[11, 11, 10, 12]),
                "LLMRL.LOAD" => *random.pick(&[6, 9, 12, 7]),
                _ => *random.pick(&[0, 0, 1]),
            };
            let cmd = pipe.cmd(command).arg(*random.pick(&keys));
            for position in 0..arity {
                // Put WINDOW where an option may go, numbers elsewhere.
                if (command == "LLMRL.CHECK" && position == 5)
                    || (command == "LLMRL.PEEK" && arity == 5 && position == 3)
                {
                    cmd.arg("WINDOW");
                } else {
                    let pool = if random.next().is_multiple_of(12) {
                        &invalid
                    } else {
                        &valid
                    };
                    cmd.arg(random.pick(pool).as_slice());
                }
            }
            sent += 1;
        }
        // Errors are expected; a dropped connection or a crash is not.
        let replies = redis::ConnectionLike::req_packed_commands(
            &mut con,
            &pipe.get_packed_pipeline(),
            0,
            RANDOM_BATCH,
        )
        .expect("the server keeps answering");
        assert_eq!(replies.len(), RANDOM_BATCH);
        for (reply, ledger_command) in replies.iter().zip(&ledger_sent) {
            if matches!(reply, Value::ServerError(_)) {
                errors += 1;
                assert!(
                    !ledger_command.is_some_and(|c| c.3),
                    "a well-formed CHECK failed: {reply:?}"
                );
                continue;
            }
            // Every CHECK/PEEK/SETTLE-shaped reply has sane fields.
            if let Value::Array(items) = reply {
                if items.len() == 10 {
                    decisions += 1;
                    let d = parse_decision(reply);
                    assert!(d.remaining.iter().all(|r| *r >= -1), "{d:?}");
                    assert!(d.reset_ms.iter().all(|r| *r >= 0), "{d:?}");
                    assert!(d.retry_after_ms >= -1);
                    match ledger_command {
                        Some((which, cost, _, true)) if d.allowed => {
                            let ledger = &mut ledgers[*which];
                            ledger.admitted_requests += 1;
                            ledger.admitted_input += cost[0];
                            ledger.admitted_output += cost[1];
                            ledger
                                .tickets
                                .push((d.ticket.to_string(), cost[0], cost[1]));
                        }
                        Some((which, reserved, actual, false)) => {
                            let ledger = &mut ledgers[*which];
                            for i in 0..2 {
                                ledger.settle_charges[i] += (actual[i] - reserved[i]).max(0);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    assert_eq!(sent, RANDOM_BATCHES * RANDOM_BATCH);
    // The mix exercised both sides: many rejected, many accepted and recorded.
    assert!(
        errors > sent / 10 && errors < sent * 9 / 10,
        "{errors} errors of {sent}"
    );
    let (checks, allowed) = (
        info_field(&mut con, "checks"),
        info_field(&mut con, "allowed"),
    );
    assert!(
        checks > 10_000 && allowed > 1_000,
        "{allowed} of {checks} checks allowed, {errors} errors"
    );
    // Usage never exceeds what was admitted: every request counted once, tokens at most the
    // admitted reservations plus what SETTLE charged above them (refunds only lower it).
    for (key, ledger) in ledger_keys.iter().zip(&ledgers) {
        let [requests, input, output] = inspect_totals(&mut con, key);
        // Exact while nothing has left the 60 s window yet.
        if started.elapsed() < Duration::from_secs(55) {
            assert_eq!(requests, ledger.admitted_requests, "{key}");
        }
        assert!(requests <= ledger.admitted_requests, "{key}");
        assert!(input >= 0 && input <= ledger.admitted_input + ledger.settle_charges[0]);
        assert!(output >= 0 && output <= ledger.admitted_output + ledger.settle_charges[1]);
        assert!(
            ledger.admitted_requests > 100,
            "{key} admitted too little to mean anything"
        );
    }
    assert_eq!(string(&mut con, &["PING"]), "PONG");
    assert_eq!(info_field(&mut con, "panics_caught"), 0);
    let digest = db_digest(&mut con);
    exec(&mut con, &["DEBUG", "RELOAD"]).unwrap();
    assert_eq!(
        db_digest(&mut con),
        digest,
        "whatever was recorded survives a reload exactly"
    );
    assert_eq!(string(&mut con, &["GET", "str"]), "not a limiter");
    for key in ["far", "far2", "huge-window"] {
        assert_eq!(
            int(&mut con, &["EXISTS", key]),
            1,
            "{key} survives a reload"
        );
    }
    eprintln!("random commands: {sent} sent, {errors} errors, {decisions} decisions, {checks} checks ({allowed} admitted)");
}
