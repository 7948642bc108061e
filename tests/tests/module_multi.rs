//! The multi-scope commands against a real server: all or nothing across scopes, concurrency
//! leases, calendar periods, settle and cancel, errors that record nothing, persistence and
//! replication of the new type.

use llmrl_core::period::{Period, PeriodKind};
use llmrl_core::protocol::{MultiVerdict, ScopeVerdict};
use llmrl_core::scope::Limit;
use llmrl_core::window::Dimension;
use llmrl_tests::*;
use std::thread::sleep;
use std::time::Duration;

/// key: 5 requests a minute, 1000 input tokens; team: 3 a minute; org: 10,000 cost a month,
/// charged 100 a request.
#[rustfmt::skip]
fn three_scopes<'a>(input: &'a str, output: &'a str) -> Vec<&'a str> {
    vec!["LLMRL.MCHECK", "3", "{acme}:key", "{acme}:team", "{acme}:org", input, output, "DETAIL", "SCOPES", "60000", "5", "1000", "0", "0", "0", "0", "60000", "3", "0", "0", "0", "0", "0", "month", "0", "0", "0", "10000", "100", "0"]
}

fn peek_of(args: &[&str]) -> Vec<String> {
    let mut peek: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    peek[0] = "LLMRL.MPEEK".into();
    peek
}

fn digests(con: &mut redis::Connection, keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| digest(con, k)).collect()
}

#[test]
fn admits_only_when_every_scope_admits_and_a_refusal_records_nothing() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let keys = ["{acme}:key", "{acme}:team", "{acme}:org"];
    for n in 0..3 {
        let d = multi(&mut con, &three_scopes("10", "5"));
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.reason, None);
        assert_eq!(d.scope, None);
        assert!(d.ticket > 0);
        // Per dimension, the least left over all scopes.
        assert_eq!(d.remaining[0], 2 - n, "the team's requests");
        assert_eq!(
            d.remaining[1],
            1000 - 10 * (n + 1),
            "the key's input tokens"
        );
        assert_eq!(d.remaining[3], 10_000 - 100 * (n + 1), "the org's cost");
        assert_eq!(d.remaining[4], -1, "no concurrency limit anywhere");
        assert_eq!(d.scopes.len(), 3);
        assert_eq!(d.scopes[0].remaining[0], 4 - n);
    }
    let before = digests(&mut con, &keys);
    let denied = multi(&mut con, &three_scopes("10", "5"));
    assert!(!denied.allowed);
    assert_eq!(denied.reason, Some(Limit::Summed(Dimension::Requests)));
    assert_eq!(denied.scope, Some(1), "the team refused");
    assert_eq!(denied.ticket, 0);
    assert!(denied.retry_after_ms > 59_000 && denied.retry_after_ms <= 61_000);
    assert!(denied.scopes[0].allowed && !denied.scopes[1].allowed);
    assert_eq!(
        denied.scopes[0].remaining[0], 2,
        "the key reports itself uncharged"
    );
    assert_eq!(
        digests(&mut con, &keys),
        before,
        "nothing recorded anywhere"
    );
    // The same answer from MPEEK, which never records.
    let peek = peek_of(&three_scopes("10", "5"));
    let peek: Vec<&str> = peek.iter().map(String::as_str).collect();
    let peeked = multi(&mut con, &peek);
    assert_eq!((peeked.allowed, peeked.scope), (false, Some(1)));
    // A request too large for any scope can never fit: -1.
    let huge = multi(&mut con, &three_scopes("5000", "5"));
    assert_eq!(huge.retry_after_ms, -1);
    assert_eq!(huge.reason, Some(Limit::Summed(Dimension::InputTokens)));
    assert_eq!(digests(&mut con, &keys), before);
    assert_eq!(info_field(&mut con, "mchecks"), 5);
    assert_eq!(info_field(&mut con, "mchecks_denied"), 2);
}

#[rustfmt::skip]
fn slots(lease: &str) -> Vec<&str> {
    vec!["LLMRL.MCHECK", "2", "{p}:key", "{p}:pool", "1", "1", "LEASE", lease, "SCOPES", "60000", "0", "0", "0", "0", "0", "0", "60000", "0", "0", "0", "0", "0", "2"]
}

