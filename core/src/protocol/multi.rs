//! The multi-scope commands as a client sees them: MCHECK/MPEEK arguments, MSETTLE/MCANCEL
//! arguments, and the typed reply (decoded by `redis_client::multi_verdict`).

use super::packed::{Fields, PackedWriter, NUMBER_MAX};
use super::{Arg, ReplyError, Usage};
pub use crate::multi::args::Detail;
use crate::scope::{Clock, Limit, ScopeLimits, REPORTED};

/// One scope of an MCHECK: its key, its clock and limits as sent, and what this request costs
/// in its fourth dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeArgs<'a> {
    pub key: &'a str,
    pub scope: &'a PackedScope,
    pub cost_charge: u64,
}

/// A scope's clock and limits as MCHECK takes them, written once (a gateway builds them per
/// keys-file load): of the seven values packed in one argument, `window,rpm,itpm,otpm,
/// cost_limit,cost_charge,concurrency` (the window in ms or a period, `day:-480`), only the cost
/// differs between requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedScope {
    /// `window,rpm,itpm,otpm,cost_limit,`
    head: String,
    /// `,concurrency`
    tail: String,
}

impl PackedScope {
    pub fn new(clock: Clock, limits: ScopeLimits) -> PackedScope {
        let [rpm, itpm, otpm, cost_limit] = limits.summed;
        let window = match clock {
            Clock::Sliding(window_ms) => window_ms.to_string(),
            Clock::Calendar(period) => period.name(),
        };
        PackedScope {
            head: format!("{window},{rpm},{itpm},{otpm},{cost_limit},"),
            tail: format!(",{}", limits.concurrency),
        }
    }

    /// The argument for a request costing `cost_charge`.
    fn arg(&self, cost_charge: u64) -> Arg<'_> {
        Arg::Spliced(&self.head, cost_charge, &self.tail)
    }
}

fn keys<'a>(scopes: &'a [ScopeArgs<'a>]) -> impl Iterator<Item = Arg<'a>> {
    std::iter::once(Arg::Int(scopes.len() as u64)).chain(scopes.iter().map(|s| Arg::Text(s.key)))
}

/// `LLMRL.MCHECK numkeys key... input_tokens output_tokens [LEASE ms] [DETAIL | PACKED | BINARY]
/// scope...`
/// (or MPEEK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiCheck<'a> {
    pub scopes: &'a [ScopeArgs<'a>],
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub lease_ms: Option<u64>,
    /// Ask for each scope's own figures too (a longer reply), and in which form.
    pub detail: Detail,
}

impl<'a> MultiCheck<'a> {
    pub const NAME: &'static str = "LLMRL.MCHECK";
    pub const PEEK: &'static str = "LLMRL.MPEEK";

    pub fn args(&self) -> Vec<Arg<'a>> {
        // numkeys, the keys, two token counts, LEASE ms, the detail, the scopes: the shortest
        // form (`PACKED` for `DETAIL PACKED`, `BINARY` for `DETAIL BINARY`, no `SCOPES`), since
        // each argument costs Redis a string object to make and free.
        let mut args: Vec<Arg<'a>> = Vec::with_capacity(2 * self.scopes.len() + 6);
        args.extend(keys(self.scopes));
        args.push(Arg::Int(self.input_tokens));
        args.push(Arg::Int(self.output_tokens));
        if let Some(ms) = self.lease_ms {
            args.extend([Arg::Text("LEASE"), Arg::Int(ms)]);
        }
        match self.detail {
            Detail::Off => {}
            Detail::Nested => args.push(Arg::Text("DETAIL")),
            Detail::Packed => args.push(Arg::Text("PACKED")),
            Detail::Binary => args.push(Arg::Text("BINARY")),
        }
        args.extend(
            self.scopes
                .iter()
                .map(|scope| scope.scope.arg(scope.cost_charge)),
        );
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

/// Values of a packed scope figure string: `allowed,reason,retry_after_ms`, then the five
/// remaining figures and the five resets.
pub const PACKED_FIGURES: usize = 3 + 2 * REPORTED;

/// A scope's figures after `allowed` and `reason`, in the reply's order.
pub type ScopeNumbers = [i64; PACKED_FIGURES - 2];

impl ScopeVerdict {
    /// `retry_after_ms`, the five remaining figures, the five resets: the order of every form.
    pub fn numbers(&self) -> ScopeNumbers {
        let [r0, r1, r2, r3, r4] = self.remaining;
        let [t0, t1, t2, t3, t4] = self.reset_ms;
        [self.retry_after_ms, r0, r1, r2, r3, r4, t0, t1, t2, t3, t4]
    }

