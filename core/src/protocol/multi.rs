//! The multi-scope commands as a client sees them: MCHECK/MPEEK arguments, MSETTLE/MCANCEL
//! arguments, and the typed reply (decoded by `redis_client::multi_verdict`).

use super::{Arg, Usage};
use crate::scope::{Clock, Limit, ScopeLimits, REPORTED};

/// One scope of an MCHECK: its key, clock, limits (0: unlimited) and what this request costs in
/// its fourth dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeArgs<'a> {
    pub key: &'a str,
    pub clock: Clock,
    pub limits: ScopeLimits,
    pub cost_charge: u64,
}

/// A scope's seven values packed in one argument: `window,rpm,itpm,otpm,cost_limit,
/// cost_charge,concurrency`, the window in ms or a period (`day:-480`).
fn packed_scope(scope: &ScopeArgs<'_>) -> Arg<'static> {
    use std::fmt::Write;
    let mut packed = match scope.clock {
        Clock::Sliding(window_ms) => window_ms.to_string(),
        Clock::Calendar(period) => period.name(),
    };
    let [rpm, itpm, otpm, cost_limit] = scope.limits.summed;
    for value in [
        rpm,
        itpm,
        otpm,
        cost_limit,
        scope.cost_charge,
        scope.limits.concurrency,
    ] {
        let _ = write!(packed, ",{value}");
    }
    Arg::Owned(packed)
}

fn keys<'a>(scopes: &'a [ScopeArgs<'a>]) -> impl Iterator<Item = Arg<'a>> {
    std::iter::once(Arg::Int(scopes.len() as u64)).chain(scopes.iter().map(|s| Arg::Text(s.key)))
}

/// `LLMRL.MCHECK numkeys key... input_tokens output_tokens [LEASE ms] SCOPES ...` (or MPEEK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiCheck<'a> {
    pub scopes: &'a [ScopeArgs<'a>],
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub lease_ms: Option<u64>,
    /// Ask for each scope's own figures too (a longer reply).
    pub detail: bool,
}

impl<'a> MultiCheck<'a> {
    pub const NAME: &'static str = "LLMRL.MCHECK";
    pub const PEEK: &'static str = "LLMRL.MPEEK";

    pub fn args(&self) -> Vec<Arg<'a>> {
        let mut args: Vec<Arg<'a>> = keys(self.scopes).collect();
        args.push(Arg::Int(self.input_tokens));
        args.push(Arg::Int(self.output_tokens));
        if let Some(ms) = self.lease_ms {
            args.extend([Arg::Text("LEASE"), Arg::Int(ms)]);
        }
        if self.detail {
            args.push(Arg::Text("DETAIL"));
        }
        args.push(Arg::Text("SCOPES"));
        args.extend(self.scopes.iter().map(|scope| packed_scope(scope)));
        args
    }
}

/// `LLMRL.MSETTLE` (correct to actual usage, release the slots) or `LLMRL.MCANCEL` (undo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiCorrection<'a> {
    pub keys: &'a [&'a str],
    pub ticket: u64,
    pub input: Usage,
    pub output: Usage,
    /// Per scope, the cost reserved and actually used (cancel: only the reserved one counts).
    pub costs: Vec<Usage>,
}

impl<'a> MultiCorrection<'a> {
    pub const SETTLE: &'static str = "LLMRL.MSETTLE";
    pub const CANCEL: &'static str = "LLMRL.MCANCEL";

    fn keys(&self) -> Vec<Arg<'a>> {
        std::iter::once(Arg::Int(self.keys.len() as u64))
            .chain(self.keys.iter().map(|k| Arg::Text(k)))
            .collect()
    }

    pub fn settle_args(&self) -> Vec<Arg<'a>> {
        let mut args = self.keys();
        args.extend(
            [
                self.ticket,
                self.input.reserved,
                self.input.actual,
                self.output.reserved,
                self.output.actual,
            ]
            .map(Arg::Int),
        );
        if !self.costs.is_empty() {
            args.push(Arg::Text("COSTS"));
            for cost in &self.costs {
                args.extend([Arg::Int(cost.reserved), Arg::Int(cost.actual)]);
            }
        }
        args
    }

    pub fn cancel_args(&self) -> Vec<Arg<'a>> {
        let mut args = self.keys();
        args.extend([self.ticket, self.input.reserved, self.output.reserved].map(Arg::Int));
        if !self.costs.is_empty() {
            args.push(Arg::Text("COSTS"));
            args.extend(self.costs.iter().map(|c| Arg::Int(c.reserved)));
        }
        args
    }
}

/// Fields of the MCHECK / MPEEK reply before the optional `scopes` (with DETAIL).
pub const MULTI_FIELDS: usize = 4 + 2 * REPORTED + 1;

