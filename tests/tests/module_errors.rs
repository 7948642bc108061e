//! Bad input gets clear errors: every bad argument of the single-scope commands answered with a
//! clear `ERR` and nothing recorded (random commands: `module_random.rs`).

use llmrl_tests::*;
use redis::Value;

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
            &[
                "LLMRL.CHECK",
                "k",
                "1",
                "2",
                "3",
                "4",
                "5",
                "BINARY",
                "BINARY",
            ],
            "an option is given twice",
        ),
        (
            &["LLMRL.SETTLE", "k", "1000", "1", "2", "3", "4", "WINDOW"],
            "unknown option (expected BINARY)",
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
