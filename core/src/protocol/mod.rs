//! The `LLMRL.*` command contract as a client sees it: typed requests that lay out a command's
//! arguments, and the typed decoding of its reply. The gateway, the load generator and the tests
//! all speak to the module through this file, and the module's own argument parser
//! ([`crate::args`]) reads the same layout, so a change to the contract is made here once.
//!
//! No Redis client is involved: a request yields [`Arg`]s for whatever client sends it, and a
//! reply is decoded from [`Field`]s, which a client maps its reply values to. The multi-scope
//! commands' side is in [`multi`].

use crate::window::Dimension;
use std::fmt;
use thiserror::Error;

pub mod binary;
pub mod multi;
pub mod packed;
pub use multi::*;

/// The contract's version: what the module reports as its version in `MODULE LIST`, raised
/// whenever a command gains something a client may rely on.
/// - 2 (2026-12-03): `BINARY` on CHECK, PEEK and SETTLE.
/// - 1: everything before, including MCHECK's `BINARY` (2026-12-02).
pub const MODULE_VERSION: i32 = 2;

/// The oldest module version whose commands the gateway's requests use (`BINARY` everywhere).
pub const REQUIRED_MODULE_VERSION: i32 = 2;

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
    Int(u64),
    /// Text, a number, text, as one argument (`60000,60,30000,10000,0,` `2600` `,4`): a packed
    /// scope whose cost differs per request, written straight into the command, not first
    /// into a string of its own.
    Spliced(&'a str, u64, &'a str),
}

/// `LLMRL.CHECK key rpm itpm otpm input_tokens output_tokens [WINDOW ms] [BINARY]`: decide and,
/// if admitted, record one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check<'a> {
    pub key: &'a str,
    pub limits: Limits,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The window of a key this CHECK creates (an existing key must have this window);
    /// `None`: the key's own, or the server's default for a new key.
    pub window_ms: Option<u64>,
    /// Ask for the reply as one string of words ([`Verdict::to_binary`]): cheaper for both
    /// sides than ten array elements.
    pub binary: bool,
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
        .chain(self.binary.then_some(Arg::Text("BINARY")))
    }
}

/// Reserved and actual amounts of one token dimension, for SETTLE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub reserved: u64,
    pub actual: u64,
}

/// `LLMRL.SETTLE key ticket reserved_input actual_input reserved_output actual_output [BINARY]`:
/// correct an admitted request's reservation with what it really used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settle<'a> {
    pub key: &'a str,
    pub ticket: u64,
    pub input: Usage,
    pub output: Usage,
    /// Ask for the reply as one string of words, as [`Check::binary`].
    pub binary: bool,
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
        .chain(self.binary.then_some(Arg::Text("BINARY")))
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
        let [_, _, numbers @ ..] = ints;
        Ok(Verdict::from_numbers(
            allowed,
            reason.unwrap_or(Reason::Ok),
            numbers,
        ))
    }

    /// The fields after `allowed` and the reason, in the reply's order: retry, the three
    /// remaining, the three resets, the ticket.
    pub fn numbers(&self) -> [i64; VERDICT_FIELDS - 2] {
        let [r0, r1, r2] = self.remaining;
        let [s0, s1, s2] = self.reset_ms;
        [self.retry_after_ms, r0, r1, r2, s0, s1, s2, self.ticket]
    }

    /// The verdict whose [`Verdict::numbers`] these are.
    pub fn from_numbers(allowed: bool, reason: Reason, numbers: [i64; VERDICT_FIELDS - 2]) -> Self {
        let [retry_after_ms, r0, r1, r2, s0, s1, s2, ticket] = numbers;
        Verdict {
            allowed,
            reason,
            retry_after_ms,
            remaining: [r0, r1, r2],
            reset_ms: [s0, s1, s2],
            ticket,
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A command's arguments as the text a client sends (the multi-scope tests use it too).
    pub(crate) fn texts<'a>(args: impl IntoIterator<Item = Arg<'a>>) -> Vec<String> {
        args.into_iter()
            .map(|arg| match arg {
                Arg::Text(text) => text.to_string(),
                Arg::Int(n) => n.to_string(),
                Arg::Spliced(head, n, tail) => format!("{head}{n}{tail}"),
            })
            .collect()
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
            binary: false,
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
        assert!(!parsed.binary);
        let no_window = Check {
            window_ms: None,
            ..check
        };
        assert_eq!(texts(no_window.args()).len(), 6);
        let binary = texts(
            Check {
                binary: true,
                ..check
            }
            .args(),
        );
        assert_eq!(binary.last().map(String::as_str), Some("BINARY"));
        let bytes: Vec<&[u8]> = binary[1..].iter().map(|a| a.as_bytes()).collect();
        let parsed = crate::args::parse_check(&bytes).unwrap();
        assert_eq!((parsed.window_ms, parsed.binary), (Some(600), true));

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
            binary: true,
        };
        assert!(settle.changes_anything());
        let args = texts(settle.args());
        let bytes: Vec<&[u8]> = args[1..].iter().map(|a| a.as_bytes()).collect();
        let parsed = crate::args::parse_settle(&bytes).unwrap();
        assert_eq!(
            (parsed.ticket, parsed.reserved, parsed.actual, parsed.binary),
            (1000, [10, 20], [5, 25], true)
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