#[test]
#[rustfmt::skip]
fn concurrency_slots_are_released_or_expire_with_their_lease() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let first = multi(&mut con, &slots("400"));
    let second = multi(&mut con, &slots("400"));
    assert!(first.allowed && second.allowed);
    assert_ne!(first.ticket, second.ticket);
    assert_eq!(second.remaining[4], 0);
    let full = multi(&mut con, &slots("400"));
    assert!(!full.allowed);
    assert_eq!(full.reason, Some(Limit::Concurrency));
    assert_eq!(full.scope, Some(1));
    assert!(
        full.retry_after_ms > 0 && full.retry_after_ms <= 400,
        "{full:?}"
    );
    // Settling the first releases its slot; a second release changes nothing.
    let settle = |con: &mut redis::Connection, ticket: u64| {
        int(
            con,
            &[
                "LLMRL.MSETTLE",
                "2",
                "{p}:key",
                "{p}:pool",
                &ticket.to_string(),
                "1",
                "1",
                "1",
                "1",
            ],
        )
    };
    assert_eq!(
        settle(&mut con, first.ticket),
        1,
        "only the pool held a slot"
    );
    assert_eq!(settle(&mut con, first.ticket), 0);
    let third = multi(&mut con, &slots("400"));
    assert!(third.allowed);
    assert!(!multi(&mut con, &slots("400")).allowed);
    // The leases of a client that never settles end by themselves.
    sleep(Duration::from_millis(450));
    let after = multi(&mut con, &slots("400"));
    assert!(after.allowed, "{after:?}");
    assert_eq!(after.remaining[4], 1, "both abandoned slots were reclaimed");
    // The pool key lives at least as long as its newest lease.
    let ttl = int(&mut con, &["PTTL", "{p}:pool"]);
    assert!(ttl > 59_000, "{ttl}");
}

#[test]
#[rustfmt::skip]
fn settle_corrects_and_cancel_undoes_an_admission_everywhere() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let admitted = multi(&mut con, &three_scopes("100", "50"));
    let ticket = admitted.ticket.to_string();
    let keys = ["{acme}:key", "{acme}:team", "{acme}:org"];
    // Used 40 input tokens instead of 100; the org's cost was 160 instead of 100.
    let changed = int(
        &mut con,
        &["LLMRL.MSETTLE", "3", keys[0], keys[1], keys[2], &ticket, "100", "40", "50", "50", "COSTS", "0", "0", "0", "0", "100", "160"],
    );
    // Every scope counted the 100 input tokens (limited or not), so every scope is corrected.
    assert_eq!(changed, 3);
    let peek = peek_of(&three_scopes("0", "0"));
    let peek: Vec<&str> = peek.iter().map(String::as_str).collect();
    let now = multi(&mut con, &peek);
    assert_eq!(now.scopes[0].remaining[1], 1000 - 40);
    assert_eq!(
        now.scopes[2].remaining[3],
        10_000 - 160 - 100,
        "the peeked request costs 100"
    );
    // A second admission, cancelled: the request, its tokens and its cost all come back.
    let second = multi(&mut con, &three_scopes("10", "5"));
    let before_cancel = multi(&mut con, &peek);
    assert_eq!(before_cancel.scopes[1].remaining[0], 3 - 2 - 1);
    let cancelled = int(
        &mut con,
        &[
            "LLMRL.MCANCEL",
            "3",
            keys[0],
            keys[1],
            keys[2],
            &second.ticket.to_string(),
            "10",
            "5",
            "COSTS",
            "0",
            "0",
            "100",
        ],
    );
    assert_eq!(cancelled, 3);
    let after = multi(&mut con, &peek);
    assert_eq!(
        after.scopes[1].remaining[0],
        3 - 1 - 1,
        "the request count came back"
    );
    assert_eq!(after.scopes[0].remaining[1], 1000 - 40);
    assert_eq!(after.scopes[2].remaining[3], 10_000 - 160 - 100);
}

