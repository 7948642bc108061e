//! Argument parsing, kept free of Redis types so it can be tested and fuzzed directly.

use crate::encoding::{unpack_effect, EFFECT_NUMBERS};
use crate::error::CommandError;
use crate::window::{validate_window, Amounts, Row, Snapshot, MAX_ROWS};

/// Parse a non-negative decimal integer: ASCII digits only, no sign, no spaces, fits in u64.
pub fn parse_u64(bytes: &[u8], name: &'static str) -> Result<u64, CommandError> {
    if bytes.is_empty() {
        return Err(CommandError::NotAnInteger(name));
    }
    // One pass (every request parses a dozen of these). Past an overflow the scan goes on, so
    // a later non-digit still reads as "not an integer".
    let mut value: u64 = 0;
    let mut overflowed = false;
    for byte in bytes {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(CommandError::NotAnInteger(name));
        }
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
        {
            Some(next) => value = next,
            None => overflowed = true,
        }
    }
    if overflowed {
        return Err(CommandError::OutOfRange(name));
    }
    Ok(value)
}

fn parse_window(bytes: &[u8]) -> Result<u64, CommandError> {
    let ms = parse_u64(bytes, "WINDOW")?;
    Ok(validate_window(ms)?)
}

fn parse_amounts(args: &[&[u8]], names: [&'static str; 3]) -> Result<Amounts, CommandError> {
    let mut out = [0u64; 3];
    for ((slot, arg), name) in out.iter_mut().zip(args).zip(names) {
        *slot = parse_u64(arg, name)?;
    }
    Ok(out)
}

const LIMIT_NAMES: [&str; 3] = ["rpm", "itpm", "otpm"];

/// `LLMRL.CHECK key rpm itpm otpm input_tokens output_tokens [WINDOW ms] [BINARY]`
#[derive(Debug, PartialEq, Eq)]
pub struct CheckArgs {
    pub limits: Amounts,
    /// Requests, input tokens, output tokens (requests is always 1).
    pub cost: Amounts,
    pub window_ms: Option<u64>,
    /// `BINARY`: the reply as one string of words ([`crate::protocol::Verdict::to_binary`]).
    pub binary: bool,
}

/// The trailing options of CHECK and PEEK (`WINDOW ms`, `BINARY`) and SETTLE (`BINARY`), in any
/// order, each at most once.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    window_ms: Option<u64>,
    binary: bool,
}

fn parse_options(
    mut rest: &[&[u8]],
    command: &'static str,
    window_allowed: bool,
) -> Result<Options, CommandError> {
    let twice = CommandError::Syntax("an option is given twice");
    let mut options = Options::default();
    while let [option, tail @ ..] = rest {
        rest = match tail {
            [ms, tail @ ..] if window_allowed && option.eq_ignore_ascii_case(b"WINDOW") => {
                if options.window_ms.replace(parse_window(ms)?).is_some() {
                    return Err(twice);
                }
                tail
            }
            [] if window_allowed && option.eq_ignore_ascii_case(b"WINDOW") => {
                return Err(CommandError::WrongArity(command));
            }
            _ if option.eq_ignore_ascii_case(b"BINARY") => {
                if std::mem::replace(&mut options.binary, true) {
                    return Err(twice);
                }
                tail
            }
            _ if window_allowed => return Err(CommandError::UnknownOption("WINDOW ms or BINARY")),
            _ => return Err(CommandError::UnknownOption("BINARY")),
        };
    }
    Ok(options)
}

/// `args` excludes the command name and key.
pub fn parse_check(args: &[&[u8]]) -> Result<CheckArgs, CommandError> {
    let [rpm, itpm, otpm, input, output, rest @ ..] = args else {
        return Err(CommandError::WrongArity("llmrl.check"));
    };
    if rest.len() > 3 {
        return Err(CommandError::WrongArity("llmrl.check"));
    }
    let limits = parse_amounts(&[rpm, itpm, otpm], LIMIT_NAMES)?;
    let input = parse_u64(input, "input_tokens")?;
    let output = parse_u64(output, "output_tokens")?;
    let options = parse_options(rest, "llmrl.check", true)?;
    Ok(CheckArgs {
        limits,
        cost: [1, input, output],
        window_ms: options.window_ms,
        binary: options.binary,
    })
}

