//! The contract over the `redis` client crate (feature `redis-client`): a request becomes a
//! `redis::Cmd`, a reply value becomes a typed [`Verdict`].

use crate::protocol::binary::is_binary;
use crate::protocol::{
    parse_limit, Arg, Field, MultiVerdict, ReplyError, ScopeVerdict, Verdict, MULTI_FIELDS,
};
use crate::scope::REPORTED;
use redis::{Cmd, RedisWrite, Value};
use std::io::Write;

/// A command named `name` with the contract's arguments.
pub fn command<'a>(name: &str, args: impl IntoIterator<Item = Arg<'a>>) -> Cmd {
    let args = args.into_iter();
    // Sized once: grown argument by argument, a five-scope MCHECK's buffers were reallocated
    // about eight times. Keys and packed scopes run to some 60 bytes.
    let count = args.size_hint().0 + 1;
    let mut cmd = Cmd::with_capacity(count, count * 64);
    cmd.arg(name);
    for arg in args {
        match arg {
            Arg::Text(text) => {
                cmd.arg(text);
            }
            Arg::Int(number) => {
                cmd.arg(number);
            }
            Arg::Spliced(head, number, tail) => {
                let mut digits = itoa::Buffer::new();
                let number = digits.format(number);
                let mut writer = cmd.writer_for_next_arg();
                // The command's writer appends to its own buffer: it does not fail.
                let _ = writer
                    .write_all(head.as_bytes())
                    .and_then(|()| writer.write_all(number.as_bytes()))
                    .and_then(|()| writer.write_all(tail.as_bytes()));
            }
        }
    }
    cmd
}

/// One reply value as the contract reads it.
pub fn field(value: &Value) -> Field<'_> {
    match value {
        Value::Int(n) => Field::Int(*n),
        Value::BulkString(bytes) => Field::Text(bytes),
        Value::SimpleString(text) => Field::Text(text.as_bytes()),
        _ => Field::Other,
    }
}

/// Decode the reply of CHECK / PEEK / SETTLE (RESP2: an array of ten values; with `BINARY` one
/// string of ten words, [`Verdict::from_binary`]).
pub fn verdict(value: &Value) -> Result<Verdict, ReplyError> {
    match value {
        Value::Array(items) => Verdict::decode(items.iter().map(field)),
        Value::BulkString(bytes) => Verdict::from_binary(bytes),
        _ => Err(ReplyError::NotAnArray),
    }
}

fn int(value: Option<&Value>, name: &'static str, index: usize) -> Result<i64, ReplyError> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        _ => Err(ReplyError::Field {
            index,
            name,
            expected: "an integer",
        }),
    }
}

fn ints(
    value: Option<&Value>,
    name: &'static str,
    index: usize,
) -> Result<[i64; REPORTED], ReplyError> {
    let wrong = ReplyError::Field {
        index,
        name,
        expected: "five integers",
    };
    let Some(Value::Array(items)) = value else {
        return Err(wrong);
    };
    if items.len() != REPORTED {
        return Err(wrong);
    }
    let mut out = [0; REPORTED];
    for (slot, item) in out.iter_mut().zip(items) {
        *slot = int(Some(item), name, index)?;
    }
    Ok(out)
}

fn reason(value: Option<&Value>, index: usize) -> Result<Option<crate::scope::Limit>, ReplyError> {
    let text = match value {
        Some(Value::BulkString(bytes)) => bytes.as_slice(),
        Some(Value::SimpleString(text)) => text.as_bytes(),
        _ => &[],
    };
    parse_limit(text).ok_or(ReplyError::Field {
        index,
        name: "reason",
        expected: "a known reason",
    })
}

fn flag(value: Option<&Value>, index: usize) -> Result<bool, ReplyError> {
    match int(value, "allowed", index)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ReplyError::Field {
            index,
            name: "allowed",
            expected: "0 or 1",
        }),
    }
}

/// Decode the reply of MCHECK / MPEEK (RESP2: a flat positional array, with DETAIL a last nested
/// array of arrays; with DETAIL PACKED one string, [`MultiVerdict::unpack`]; with DETAIL BINARY
/// one string of words, [`MultiVerdict::from_binary`]).
pub fn multi_verdict(value: &Value) -> Result<MultiVerdict, ReplyError> {
    let items = match value {
        Value::Array(items) => items,
        Value::BulkString(bytes) if is_binary(bytes) => return MultiVerdict::from_binary(bytes),
        Value::BulkString(packed) => return MultiVerdict::unpack(packed),
        _ => return Err(ReplyError::NotAnArray),
    };
    if items.len() != MULTI_FIELDS && items.len() != MULTI_FIELDS + 1 {
        return Err(ReplyError::FieldCount(items.len()));
    }
    let scopes = match items.get(MULTI_FIELDS) {
        None => Vec::new(),
        Some(Value::Array(scope_items)) => scope_items
            .iter()
            .map(|scope| {
                let Value::Array(fields) = scope else {
                    return Err(ReplyError::NotAnArray);
                };
                Ok(ScopeVerdict {
                    allowed: flag(fields.first(), 0)?,
                    reason: reason(fields.get(1), 1)?,
                    retry_after_ms: int(fields.get(2), "retry_after_ms", 2)?,
                    remaining: ints(fields.get(3), "remaining", 3)?,
                    reset_ms: ints(fields.get(4), "reset_ms", 4)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(ReplyError::NotAnArray),
    };
    let flat = |from: usize, name: &'static str| -> Result<[i64; REPORTED], ReplyError> {
        let mut out = [0; REPORTED];
        for (d, slot) in out.iter_mut().enumerate() {
            *slot = int(items.get(from + d), name, from + d)?;
        }
        Ok(out)
    };
    let scope = int(items.get(2), "scope", 2)?;
    Ok(MultiVerdict {
        allowed: flag(items.first(), 0)?,
        reason: reason(items.get(1), 1)?,
        scope: usize::try_from(scope).ok(),
        retry_after_ms: int(items.get(3), "retry_after_ms", 3)?,
        remaining: flat(4, "remaining")?,
        reset_ms: flat(4 + REPORTED, "reset_ms")?,
        ticket: u64::try_from(int(
            items.get(MULTI_FIELDS - 1),
            "ticket",
            MULTI_FIELDS - 1,
        )?)
        .unwrap_or(0),
        scopes,
    })
}
