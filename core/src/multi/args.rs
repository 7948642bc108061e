//! Arguments of the multi-scope commands, free of Redis types so they can be tested and fuzzed.
//! Every command starts `numkeys key [key ...]`; `args` here are the arguments after the keys.
//!
//! - `LLMRL.MCHECK numkeys key... input_tokens output_tokens [LEASE ms] [DETAIL [PACKED] |
//!   PACKED] [SCOPES] {window rpm itpm otpm cost_limit cost_charge concurrency} × numkeys` —
//!   each scope's seven values as seven arguments, or packed in one, comma-separated
//!   (`60000,60,30000,10000,0,0,4`): every argument costs Redis a string object to create and
//!   free, about as much as a scope's whole decision.
//! - `LLMRL.MPEEK` — the same arguments; decides, records nothing.
//! - `LLMRL.MSETTLE numkeys key... ticket reserved_input actual_input reserved_output
//!   actual_output [COSTS {reserved_cost actual_cost} × numkeys]`
//! - `LLMRL.MCANCEL numkeys key... ticket input_tokens output_tokens [COSTS {cost} × numkeys]`
//!
//! A `window` is ms (a positive multiple of 60) or a calendar period: `day`, `week` or `month`,
//! optionally `:<UTC offset in minutes>` (`day:-480`).

use super::{PerScope, ScopeRequest, MAX_SCOPES};
use crate::args::parse_u64;
use crate::error::CommandError;
use crate::period::Period;
use crate::scope::{Clock, ScopeLimits, SUMMED};
use crate::window::{validate_window, Amounts};

/// Values per scope after `SCOPES`.
pub const SCOPE_VALUES: usize = 7;

/// `numkeys`: how many keys follow (at least 1, at most [`MAX_SCOPES`]) and how many arguments
/// remain after them.
pub fn parse_numkeys(command: &'static str, args: &[&[u8]]) -> Result<usize, CommandError> {
    let first = args.first().ok_or(CommandError::WrongArity(command))?;
    let numkeys = parse_u64(first, "numkeys")?;
    if numkeys == 0 || numkeys > MAX_SCOPES as u64 {
        return Err(CommandError::NumKeys(MAX_SCOPES));
    }
    let numkeys = numkeys as usize;
    if args.len() < 1 + numkeys {
        return Err(CommandError::WrongArity(command));
    }
    Ok(numkeys)
}

fn parse_clock(bytes: &[u8]) -> Result<Clock, CommandError> {
    if bytes.first().is_some_and(u8::is_ascii_digit) {
        let ms = parse_u64(bytes, "window")?;
        return Ok(Clock::Sliding(validate_window(ms)?));
    }
    Period::parse(bytes)
        .map(Clock::Calendar)
        .map_err(|_| CommandError::InvalidClock)
}

/// How the reply gives each scope's own figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// Not at all: the least remaining over all scopes is the reply.
    #[default]
    Off,
    /// `DETAIL`: per scope an array of its figures (a map for RESP3 clients).
    Nested,
    /// `DETAIL PACKED` or `PACKED`: the whole reply as one string, the fields comma-separated
    /// and each scope's thirteen figures after a `;` ([`crate::protocol::MultiVerdict::pack`])
    /// — a reply element costs Redis a write and every client a parse, and a five-scope reply
    /// with its nested figures has ninety-six of them.
    Packed,
    /// `DETAIL BINARY` or `BINARY`: the whole reply as one string of little-endian 64-bit
    /// words, in the packed form's order ([`crate::protocol::binary`]) — what a gateway asks
    /// for: nothing to format for Redis, nothing to parse for the client.
    Binary,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct MultiCheckArgs {
    pub lease_ms: Option<u64>,
    /// Whether and how to reply with each scope's own figures too.
    pub detail: Detail,
    pub scopes: PerScope<ScopeRequest>,
}

/// MCHECK's (and MPEEK's) arguments after the keys.
pub fn parse_mcheck(
    command: &'static str,
    numkeys: usize,
    args: &[&[u8]],
) -> Result<MultiCheckArgs, CommandError> {
    let mut parsed = MultiCheckArgs::default();
    parse_mcheck_into(command, numkeys, args, &mut parsed)?;
    Ok(parsed)
}