#[test]
#[rustfmt::skip]
fn calendar_scopes_count_the_period_and_expire_at_its_end() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let args = ["LLMRL.MCHECK", "1", "{c}:day", "1", "1", "SCOPES", "day:-480", "2", "0", "0", "0", "0", "0"];
    assert!(multi(&mut con, &args).allowed);
    assert!(multi(&mut con, &args).allowed);
    let now = server_ms(&mut con) as u64;
    let denied = multi(&mut con, &args);
    let (_, end) = Period::new(PeriodKind::Day, -480).unwrap().bounds(now);
    let until_end = (end - now) as i64;
    assert!(!denied.allowed);
    assert!(
        (denied.retry_after_ms - until_end).abs() < 1_000,
        "until midnight Pacific: {} vs {until_end}",
        denied.retry_after_ms
    );
    assert_eq!(int(&mut con, &["PEXPIRETIME", "{c}:day"]), end as i64);
    // A key keeps its clock.
    let other = error(
        &mut con,
        &["LLMRL.MCHECK", "1", "{c}:day", "1", "1", "SCOPES", "week", "2", "0", "0", "0", "0", "0"],
    );
    assert!(other.contains("another window or period"), "{other}");
}

#[test]
#[rustfmt::skip]
fn bad_arguments_and_wrong_types_record_nothing() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    decision(
        &mut con,
        &["LLMRL.CHECK", "classic", "5", "0", "0", "0", "0"],
    );
    multi(
        &mut con,
        &["LLMRL.MCHECK", "1", "scope", "1", "1", "SCOPES", "60000", "5", "0", "0", "0", "0", "0"],
    );
    let before = string(&mut con, &["DEBUG", "DIGEST"]);
    let cases: &[(&[&str], &str)] = &[
        (&["LLMRL.MCHECK"], "wrong number of arguments"),
        (&["LLMRL.MCHECK", "0", "1", "1", "SCOPES"], "numkeys"),
        (
            &["LLMRL.MCHECK", "x", "a"],
            "numkeys must be a non-negative integer",
        ),
        (
            &["LLMRL.MCHECK", "3", "a", "b"],
            "wrong number of arguments",
        ),
        (
            &["LLMRL.MCHECK", "1", "a", "1", "1", "PACKED", "DETAIL", "600", "1", "0", "0", "0", "0", "0"],
            "given twice",
        ),
        (
            &["LLMRL.MCHECK", "1", "a", "1", "1", "LEASE"],
            "LEASE needs ms",
        ),
        (
            &["LLMRL.MCHECK", "1", "a", "1", "1", "SCOPES", "601", "1", "0", "0", "0", "0", "0"],
            "WINDOW must be",
        ),
        (
            &["LLMRL.MCHECK", "1", "a", "1", "1", "SCOPES", "hour", "1", "0", "0", "0", "0", "0"],
            "a window is ms",
        ),
        (
            &["LLMRL.MCHECK", "1", "a", "1", "1", "SCOPES", "600", "1", "0", "0", "0", "0", "2"],
            "needs LEASE",
        ),
        (
            &["LLMRL.MCHECK", "2", "a", "a", "1", "1", "SCOPES", "600", "1", "0", "0", "0", "0", "0", "600", "1", "0", "0", "0", "0", "0"],
            "named twice",
        ),
        (
            &["LLMRL.MCHECK", "1", "classic", "1", "1", "SCOPES", "60000", "5", "0", "0", "0", "0", "0"],
            "WRONGTYPE",
        ),
        (
            &["LLMRL.MCHECK", "1", "scope", "1", "1", "SCOPES", "600", "5", "0", "0", "0", "0", "0"],
            "another window",
        ),
        (
            &["LLMRL.CHECK", "scope", "5", "0", "0", "0", "0"],
            "WRONGTYPE",
        ),
        (
            &["LLMRL.MSETTLE", "1", "scope", "0", "1", "1", "1", "1"],
            "invalid ticket",
        ),
        (
            &["LLMRL.MSETTLE", "1", "scope", "999999999999999999", "1", "1", "1", "1"],
            "in the future",
        ),
        (
            &["LLMRL.MCANCEL", "1", "scope", "5", "1", "1", "COSTS"],
            "wrong number of arguments",
        ),
        (&["LLMRL.MAPPLY", "1", "scope", "garbage"], "malformed"),
        (&["LLMRL.MAPPLY", "2", "scope", "other", "garbage"], "wrong number of arguments"),
        (&["LLMRL.MLOAD", "scope", "1", "2"], "not a scope"),
    ];
    for (args, expected) in cases {
        let message = error(&mut con, args);
        assert!(
            message.contains(expected),
            "{args:?}: {message:?} lacks {expected:?}"
        );
    }
    assert_eq!(
        string(&mut con, &["DEBUG", "DIGEST"]),
        before,
        "no error changed anything"
    );
    assert_eq!(int(&mut con, &["EXISTS", "a"]), 0);
}

