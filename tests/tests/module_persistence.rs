//! State that survives: DEBUG RELOAD, RDB and AOF restarts, a newer RDB encoding refused,
//! replication and promotion, LOAD and APPLY.

use llmrl_tests::*;
use redis::Value;
use std::time::Duration;

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
