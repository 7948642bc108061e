//! The `LLMRL.*` command contract as a client sees it: typed requests that lay out a command's
//! arguments, and the typed decoding of its reply. The gateway, the load generator and the tests
//! all speak to the module through this file, and the module's own argument parser
//! ([`crate::args`]) reads the same layout, so a change to the contract is made here once.
//!
//! No Redis client is involved: a request yields [`Arg`]s for whatever client sends it, and a
//! reply is decoded from [`Field`]s, which a client maps its reply values to.

use crate::scope::{Clock, Limit, ScopeLimits, REPORTED};
use crate::window::Dimension;
use std::fmt;
use thiserror::Error;

/// Limits of one scope, per window; 0 means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    pub rpm: u64,
    pub itpm: u64,
    pub otpm: u64,
}

impl Limits {
    /// Requests, input tokens, output tokens: the order of every per-dimension field.
    pub fn as_array(self) -> [u64; 3] {
        [self.rpm, self.itpm, self.otpm]
    }

    /// The limit of one of CHECK's dimensions (0, unlimited, for any other).
    pub fn get(self, dimension: Dimension) -> u64 {
        self.as_array()
            .get(dimension as usize)
            .copied()
            .unwrap_or(0)
    }
}

/// One argument of a command, for the client to encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg<'a> {
    Text(&'a str),
    Owned(String),
    Int(u64),
}

/// `LLMRL.CHECK key rpm itpm otpm input_tokens output_tokens [WINDOW ms]`: decide and, if
/// admitted, record one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check<'a> {
    pub key: &'a str,
    pub limits: Limits,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The window of a key this CHECK creates (an existing key must have this window);
    /// `None`: the key's own, or the server's default for a new key.
    pub window_ms: Option<u64>,
}

impl<'a> Check<'a> {
    pub const NAME: &'static str = "LLMRL.CHECK";

    /// The arguments after the command name.
    pub fn args(&self) -> impl Iterator<Item = Arg<'a>> {
        let window = self.window_ms.map(|ms| [Arg::Text("WINDOW"), Arg::Int(ms)]);
        [
            Arg::Text(self.key),
            Arg::Int(self.limits.rpm),
            Arg::Int(self.limits.itpm),
            Arg::Int(self.limits.otpm),
            Arg::Int(self.input_tokens),
            Arg::Int(self.output_tokens),
        ]
        .into_iter()
        .chain(window.into_iter().flatten())
    }
}

/// Reserved and actual amounts of one token dimension, for SETTLE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub reserved: u64,
    pub actual: u64,
}

/// `LLMRL.SETTLE key ticket reserved_input actual_input reserved_output actual_output`: correct an
/// admitted request's reservation with what it really used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settle<'a> {
    pub key: &'a str,
    pub ticket: u64,
    pub input: Usage,
    pub output: Usage,
}

impl<'a> Settle<'a> {
    pub const NAME: &'static str = "LLMRL.SETTLE";

    /// Whether sending it would change anything (SETTLE of an exact reservation is a no-op).
    pub fn changes_anything(&self) -> bool {
        self.ticket != 0
            && (self.input.reserved != self.input.actual
                || self.output.reserved != self.output.actual)
    }

    pub fn args(&self) -> impl Iterator<Item = Arg<'a>> {
        [
            Arg::Text(self.key),
            Arg::Int(self.ticket),
            Arg::Int(self.input.reserved),
            Arg::Int(self.input.actual),
            Arg::Int(self.output.reserved),
            Arg::Int(self.output.actual),
        ]
        .into_iter()
    }
}