fn is_option(arg: &[u8]) -> bool {
    arg.eq_ignore_ascii_case(b"WINDOW") || arg.eq_ignore_ascii_case(b"BINARY")
}

/// `LLMRL.PEEK key rpm itpm otpm [input_tokens output_tokens] [WINDOW ms] [BINARY]`
pub fn parse_peek(args: &[&[u8]]) -> Result<CheckArgs, CommandError> {
    if args.len() < 3 {
        return Err(CommandError::WrongArity("llmrl.peek"));
    }
    let (limits, rest) = args.split_at(3);
    let limits = parse_amounts(limits, LIMIT_NAMES)?;
    let (cost, rest) = match rest {
        [first, ..] if is_option(first) => ([1, 0, 0], rest),
        [input, output, tail @ ..] => (
            [
                1,
                parse_u64(input, "input_tokens")?,
                parse_u64(output, "output_tokens")?,
            ],
            tail,
        ),
        [] => ([1, 0, 0], rest),
        [_] => return Err(CommandError::WrongArity("llmrl.peek")),
    };
    if rest.len() > 3 {
        return Err(CommandError::WrongArity("llmrl.peek"));
    }
    let options = parse_options(rest, "llmrl.peek", true)?;
    Ok(CheckArgs {
        limits,
        cost,
        window_ms: options.window_ms,
        binary: options.binary,
    })
}

/// `LLMRL.SETTLE key ticket reserved_input actual_input reserved_output actual_output [BINARY]`
#[derive(Debug, PartialEq, Eq)]
pub struct SettleArgs {
    pub ticket: u64,
    pub reserved: [u64; 2],
    pub actual: [u64; 2],
    /// `BINARY`: the reply as one string of words, as CHECK's.
    pub binary: bool,
}

pub fn parse_settle(args: &[&[u8]]) -> Result<SettleArgs, CommandError> {
    let [ticket, reserved_in, actual_in, reserved_out, actual_out, rest @ ..] = args else {
        return Err(CommandError::WrongArity("llmrl.settle"));
    };
    if rest.len() > 1 {
        return Err(CommandError::WrongArity("llmrl.settle"));
    }
    let ticket = parse_u64(ticket, "ticket")?;
    if ticket == 0 {
        return Err(CommandError::InvalidTicket);
    }
    let reserved = [
        parse_u64(reserved_in, "reserved_input")?,
        parse_u64(reserved_out, "reserved_output")?,
    ];
    let actual = [
        parse_u64(actual_in, "actual_input")?,
        parse_u64(actual_out, "actual_output")?,
    ];
    Ok(SettleArgs {
        ticket,
        reserved,
        actual,
        binary: parse_options(rest, "llmrl.settle", false)?.binary,
    })
}

/// `LLMRL.APPLY key window_ms now_ms rpm itpm otpm charge_requests charge_input charge_output
/// refund_ticket refund_input refund_output`, or `LLMRL.APPLY key packed` with the same numbers
/// packed by [`pack_effect`](crate::encoding::pack_effect) — the replicated form of CHECK and
/// SETTLE.
#[derive(Debug, PartialEq, Eq)]
pub struct ApplyArgs {
    pub window_ms: u64,
    pub effect: crate::window::Effect,
}

const APPLY_NAMES: [&str; EFFECT_NUMBERS] = [
    "window_ms",
    "now_ms",
    "rpm",
    "itpm",
    "otpm",
    "charge_requests",
    "charge_input",
    "charge_output",
    "refund_ticket",
    "refund_input",
    "refund_output",
];