    /// The scope whose [`ScopeVerdict::numbers`] these are.
    pub fn from_numbers(allowed: bool, reason: Option<Limit>, numbers: ScopeNumbers) -> Self {
        let [retry_after_ms, r0, r1, r2, r3, r4, t0, t1, t2, t3, t4] = numbers;
        ScopeVerdict {
            allowed,
            reason,
            retry_after_ms,
            remaining: [r0, r1, r2, r3, r4],
            reset_ms: [t0, t1, t2, t3, t4],
        }
    }

    /// Append `1,ok,0,59,-1,-1,-1,-1,1000,0,0,0,0`: the order of the nested form, flattened.
    pub fn pack_into(&self, out: &mut PackedWriter) {
        pack_fields(out, self.allowed, self.reason, &self.numbers());
    }

    /// The figures [`ScopeVerdict::pack_into`] wrote.
    pub fn unpack(packed: &[u8]) -> Result<ScopeVerdict, ReplyError> {
        let (allowed, reason, numbers) = unpack_fields(packed, |_| "scopes")?;
        Ok(ScopeVerdict::from_numbers(allowed, reason, numbers))
    }
}

/// `allowed,reason`, then `numbers`, comma-separated: what [`unpack_fields`] reads.
fn pack_fields(out: &mut PackedWriter, allowed: bool, reason: Option<Limit>, numbers: &[i64]) {
    out.bytes(if allowed { b"1," } else { b"0," });
    out.bytes(reason.map_or("ok", Limit::reason).as_bytes());
    for value in numbers {
        out.field(*value);
    }
}

/// A packed string's leading `allowed,reason` and exactly `N` integers after them (`name` says
/// which field an error is about).
fn unpack_fields<const N: usize>(
    packed: &[u8],
    name: impl Fn(usize) -> &'static str,
) -> Result<(bool, Option<Limit>, [i64; N]), ReplyError> {
    let wrong = |index: usize, expected: &'static str| ReplyError::Field {
        index,
        name: name(index),
        expected,
    };
    let mut fields = Fields::new(packed);
    let allowed = match fields.text() {
        Some(b"1") => true,
        Some(b"0") => false,
        _ => return Err(wrong(0, "0 or 1")),
    };
    let reason = fields
        .text()
        .and_then(parse_limit)
        .ok_or_else(|| wrong(1, "a known reason"))?;
    let mut numbers = [0i64; N];
    for (index, slot) in numbers.iter_mut().enumerate() {
        *slot = fields
            .integer()
            .ok_or_else(|| wrong(2 + index, "an integer"))?;
    }
    if !fields.at_end() {
        return Err(wrong(2 + N, "the end"));
    }
    Ok((allowed, reason, numbers))
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

/// Values of a packed reply's head: the fifteen fields of [`MULTI_FIELD_NAMES`].
const PACKED_HEAD_FIELDS: usize = MULTI_FIELDS;

/// The head's fields after `allowed` and `reason`, in the reply's order.
pub type HeadNumbers = [i64; MULTI_FIELDS - 2];

/// The longest reason name (`concurrency`).
const REASON_MAX: usize = 11;

/// The most bytes a packed reply with `scopes` scopes takes, with the room [`PackedWriter`]
/// needs to spare: a buffer this long always holds it.
pub const fn packed_len_max(scopes: usize) -> usize {
    let head = 2 + REASON_MAX + (PACKED_HEAD_FIELDS - 2) * (1 + NUMBER_MAX);
    let scope = 1 + 2 + REASON_MAX + (PACKED_FIGURES - 2) * (1 + NUMBER_MAX);
    head + scopes * scope + NUMBER_MAX
}

impl MultiVerdict {
    /// The reply with `DETAIL PACKED`: one string, the fifteen fields of [`MULTI_FIELD_NAMES`]
    /// comma-separated (the scope -1 when none decided), then for each scope `;` and its packed
    /// figures ([`ScopeVerdict::pack_into`]):
    /// `1,ok,-1,0,59,-1,-1,-1,-1,60000,0,0,0,0,113517...;1,ok,0,59,-1,-1,-1,-1,60000,0,0,0,0`.
    /// A reply element costs Redis a write and every client a parse; this is one.
    pub fn pack(&self) -> Vec<u8> {
        let mut out = vec![0u8; packed_len_max(self.scopes.len())];
        let mut writer = PackedWriter::new(&mut out);
        self.pack_head(&mut writer);
        for scope in &self.scopes {
            MultiVerdict::pack_scope(&mut writer, scope);
        }
        // Sized for the longest reply: never short.
        let len = writer.finish().map_or(0, <[u8]>::len);
        out.truncate(len);
        out
    }