/// Why a request was refused, or `Ok`: the reply's second field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Ok,
    Denied(Dimension),
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Denied(dimension) => dimension.reason(),
        }
    }

    pub fn parse(text: &[u8]) -> Option<Reason> {
        if text == b"ok" {
            return Some(Reason::Ok);
        }
        Dimension::ALL
            .into_iter()
            .find(|d| d.reason().as_bytes() == text)
            .map(Reason::Denied)
    }

    /// The refusing dimension; `None` when admitted.
    pub fn dimension(self) -> Option<Dimension> {
        match self {
            Reason::Ok => None,
            Reason::Denied(dimension) => Some(dimension),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One value of a reply, as a client read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<'a> {
    Int(i64),
    Text(&'a [u8]),
    /// Anything else (nil, a nested array, ...): always a contract violation here.
    Other,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReplyError {
    #[error("the reply is not an array")]
    NotAnArray,
    #[error("the reply has {0} fields, not {VERDICT_FIELDS}")]
    FieldCount(usize),
    #[error("reply field {index} ({name}) is not {expected}")]
    Field {
        index: usize,
        name: &'static str,
        expected: &'static str,
    },
}

/// Fields of the CHECK / PEEK / SETTLE reply, in order.
pub const VERDICT_FIELDS: usize = 10;

/// The names of the reply's fields (RESP3 clients get a map with these keys).
pub const VERDICT_FIELD_NAMES: [&str; VERDICT_FIELDS] = [
    "allowed",
    "reason",
    "retry_after_ms",
    "remaining_requests",
    "remaining_input_tokens",
    "remaining_output_tokens",
    "reset_requests_ms",
    "reset_input_tokens_ms",
    "reset_output_tokens_ms",
    "ticket",
];

/// The reply of CHECK, PEEK and SETTLE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub reason: Reason,
    /// 0 when allowed; the exact wait in ms when denied; -1 when the request can never fit.
    pub retry_after_ms: i64,
    /// Requests, input tokens, output tokens left after the decision; -1 for unlimited.
    pub remaining: [i64; 3],
    /// Ms until each dimension's usage is fully replenished.
    pub reset_ms: [i64; 3],
    /// The charged bucket, for SETTLE; 0 when denied.
    pub ticket: i64,
}

impl Verdict {
    /// Decode the positional (RESP2) reply, checking every field's type and range.
    pub fn decode<'a>(fields: impl IntoIterator<Item = Field<'a>>) -> Result<Verdict, ReplyError> {
        let mut ints = [0i64; VERDICT_FIELDS];
        let mut reason = None;
        let mut count = 0;
        for (index, field) in fields.into_iter().enumerate() {
            count += 1;
            let Some(name) = VERDICT_FIELD_NAMES.get(index).copied() else {
                continue;
            };
            let wrong = |expected| ReplyError::Field {
                index,
                name,
                expected,
            };
            match (index, field) {
                (1, Field::Text(text)) => {
                    reason = Some(Reason::parse(text).ok_or(wrong("a known reason"))?)
                }
                (1, _) => return Err(wrong("a string")),
                (_, Field::Int(n)) => {
                    if let Some(slot) = ints.get_mut(index) {
                        *slot = n;
                    }
                }
                _ => return Err(wrong("an integer")),
            }
        }
        if count != VERDICT_FIELDS {
            return Err(ReplyError::FieldCount(count));
        }
        let allowed = match ints[0] {
            0 => false,
            1 => true,
            _ => {
                return Err(ReplyError::Field {
                    index: 0,
                    name: "allowed",
                    expected: "0 or 1",
                })
            }
        };
        Ok(Verdict {
            allowed,
            reason: reason.unwrap_or(Reason::Ok),
            retry_after_ms: ints[2],
            remaining: [ints[3], ints[4], ints[5]],
            reset_ms: [ints[6], ints[7], ints[8]],
            ticket: ints[9],
        })
    }

    /// What is left of one dimension; `None` when it is unlimited.
    pub fn remaining(&self, dimension: Dimension) -> Option<u64> {
        let remaining = self.remaining.get(dimension as usize)?;
        u64::try_from(*remaining).ok()
    }

    /// Denied because the request's own cost exceeds a limit: retrying cannot help.
    pub fn too_large(&self) -> bool {
        !self.allowed && self.retry_after_ms < 0
    }
}

/// One scope of an MCHECK: its key, clock, limits (0: unlimited) and what this request costs in
/// its fourth dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeArgs<'a> {
    pub key: &'a str,
    pub clock: Clock,
    pub limits: ScopeLimits,
    pub cost_charge: u64,
}