/// MCHECK's options, in any order, each at most once: `LEASE ms`, `DETAIL`, `DETAIL PACKED` or
/// `PACKED` (the same as `DETAIL PACKED`), `DETAIL BINARY` or `BINARY`, then `SCOPES` if given (it may be left out: a scope
/// starts with its window, a number or a period's name, never an option's keyword, and every
/// argument costs Redis a string object to make and free). Returns the options and the scopes'
/// values.
fn parse_options<'a, 'b>(
    mut rest: &'a [&'b [u8]],
) -> Result<(Options, &'a [&'b [u8]]), CommandError> {
    let (mut lease_ms, mut detail) = (None, None);
    let twice = CommandError::Syntax("an option is given twice");
    while let Some((option, tail)) = rest.split_first() {
        if option.eq_ignore_ascii_case(b"LEASE") {
            let [ms, tail @ ..] = tail else {
                return Err(CommandError::Syntax("LEASE needs ms"));
            };
            let ms = parse_u64(ms, "LEASE")?;
            if ms == 0 {
                return Err(CommandError::InvalidLease);
            }
            if lease_ms.replace(ms).is_some() {
                return Err(twice);
            }
            rest = tail;
        } else if option.eq_ignore_ascii_case(b"DETAIL") {
            let (chosen, tail) = match tail {
                [packed, tail @ ..] if packed.eq_ignore_ascii_case(b"PACKED") => {
                    (Detail::Packed, tail)
                }
                [binary, tail @ ..] if binary.eq_ignore_ascii_case(b"BINARY") => {
                    (Detail::Binary, tail)
                }
                _ => (Detail::Nested, tail),
            };
            if detail.replace(chosen).is_some() {
                return Err(twice);
            }
            rest = tail;
        } else if option.eq_ignore_ascii_case(b"PACKED") {
            if detail.replace(Detail::Packed).is_some() {
                return Err(twice);
            }
            rest = tail;
        } else if option.eq_ignore_ascii_case(b"BINARY") {
            if detail.replace(Detail::Binary).is_some() {
                return Err(twice);
            }
            rest = tail;
        } else if option.eq_ignore_ascii_case(b"SCOPES") {
            rest = tail;
            break;
        } else {
            break;
        }
    }
    Ok((Options { lease_ms, detail }, rest))
}

/// MCHECK's options as given.
struct Options {
    lease_ms: Option<u64>,
    detail: Option<Detail>,
}

/// [`parse_mcheck`] into `out`: the module's path, where the scopes are written once where they
/// stay instead of being built and then copied.
#[inline]
pub fn parse_mcheck_into(
    command: &'static str,
    numkeys: usize,
    args: &[&[u8]],
    out: &mut MultiCheckArgs,
) -> Result<(), CommandError> {
    let [input, output, rest @ ..] = args else {
        return Err(CommandError::WrongArity(command));
    };
    let input = parse_u64(input, "input_tokens")?;
    let output = parse_u64(output, "output_tokens")?;
    let (Options { lease_ms, detail }, values) = parse_options(rest)?;
    // One argument per scope (packed) or seven: the count tells which.
    let per_scope = if values.len() == numkeys {
        1
    } else if values.len() == numkeys * SCOPE_VALUES {
        SCOPE_VALUES
    } else {
        return Err(CommandError::WrongArity(command));
    };
    out.lease_ms = lease_ms;
    out.detail = detail.unwrap_or_default();
    out.scopes.clear();
    for scope in values.chunks_exact(per_scope) {
        let (clock, numbers) = match scope {
            [packed] => parse_packed_scope(packed)?,
            _ => {
                let fields = <[&[u8]; SCOPE_VALUES]>::try_from(scope)
                    .map_err(|_| CommandError::WrongArity(command))?;
                parse_scope_fields(fields)?
            }
        };
        let [rpm, itpm, otpm, cost_limit, cost_charge, concurrency] = numbers;
        out.scopes.push(ScopeRequest {
            clock,
            limits: ScopeLimits {
                summed: [rpm, itpm, otpm, cost_limit],
                concurrency,
            },
            cost: [1, input, output, cost_charge],
        });
    }
    Ok(())
}

/// The numbers of a scope after its window, in order.
const NUMBER_NAMES: [&str; SCOPE_VALUES - 1] = [
    "rpm",
    "itpm",
    "otpm",
    "cost_limit",
    "cost_charge",
    "concurrency",
];

