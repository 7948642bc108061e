//! The `LLMRL.*` command handlers: parse, decide with the pure window, apply, replicate, reply.

use crate::args;
use crate::datatype::LLMRL_TYPE;
use crate::encoding::{encode, pack_effect};
use crate::error::CommandError;
use crate::reply::{self, clamp_i64, Value};
use crate::stats;
use crate::window::{Amounts, Decision, Effect, Retry, Window};
use redis_module::key::RedisKeyWritable;
use redis_module::{raw, Context, RedisError, RedisResult, RedisString, RedisValue};
use std::ffi::CStr;
use std::mem::ManuallyDrop;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

type Handler = fn(&Context, &RedisString, &[&[u8]]) -> Result<(), CommandError>;

/// Most commands have at most this many arguments after the key (LOAD can have more): their
/// byte slices are gathered on the stack, not in a fresh allocation per command.
const INLINE_ARGS: usize = 16;

/// Run a handler with the key and remaining arguments split out, borrowing Redis's argument
/// strings (no copies, no reference counting). A handler replies itself on success; errors become
/// `ERR` replies; a panic (a bug) is caught and answered with an error rather than aborting the
/// user's Redis. Handlers reply last, so a caught panic never follows a partial reply.
fn run(
    ctx: &Context,
    argv: &[*mut raw::RedisModuleString],
    name: &'static str,
    handler: Handler,
) -> RedisResult {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let [_, key, rest @ ..] = argv else {
            return Err(CommandError::WrongArity(name));
        };
        // Borrowed for the command's duration; never freed here (Redis owns argv).
        let key = ManuallyDrop::new(RedisString::from_redis_module_string(ctx.ctx, *key));
        let mut inline: [&[u8]; INLINE_ARGS] = [&[]; INLINE_ARGS];
        let spilled: Vec<&[u8]>;
        let rest: &[&[u8]] = if rest.len() <= INLINE_ARGS {
            for (slot, arg) in inline.iter_mut().zip(rest) {
                *slot = RedisString::string_as_slice(*arg);
            }
            &inline[..rest.len()]
        } else {
            spilled = rest
                .iter()
                .map(|arg| RedisString::string_as_slice(*arg))
                .collect();
            &spilled
        };
        handler(ctx, &key, rest)
    }));
    match outcome {
        Ok(Ok(())) => Ok(RedisValue::NoReply),
        Ok(Err(error)) => {
            stats::ERRORS.incr();
            Err(RedisError::String(error.to_string()))
        }
        Err(_) => {
            stats::PANICS.incr();
            ctx.log_warning(&format!(
                "llmrl: caught a panic in {name}; answered with an error, nothing recorded"
            ));
            Err(RedisError::String(CommandError::Internal.to_string()))
        }
    }
}

/// What Redis calls: the raw command entry point, without the per-call argument vector the
/// `redis_module!` wrapper would build.
fn dispatch(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    name: &'static str,
    handler: Handler,
) -> c_int {
    let context = Context::new(ctx);
    let argv = match usize::try_from(argc) {
        // SAFETY: Redis passes `argc` valid string pointers in `argv` for the call's duration.
        Ok(len) if !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, len) },
        _ => &[],
    };
    let result = run(&context, argv, name, handler);
    context.reply(result) as c_int
}

macro_rules! entry_points {
    ($($entry:ident => $name:literal, $handler:ident;)*) => {
        $(
            pub extern "C" fn $entry(
                ctx: *mut raw::RedisModuleCtx,
                argv: *mut *mut raw::RedisModuleString,
                argc: c_int,
            ) -> c_int {
                dispatch(ctx, argv, argc, $name, $handler)
            }
        )*
    };
}

entry_points! {
    check => "llmrl.check", check_impl;
    peek => "llmrl.peek", peek_impl;
    settle => "llmrl.settle", settle_impl;
    apply => "llmrl.apply", apply_impl;
    load => "llmrl.load", load_impl;
    inspect => "llmrl.inspect", inspect_impl;
}

/// The server's clock, read once per command. Replicas and AOF replay never call this.
fn now_ms() -> Result<u64, CommandError> {
    // SAFETY: the API table is filled once at module load, before any command runs.
    let clock = unsafe { raw::RedisModule_Milliseconds }.ok_or(CommandError::NoClock)?;
    u64::try_from(unsafe { clock() }).map_err(|_| CommandError::NoClock)
}

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

fn check_impl(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let request = args::parse_check(args)?;
    let now = now_ms()?;
    stats::CHECKS.incr();
    let key = ctx.open_key_writable(key_name);
    let existing = key.get_value::<Window>(&LLMRL_TYPE)?;
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
    reply::decision(ctx, &decision);
    Ok(())
}

fn count_denial(decision: &Decision) {
    use crate::window::Dimension::*;
    match (decision.retry, decision.reason) {
        (Retry::Never, _) => stats::TOO_LARGE.incr(),
        (_, Some(Requests)) => stats::DENIED_RPM.incr(),
        (_, Some(InputTokens)) => stats::DENIED_ITPM.incr(),
        (_, Some(OutputTokens)) => stats::DENIED_OTPM.incr(),
        (_, None) => {}
    }
}

fn peek_impl(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let request = args::parse_peek(args)?;
    let now = now_ms()?;
    stats::PEEKS.incr();
    let key = ctx.open_key(key_name);
    let existing = key.get_value::<Window>(&LLMRL_TYPE)?;
    let window_ms = resolve_window(existing, request.window_ms)?;
    let decision = evaluate(existing, window_ms, now, request.limits, request.cost)?;
    reply::decision(ctx, &decision);
    Ok(())
}

