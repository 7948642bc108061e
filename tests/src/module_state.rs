//! Reading a module key's state in tests: the server clock, digests, INSPECT fields, INFO.

use crate::redis_server::{exec, string};
use redis::Value;

pub fn server_ms(con: &mut redis::Connection) -> i64 {
    let (secs, micros): (String, String) = redis::cmd("TIME").query(con).unwrap();
    secs.parse::<i64>().unwrap() * 1000 + micros.parse::<i64>().unwrap() / 1000
}

pub fn digest(con: &mut redis::Connection, key: &str) -> String {
    let digests: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query(con)
        .unwrap();
    digests.concat()
}

pub fn db_digest(con: &mut redis::Connection) -> String {
    string(con, &["DEBUG", "DIGEST"])
}

pub fn inspect(con: &mut redis::Connection, key: &str) -> Value {
    exec(con, &["LLMRL.INSPECT", key]).unwrap()
}

/// Field `name` of INSPECT's flat name/value reply.
pub fn inspect_field(value: &Value, name: &str) -> Value {
    let Value::Array(items) = value else {
        panic!("INSPECT reply is not an array: {value:?}")
    };
    for pair in items.chunks(2) {
        if pair[0] == Value::BulkString(name.as_bytes().to_vec()) {
            return pair[1].clone();
        }
    }
    panic!("INSPECT has no field {name}: {value:?}")
}

pub fn as_int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

pub fn info_field(con: &mut redis::Connection, field: &str) -> i64 {
    let info = string(con, &["INFO", "llmrl"]);
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("llmrl_{field}:")))
        .unwrap_or_else(|| panic!("INFO llmrl has no {field}:\n{info}"))
        .trim()
        .parse()
        .unwrap()
}
