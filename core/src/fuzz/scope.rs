//! Fuzz targets of the multi-scope check: operation sequences over scopes of every clock with
//! hostile numbers, and the argument parsers with the scope decoder.

use super::{argument, fuzz, number};
use crate::window::MAX_WINDOW_MS;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// A scope request as an attacker would write it.
fn scope_request() -> impl Strategy<Value = crate::multi::ScopeRequest> {
    use crate::period::{Period, PeriodKind};
    use crate::scope::{Clock, ScopeLimits};
    let clock = prop_oneof![
        prop_oneof![
            Just(60u64),
            Just(60_000u64),
            Just(MAX_WINDOW_MS),
            (1u64..10_000).prop_map(|k| k * 60)
        ]
        .prop_map(Clock::Sliding),
        (0usize..3, -1439i32..=1439).prop_map(|(kind, offset)| {
            let kind = [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month][kind];
            Clock::Calendar(Period::new(kind, offset).expect("in range"))
        }),
    ];
    (
        clock,
        (number(), number(), number(), number()),
        number(),
        (number(), number(), number()),
    )
        .prop_map(
            |(clock, limits, concurrency, cost)| crate::multi::ScopeRequest {
                clock,
                limits: ScopeLimits {
                    summed: [limits.0, limits.1, limits.2, limits.3],
                    concurrency: concurrency % 8,
                },
                cost: [1, cost.0, cost.1, cost.2],
            },
        )
}

