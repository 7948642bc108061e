//! Fuzzing, driven by proptest: the argument parsers, the window operations and the RDB decoder
//! get arbitrary (hostile) input and must never panic — in a debug build, where any arithmetic
//! overflow panics too — and must keep their invariants.
//!
//! `make test` runs a few hundred cases per target; `make fuzz` runs many more
//! (`LLMRL_FUZZ_CASES`, default 20,000 per target) and prints how many inputs were tried.

use crate::args::{parse_apply, parse_check, parse_load, parse_peek, parse_settle, parse_u64};
use crate::encoding::{decode, encode, pack_effect, DecodeError, EFFECT_NUMBERS};
use crate::window::{Amounts, Effect, Refund, Snapshot, Window, MAX_ROWS, MAX_WINDOW_MS};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::sync::atomic::{AtomicU64, Ordering};

fn cases() -> u32 {
    std::env::var("LLMRL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// Run `test` on [`cases`] inputs drawn from `strategy`, failing with proptest's minimal
/// failing input, and report how many `unit`s were tried (`test` returns its count).
fn fuzz<S: Strategy>(
    target: &str,
    unit: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<u64, TestCaseError>,
) {
    let tried = AtomicU64::new(0);
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
    .run(&strategy, |value| {
        tried.fetch_add(test(value)?, Ordering::Relaxed);
        Ok(())
    })
    .unwrap_or_else(|failure| panic!("{failure}"));
    eprintln!("fuzz: {target}: {} {unit}", tried.load(Ordering::Relaxed));
}

/// Numbers as an attacker would pick them: edges, small values, anything.
fn number() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        3 => Just(0u64),
        2 => Just(u64::MAX),
        2 => (0u64..4).prop_map(|d| u64::MAX - d),
        4 => 0u64..100,
        2 => (1u64..1000).prop_map(|k| k * 60),
        1 => Just(1u64 << 63),
        3 => any::<u64>(),
    ]
}

/// One command argument: a decimal number, a near-number, an option name or raw bytes.
fn argument() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => number().prop_map(|n| n.to_string().into_bytes()),
        1 => Just(b"18446744073709551616".to_vec()),
        1 => prop::sample::select(vec!["-1", "+5", "1.5", "1e3", " 1", "0x10", "", "-0"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::sample::select(vec!["WINDOW", "window", "WiNdOw", "BINARY", "binary"]).prop_map(|s| s.as_bytes().to_vec()),
        2 => prop::collection::vec(any::<u8>(), 0..24),
        1 => "[0-9]{1,40}".prop_map(String::into_bytes),
    ]
}

#[test]
fn fuzz_packed_apply() {
    // The packed and the decimal forms of LLMRL.APPLY mean the same; mutated packings are
    // refused or decoded, never a panic.
    let numbers = prop::collection::vec(number(), EFFECT_NUMBERS);
    let strategy = (numbers, any::<usize>(), any::<u8>(), 0usize..3);
    fuzz(
        "packed APPLY",
        "inputs",
        strategy,
        |(numbers, at, byte, cut)| {
            let numbers: [u64; EFFECT_NUMBERS] = numbers.try_into().expect("11 numbers");
            let packed = pack_effect(&numbers);
            let packed = packed.as_slice();
            let decimal: Vec<Vec<u8>> =
                numbers.iter().map(|n| n.to_string().into_bytes()).collect();
            let decimal: Vec<&[u8]> = decimal.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(parse_apply(&[packed]), parse_apply(&decimal));
            let mut mutated = packed.to_vec();
            let at = at % mutated.len();
            mutated[at] = byte;
            mutated.truncate(mutated.len() - cut.min(mutated.len() - 1));
            if let Ok(apply) = parse_apply(&[&mutated]) {
                let mut window = Window::new(apply.window_ms).expect("validated");
                window.apply(&apply.effect);
                check_invariants(&window)?;
            }
            Ok(1)
        },
    );
}