    /// The head's fields after `allowed` and `reason`, in the reply's order: the deciding
    /// scope (-1 for none), `retry_after_ms`, the five least remaining, their resets, `ticket`.
    pub fn head_numbers(&self) -> HeadNumbers {
        let scope = self
            .scope
            .map_or(-1, |i| i64::try_from(i).unwrap_or(i64::MAX));
        let ticket = i64::try_from(self.ticket).unwrap_or(i64::MAX);
        let [r0, r1, r2, r3, r4] = self.remaining;
        let [t0, t1, t2, t3, t4] = self.reset_ms;
        [
            scope,
            self.retry_after_ms,
            r0,
            r1,
            r2,
            r3,
            r4,
            t0,
            t1,
            t2,
            t3,
            t4,
            ticket,
        ]
    }

    /// The verdict whose [`MultiVerdict::head_numbers`] these are, with `scopes`; a negative
    /// ticket is an error.
    pub fn from_head(
        allowed: bool,
        reason: Option<Limit>,
        numbers: HeadNumbers,
        scopes: Vec<ScopeVerdict>,
    ) -> Result<MultiVerdict, ReplyError> {
        let [scope, retry_after_ms, r0, r1, r2, r3, r4, t0, t1, t2, t3, t4, ticket] = numbers;
        Ok(MultiVerdict {
            allowed,
            reason,
            scope: usize::try_from(scope).ok(),
            retry_after_ms,
            remaining: [r0, r1, r2, r3, r4],
            reset_ms: [t0, t1, t2, t3, t4],
            ticket: u64::try_from(ticket).map_err(|_| ReplyError::Field {
                index: PACKED_HEAD_FIELDS - 1,
                name: "ticket",
                expected: "a ticket",
            })?,
            scopes,
        })
    }

    /// The head of [`MultiVerdict::pack`] (the scopes are left to the caller).
    pub fn pack_head(&self, out: &mut PackedWriter) {
        pack_fields(out, self.allowed, self.reason, &self.head_numbers());
    }

    /// Append one scope of [`MultiVerdict::pack`] after its head or the scope before it.
    pub fn pack_scope(out: &mut PackedWriter, scope: &ScopeVerdict) {
        out.byte(b';');
        scope.pack_into(out);
    }