/// A scope's seven values, each its own argument or split out of a packed one.
fn parse_scope_fields(
    fields: [&[u8]; SCOPE_VALUES],
) -> Result<(Clock, [u64; SCOPE_VALUES - 1]), CommandError> {
    let [window, numbers @ ..] = fields;
    let clock = parse_clock(window)?;
    let mut parsed = [0u64; SCOPE_VALUES - 1];
    for ((slot, field), name) in parsed.iter_mut().zip(numbers).zip(NUMBER_NAMES) {
        *slot = parse_u64(field, name)?;
    }
    Ok((clock, parsed))
}

/// A packed scope, `window,rpm,itpm,otpm,cost_limit,cost_charge,concurrency`, read in one pass
/// over its bytes ([`packed_u64s`]; a period's name first split off). What that pass does not
/// take is split and parsed field by field, which names what is wrong.
fn parse_packed_scope(packed: &[u8]) -> Result<(Clock, [u64; SCOPE_VALUES - 1]), CommandError> {
    if packed.first().is_some_and(u8::is_ascii_digit) {
        if let Some([window_ms, numbers @ ..]) = packed_u64s::<SCOPE_VALUES>(packed) {
            return Ok((Clock::Sliding(validate_window(window_ms)?), numbers));
        }
    } else if let Some(comma) = packed.iter().position(|byte| *byte == b',') {
        if let (Some(period), Some(numbers)) = (packed.get(..comma), packed.get(comma + 1..)) {
            if let Some(numbers) = packed_u64s(numbers) {
                return Ok((parse_clock(period)?, numbers));
            }
        }
    }
    parse_scope_fields(unpack_scope(packed)?)
}

/// The most digits a number may have to be read without overflow checks (u64::MAX has 20).
const UNCHECKED_DIGITS: usize = 19;

/// Exactly `N` comma-separated decimal u64s of at most [`UNCHECKED_DIGITS`] digits, or `None`.
fn packed_u64s<const N: usize>(bytes: &[u8]) -> Option<[u64; N]> {
    let mut numbers = [0u64; N];
    let mut index = 0;
    let mut value: u64 = 0;
    let mut digits = 0usize;
    for byte in bytes {
        let digit = byte.wrapping_sub(b'0');
        if digit <= 9 {
            // Cannot overflow while digits <= UNCHECKED_DIGITS; longer numbers are refused
            // below, whatever this wrapped to.
            value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
            digits = digits.saturating_add(1);
        } else if *byte == b',' && (1..=UNCHECKED_DIGITS).contains(&digits) {
            *numbers.get_mut(index)? = value;
            index += 1;
            value = 0;
            digits = 0;
        } else {
            return None;
        }
    }
    if !(1..=UNCHECKED_DIGITS).contains(&digits) || index + 1 != N {
        return None;
    }
    *numbers.get_mut(index)? = value;
    Some(numbers)
}

/// The seven values of a packed scope, `window,rpm,itpm,otpm,cost_limit,cost_charge,concurrency`.
fn unpack_scope(packed: &[u8]) -> Result<[&[u8]; SCOPE_VALUES], CommandError> {
    let mut fields: [&[u8]; SCOPE_VALUES] = [&[]; SCOPE_VALUES];
    let mut parts = packed.split(|byte| *byte == b',');
    for field in fields.iter_mut() {
        *field = parts.next().ok_or(CommandError::PackedScope)?;
    }
    match parts.next() {
        Some(_) => Err(CommandError::PackedScope),
        None => Ok(fields),
    }
}

/// A correction of one admission in every scope: what each was charged (reserved) and what
/// it should have been (actual), per scope.
#[derive(Debug, PartialEq, Eq)]
pub struct CorrectionArgs {
    pub ticket: u64,
    pub reserved: Vec<Amounts<SUMMED>>,
    pub actual: Vec<Amounts<SUMMED>>,
}

