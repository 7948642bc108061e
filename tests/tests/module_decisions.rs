//! The module's decisions against a real server: every reply field, denials and retry times,
//! PEEK, SETTLE, TTLs, WATCH, concurrent clients, RESP3.

use llmrl_tests::*;
use redis::Value;
use std::thread::sleep;
use std::time::Duration;

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

/// `BINARY` (what the gateway sends): CHECK, PEEK and SETTLE answer the same ten fields as one
/// string of little-endian words, to RESP2 and RESP3 clients alike. Two keys take the same
/// requests, one answering in text, the other in words; the figures that depend on the clock
/// may differ by the time between the two commands (up to a second allowed: a busy CI machine
/// can stall a process that long; misplaced fields would differ by far more).
#[test]
fn binary_replies_carry_the_same_fields() {
    let server = RedisServer::start(&[]);
    let mut resp2 = server.client();
    let mut resp3 = server.client_resp3();
    let same = |text: &Decision, words: &Decision| {
        assert_eq!(
            (text.allowed, text.reason, text.remaining),
            (words.allowed, words.reason, words.remaining),
            "{text:?} {words:?}"
        );
        let close = |a: i64, b: i64, by: i64| (a - b).abs() <= by;
        assert!(
            close(text.retry_after_ms, words.retry_after_ms, 1000)
                && (text.retry_after_ms < 0) == (words.retry_after_ms < 0),
            "{text:?} {words:?}"
        );
        for (a, b) in text.reset_ms.iter().zip(&words.reset_ms) {
            assert!(close(*a, *b, 1000), "{text:?} {words:?}");
        }
        assert!(
            close(text.ticket, words.ticket, 2000) && (text.ticket == 0) == (words.ticket == 0)
        );
    };
    // A RESP3 map's values, in the order of its names (the contract's order).
    let read = |reply: &Value| match reply {
        Value::Map(pairs) => {
            let names: Vec<String> = pairs
                .iter()
                .map(|(name, _)| redis::from_redis_value(name).unwrap())
                .collect();
            assert_eq!(names, llmrl_core::protocol::VERDICT_FIELD_NAMES);
            parse_decision(&Value::Array(
                pairs.iter().map(|(_, v)| v.clone()).collect(),
            ))
        }
        _ => parse_decision(reply),
    };
    for (connection, protocol) in [(&mut resp2, "resp2"), (&mut resp3, "resp3")] {
        let keys = [format!("text:{protocol}"), format!("words:{protocol}")];
        let mut ask = |args: &[&str]| -> [Decision; 2] {
            let [text, words] = [&keys[0], &keys[1]].map(|key| {
                let mut full: Vec<&str> = vec![args[0], key.as_str()];
                full.extend(&args[1..]);
                if key.starts_with("words") {
                    full.push("BINARY");
                }
                exec(connection, &full).unwrap_or_else(|e| panic!("{full:?}: {e}"))
            });
            let Value::BulkString(bytes) = &words else {
                panic!("BINARY answers one string: {words:?}")
            };
            assert_eq!(bytes.len(), 80, "ten words");
            [read(&text), read(&words)]
        };
        // Three requests a window: two admitted, one at the limit, one refused on rpm, one too
        // large for the output limit.
        let mut tickets = Vec::new();
        for (input, output) in [
            ("10", "20"),
            ("5", "5"),
            ("1", "1"),
            ("1", "1"),
            ("0", "101"),
        ] {
            let [text, words] = ask(&["LLMRL.CHECK", "3", "1000", "100", input, output]);
            same(&text, &words);
            tickets.push([text.ticket, words.ticket]);
        }
        let [text, words] = ask(&[
            "LLMRL.PEEK",
            "3",
            "1000",
            "100",
            "1",
            "1",
            "WINDOW",
            "60000",
        ]);
        assert_eq!(text.reason, "rpm");
        same(&text, &words);
        // SETTLE of the first request, each key with its own ticket.
        let [text_ticket, words_ticket] = tickets[0].map(|t| t.to_string());
        fn settle<'a>(key: &'a str, ticket: &'a str, binary: bool) -> Vec<&'a str> {
            let mut args = vec!["LLMRL.SETTLE", key, ticket, "10", "4", "20", "50"];
            if binary {
                args.push("BINARY");
            }
            args
        }
        let text = exec(connection, &settle(&keys[0], &text_ticket, false)).unwrap();
        let words = exec(connection, &settle(&keys[1], &words_ticket, true)).unwrap();
        assert!(matches!(&words, Value::BulkString(bytes) if bytes.len() == 80));
        let (text, words) = (read(&text), read(&words));
        // 16 input and 26 output tokens admitted; 6 input refunded, 30 output charged.
        assert_eq!(text.remaining, [0, 1000 - 16 + 6, 100 - 26 - 30]);
        same(&text, &words);
    }
}