/// The names of those fields, in order (RESP3 clients get a map with these keys): per
/// dimension the least remaining over all scopes, then its reset. Which scope holds it is in
/// the DETAIL breakdown: every integer of a reply costs Redis about 240 instructions, and a
/// pipelined one-scope MCHECK paid a sixth of its time for five indexes no gateway needed.
pub const MULTI_FIELD_NAMES: [&str; MULTI_FIELDS] = [
    "allowed",
    "reason",
    "scope",
    "retry_after_ms",
    "remaining_requests",
    "remaining_input_tokens",
    "remaining_output_tokens",
    "remaining_cost",
    "remaining_concurrency",
    "reset_requests_ms",
    "reset_input_tokens_ms",
    "reset_output_tokens_ms",
    "reset_cost_ms",
    "reset_concurrency_ms",
    "ticket",
];

/// One scope's part of an MCHECK reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeVerdict {
    pub allowed: bool,
    pub reason: Option<Limit>,
    pub retry_after_ms: i64,
    /// Per [`Limit::ALL`] (requests, input, output, cost, concurrency); -1 for unlimited.
    pub remaining: [i64; REPORTED],
    pub reset_ms: [i64; REPORTED],
}

/// The reply of MCHECK / MPEEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiVerdict {
    pub allowed: bool,
    /// What refused (of the refusing scope with the longest wait); `None` when admitted.
    pub reason: Option<Limit>,
    /// That scope's index.
    pub scope: Option<usize>,
    pub retry_after_ms: i64,
    /// Per dimension the least left over every scope (-1: unlimited everywhere)...
    pub remaining: [i64; REPORTED],
    /// ...and that scope's reset.
    pub reset_ms: [i64; REPORTED],
    pub ticket: u64,
    /// Each scope's own figures (only when asked for with DETAIL).
    pub scopes: Vec<ScopeVerdict>,
}

/// A reason's wire name: `ok` (None) or a [`Limit`]'s.
pub fn parse_limit(text: &[u8]) -> Option<Option<Limit>> {
    if text == b"ok" {
        return Some(None);
    }
    Limit::ALL
        .into_iter()
        .find(|l| l.reason().as_bytes() == text)
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tests::texts;

    #[test]
    fn multi_checks_lay_out_what_the_parser_reads() {
        use crate::multi::args::{parse_mcancel, parse_mcheck, parse_msettle, parse_numkeys};
        use crate::period::{Period, PeriodKind};
        let day = Clock::Calendar(Period::new(PeriodKind::Day, -480).unwrap());
        let scopes = [
            ScopeArgs {
                key: "{o}:key",
                clock: Clock::Sliding(60_000),
                limits: ScopeLimits {
                    summed: [10, 1000, 500, 0],
                    concurrency: 2,
                },
                cost_charge: 0,
            },
            ScopeArgs {
                key: "{o}:org",
                clock: day,
                limits: ScopeLimits {
                    summed: [0, 0, 0, 5_000_000],
                    concurrency: 0,
                },
                cost_charge: 1234,
            },
        ];
        let check = MultiCheck {
            scopes: &scopes,
            input_tokens: 100,
            output_tokens: 50,
            lease_ms: Some(30_000),
            detail: true,
        };
        let args = texts(check.args());
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let numkeys = parse_numkeys("x", &bytes).unwrap();
        assert_eq!(&args[1..3], ["{o}:key", "{o}:org"]);
        let parsed = parse_mcheck("x", numkeys, &bytes[1 + numkeys..]).unwrap();
        assert_eq!(parsed.lease_ms, Some(30_000));
        assert!(parsed.detail);
        assert_eq!(parsed.scopes[1].clock, day);
        assert_eq!(parsed.scopes[1].cost, [1, 100, 50, 1234]);
        assert_eq!(parsed.scopes[0].limits, scopes[0].limits);

        let keys = ["{o}:key", "{o}:org"];
        let correction = MultiCorrection {
            keys: &keys,
            ticket: 99,
            input: Usage {
                reserved: 100,
                actual: 80,
            },
            output: Usage {
                reserved: 50,
                actual: 60,
            },
            costs: vec![
                Usage::default(),
                Usage {
                    reserved: 1234,
                    actual: 1300,
                },
            ],
        };
        let args = texts(correction.settle_args());
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let settle = parse_msettle("x", 2, &bytes[3..]).unwrap();
        assert_eq!(settle.reserved[1], [0, 100, 50, 1234]);
        assert_eq!(settle.actual[1], [0, 80, 60, 1300]);
        let args = texts(correction.cancel_args());
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let cancel = parse_mcancel("x", 2, &bytes[3..]).unwrap();
        assert_eq!(cancel.reserved[1], [1, 100, 50, 1234]);
    }
}