fn settle_impl(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let request = args::parse_settle(args)?;
    let now = now_ms()?;
    stats::SETTLES.incr();
    let key = ctx.open_key_writable(key_name);
    let Some(window) = key.get_value::<Window>(&LLMRL_TYPE)? else {
        // Nothing to correct (the key expired or never existed): create nothing.
        stats::SETTLE_NOOPS.incr();
        reply::decision(ctx, &settled(None, now, request.ticket));
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
    let window = key.get_value::<Window>(&LLMRL_TYPE)?;
    reply::decision(ctx, &settled(window, now, request.ticket));
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

fn apply_impl(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let request = args::parse_apply(args)?;
    stats::APPLIES.incr();
    let key = ctx.open_key_writable(key_name);
    let existing = key.get_value::<Window>(&LLMRL_TYPE)?;
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

/// Apply `effect` to the key (creating it when needed), keep its TTL at the absolute time its
/// newest bucket stops counting, and replicate the effect as `LLMRL.APPLY`, which carries the
/// timestamp, so replicas and AOF replay reach the same state without reading a clock.
fn commit(
    ctx: &Context,
    key: RedisKeyWritable,
    key_name: &RedisString,
    window_ms: u64,
    effect: &Effect,
    event: &CStr,
) -> Result<(), CommandError> {
    let (before, after) = match key.get_value::<Window>(&LLMRL_TYPE)? {
        Some(window) => {
            let before = window.expire_at_ms();
            window.apply(effect);
            (before, window.expire_at_ms())
        }
        None => {
            let mut window = Window::new(window_ms)?;
            window.apply(effect);
            let after = window.expire_at_ms();
            key.set_value(&LLMRL_TYPE, window)?;
            (None, after)
        }
    };
    drop(key);
    if after != before {
        if let Some(at) = after {
            expire_at(ctx, key_name, at);
        }
    }
    signal_modified(ctx, key_name, event);
    replicate_effect(ctx, key_name, window_ms, effect);
    Ok(())
}

/// Replicate an effect as `LLMRL.APPLY key <packed numbers>` (see [`pack_effect`]): one short
/// binary argument, so Redis builds a single small string instead of 11 integer strings.
fn replicate_effect(ctx: &Context, key_name: &RedisString, window_ms: u64, effect: &Effect) {
    let refund = effect
        .refund
        .map_or([0, 0, 0], |r| [r.ticket, r.amounts[1], r.amounts[2]]);
    let numbers = [
        window_ms,
        effect.now_ms,
        effect.limits[0],
        effect.limits[1],
        effect.limits[2],
        effect.charge[0],
        effect.charge[1],
        effect.charge[2],
        refund[0],
        refund[1],
        refund[2],
    ];
    let (packed, len) = pack_effect(&numbers);
    // SAFETY: the API table is filled once at load, before any command runs.
    match unsafe { raw::RedisModule_Replicate } {
        // SAFETY: "sb" is the key (a RedisModuleString) and a buffer given as pointer + length;
        // `packed` outlives the call, which copies it.
        Some(replicate) => unsafe {
            replicate(
                ctx.ctx,
                c"LLMRL.APPLY".as_ptr(),
                c"sb".as_ptr(),
                key_name.inner,
                packed.as_ptr(),
                len,
            );
        },
        None => ctx.log_warning("llmrl: RedisModule_Replicate is unavailable"),
    }
}

/// Set an absolute expiry. PEXPIREAT through RM_Call is not itself replicated (no `!` flag):
/// replicas and the AOF derive the same absolute time from the replicated effect.
fn expire_at(ctx: &Context, key_name: &RedisString, at_ms: u64) {
    let at = at_ms.to_string();
    if let Err(error) = ctx.call("PEXPIREAT", &[key_name.as_slice(), at.as_bytes()]) {
        ctx.log_warning(&format!("llmrl: could not set the key's expiry: {error}"));
    }
}

fn signal_modified(ctx: &Context, key_name: &RedisString, event: &CStr) {
    // SAFETY: as for the clock: filled at load; the key name and event outlive the calls.
    if let Some(signal) = unsafe { raw::RedisModule_SignalModifiedKey } {
        unsafe { signal(ctx.ctx, key_name.inner) };
    }
    // Called directly with a static name: the crate's wrapper allocates a C string every time.
    if let Some(notify) = unsafe { raw::RedisModule_NotifyKeyspaceEvent } {
        unsafe {
            notify(
                ctx.ctx,
                raw::NotifyEvent::MODULE.bits(),
                event.as_ptr(),
                key_name.inner,
            )
        };
    }
}

fn load_impl(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    let snapshot = args::parse_load(args)?;
    let window = Window::from_snapshot(&snapshot)?;
    let expire = window.expire_at_ms();
    let key = ctx.open_key_writable(key_name);
    key.set_value(&LLMRL_TYPE, window)?;
    drop(key);
    if let Some(at) = expire {
        expire_at(ctx, key_name, at);
    }
    signal_modified(ctx, key_name, c"llmrl.load");
    ctx.replicate_verbatim();
    ctx.reply_simple_string("OK");
    Ok(())
}

fn inspect_impl(ctx: &Context, key_name: &RedisString, args: &[&[u8]]) -> Result<(), CommandError> {
    if !args.is_empty() {
        return Err(CommandError::WrongArity("llmrl.inspect"));
    }
    let key = ctx.open_key(key_name);
    let Some(window) = key.get_value::<Window>(&LLMRL_TYPE)? else {
        raw::reply_with_null(ctx.ctx);
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
    reply::record(ctx, reply::is_resp3(ctx), &fields, true);
    Ok(())
}