    /// The reply [`MultiVerdict::pack`] wrote; anything else is an error.
    pub fn unpack(packed: &[u8]) -> Result<MultiVerdict, ReplyError> {
        let name = |index: usize| MULTI_FIELD_NAMES.get(index).copied().unwrap_or("scopes");
        let mut parts = packed.split(|byte| *byte == b';');
        let head = parts.next().unwrap_or_default();
        let (allowed, reason, numbers) = unpack_fields::<{ PACKED_HEAD_FIELDS - 2 }>(head, name)?;
        let scopes = parts.map(ScopeVerdict::unpack).collect::<Result<_, _>>()?;
        MultiVerdict::from_head(allowed, reason, numbers, scopes)
    }
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
pub(crate) mod tests {
    use super::*;

    proptest::proptest! {
        /// Packed figures read back as they were, whatever the numbers.
        #[test]
        fn packed_figures_round_trip(verdict in verdict_strategy()) {
            let mut out = vec![0u8; packed_len_max(1)];
            let mut writer = PackedWriter::new(&mut out);
            verdict.pack_into(&mut writer);
            let packed = writer.finish().unwrap_or_default();
            proptest::prop_assert_eq!(ScopeVerdict::unpack(packed), Ok(verdict));
        }
    }

    /// Any reply: its head, any deciding scope and ticket, up to eight scopes.
    pub(crate) fn multi_verdict_strategy() -> impl proptest::strategy::Strategy<Value = MultiVerdict>
    {
        use proptest::prelude::*;
        (
            verdict_strategy(),
            proptest::option::of(0usize..64),
            0u64..=i64::MAX as u64,
            proptest::collection::vec(verdict_strategy(), 0..8),
        )
            .prop_map(|(head, scope, ticket, scopes)| MultiVerdict {
                allowed: head.allowed,
                reason: head.reason,
                scope,
                retry_after_ms: head.retry_after_ms,
                remaining: head.remaining,
                reset_ms: head.reset_ms,
                ticket,
                scopes,
            })
    }

    /// Any scope's figures (the reason any or none).
    pub(crate) fn verdict_strategy() -> impl proptest::strategy::Strategy<Value = ScopeVerdict> {
        use proptest::prelude::*;
        (
            any::<bool>(),
            0usize..=REPORTED,
            any::<i64>(),
            any::<[i64; REPORTED]>(),
            any::<[i64; REPORTED]>(),
        )
            .prop_map(|(allowed, reason, retry_after_ms, remaining, reset_ms)| {
                ScopeVerdict {
                    allowed,
                    reason: Limit::ALL.get(reason).copied(),
                    retry_after_ms,
                    remaining,
                    reset_ms,
                }
            })
    }

    proptest::proptest! {
        /// A packed reply reads back as it was, with any number of scopes (none without DETAIL).
        #[test]
        fn packed_replies_round_trip(verdict in multi_verdict_strategy()) {
            proptest::prop_assert_eq!(MultiVerdict::unpack(&verdict.pack()), Ok(verdict));
        }
    }