/// A scope survives its own encoding, and what it holds stays bounded.
fn check_scope(state: &crate::scope::ScopeState) -> Result<(), TestCaseError> {
    use crate::scope::encoding::{decode, encode};
    let numbers = encode(state);
    let mut source = numbers.iter().copied();
    let decoded = decode(|| source.next()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(encode(&decoded), numbers);
    Ok(())
}

#[derive(Debug, Clone)]
enum ScopeOp {
    Check {
        dt: i64,
        input: u64,
        output: u64,
        lease: u64,
    },
    Correct {
        dt: i64,
        pick: Option<usize>,
        ticket: u64,
        reserved: [u64; 4],
        actual: [u64; 4],
    },
    Apply {
        packed: Vec<u8>,
    },
    Jump {
        now: u64,
    },
}

fn scope_op() -> impl Strategy<Value = ScopeOp> {
    let dt = prop_oneof![8 => 0i64..2_000, 2 => -5_000i64..0, 1 => 0i64..100_000_000];
    prop_oneof![
        8 => (dt.clone(), number(), number(), prop_oneof![Just(1u64), 1u64..10_000, number()])
            .prop_map(|(dt, input, output, lease)| ScopeOp::Check { dt, input, output, lease }),
        3 => (dt, prop::option::of(any::<usize>()), number(), prop::array::uniform4(number()), prop::array::uniform4(number()))
            .prop_map(|(dt, pick, ticket, reserved, actual)| ScopeOp::Correct { dt, pick, ticket, reserved, actual }),
        1 => prop::collection::vec(any::<u8>(), 0..60).prop_map(|packed| ScopeOp::Apply { packed }),
        1 => number().prop_map(|now| ScopeOp::Jump { now }),
    ]
}

#[test]
fn fuzz_scope_operations() {
    // MCHECK, MSETTLE/MCANCEL and MAPPLY with hostile numbers, clocks and tickets: no panic
    // (overflow checks on), every state survives its encoding, a refusal changes nothing, and a
    // packed effect means what it says.
    use crate::multi::{decide, plan_correction};
    use crate::scope::encoding::{encode, pack_effect, unpack_effect};
    use crate::scope::ScopeState;
    let start = prop_oneof![Just(1_800_000_000_000u64), number()];
    let strategy = (
        prop::collection::vec(scope_request(), 1..4),
        start,
        prop::collection::vec(scope_op(), 1..80),
    );
    fuzz(
        "scope operations",
        "operations",
        strategy,
        |(requests, start, ops)| {
            let operations = ops.len() as u64;
            let mut states: Vec<Option<ScopeState>> = vec![None; requests.len()];
            let mut tickets: Vec<u64> = Vec::new();
            let mut now = start;
            for op in ops {
                match op {
                    ScopeOp::Check {
                        dt,
                        input,
                        output,
                        lease,
                    } => {
                        now = now.saturating_add_signed(dt);
                        let requests: Vec<_> = requests
                            .iter()
                            .map(|r| crate::multi::ScopeRequest {
                                cost: [1, input, output, r.cost[3]],
                                ..*r
                            })
                            .collect();
                        let views: Vec<Option<&ScopeState>> =
                            states.iter().map(Option::as_ref).collect();
                        let before: Vec<Option<Vec<u64>>> =
                            views.iter().map(|s| s.map(encode)).collect();
                        let decision = decide(&views, &requests, now, Some(lease))
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        if !decision.allowed {
                            prop_assert_eq!(decision.effects(&requests).count(), 0);
                            let after: Vec<Option<Vec<u64>>> =
                                states.iter().map(|s| s.as_ref().map(encode)).collect();
                            prop_assert_eq!(before, after);
                            continue;
                        }
                        tickets.push(decision.ticket);
                        for ((state, request), effect) in states
                            .iter_mut()
                            .zip(&requests)
                            .zip(decision.effects(&requests))
                        {
                            let packed = pack_effect(request.clock, &effect);
                            prop_assert_eq!(
                                unpack_effect(packed.as_slice()),
                                Ok((request.clock, effect))
                            );
                            state
                                .get_or_insert_with(|| {
                                    ScopeState::new(request.clock).expect("valid clock")
                                })
                                .apply(&effect);
                        }
                    }
                    ScopeOp::Correct {
                        dt,
                        pick,
                        ticket,
                        reserved,
                        actual,
                    } => {
                        now = now.saturating_add_signed(dt);
                        let ticket = match pick {
                            Some(i) if !tickets.is_empty() => tickets[i % tickets.len()],
                            _ => ticket,
                        };
                        for state in states.iter_mut().flatten() {
                            if let Ok(Some(effect)) =
                                plan_correction(Some(state), now, ticket, reserved, actual)
                            {
                                state.apply(&effect);
                            }
                        }
                    }
                    ScopeOp::Apply { packed } => {
                        if let Ok((clock, effect)) = unpack_effect(&packed) {
                            let mut state = ScopeState::new(clock).expect("validated clock");
                            state.apply(&effect);
                            check_scope(&state)?;
                        }
                    }
                    ScopeOp::Jump { now: at } => now = at,
                }
                for state in states.iter().flatten() {
                    check_scope(state)?;
                }
            }
            Ok(operations)
        },
    );
}

#[test]
fn fuzz_scope_arguments_and_decoder() {
    use crate::multi::args::{parse_mcancel, parse_mcheck, parse_msettle, parse_numkeys};
    use crate::scope::encoding::decode;
    let period_words = prop::sample::select(vec![
        "day",
        "week",
        "month:-480",
        "DAY:+60",
        "day:",
        "month:99999",
        "hour",
    ])
    .prop_map(|s| s.as_bytes().to_vec());
    let args = prop::collection::vec(
        prop_oneof![6 => argument(), 1 => period_words,
        1 => prop::sample::select(vec!["SCOPES", "LEASE", "COSTS", "scopes", "DETAIL", "PACKED", "BINARY"]).prop_map(|s| s.as_bytes().to_vec())],
        0..40,
    );
    let numbers = prop::collection::vec(prop_oneof![4 => 0u64..70, 1 => number()], 0..60);
    fuzz(
        "scope arguments and decoder",
        "inputs",
        (args, numbers),
        |(args, numbers)| {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            if let Ok(numkeys) = parse_numkeys("x", &args) {
                let rest = &args[1 + numkeys..];
                if let Ok(check) = parse_mcheck("x", numkeys, rest) {
                    prop_assert_eq!(check.scopes.len(), numkeys);
                    prop_assert!(check.scopes.iter().all(|s| s.cost[0] == 1));
                }
                if let Ok(settle) = parse_msettle("x", numkeys, rest) {
                    prop_assert!(settle.ticket != 0 && settle.reserved.len() == numkeys);
                }
                if let Ok(cancel) = parse_mcancel("x", numkeys, rest) {
                    prop_assert_eq!(cancel.actual.len(), numkeys);
                }
            }
            let mut consumed = 0;
            let mut source = numbers.iter().copied().inspect(|_| consumed += 1);
            if let Ok(state) = decode(|| source.next()) {
                prop_assert_eq!(
                    &crate::scope::encoding::encode(&state)[..],
                    &numbers[..consumed]
                );
            }
            Ok(1)
        },
    );
}