#[test]
fn fuzz_argument_parsers() {
    let strategy = prop::collection::vec(argument(), 0..70);
    fuzz("argument parsers", "inputs", strategy, |args| {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        // A parser's verdict on an integer agrees with the standard library's (minus signs).
        for arg in &args {
            let ours = parse_u64(arg, "x").ok();
            let digits = !arg.is_empty() && arg.iter().all(u8::is_ascii_digit);
            let std = std::str::from_utf8(arg)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            prop_assert_eq!(ours, if digits { std } else { None });
        }
        // An accepted command has exactly its fixed arguments plus the options it reports.
        let options = |window_ms: Option<u64>, binary: bool| {
            2 * usize::from(window_ms.is_some()) + usize::from(binary)
        };
        if let Ok(check) = parse_check(&args) {
            prop_assert_eq!(args.len(), 5 + options(check.window_ms, check.binary));
            prop_assert_eq!(check.cost[0], 1);
        }
        if let Ok(peek) = parse_peek(&args) {
            let fixed = args.len() - options(peek.window_ms, peek.binary);
            prop_assert!(
                fixed == 3 || fixed == 5,
                "PEEK accepted {} arguments",
                args.len()
            );
        }
        if let Ok(settle) = parse_settle(&args) {
            prop_assert!(settle.ticket != 0);
            prop_assert_eq!(args.len(), 5 + usize::from(settle.binary));
        }
        if let Ok(apply) = parse_apply(&args) {
            prop_assert!(apply.window_ms > 0 && apply.window_ms % 60 == 0);
            // Whatever APPLY carries, applying it to a fresh key must not panic.
            let mut window = Window::new(apply.window_ms).expect("validated");
            window.apply(&apply.effect);
            check_invariants(&window)?;
        }
        if let Ok(snapshot) = parse_load(&args) {
            prop_assert_eq!(args.len(), 6 + snapshot.rows.len() * 3);
            if let Ok(window) = Window::from_snapshot(&snapshot) {
                prop_assert_eq!(window.snapshot(), snapshot);
                check_invariants(&window)?;
            }
        }
        Ok(1)
    });
}