/// The text form of a clock: ms, or a period (`day:-480`).
fn clock_arg(clock: Clock) -> Arg<'static> {
    match clock {
        Clock::Sliding(window_ms) => Arg::Int(window_ms),
        Clock::Calendar(period) => Arg::Owned(period.name()),
    }
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
        for scope in self.scopes {
            let [rpm, itpm, otpm, cost_limit] = scope.limits.summed;
            args.push(clock_arg(scope.clock));
            args.extend([rpm, itpm, otpm, cost_limit, scope.cost_charge].map(Arg::Int));
            args.push(Arg::Int(scope.limits.concurrency));
        }
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
    /// ...its reset...
    pub reset_ms: [i64; REPORTED],
    /// ...and the scope it is in (-1: none).
    pub binding: [i64; REPORTED],
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

    fn texts<'a>(args: impl IntoIterator<Item = Arg<'a>>) -> Vec<String> {
        args.into_iter()
            .map(|arg| match arg {
                Arg::Text(text) => text.to_string(),
                Arg::Owned(text) => text,
                Arg::Int(n) => n.to_string(),
            })
            .collect()
    }

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

    #[test]
    fn requests_lay_out_what_the_parser_reads() {
        let check = Check {
            key: "k",
            limits: Limits {
                rpm: 10,
                itpm: 1000,
                otpm: 500,
            },
            input_tokens: 20,
            output_tokens: 30,
            window_ms: Some(600),
        };
        let args = texts(check.args());
        assert_eq!(
            args,
            ["k", "10", "1000", "500", "20", "30", "WINDOW", "600"]
        );
        let bytes: Vec<&[u8]> = args[1..].iter().map(|a| a.as_bytes()).collect();
        let parsed = crate::args::parse_check(&bytes).unwrap();
        assert_eq!(parsed.limits, check.limits.as_array());
        assert_eq!(parsed.cost, [1, 20, 30]);
        assert_eq!(parsed.window_ms, Some(600));
        let no_window = Check {
            window_ms: None,
            ..check
        };
        assert_eq!(texts(no_window.args()).len(), 6);

        let settle = Settle {
            key: "k",
            ticket: 1000,
            input: Usage {
                reserved: 10,
                actual: 5,
            },
            output: Usage {
                reserved: 20,
                actual: 25,
            },
        };
        assert!(settle.changes_anything());
        let args = texts(settle.args());
        let bytes: Vec<&[u8]> = args[1..].iter().map(|a| a.as_bytes()).collect();
        let parsed = crate::args::parse_settle(&bytes).unwrap();
        assert_eq!(
            (parsed.ticket, parsed.reserved, parsed.actual),
            (1000, [10, 20], [5, 25])
        );
        let exact = Settle {
            input: Usage {
                reserved: 3,
                actual: 3,
            },
            output: Usage::default(),
            ..settle
        };
        assert!(!exact.changes_anything());
    }

    fn reply(reason: &'static [u8], ints: [i64; 9]) -> Vec<Field<'static>> {
        let mut fields: Vec<Field> = ints.iter().map(|&n| Field::Int(n)).collect();
        fields.insert(1, Field::Text(reason));
        fields
    }

    #[test]
    fn replies_decode_strictly() {
        let verdict = Verdict::decode(reply(b"itpm", [0, -1, 2, 0, -1, 6, 7, 8, 0])).unwrap();
        assert!(!verdict.allowed && verdict.too_large());
        assert_eq!(verdict.reason, Reason::Denied(Dimension::InputTokens));
        assert_eq!(verdict.reason, "itpm");
        assert_eq!(verdict.remaining(Dimension::Requests), Some(2));
        assert_eq!(verdict.remaining(Dimension::OutputTokens), None);
        assert_eq!(verdict.reset_ms, [6, 7, 8]);
        let ok = Verdict::decode(reply(b"ok", [1, 0, 1, 2, 3, 4, 5, 6, 9000])).unwrap();
        assert!(ok.allowed && !ok.too_large());
        assert_eq!((ok.reason.as_str(), ok.ticket), ("ok", 9000));

        let mut short = reply(b"ok", [1; 9]);
        short.pop();
        assert_eq!(Verdict::decode(short), Err(ReplyError::FieldCount(9)));
        let mut long = reply(b"ok", [1; 9]);
        long.push(Field::Int(0));
        assert_eq!(Verdict::decode(long), Err(ReplyError::FieldCount(11)));
        assert!(Verdict::decode(reply(b"maybe", [1; 9])).is_err());
        assert!(Verdict::decode(reply(b"ok", [2, 0, 0, 0, 0, 0, 0, 0, 0])).is_err());
        let mut wrong_type = reply(b"ok", [1; 9]);
        wrong_type[4] = Field::Other;
        assert!(matches!(
            Verdict::decode(wrong_type),
            Err(ReplyError::Field { index: 4, .. })
        ));
    }
}