#[rustfmt::skip]
fn busy_history(con: &mut redis::Connection) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..6 {
        let (key, pool) = (format!("{{h{i}}}:key"), format!("{{h{i}}}:pool"));
        let window = ["60000", "day", "month:60"][i % 3];
        for j in 0..(i + 2) {
            let input = (j * 17 % 90).to_string();
            let args = ["LLMRL.MCHECK", "2", &key, &pool, &input, "9", "LEASE", "60000", "SCOPES", window, "50", "5000", "3000", "0", "0", "0", "60000", "0", "0", "0", "900", "7", "3"];
            let d = multi(con, &args);
            if d.allowed && j % 2 == 0 {
                let ticket = d.ticket.to_string();
                int(
                    con,
                    &["LLMRL.MSETTLE", "2", &key, &pool, &ticket, &input, "1", "9", "12", "COSTS", "0", "0", "7", "5"],
                );
            }
        }
        keys.push(key);
        keys.push(pool);
    }
    keys
}

#[test]
fn scopes_survive_reload_aof_rewrite_and_replicate_exactly() {
    let mut primary = RedisServer::start(&["--appendonly", "yes", "--aof-use-rdb-preamble", "no"]);
    let mut con = primary.client();
    let replica = RedisServer::start(&[]);
    let mut rcon = replica.client();
    exec(
        &mut rcon,
        &["REPLICAOF", "127.0.0.1", &primary.port.to_string()],
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        string(&mut rcon, &["INFO", "replication"]).contains("master_link_status:up")
    }));
    let mut keys = busy_history(&mut con);
    // One call of each size: up to five scopes are replicated with the keys and effects
    // spelled out in the format, six as one MAPPLY built from an array of strings.
    for count in [1, 3, 4, 5, 6] {
        let scopes: Vec<String> = (0..count).map(|i| format!("{{s{count}}}:{i}")).collect();
        let mut args: Vec<String> = ["LLMRL.MCHECK".to_string(), count.to_string()].to_vec();
        args.extend(scopes.iter().cloned());
        args.extend(["10", "5", "LEASE", "60000", "SCOPES"].map(String::from));
        for i in 0..count {
            let window = ["60000", "day", "600", "week", "month:-60", "6000"][i];
            args.extend([window, "9", "900", "0", "50", "3", "2"].map(String::from));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(multi(&mut con, &args).allowed);
        keys.extend(scopes);
    }
    let fingerprint = |con: &mut redis::Connection| -> Vec<(String, i64)> {
        keys.iter()
            .map(|k| (digest(con, k), int(con, &["PEXPIRETIME", k])))
            .collect()
    };
    let expected = fingerprint(&mut con);
    assert!(
        expected.iter().all(|(_, at)| *at > 0),
        "every scope key expires: {expected:?}"
    );
    assert!(eventually(Duration::from_secs(10), || fingerprint(
        &mut rcon
    ) == expected));
    assert!(int(&mut con, &["MEMORY", "USAGE", "{h5}:pool"]) > 0);
    exec(&mut con, &["DEBUG", "RELOAD"]).unwrap();
    assert_eq!(fingerprint(&mut con), expected, "after an RDB round trip");
    exec(&mut con, &["BGREWRITEAOF"]).unwrap();
    assert!(eventually(Duration::from_secs(10), || {
        string(&mut con, &["INFO", "persistence"]).contains("aof_rewrite_in_progress:0")
    }));
    sleep(Duration::from_millis(200));
    primary.shutdown(false);
    primary.restart(&[]);
    let mut con = primary.client();
    assert_eq!(
        fingerprint(&mut con),
        expected,
        "after an AOF rewrite and replay"
    );
}

