//! Random commands never break the server: 200,000 random and edge-case single-scope commands
//! with usage checked against what was admitted, and 50,000 random multi-scope commands.

use llmrl_tests::*;
use redis::Value;
use std::time::Duration;

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
        "BINARY",
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
                    // Half ask for the reply as words (what the gateway sends).
                    if random.next().is_multiple_of(2) {
                        pipe.arg("BINARY");
                    }
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
                    if random.next().is_multiple_of(2) {
                        pipe.arg("BINARY");
                    }
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
                    cmd.arg(*random.pick(&["WINDOW", "WINDOW", "BINARY"]));
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
            // Every CHECK/PEEK/SETTLE-shaped reply has sane fields, as an array or as words.
            let shaped = match reply {
                Value::Array(items) => items.len() == 10,
                Value::BulkString(words) => words.len() == 80,
                _ => false,
            };
            if shaped {
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

#[rustfmt::skip]
#[test]
fn random_multi_scope_commands_never_break_the_server() {
    let server = RedisServer::start(&[]);
    let mut con = server.client();
    exec(&mut con, &["SET", "str", "not a limiter"]).unwrap();
    decision(&mut con, &["LLMRL.CHECK", "classic", "5", "0", "0", "0", "0"]);
    // Scope keys with the clock each keeps; other keys hold other types.
    let scopes = [("s0", "60000"), ("s1", "day"), ("s2", "600"), ("s3", "month:+60")];
    let strangers = ["str", "classic", "s0"];
    let windows = [
        "60", "9223372036854775800", "week:-480", "day:1439", "601", "0", "hour", "day:1440", "-60", "",
    ];
    let numbers = [
        "0", "1", "2", "3", "10", "100", "1000", "60000", "4294967296", "9223372036854775807",
        "18446744073709551615", "18446744073709551616", "-1", "x", "",
    ];
    let commands = ["LLMRL.MCHECK", "LLMRL.MCHECK", "LLMRL.MCHECK", "LLMRL.MPEEK", "LLMRL.MSETTLE", "LLMRL.MCANCEL"];
    let mut random = Random(0x5EED_0F5C_09E5);
    let mut tickets: Vec<String> = vec!["1".into(), "18446744073709551615".into()];
    let (mut sent, mut admitted, mut errors) = (0u64, 0u64, 0u64);
    for _batch in 0..100 {
        let mut pipe = redis::pipe();
        let mut kinds = Vec::new();
        for _ in 0..500 {
            let command = *random.pick(&commands);
            let well_formed = !random.next().is_multiple_of(5);
            let numkeys = if well_formed { *random.pick(&[1usize, 1, 2, 3, 4]) } else { *random.pick(&[0usize, 1, 2, 70]) };
            // Distinct scope keys, or anything.
            let first = (random.next() % 4) as usize;
            let chosen: Vec<(&str, &str)> = (0..numkeys.min(6))
                .map(|i| if well_formed { scopes[(first + i) % 4] } else { (*random.pick(&strangers), *random.pick(&windows)) })
                .collect();
            let cmd = pipe.cmd(command).arg(numkeys);
            for (key, _) in &chosen {
                cmd.arg(*key);
            }
            let small = &numbers[..7];
            match command {
                "LLMRL.MCHECK" | "LLMRL.MPEEK" => {
                    cmd.arg(*random.pick(small)).arg(*random.pick(small));
                    if random.next().is_multiple_of(2) {
                        cmd.arg("LEASE").arg(*random.pick(&["1", "50", "60000", "0"]));
                    }
                    match random.next() % 4 {
                        0 => {}
                        1 => {
                            cmd.arg("DETAIL");
                        }
                        2 => {
                            cmd.arg("DETAIL").arg("PACKED");
                        }
                        _ => {
                            cmd.arg("BINARY");
                        }
                    }
                    cmd.arg(if well_formed { "SCOPES" } else { *random.pick(&["SCOPES", "LEASE", "x"]) });
                    for (_, window) in &chosen {
                        cmd.arg(*window);
                        for _ in 0..6 {
                            let pool = if well_formed { &numbers[..11] } else { &numbers[..] };
                            cmd.arg(*random.pick(pool));
                        }
                    }
                }
                _ => {
                    cmd.arg(random.pick(&tickets).as_str());
                    let values = if command == "LLMRL.MSETTLE" { 4 } else { 2 };
                    for _ in 0..values {
                        cmd.arg(*random.pick(small));
                    }
                    if random.next().is_multiple_of(3) {
                        cmd.arg("COSTS");
                        let per_scope = if command == "LLMRL.MSETTLE" { 2 } else { 1 };
                        for _ in 0..chosen.len() * per_scope {
                            cmd.arg(*random.pick(small));
                        }
                    }
                }
            }
            kinds.push(command);
            sent += 1;
        }
        let replies = redis::ConnectionLike::req_packed_commands(&mut con, &pipe.get_packed_pipeline(), 0, 500)
            .expect("the server keeps answering");
        for (reply, kind) in replies.iter().zip(&kinds) {
            match reply {
                Value::ServerError(_) => errors += 1,
                // An MCHECK / MPEEK verdict: an array, or one string with DETAIL PACKED or BINARY.
                Value::Array(_) | Value::BulkString(_) => {
                    let d = llmrl_core::redis_client::multi_verdict(reply).expect("a well-formed reply");
                    assert!(d.retry_after_ms >= -1 && d.remaining.iter().all(|r| *r >= -1));
                    if d.allowed && *kind == "LLMRL.MCHECK" {
                        admitted += 1;
                        tickets.push(d.ticket.to_string());
                    }
                }
                Value::Int(n) => assert!((0..=6).contains(n), "{reply:?}"),
                other => panic!("{kind}: unexpected reply {other:?}"),
            }
        }
    }
    assert!(errors > sent / 10 && errors < sent * 9 / 10 && admitted > 100, "{errors} errors, {admitted} admitted of {sent}");
    assert_eq!(info_field(&mut con, "panics_caught"), 0);
    // Whatever was recorded saves, loads and replays to the same state.
    let before = string(&mut con, &["DEBUG", "DIGEST"]);
    exec(&mut con, &["DEBUG", "RELOAD"]).unwrap();
    assert_eq!(string(&mut con, &["DEBUG", "DIGEST"]), before);
}