/// `[COSTS {n values} × numkeys]`: per scope, `n` numbers (zeros when absent).
fn parse_costs(
    command: &'static str,
    numkeys: usize,
    per_scope: usize,
    rest: &[&[u8]],
) -> Result<Vec<Vec<u64>>, CommandError> {
    match rest {
        [] => Ok(vec![vec![0; per_scope]; numkeys]),
        [keyword, values @ ..] if keyword.eq_ignore_ascii_case(b"COSTS") => {
            if values.len() != numkeys * per_scope {
                return Err(CommandError::WrongArity(command));
            }
            values
                .chunks_exact(per_scope)
                .map(|chunk| chunk.iter().map(|v| parse_u64(v, "cost")).collect())
                .collect()
        }
        _ => Err(CommandError::Syntax("expected COSTS")),
    }
}

/// MSETTLE's arguments after the keys.
pub fn parse_msettle(
    command: &'static str,
    numkeys: usize,
    args: &[&[u8]],
) -> Result<CorrectionArgs, CommandError> {
    let [ticket, reserved_in, actual_in, reserved_out, actual_out, rest @ ..] = args else {
        return Err(CommandError::WrongArity(command));
    };
    let ticket = parse_ticket(ticket)?;
    let (reserved_in, actual_in) = (
        parse_u64(reserved_in, "reserved_input")?,
        parse_u64(actual_in, "actual_input")?,
    );
    let (reserved_out, actual_out) = (
        parse_u64(reserved_out, "reserved_output")?,
        parse_u64(actual_out, "actual_output")?,
    );
    let costs = parse_costs(command, numkeys, 2, rest)?;
    let pick = |values: &Vec<u64>, i: usize| values.get(i).copied().unwrap_or(0);
    Ok(CorrectionArgs {
        ticket,
        // The request count never changes in a settlement.
        reserved: costs
            .iter()
            .map(|c| [0, reserved_in, reserved_out, pick(c, 0)])
            .collect(),
        actual: costs
            .iter()
            .map(|c| [0, actual_in, actual_out, pick(c, 1)])
            .collect(),
    })
}

/// MCANCEL's arguments after the keys: everything the admission was charged goes back.
pub fn parse_mcancel(
    command: &'static str,
    numkeys: usize,
    args: &[&[u8]],
) -> Result<CorrectionArgs, CommandError> {
    let [ticket, input, output, rest @ ..] = args else {
        return Err(CommandError::WrongArity(command));
    };
    let ticket = parse_ticket(ticket)?;
    let input = parse_u64(input, "input_tokens")?;
    let output = parse_u64(output, "output_tokens")?;
    let costs = parse_costs(command, numkeys, 1, rest)?;
    Ok(CorrectionArgs {
        ticket,
        reserved: costs
            .iter()
            .map(|c| [1, input, output, c.first().copied().unwrap_or(0)])
            .collect(),
        actual: vec![[0; SUMMED]; numkeys],
    })
}

