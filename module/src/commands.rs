//! The `LLMRL.*` command handlers: parse (llmrl-core), decide with the pure window, apply through
//! `keyspace` (which also expires, signals and replicates), reply.

use crate::keyspace::{self, commit};
use crate::reply::{self, clamp_i64, Value};
use crate::stats;
use llmrl_core::args;
use llmrl_core::encoding::encode;
use llmrl_core::error::CommandError;
use llmrl_core::window::{Amounts, Decision, Effect, Retry, Window};
use redis_module::{Context, RedisString};

/// The window a request runs against: the key's own; a WINDOW argument must agree with it.
fn resolve_window(existing: Option<&Window>, requested: Option<u64>) -> Result<u64, CommandError> {
    match (existing, requested) {
        (Some(window), Some(requested)) if window.window_ms() != requested => {
            Err(CommandError::WindowMismatch {
                existing: window.window_ms(),
                requested,
            })
        }
        (Some(window), _) => Ok(window.window_ms()),
        (None, Some(requested)) => Ok(requested),
        (None, None) => Ok(crate::config::default_window_ms()),
    }
}

fn evaluate(
    existing: Option<&Window>,
    window_ms: u64,
    now: u64,
    limits: Amounts,
    cost: Amounts,
) -> Result<Decision, CommandError> {
    Ok(match existing {
        Some(window) => window.evaluate(now, limits, cost),
        None => Window::new(window_ms)?.evaluate(now, limits, cost),
    })
}

pub fn check(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let request = args::parse_check(args)?;
    let now = keyspace::now_ms()?;
    stats::CHECKS.incr();
    let key = ctx.open_key_writable(key_name);
    let existing = keyspace::read_mut(&key)?;
    let window_ms = resolve_window(existing.as_deref(), request.window_ms)?;
    let decision = evaluate(
        existing.as_deref(),
        window_ms,
        now,
        request.limits,
        request.cost,
    )?;
    if decision.allowed {
        stats::ALLOWED.incr();
        let effect = Effect {
            now_ms: now,
            limits: request.limits,
            charge: request.cost,
            refund: None,
        };
        commit(ctx, key, key_name, window_ms, &effect, c"llmrl.check")?;
    } else {
        count_denial(&decision);
    }
    reply::decision(ctx, &decision, request.binary);
    Ok(())
}

fn count_denial(decision: &Decision) {
    use llmrl_core::window::Dimension::*;
    match (decision.retry, decision.reason) {
        (Retry::Never, _) => stats::TOO_LARGE.incr(),
        (_, Some(Requests)) => stats::DENIED_RPM.incr(),
        (_, Some(InputTokens)) => stats::DENIED_ITPM.incr(),
        (_, Some(OutputTokens)) => stats::DENIED_OTPM.incr(),
        // CHECK's window has no cost dimension.
        (_, Some(Cost)) | (_, None) => {}
    }
}

pub fn peek(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let request = args::parse_peek(args)?;
    let now = keyspace::now_ms()?;
    stats::PEEKS.incr();
    let key = ctx.open_key(key_name);
    let existing = keyspace::read(&key)?;
    let window_ms = resolve_window(existing, request.window_ms)?;
    let decision = evaluate(existing, window_ms, now, request.limits, request.cost)?;
    reply::decision(ctx, &decision, request.binary);
    Ok(())
}

pub fn settle(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let request = args::parse_settle(args)?;
    let now = keyspace::now_ms()?;
    stats::SETTLES.incr();
    let key = ctx.open_key_writable(key_name);
    let Some(window) = keyspace::read_mut::<Window>(&key)? else {
        // Nothing to correct (the key expired or never existed): create nothing.
        stats::SETTLE_NOOPS.incr();
        reply::decision(ctx, &settled(None, now, request.ticket), request.binary);
        return Ok(());
    };
    let window_ms = window.window_ms();
    match window.plan_settle(now, request.ticket, request.reserved, request.actual)? {
        Some(effect) => commit(ctx, key, key_name, window_ms, &effect, c"llmrl.settle")?,
        None => {
            stats::SETTLE_NOOPS.incr();
            drop(key);
        }
    }
    let key = ctx.open_key(key_name);
    let window = keyspace::read(&key)?;
    reply::decision(ctx, &settled(window, now, request.ticket), request.binary);
    Ok(())
}

/// SETTLE's reply: CHECK's shape, reported against the key's remembered limits.
fn settled(window: Option<&Window>, now: u64, ticket: u64) -> Decision {
    let mut decision = match window {
        Some(window) => window.evaluate(now, window.limits(), [0; 3]),
        None => Decision {
            allowed: true,
            reason: None,
            retry: Retry::Now,
            remaining: [None; 3],
            reset_ms: [0; 3],
            ticket,
        },
    };
    decision.allowed = true;
    decision.reason = None;
    decision.retry = Retry::Now;
    decision.ticket = ticket;
    decision
}

pub fn apply(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let request = args::parse_apply(args)?;
    stats::APPLIES.incr();
    let key = ctx.open_key_writable(key_name);
    let existing = keyspace::read_mut(&key)?;
    resolve_window(existing.as_deref(), Some(request.window_ms))?;
    // A refund for a key that no longer exists changes nothing and creates nothing.
    if existing.is_some() || request.effect.charge != [0; 3] {
        commit(
            ctx,
            key,
            key_name,
            request.window_ms,
            &request.effect,
            c"llmrl.apply",
        )?;
    }
    ctx.reply_simple_string("OK");
    Ok(())
}

pub fn load(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let snapshot = args::parse_load(args)?;
    let window = Window::from_snapshot(&snapshot)?;
    let expire = window.expire_at_ms();
    keyspace::replace(ctx, key_name, window, expire)
}

pub fn inspect(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    if !args.is_empty() {
        return Err(CommandError::WrongArity("llmrl.inspect"));
    }
    let key = ctx.open_key(key_name);
    let Some(window) = keyspace::read::<Window>(&key)? else {
        reply::null(ctx);
        return Ok(());
    };
    let snapshot = window.snapshot();
    let width = window.bucket_ms();
    let first = snapshot
        .head
        .saturating_add(1)
        .saturating_sub(snapshot.rows.len() as u64);
    let rows: Vec<[i64; 4]> = snapshot
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let start = (first + i as u64).saturating_mul(width);
            [
                clamp_i64(start),
                clamp_i64(row[0]),
                clamp_i64(row[1]),
                clamp_i64(row[2]),
            ]
        })
        .collect();
    let buckets: Vec<Value> = rows.iter().map(|row| Value::Ints(row)).collect();
    let limits = snapshot.limits.map(clamp_i64);
    let encoded = encode(&snapshot).len();
    let fields = [
        ("window_ms", Value::Int(clamp_i64(snapshot.window_ms))),
        ("bucket_ms", Value::Int(clamp_i64(width))),
        ("head_bucket", Value::Int(clamp_i64(snapshot.head))),
        ("limits", Value::Ints(&limits)),
        (
            "expire_at_ms",
            Value::Int(window.expire_at_ms().map_or(-1, clamp_i64)),
        ),
        ("encoded_numbers", Value::Int(clamp_i64(encoded as u64))),
        ("buckets", Value::List(&buckets)),
    ];
    reply::record(
        ctx,
        reply::is_resp3(ctx),
        fields.iter().map(|(name, value)| (*name, value)),
        true,
    );
    Ok(())
}
