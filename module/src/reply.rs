//! Replies written straight to the client: RESP2 clients get a positional array, RESP3 clients
//! (`HELLO 3`) a map with field names. Written directly, no intermediate `RedisValue` tree, since
//! this is on every request's path.

use llmrl_core::multi::MultiDecision;
use llmrl_core::protocol::binary::BinaryWriter;
use llmrl_core::protocol::packed::PackedWriter;
use llmrl_core::protocol::{
    packed_len_max, Detail, MultiVerdict, Reason, ScopeVerdict, Verdict, MULTI_FIELDS,
    MULTI_FIELD_NAMES, VERDICT_FIELD_NAMES,
};
use llmrl_core::scope::ScopeDecision;
use llmrl_core::scope::{Limit, REPORTED};
use llmrl_core::window::Decision;
use redis_module::{raw, Context, ContextFlags};
use std::os::raw::{c_char, c_long};

pub enum Value<'a> {
    Int(i64),
    Str(&'a [u8]),
    Ints(&'a [i64]),
    List(&'a [Value<'a>]),
}

pub fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn bulk(ctx: &Context, bytes: &[u8]) {
    raw::reply_with_string_buffer(ctx.ctx, bytes.as_ptr().cast::<c_char>(), bytes.len());
}

fn value(ctx: &Context, v: &Value) {
    match v {
        Value::Int(i) => {
            raw::reply_with_long_long(ctx.ctx, *i);
        }
        Value::Str(s) => bulk(ctx, s),
        Value::Ints(items) => {
            raw::reply_with_array(ctx.ctx, items.len() as c_long);
            for i in items.iter() {
                raw::reply_with_long_long(ctx.ctx, *i);
            }
        }
        Value::List(items) => {
            raw::reply_with_array(ctx.ctx, items.len() as c_long);
            for item in items.iter() {
                value(ctx, item);
            }
        }
    }
}

/// Named fields: a map for RESP3; for RESP2 either positional values (`named_in_resp2` false,
/// the CHECK reply) or a flat name/value array (like XINFO).
pub fn record<'v>(
    ctx: &Context,
    resp3: bool,
    fields: impl ExactSizeIterator<Item = (&'v str, &'v Value<'v>)>,
    named_in_resp2: bool,
) {
    if resp3 {
        raw::reply_with_map(ctx.ctx, fields.len() as c_long);
    } else if named_in_resp2 {
        raw::reply_with_array(ctx.ctx, (fields.len() * 2) as c_long);
    } else {
        raw::reply_with_array(ctx.ctx, fields.len() as c_long);
    }
    for (name, v) in fields {
        if resp3 || named_in_resp2 {
            bulk(ctx, name.as_bytes());
        }
        value(ctx, v);
    }
}

pub fn integer(ctx: &Context, value: i64) {
    raw::reply_with_long_long(ctx.ctx, value);
}

/// Nil: what INSPECT answers for a missing key.
pub fn null(ctx: &Context) {
    raw::reply_with_null(ctx.ctx);
}

pub fn is_resp3(ctx: &Context) -> bool {
    ctx.get_flags().contains(ContextFlags::FLAGS_RESP3)
}

/// The CHECK / PEEK / SETTLE reply, with the contract's field names and order
/// ([`VERDICT_FIELD_NAMES`], which clients decode with `Verdict::decode`); with `BINARY`, the
/// same fields as one string of words (`Verdict::from_binary`).
pub fn decision(ctx: &Context, d: &Decision, binary: bool) {
    let verdict = Verdict {
        allowed: d.allowed,
        reason: d.reason.map_or(Reason::Ok, Reason::Denied),
        retry_after_ms: d.retry.as_i64(),
        remaining: d.remaining.map(figure),
        reset_ms: d.reset_ms.map(clamp_i64),
        ticket: clamp_i64(d.ticket),
    };
    if binary {
        bulk(ctx, &verdict.to_binary());
        return;
    }
    let [retry, r0, r1, r2, s0, s1, s2, ticket] = verdict.numbers().map(Value::Int);
    let values = [
        Value::Int(i64::from(verdict.allowed)),
        Value::Str(verdict.reason.as_str().as_bytes()),
        retry,
        r0,
        r1,
        r2,
        s0,
        s1,
        s2,
        ticket,
    ];
    let fields = VERDICT_FIELD_NAMES.into_iter().zip(&values);
    record(ctx, is_resp3(ctx), fields, false);
}

/// A reported figure: -1 for unlimited.
fn figure(value: Option<u64>) -> i64 {
    value.map_or(-1, clamp_i64)
}

fn reason_name(reason: Option<Limit>) -> &'static [u8] {
    reason.map_or("ok", Limit::reason).as_bytes()
}