fn map_names(value: &redis::Value) -> Vec<String> {
    let redis::Value::Map(pairs) = value else {
        panic!("expected a map, got {value:?}")
    };
    pairs
        .iter()
        .map(|(k, _)| match k {
            redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn resp3_clients_get_maps() {
    let server = RedisServer::start(&[]);
    let mut con = server.client_resp3();
    let reply = exec(&mut con, &three_scopes("10", "5")).unwrap();
    let dimensions = [
        "requests",
        "input_tokens",
        "output_tokens",
        "cost",
        "concurrency",
    ];
    let mut expected: Vec<String> = ["allowed", "reason", "scope", "retry_after_ms"]
        .map(String::from)
        .to_vec();
    expected.extend(dimensions.map(|d| format!("remaining_{d}")));
    expected.extend(dimensions.map(|d| format!("reset_{d}_ms")));
    expected.extend(["ticket".to_string(), "scopes".to_string()]);
    assert_eq!(map_names(&reply), expected);
    let redis::Value::Map(pairs) = &reply else {
        unreachable!()
    };
    let redis::Value::Array(scopes) = &pairs[15].1 else {
        panic!("scopes: {:?}", pairs[15].1)
    };
    assert_eq!(scopes.len(), 3);
    assert_eq!(
        map_names(&scopes[0]),
        [
            "allowed",
            "reason",
            "retry_after_ms",
            "remaining",
            "reset_ms"
        ]
    );
}

#[test]
fn packed_and_binary_detail_are_the_whole_reply_in_one_string() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let mut resp3 = server.client_resp3();
    let packed_form = |args: &[&str]| -> Vec<String> {
        let mut out = Vec::new();
        for arg in args {
            out.push(arg.to_string());
            if *arg == "DETAIL" {
                out.push("PACKED".to_string());
            }
        }
        out
    };
    // The shortest form the gateway sends: `PACKED` for `DETAIL PACKED`, no `SCOPES`.
    let short_form = |args: &[&str]| -> Vec<String> {
        args.iter()
            .filter(|arg| **arg != "SCOPES")
            .map(|arg| if *arg == "DETAIL" { "PACKED" } else { arg }.to_string())
            .collect()
    };
    // Admitted three times, then refused by the team (3 RPM), then too large for the org.
    for (input, output) in [
        ("10", "5"),
        ("10", "5"),
        ("10", "5"),
        ("10", "5"),
        ("10", "200"),
    ] {
        let nested = three_scopes(input, output);
        let packed = packed_form(&nested);
        let (peek_nested, peek_packed) = (peek_of(&nested), peek_of(&as_strs(&packed)));
        let expected = multi(&mut con, &as_strs(&peek_nested));
        assert_eq!(expected.scopes.len(), 3);
        // One bulk string, whichever protocol the client speaks.
        for connection in [&mut con, &mut resp3] {
            let reply = exec(connection, &as_strs(&peek_packed)).unwrap();
            let redis::Value::BulkString(text) = &reply else {
                panic!("the packed reply is one string: {reply:?}")
            };
            assert_eq!(text.iter().filter(|b| **b == b';').count(), 3);
            let got = MultiVerdict::unpack(text).unwrap();
            same_head(&got, &expected);
            same_figures(&got.scopes, &expected.scopes);
        }
        let short = short_form(&nested);
        assert!(short.len() < packed.len());
        let reply = exec(&mut con, &as_strs(&peek_of(&as_strs(&short)))).unwrap();
        let redis::Value::BulkString(text) = &reply else {
            panic!("the short form's reply is one string: {reply:?}")
        };
        let got = MultiVerdict::unpack(text).unwrap();
        same_head(&got, &expected);
        same_figures(&got.scopes, &expected.scopes);
        // `BINARY` (what the gateway sends): the same figures as little-endian words, fifteen
        // then thirteen a scope, whichever protocol the client speaks.
        let binary: Vec<String> = short
            .iter()
            .map(|arg| {
                if arg == "PACKED" {
                    "BINARY".to_string()
                } else {
                    arg.clone()
                }
            })
            .collect();
        for connection in [&mut con, &mut resp3] {
            let reply = exec(connection, &as_strs(&peek_of(&as_strs(&binary)))).unwrap();
            let redis::Value::BulkString(words) = &reply else {
                panic!("the binary reply is one string: {reply:?}")
            };
            assert_eq!(words.len(), 8 * (15 + 13 * 3));
            let got = MultiVerdict::from_binary(words).unwrap();
            same_head(&got, &expected);
            same_figures(&got.scopes, &expected.scopes);
            assert_eq!(llmrl_core::redis_client::multi_verdict(&reply), Ok(got));
        }
        // Recorded the same way: the admission's verdict, packed.
        let recorded = multi(&mut con, &as_strs(&packed));
        same_head(&recorded, &expected);
        same_figures(&recorded.scopes, &expected.scopes);
    }
}

/// The same reply head, but for the milliseconds that passed between two calls (a peek's
/// ticket is 0, an admission's its own).
fn same_head(got: &MultiVerdict, expected: &MultiVerdict) {
    let key = |v: &MultiVerdict| (v.allowed, v.reason, v.scope, v.remaining);
    assert_eq!(key(got), key(expected));
    close_in_time(
        (got.retry_after_ms, &got.reset_ms),
        (expected.retry_after_ms, &expected.reset_ms),
    );
}

/// The same figures, but for the milliseconds that passed between two calls.
fn same_figures(got: &[ScopeVerdict], expected: &[ScopeVerdict]) {
    assert_eq!(got.len(), expected.len());
    for (got, expected) in got.iter().zip(expected) {
        let key = |v: &ScopeVerdict| (v.allowed, v.reason, v.remaining);
        assert_eq!(key(got), key(expected));
        close_in_time(
            (got.retry_after_ms, &got.reset_ms),
            (expected.retry_after_ms, &expected.reset_ms),
        );
    }
}

/// A retry and resets read twice, apart by at most the time between the two calls.
fn close_in_time(got: (i64, &[i64; 5]), expected: (i64, &[i64; 5])) {
    let close = |a: i64, b: i64| (a - b).abs() <= 50;
    let all_close =
        close(got.0, expected.0) && got.1.iter().zip(expected.1).all(|(a, b)| close(*a, *b));
    assert!(all_close, "{got:?} {expected:?}");
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn without_detail_the_reply_is_flat_and_names_no_scope_figures() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    let args: Vec<&str> = three_scopes("10", "5")
        .into_iter()
        .filter(|a| *a != "DETAIL")
        .collect();
    let reply = exec(&mut con, &args).unwrap();
    let redis::Value::Array(items) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(items.len(), 15);
    let d = multi(&mut con, &args);
    assert!(d.allowed && d.scopes.is_empty());
    assert_eq!(d.remaining[0], 1, "the team's requests bind");
}

/// Each scope's seven values packed in one comma-separated argument decide exactly as seven
/// arguments do, and a malformed packed scope is an error that records nothing.
#[test]
fn packed_scopes_are_the_same_request() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    #[rustfmt::skip]
    let packed = ["LLMRL.MCHECK", "3", "{p}:key", "{p}:team", "{p}:org", "10", "5", "DETAIL", "SCOPES",
        "60000,5,1000,0,0,0,0", "60000,3,0,0,0,0,0", "month,0,0,0,10000,100,0"];
    let mut expanded = three_scopes("10", "5");
    for (key, name) in expanded[2..5]
        .iter_mut()
        .zip(["{e}:key", "{e}:team", "{e}:org"])
    {
        *key = name;
    }
    for _ in 0..4 {
        let (a, b) = (multi(&mut con, &packed), multi(&mut con, &expanded));
        assert_eq!(a.allowed, b.allowed);
        assert_eq!(
            (a.reason, a.scope, a.remaining),
            (b.reason, b.scope, b.remaining)
        );
        assert_eq!(a.scopes.len(), b.scopes.len());
    }
    let used: i64 = redis::cmd("LLMRL.MPEEK")
        .arg(&packed[1..])
        .query::<Vec<redis::Value>>(&mut con)
        .map(|reply| match reply.get(4) {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!(used, 0, "the team's three requests are used");
    for bad in [
        "60000,5,1000,0,0,0",
        "60000,5,1000,0,0,0,0,0",
        "60000,5,x,0,0,0,0",
    ] {
        let args = ["LLMRL.MCHECK", "1", "{p}:fresh", "1", "1", "SCOPES", bad];
        let error = redis::cmd(args[0])
            .arg(&args[1..])
            .query::<redis::Value>(&mut con)
            .unwrap_err();
        assert!(
            error.to_string().contains("packed scope") || error.to_string().contains("itpm"),
            "{error}"
        );
    }
    let exists: i64 = redis::cmd("EXISTS")
        .arg("{p}:fresh")
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, 0);
}