    #[test]
    fn packed_replies_are_strict() {
        let head = "1,ok,-1,0,59,-1,-1,-1,-1,60000,0,0,0,0,7";
        let scope = "1,ok,0,59,-1,-1,-1,-1,60000,0,0,0,0";
        let good = format!("{head};{scope};{scope}");
        let verdict = MultiVerdict::unpack(good.as_bytes()).unwrap();
        assert_eq!(
            (verdict.scope, verdict.ticket, verdict.scopes.len()),
            (None, 7, 2)
        );
        assert_eq!(verdict.remaining[0], 59);
        assert_eq!(MultiVerdict::unpack(head.as_bytes()).unwrap().scopes, []);
        for bad in [
            String::new(),
            head.replace(",7", ""),
            format!("{head},8"),
            head.replace("1,ok,-1", "1,ok,x"),
            head.replace(",7", ",-7"),
            format!("{head};"),
            format!("{head};{scope},0"),
            format!("{head};;{scope}"),
        ] {
            assert!(MultiVerdict::unpack(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_longest_packed_reply_fits_its_bound() {
        assert!(Limit::ALL.iter().all(|l| l.reason().len() <= REASON_MAX));
        let longest = ScopeVerdict {
            allowed: false,
            reason: Some(Limit::Concurrency),
            retry_after_ms: i64::MIN,
            remaining: [i64::MIN; REPORTED],
            reset_ms: [i64::MIN; REPORTED],
        };
        for scopes in [0, 1, 5, 64] {
            let verdict = MultiVerdict {
                allowed: false,
                reason: Some(Limit::Concurrency),
                scope: Some(usize::MAX),
                retry_after_ms: i64::MIN,
                remaining: [i64::MIN; REPORTED],
                reset_ms: [i64::MIN; REPORTED],
                ticket: u64::MAX,
                scopes: vec![longest.clone(); scopes],
            };
            let packed = verdict.pack();
            assert!(packed.len() + NUMBER_MAX <= packed_len_max(scopes));
            let read = MultiVerdict::unpack(&packed).unwrap();
            assert_eq!(read.scopes, verdict.scopes);
            assert_eq!(read.ticket, i64::MAX as u64, "tickets are written as i64");
        }
    }

    #[test]
    fn packed_figures_are_strict() {
        let good = b"1,ok,0,59,-1,-1,-1,-1,1000,0,0,0,0";
        assert!(ScopeVerdict::unpack(good).is_ok());
        for bad in [
            &b""[..],
            b"1,ok,0,59,-1,-1,-1,-1,1000,0,0,0",
            b"1,ok,0,59,-1,-1,-1,-1,1000,0,0,0,0,",
            b"1,ok,0,59,-1,-1,-1,-1,1000,0,0,0,0,7",
            b"2,ok,0,59,-1,-1,-1,-1,1000,0,0,0,0",
            b"1,rpd,0,59,-1,-1,-1,-1,1000,0,0,0,0",
            b"1,ok,0,5x,-1,-1,-1,-1,1000,0,0,0,0",
        ] {
            assert!(ScopeVerdict::unpack(bad).is_err(), "{bad:?}");
        }
    }
    use crate::protocol::tests::texts;

    #[test]
    fn multi_checks_lay_out_what_the_parser_reads() {
        use crate::multi::args::{parse_mcancel, parse_mcheck, parse_msettle, parse_numkeys};
        use crate::period::{Period, PeriodKind};
        let day = Clock::Calendar(Period::new(PeriodKind::Day, -480).unwrap());
        let (minute_limits, budget_limits) = (
            ScopeLimits {
                summed: [10, 1000, 500, 0],
                concurrency: 2,
            },
            ScopeLimits {
                summed: [0, 0, 0, 5_000_000],
                concurrency: 0,
            },
        );
        let minute = PackedScope::new(Clock::Sliding(60_000), minute_limits);
        let budget = PackedScope::new(day, budget_limits);
        let scopes = [
            ScopeArgs {
                key: "{o}:key",
                scope: &minute,
                cost_charge: 0,
            },
            ScopeArgs {
                key: "{o}:org",
                scope: &budget,
                cost_charge: 1234,
            },
        ];
        let check = MultiCheck {
            scopes: &scopes,
            input_tokens: 100,
            output_tokens: 50,
            lease_ms: Some(30_000),
            detail: Detail::Packed,
        };
        let args = texts(check.args());
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let numkeys = parse_numkeys("x", &bytes).unwrap();
        assert_eq!(&args[1..3], ["{o}:key", "{o}:org"]);
        let parsed = parse_mcheck("x", numkeys, &bytes[1 + numkeys..]).unwrap();
        assert_eq!(parsed.lease_ms, Some(30_000));
        assert_eq!(parsed.detail, Detail::Packed);
        assert_eq!(parsed.scopes[1].clock, day);
        assert_eq!(parsed.scopes[1].cost, [1, 100, 50, 1234]);
        assert_eq!(parsed.scopes[0].limits, minute_limits);
        assert_eq!(parsed.scopes[0].cost, [1, 100, 50, 0]);
        assert_eq!(parsed.scopes[1].limits, budget_limits);

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
