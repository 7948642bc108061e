//! The contract over the `redis` client crate (feature `redis-client`): a request becomes a
//! `redis::Cmd`, a reply value becomes a typed [`Verdict`].

use crate::protocol::{Arg, Field, ReplyError, Verdict};
use redis::{Cmd, Value};

/// A command named `name` with the contract's arguments.
pub fn command<'a>(name: &str, args: impl IntoIterator<Item = Arg<'a>>) -> Cmd {
    let mut cmd = redis::cmd(name);
    for arg in args {
        match arg {
            Arg::Text(text) => cmd.arg(text),
            Arg::Int(number) => cmd.arg(number),
        };
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

/// Decode the reply of CHECK / PEEK / SETTLE (RESP2: an array of ten values).
pub fn verdict(value: &Value) -> Result<Verdict, ReplyError> {
    match value {
        Value::Array(items) => Verdict::decode(items.iter().map(field)),
        _ => Err(ReplyError::NotAnArray),
    }
}