pub fn parse_apply(args: &[&[u8]]) -> Result<ApplyArgs, CommandError> {
    let numbers = match args {
        [packed] => unpack_effect(packed).map_err(|_| CommandError::MalformedEffect)?,
        _ if args.len() == EFFECT_NUMBERS => {
            let mut numbers = [0u64; EFFECT_NUMBERS];
            for ((number, arg), name) in numbers.iter_mut().zip(args).zip(APPLY_NAMES) {
                *number = parse_u64(arg, name)?;
            }
            numbers
        }
        _ => return Err(CommandError::WrongArity("llmrl.apply")),
    };
    let [window, now_ms, rpm, itpm, otpm, c_req, c_in, c_out, ticket, r_in, r_out] = numbers;
    let window_ms = validate_window(window)?;
    let (limits, charge, refund) = ([rpm, itpm, otpm], [c_req, c_in, c_out], [0, r_in, r_out]);
    Ok(ApplyArgs {
        window_ms,
        effect: crate::window::Effect {
            now_ms,
            limits,
            charge,
            refund: (ticket != 0).then_some(crate::window::Refund {
                ticket,
                amounts: refund,
            }),
        },
    })
}

/// `LLMRL.LOAD key window_ms head_bucket rpm itpm otpm bucket_count [requests input output]...`
/// — rebuilds a key exactly (what AOF rewrite emits).
pub fn parse_load(args: &[&[u8]]) -> Result<Snapshot, CommandError> {
    if args.len() < 6 {
        return Err(CommandError::WrongArity("llmrl.load"));
    }
    let (header, rest) = args.split_at(6);
    let window_ms = parse_window(header[0])?;
    let head = parse_u64(header[1], "head_bucket")?;
    let limits = parse_amounts(&header[2..5], LIMIT_NAMES)?;
    let count = parse_u64(header[5], "bucket_count")?;
    if count > MAX_ROWS as u64 {
        return Err(CommandError::InvalidState("more than 61 buckets"));
    }
    if rest.len() as u64 != count * 3 {
        return Err(CommandError::WrongArity("llmrl.load"));
    }
    let rows = rest
        .chunks_exact(3)
        .map(|chunk| parse_amounts(chunk, ["requests", "input_tokens", "output_tokens"]))
        .collect::<Result<Vec<Row>, _>>()?;
    Ok(Snapshot {
        window_ms,
        head,
        limits,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<&[u8]> {
        line.split_whitespace().map(str::as_bytes).collect()
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_u64(b"0", "x"), Ok(0));
        assert_eq!(parse_u64(b"18446744073709551615", "x"), Ok(u64::MAX));
        assert_eq!(
            parse_u64(b"18446744073709551616", "x"),
            Err(CommandError::OutOfRange("x"))
        );
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"1.5",
            b"1e3",
            b"0x10",
            b"\xff",
        ] {
            assert_eq!(parse_u64(bad, "x"), Err(CommandError::NotAnInteger("x")));
        }
    }

    proptest::proptest! {
        /// Against the standard library's parser: the same value, and the same kind of error
        /// (anything but ASCII digits is "not an integer", even past an overflow).
        #[test]
        fn integers_parse_as_the_standard_library_does(text in "[0-9]{0,25}[a-z+ -]?[0-9]{0,3}") {
            let expected = if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                Err(CommandError::NotAnInteger("x"))
            } else {
                text.parse::<u64>().map_err(|_| CommandError::OutOfRange("x"))
            };
            proptest::prop_assert_eq!(parse_u64(text.as_bytes(), "x"), expected);
        }
    }

    #[test]
    fn check_arguments() {
        assert_eq!(
            parse_check(&split("10 1000 500 20 30")),
            Ok(CheckArgs {
                limits: [10, 1000, 500],
                cost: [1, 20, 30],
                window_ms: None,
                binary: false,
            })
        );
        for line in [
            "10 1000 500 20 30 BINARY",
            "10 1000 500 20 30 binary WINDOW 600",
            "10 1000 500 20 30 WINDOW 600 BINARY",
        ] {
            assert_eq!(parse_check(&split(line)).map(|c| c.binary), Ok(true));
        }
        assert_eq!(
            parse_check(&split("10 1000 500 20 30 BINARY WINDOW 600")).map(|c| c.window_ms),
            Ok(Some(600))
        );
        for twice in [
            "10 1000 500 20 30 BINARY BINARY",
            "10 1000 500 20 30 WINDOW 600 WINDOW",
        ] {
            assert!(parse_check(&split(twice)).is_err(), "{twice}");
        }
        assert_eq!(
            parse_check(&split("10 1000 500 20 30 BINARY WINDOW 600 BINARY")),
            Err(CommandError::WrongArity("llmrl.check"))
        );
        assert_eq!(
            parse_check(&split("10 1000 500 20 30 WINDOW")),
            Err(CommandError::WrongArity("llmrl.check"))
        );
        assert_eq!(
            parse_check(&split("10 1000 500 20 30 window 600"))
                .unwrap()
                .window_ms,
            Some(600)
        );
        assert_eq!(
            parse_check(&split("10 1000 500 20")),
            Err(CommandError::WrongArity("llmrl.check"))
        );
        assert_eq!(
            parse_check(&split("10 1000 500 20 30 WINDOW 601")),
            Err(CommandError::InvalidWindow)
        );
        assert_eq!(
            parse_check(&split("10 1000 500 20 30 WINDOW 0")),
            Err(CommandError::InvalidWindow)
        );
        assert_eq!(
            parse_check(&split("10 1000 500 20 30 SIZE 600")),
            Err(CommandError::UnknownOption("WINDOW ms or BINARY"))
        );
        assert_eq!(
            parse_check(&split("10 -1 500 20 30")),
            Err(CommandError::NotAnInteger("itpm"))
        );
    }

    #[test]
    fn peek_arguments() {
        assert_eq!(parse_peek(&split("1 2 3")).unwrap().cost, [1, 0, 0]);
        assert_eq!(parse_peek(&split("1 2 3 4 5")).unwrap().cost, [1, 4, 5]);
        let with_window = parse_peek(&split("1 2 3 WINDOW 600")).unwrap();
        assert_eq!(
            (with_window.cost, with_window.window_ms),
            ([1, 0, 0], Some(600))
        );
        assert_eq!(
            parse_peek(&split("1 2 3 4 5 WINDOW 600"))
                .unwrap()
                .window_ms,
            Some(600)
        );
        let binary = parse_peek(&split("1 2 3 BINARY")).unwrap();
        assert_eq!((binary.cost, binary.binary), ([1, 0, 0], true));
        let both = parse_peek(&split("1 2 3 4 5 BINARY WINDOW 600")).unwrap();
        assert_eq!(
            (both.cost, both.window_ms, both.binary),
            ([1, 4, 5], Some(600), true)
        );
        assert!(parse_peek(&split("1 2 3 4 5 BINARY BINARY")).is_err());
        assert!(parse_peek(&split("1 2 3 4")).is_err());
        assert!(parse_peek(&split("1 2")).is_err());
        assert!(parse_peek(&split("1 2 3 4 5 6")).is_err());
    }

    #[test]
    fn settle_and_load_arguments() {
        assert_eq!(
            parse_settle(&split("1000 10 5 20 25")),
            Ok(SettleArgs {
                ticket: 1000,
                reserved: [10, 20],
                actual: [5, 25],
                binary: false,
            })
        );
        assert_eq!(
            parse_settle(&split("1000 10 5 20 25 binary")).map(|s| s.binary),
            Ok(true)
        );
        assert_eq!(
            parse_settle(&split("1000 10 5 20 25 WINDOW")),
            Err(CommandError::UnknownOption("BINARY"))
        );
        assert_eq!(
            parse_settle(&split("1000 10 5 20 25 BINARY BINARY")),
            Err(CommandError::WrongArity("llmrl.settle"))
        );
        assert_eq!(
            parse_settle(&split("0 10 5 20 25")),
            Err(CommandError::InvalidTicket)
        );
        let snapshot = parse_load(&split("600 100 1 2 3 2 1 2 3 4 5 6")).unwrap();
        assert_eq!(snapshot.rows, vec![[1, 2, 3], [4, 5, 6]]);
        assert!(parse_load(&split("600 100 1 2 3 2 1 2 3")).is_err());
        assert!(parse_load(&split("600 100 1 2 3 62")).is_err());
    }
}