/// The MCHECK / MPEEK reply, flat like CHECK's ([`MULTI_FIELD_NAMES`]): `allowed reason scope
/// retry_after_ms`, then per dimension (requests, input tokens, output tokens, cost,
/// concurrency) the least remaining, then its reset, then `ticket`; with DETAIL, a last field
/// `scopes` with each scope's own `allowed reason retry_after_ms remaining... reset...`. With
/// DETAIL PACKED all of it as one string ([`MultiVerdict::pack`]), with DETAIL BINARY as one
/// string of words ([`BinaryWriter`]). Written straight out: this is on every request's path.
pub fn multi_decision(ctx: &Context, d: &MultiDecision, detail: Detail) {
    match detail {
        Detail::Packed => return packed_multi_decision(ctx, d),
        Detail::Binary => return binary_multi_decision(ctx, d),
        Detail::Off | Detail::Nested => {}
    }
    let resp3 = is_resp3(ctx);
    // The integers written straight with `integer`, the first four through `value`: one
    // `Value` array for all fifteen costs the hot path about 250 instructions more.
    let mut values = [0i64; MULTI_FIELDS];
    for (slot, remaining) in values.iter_mut().skip(4).zip(&d.remaining) {
        *slot = figure(*remaining);
    }
    for (slot, reset) in values.iter_mut().skip(4 + REPORTED).zip(&d.reset_ms) {
        *slot = clamp_i64(*reset);
    }
    let head = [
        Value::Int(i64::from(d.allowed)),
        Value::Str(reason_name(d.reason)),
        Value::Int(d.scope.map_or(-1, |i| i as i64)),
        Value::Int(d.retry.as_i64()),
    ];
    if let Some(ticket) = values.last_mut() {
        *ticket = clamp_i64(d.ticket);
    }
    let count = MULTI_FIELDS + usize::from(detail != Detail::Off);
    if resp3 {
        raw::reply_with_map(ctx.ctx, count as c_long);
    } else {
        raw::reply_with_array(ctx.ctx, count as c_long);
    }
    for (index, name) in MULTI_FIELD_NAMES.iter().enumerate() {
        if resp3 {
            bulk(ctx, name.as_bytes());
        }
        match head.get(index) {
            Some(v) => value(ctx, v),
            None => integer(ctx, values.get(index).copied().unwrap_or(0)),
        }
    }
    if detail == Detail::Off {
        return;
    }
    if resp3 {
        bulk(ctx, b"scopes");
    }
    raw::reply_with_array(ctx.ctx, d.scopes.len() as c_long);
    for scope in &d.scopes {
        let (remaining, reset) = (scope.remaining.map(figure), scope.reset_ms.map(clamp_i64));
        let fields = [
            ("allowed", Value::Int(i64::from(scope.allowed))),
            ("reason", Value::Str(reason_name(scope.reason))),
            ("retry_after_ms", Value::Int(scope.retry.as_i64())),
            ("remaining", Value::Ints(&remaining)),
            ("reset_ms", Value::Ints(&reset)),
        ];
        record(ctx, resp3, fields.iter().map(|(n, v)| (*n, v)), false);
    }
}

/// The MCHECK / MPEEK reply with DETAIL PACKED: one bulk string, in RESP2 and RESP3 alike (the
/// client asked for the packed form). Twenty-odd reply elements became one: Redis writes one,
/// and a client parses one.
fn packed_multi_decision(ctx: &Context, d: &MultiDecision) {
    let head = reply_head(d);
    REPLY_BUFFER.with_borrow_mut(|buffer| {
        // Grown to the longest reply seen, never cleared: the writer overwrites what it uses
        // (zeroing two kilobytes a call was 4% of a one-scope MCHECK's module code).
        let needed = packed_len_max(d.scopes.len());
        if buffer.len() < needed {
            buffer.resize(needed, 0);
        }
        write_packed(ctx, d, &head, buffer.get_mut(..needed).unwrap_or_default());
    });
}

/// The MCHECK / MPEEK reply with DETAIL BINARY: one bulk string of little-endian words
/// ([`llmrl_core::protocol::binary`]), in RESP2 and RESP3 alike. Nothing is formatted.
fn binary_multi_decision(ctx: &Context, d: &MultiDecision) {
    let head = reply_head(d);
    BINARY_BUFFER.with_borrow_mut(|buffer| {
        let mut words = BinaryWriter::new(buffer, d.scopes.len());
        words.head(&head);
        for scope in &d.scopes {
            words.scope(&scope_verdict(scope));
        }
        bulk(ctx, buffer);
    });
}

/// The reply's head fields (its scopes are written one by one, not collected).
fn reply_head(d: &MultiDecision) -> MultiVerdict {
    MultiVerdict {
        allowed: d.allowed,
        reason: d.reason,
        scope: d.scope,
        retry_after_ms: d.retry.as_i64(),
        remaining: d.remaining.map(figure),
        reset_ms: d.reset_ms.map(clamp_i64),
        ticket: d.ticket,
        scopes: Vec::new(),
    }
}

/// One scope's figures as a reply gives them.
fn scope_verdict(scope: &ScopeDecision) -> ScopeVerdict {
    ScopeVerdict {
        allowed: scope.allowed,
        reason: scope.reason,
        retry_after_ms: scope.retry.as_i64(),
        remaining: scope.remaining.map(figure),
        reset_ms: scope.reset_ms.map(clamp_i64),
    }
}

thread_local! {
    /// The buffer packed replies are written in (commands run on Redis's main thread). Grown to
    /// the longest reply seen and never shortened: the packed writer overwrites what it uses.
    static REPLY_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The buffer binary replies are appended to: cleared per reply, its capacity kept. A
    /// buffer of its own, so that clearing it never shortens the packed one (which would then
    /// be zeroed again as it regrows).
    static BINARY_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn write_packed(ctx: &Context, d: &MultiDecision, head: &MultiVerdict, out: &mut [u8]) {
    let mut packed = PackedWriter::new(out);
    head.pack_head(&mut packed);
    for scope in &d.scopes {
        MultiVerdict::pack_scope(&mut packed, &scope_verdict(scope));
    }
    match packed.finish() {
        Some(bytes) => bulk(ctx, bytes),
        // Sized for the longest reply: not reached.
        None => {
            raw::reply_with_error(ctx.ctx, c"ERR llmrl: the packed reply did not fit".as_ptr());
        }
    }
}