fn parse_ticket(bytes: &[u8]) -> Result<u64, CommandError> {
    match parse_u64(bytes, "ticket")? {
        0 => Err(CommandError::InvalidTicket),
        ticket => Ok(ticket),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::PeriodKind;

    fn split(line: &str) -> Vec<&[u8]> {
        line.split_whitespace().map(str::as_bytes).collect()
    }

    #[test]
    fn mcheck_arguments() {
        let args = split("3 a b c 100 50 LEASE 30000 SCOPES 60000 10 1000 500 0 0 2 day:-480 1000 0 0 0 0 0 month 0 0 0 5000000 1234 0");
        let numkeys = parse_numkeys("llmrl.mcheck", &args).unwrap();
        assert_eq!(numkeys, 3);
        let parsed = parse_mcheck("llmrl.mcheck", numkeys, &args[1 + numkeys..]).unwrap();
        assert_eq!(parsed.lease_ms, Some(30_000));
        assert_eq!(parsed.scopes.len(), 3);
        assert_eq!(parsed.scopes[0].clock, Clock::Sliding(60_000));
        assert_eq!(parsed.scopes[0].limits.summed, [10, 1000, 500, 0]);
        assert_eq!(parsed.scopes[0].limits.concurrency, 2);
        assert_eq!(parsed.scopes[0].cost, [1, 100, 50, 0]);
        assert_eq!(
            parsed.scopes[1].clock,
            Clock::Calendar(Period::new(PeriodKind::Day, -480).unwrap())
        );
        assert_eq!(parsed.scopes[2].cost, [1, 100, 50, 1234]);
        let detail = split("1 a 1 2 LEASE 5 detail SCOPES 600 1 0 0 0 0 0");
        assert_eq!(
            parse_mcheck("x", 1, &detail[2..]).unwrap().detail,
            Detail::Nested
        );
        let packed = split("1 a 1 2 DETAIL packed SCOPES 600 1 0 0 0 0 0");
        assert_eq!(
            parse_mcheck("x", 1, &packed[2..]).unwrap().detail,
            Detail::Packed
        );
        assert_eq!(parsed.detail, Detail::Off);
        let no_lease = split("1 a 1 2 scopes 600 1 0 0 0 0 0");
        assert_eq!(parse_mcheck("x", 1, &no_lease[2..]).unwrap().lease_ms, None);
        // Options in any order; PACKED alone is DETAIL PACKED; SCOPES may be left out.
        let reference = parse_mcheck(
            "x",
            1,
            &split("1 2 LEASE 5 DETAIL PACKED SCOPES 600,1,0,0,0,0,0"),
        );
        for line in [
            "1 2 LEASE 5 PACKED SCOPES 600,1,0,0,0,0,0",
            "1 2 packed LEASE 5 600,1,0,0,0,0,0",
            "1 2 DETAIL PACKED lease 5 600,1,0,0,0,0,0",
        ] {
            assert_eq!(parse_mcheck("x", 1, &split(line)), reference, "{line}");
        }
        let binary = parse_mcheck("x", 1, &split("1 2 DETAIL BINARY LEASE 5 600,1,0,0,0,0,0"));
        for line in [
            "1 2 LEASE 5 binary 600,1,0,0,0,0,0",
            "1 2 BINARY LEASE 5 SCOPES 600,1,0,0,0,0,0",
        ] {
            assert_eq!(parse_mcheck("x", 1, &split(line)), binary, "{line}");
        }
        assert_eq!(binary.map(|b| b.detail), Ok(Detail::Binary));
        // One detail form only.
        for line in [
            "1 2 BINARY PACKED 600,1,0,0,0,0,0",
            "1 2 DETAIL BINARY DETAIL 600,1,0,0,0,0,0",
        ] {
            assert!(parse_mcheck("x", 1, &split(line)).is_err(), "{line}");
        }
        let bare = parse_mcheck("x", 1, &split("1 2 600 1 0 0 0 0 0")).unwrap();
        assert_eq!((bare.lease_ms, bare.detail), (None, Detail::Off));
        assert_eq!(bare.scopes[0].limits.summed, [1, 0, 0, 0]);
        // Each scope's values packed in one argument: the same request.
        let packed = split("3 a b c 100 50 LEASE 30000 SCOPES 60000,10,1000,500,0,0,2 day:-480,1000,0,0,0,0,0 month,0,0,0,5000000,1234,0");
        assert_eq!(parse_mcheck("x", 3, &packed[4..]), Ok(parsed));
    }

    #[test]
    fn bad_mcheck_arguments() {
        let cases: [(&str, CommandError); 17] = [
            ("1 a 1 2 SCOPES 600,1,0,0,0,0", CommandError::PackedScope),
            (
                "1 a 1 2 SCOPES 600,1,0,0,0,0,0,0",
                CommandError::PackedScope,
            ),
            (
                "1 a 1 2 SCOPES 600,1,0,,0,0,0",
                CommandError::NotAnInteger("otpm"),
            ),
            (
                "1 a 1 2 SCOPES 601,1,0,0,0,0,0",
                CommandError::InvalidWindow,
            ),
            (
                "2 a b 1 2 SCOPES 600,1,0,0,0,0,0 600 1 0 0 0 0 0",
                CommandError::WrongArity("x"),
            ),
            ("0 1 2 SCOPES", CommandError::NumKeys(MAX_SCOPES)),
            ("65 a", CommandError::NumKeys(MAX_SCOPES)),
            ("2 a", CommandError::WrongArity("x")),
            (
                "1 a 1 2 SCOPES 600 1 0 0 0 0",
                CommandError::WrongArity("x"),
            ),
            (
                "1 a 1 2 PACKED DETAIL SCOPES 600 1 0 0 0 0 0",
                CommandError::Syntax("an option is given twice"),
            ),
            (
                "1 a 1 2 LEASE 5 LEASE 5 600 1 0 0 0 0 0",
                CommandError::Syntax("an option is given twice"),
            ),
            ("1 a 1 2 LEASE", CommandError::Syntax("LEASE needs ms")),
            (
                "1 a 1 2 SCOPES LEASE 5 600 1 0 0 0",
                CommandError::InvalidClock,
            ),
            (
                "1 a 1 2 SCOPES 601 1 0 0 0 0 0",
                CommandError::InvalidWindow,
            ),
            (
                "1 a 1 2 SCOPES days 1 0 0 0 0 0",
                CommandError::InvalidClock,
            ),
            (
                "1 a 1 2 LEASE 0 SCOPES 600 1 0 0 0 0 0",
                CommandError::InvalidLease,
            ),
            (
                "1 a 1 -2 SCOPES 600 1 0 0 0 0 0",
                CommandError::NotAnInteger("output_tokens"),
            ),
        ];
        for (line, expected) in cases {
            let args = split(line);
            let result = parse_numkeys("x", &args)
                .and_then(|n| parse_mcheck("x", n, &args[1 + n..]).map(|_| ()));
            assert_eq!(result, Err(expected), "{line}");
        }
    }

    proptest::proptest! {
        /// The one-pass reading of a packed scope gives what splitting it and parsing each
        /// field gives, the same value or the same error, on text made of what it tells apart
        /// (digits, commas, period names and offsets, other bytes) and on numbers around u64's
        /// limit.
        #[test]
        fn packed_scopes_read_as_field_by_field(
            fields in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => "[0-9]{1,3}",
                    2 => "1844674407370955161[0-9]",
                    2 => "[0-9]{18,21}",
                    1 => proptest::strategy::Just("60000".to_string()),
                    1 => proptest::strategy::Just("day".to_string()),
                    1 => proptest::strategy::Just("week:-480".to_string()),
                    1 => "[a-z0-9:+ -]{0,3}",
                ],
                6..=8,
            )
        ) {
            let packed = fields.join(",");
            let reference = unpack_scope(packed.as_bytes()).and_then(parse_scope_fields);
            proptest::prop_assert_eq!(parse_packed_scope(packed.as_bytes()), reference);
        }
    }

    #[test]
    fn packed_scopes_in_one_pass() {
        assert_eq!(
            parse_packed_scope(b"60000,10,1000,500,0,7,2"),
            Ok((Clock::Sliding(60_000), [10, 1000, 500, 0, 7, 2]))
        );
        let max = format!("60,{},0,0,0,0,0", u64::MAX);
        assert_eq!(
            parse_packed_scope(max.as_bytes()),
            Ok((Clock::Sliding(60), [u64::MAX, 0, 0, 0, 0, 0]))
        );
        for over in [
            "18446744073709551616",
            "99999999999999999999",
            "184467440737095516150",
        ] {
            let packed = format!("60,0,{over},0,0,0,0");
            assert_eq!(
                parse_packed_scope(packed.as_bytes()),
                Err(CommandError::OutOfRange("itpm")),
                "{packed}"
            );
        }
    }

    #[test]
    fn settle_and_cancel_arguments() {
        let args = split("7 10 4 20 25 COSTS 30 29 5 9");
        let settle = parse_msettle("x", 2, &args).unwrap();
        assert_eq!(settle.ticket, 7);
        assert_eq!(settle.reserved, vec![[0, 10, 20, 30], [0, 10, 20, 5]]);
        assert_eq!(settle.actual, vec![[0, 4, 25, 29], [0, 4, 25, 9]]);
        let plain = parse_msettle("x", 2, &split("7 10 4 20 25")).unwrap();
        assert_eq!(plain.reserved, vec![[0, 10, 20, 0]; 2]);
        assert!(parse_msettle("x", 2, &split("7 10 4 20 25 COSTS 1 2 3")).is_err());
        assert_eq!(
            parse_msettle("x", 1, &split("0 1 1 1 1")),
            Err(CommandError::InvalidTicket)
        );
        let cancel = parse_mcancel("x", 2, &split("7 10 20 COSTS 30 5")).unwrap();
        assert_eq!(cancel.reserved, vec![[1, 10, 20, 30], [1, 10, 20, 5]]);
        assert_eq!(cancel.actual, vec![[0; SUMMED]; 2]);
    }
}