/// Totals equal the rows, at most 61 rows, and the state survives its own encoding.
fn check_invariants(window: &Window) -> Result<(), TestCaseError> {
    let snapshot = window.snapshot();
    prop_assert!(snapshot.rows.len() <= MAX_ROWS);
    let mut sums = [0u128; 3];
    for row in &snapshot.rows {
        for (sum, value) in sums.iter_mut().zip(row) {
            *sum += u128::from(*value);
        }
    }
    prop_assert_eq!(sums, window.totals());
    let numbers = encode(&snapshot);
    let mut source = numbers.iter().copied();
    let decoded = decode(|| source.next()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(decoded.snapshot(), snapshot);
    Ok(())
}

#[derive(Debug, Clone)]
enum Op {
    /// CHECK as the command runs it: evaluate, and apply the charge if admitted.
    Check {
        dt: i64,
        limits: Amounts,
        cost: Amounts,
    },
    /// SETTLE of a ticket seen before (`pick`), or of an arbitrary ticket.
    Settle {
        dt: i64,
        pick: Option<usize>,
        ticket: u64,
        reserved: [u64; 2],
        actual: [u64; 2],
    },
    /// A replicated APPLY with arbitrary content.
    Apply {
        now: u64,
        limits: Amounts,
        charge: Amounts,
        refund: Option<(u64, Amounts)>,
    },
    /// Jump the clock anywhere.
    Jump { now: u64 },
}

fn amounts() -> impl Strategy<Value = Amounts> + Clone {
    (number(), number(), number()).prop_map(|(a, b, c)| [a, b, c])
}

fn op() -> impl Strategy<Value = Op> {
    let dt = prop_oneof![8 => 0i64..2_000, 2 => -5_000i64..0, 1 => 0i64..200_000];
    prop_oneof![
        8 => (dt.clone(), amounts(), amounts()).prop_map(|(dt, limits, cost)| Op::Check { dt, limits, cost }),
        3 => (dt, prop::option::of(any::<usize>()), number(), (number(), number()), (number(), number()))
            .prop_map(|(dt, pick, ticket, r, a)| Op::Settle { dt, pick, ticket, reserved: [r.0, r.1], actual: [a.0, a.1] }),
        1 => (number(), amounts(), amounts(), prop::option::of((number(), amounts())))
            .prop_map(|(now, limits, charge, refund)| Op::Apply { now, limits, charge, refund }),
        1 => number().prop_map(|now| Op::Jump { now }),
    ]
}

#[test]
fn fuzz_window_operations() {
    let window_ms = prop_oneof![
        Just(60u64),
        Just(60_000u64),
        (1u64..100_000).prop_map(|k| k * 60),
        Just(MAX_WINDOW_MS),
    ];
    let start = prop_oneof![Just(1_700_000_000_000u64), number()];
    let strategy = (window_ms, start, prop::collection::vec(op(), 1..120));
    fuzz(
        "window operations",
        "operations",
        strategy,
        |(window_ms, start, ops)| {
            let operations = ops.len() as u64;
            let mut window = Window::new(window_ms).expect("valid window");
            let mut now = start;
            let mut tickets: Vec<(u64, Amounts)> = Vec::new();
            for op in ops {
                match op {
                    Op::Check { dt, limits, cost } => {
                        now = now.saturating_add_signed(dt);
                        let cost = [1, cost[1], cost[2]];
                        let decision = window.evaluate(now, limits, cost);
                        for (d, remaining) in decision.remaining.iter().enumerate() {
                            prop_assert_eq!(remaining.is_some(), limits[d] != 0);
                            prop_assert!(remaining.unwrap_or(0) <= limits[d]);
                        }
                        prop_assert_eq!(decision.allowed, decision.ticket != 0);
                        if decision.allowed {
                            window.apply(&Effect {
                                now_ms: now,
                                limits,
                                charge: cost,
                                refund: None,
                            });
                            tickets.push((decision.ticket, cost));
                            // What CHECK reported as remaining is what a free PEEK now sees.
                            let peek = window.evaluate(now, limits, [0; 3]);
                            prop_assert_eq!(peek.remaining, decision.remaining);
                        }
                    }
                    Op::Settle {
                        dt,
                        pick,
                        ticket,
                        reserved,
                        actual,
                    } => {
                        now = now.saturating_add_signed(dt);
                        let (ticket, reserved) = match pick {
                            Some(i) if !tickets.is_empty() => {
                                let (t, cost) = tickets[i % tickets.len()];
                                (t, [cost[1], cost[2]])
                            }
                            _ => (ticket, reserved),
                        };
                        if let Ok(Some(effect)) = window.plan_settle(now, ticket, reserved, actual)
                        {
                            window.apply(&effect);
                        }
                    }
                    Op::Apply {
                        now: at,
                        limits,
                        charge,
                        refund,
                    } => {
                        window.apply(&Effect {
                            now_ms: at,
                            limits,
                            charge,
                            refund: refund.map(|(ticket, amounts)| Refund { ticket, amounts }),
                        });
                    }
                    Op::Jump { now: at } => now = at,
                }
                check_invariants(&window)?;
            }
            Ok(operations)
        },
    );
}

#[test]
fn fuzz_rdb_decoder() {
    // Arbitrary number streams, and valid encodings with one number changed or cut short.
    let valid = || {
        (
            (1u64..2_000).prop_map(|k| k * 60),
            0u64..10_000_000,
            amounts(),
            prop::collection::vec(amounts(), 0..=MAX_ROWS),
        )
            .prop_map(|(window_ms, head, limits, rows)| {
                encode(&Snapshot {
                    window_ms,
                    head: head.max(rows.len() as u64),
                    limits,
                    rows,
                })
            })
    };
    let mutated = (valid(), any::<usize>(), number(), any::<usize>()).prop_map(
        |(mut numbers, at, value, cut)| {
            let at = at % numbers.len();
            numbers[at] = value;
            numbers.truncate(numbers.len() - cut % 3);
            numbers
        },
    );
    let strategy = prop_oneof![
        1 => valid(),
        2 => mutated,
        2 => prop::collection::vec(prop_oneof![4 => 0u64..70, 1 => number()], 0..200),
    ];
    fuzz("RDB decoder", "inputs", strategy, |numbers| {
        let mut consumed = 0;
        let mut source = numbers.iter().copied().inspect(|_| consumed += 1);
        match decode(|| source.next()) {
            Ok(window) => {
                // Accepted input is exactly what encoding the decoded window gives back.
                prop_assert_eq!(&encode(&window.snapshot())[..], &numbers[..consumed]);
                check_invariants(&window)?;
            }
            Err(DecodeError::Truncated) => prop_assert_eq!(consumed, numbers.len()),
            Err(_) => {}
        }
        Ok(1)
    });
}

mod scope;
