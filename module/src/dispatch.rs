//! The raw command entry points Redis calls: argv is borrowed (no per-call argument vector, no
//! copies), errors become `ERR` replies, and a panic (a bug) is caught and answered with an error
//! instead of unwinding into — and aborting — the user's Redis.

use crate::commands;
use crate::multi;
use crate::stats;
use llmrl_core::error::CommandError;
use redis_module::{raw, Context, RedisError, RedisResult, RedisString, RedisValue};
use smallvec::SmallVec;
use std::mem::ManuallyDrop;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub type Handler = fn(&Context, &RedisString, &[&[u8]]) -> Result<(), CommandError>;

/// Arguments gathered on the stack (a four- or five-scope MCHECK has 36 to 45 arguments); past
/// this, in a fresh allocation per command.
const INLINE_ARGS: usize = 64;

/// A command whose keys are `numkeys key [key ...]` (the multi-scope commands).
pub type MultiHandler =
    fn(&Context, &[ManuallyDrop<RedisString>], &[&[u8]]) -> Result<(), CommandError>;

/// How a command takes its keys.
#[derive(Clone, Copy)]
pub enum Entry {
    /// The key is the first argument.
    OneKey(Handler),
    /// `numkeys key [key ...]` come first.
    Multi(MultiHandler),
}

/// Borrow argument strings as byte slices: on the stack for the usual few, on the heap past
/// [`INLINE_ARGS`].
fn with_bytes<T>(args: &[*mut raw::RedisModuleString], f: impl FnOnce(&[&[u8]]) -> T) -> T {
    // Filled in place: collecting would build the kilobyte of slots and then move it.
    let mut bytes: SmallVec<[&[u8]; INLINE_ARGS]> = SmallVec::new();
    bytes.extend(args.iter().map(|arg| RedisString::string_as_slice(*arg)));
    f(&bytes)
}

/// Split out the keys and remaining arguments, borrowing Redis's argument strings (no copies, no
/// reference counting), and run the handler.
fn call(
    ctx: &Context,
    argv: &[*mut raw::RedisModuleString],
    name: &'static str,
    entry: Entry,
) -> Result<(), CommandError> {
    // Borrowed for the command's duration; never freed here (Redis owns argv).
    let borrow = |arg: &*mut raw::RedisModuleString| {
        ManuallyDrop::new(RedisString::from_redis_module_string(ctx.ctx, *arg))
    };
    match entry {
        Entry::OneKey(handler) => {
            let [_, key, rest @ ..] = argv else {
                return Err(CommandError::WrongArity(name));
            };
            let key = borrow(key);
            with_bytes(rest, |rest| handler(ctx, &key, rest))
        }
        Entry::Multi(handler) => {
            let args = argv.get(1..).unwrap_or(&[]);
            with_bytes(args, |bytes| {
                let numkeys = llmrl_core::multi::args::parse_numkeys(name, bytes)?;
                let keys: llmrl_core::multi::PerScope<ManuallyDrop<RedisString>> =
                    args.iter().skip(1).take(numkeys).map(borrow).collect();
                handler(ctx, &keys, bytes.get(1 + numkeys..).unwrap_or(&[]))
            })
        }
    }
}

/// Run a command: a handler replies itself on success; errors become `ERR` replies; a panic (a
/// bug) is caught and answered with an error rather than aborting the user's Redis. Handlers
/// reply last, so a caught panic never follows a partial reply.
fn run(
    ctx: &Context,
    argv: &[*mut raw::RedisModuleString],
    name: &'static str,
    entry: Entry,
) -> RedisResult {
    let outcome = catch_unwind(AssertUnwindSafe(|| call(ctx, argv, name, entry)));
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

/// Redis 7.0 routes a cluster request by the legacy key range or a module's own key callback
/// (`getkeys-api`), not by key specs: for `numkeys key [key ...]` commands, say where the keys
/// are when asked. Returns whether this was such a request (then nothing else is done).
fn report_key_positions(
    ctx: *mut raw::RedisModuleCtx,
    argv: &[*mut raw::RedisModuleString],
) -> bool {
    // SAFETY: the API table is filled at load; the context is the one Redis passed.
    let (Some(is_request), Some(key_at)) = (unsafe {
        (
            raw::RedisModule_IsKeysPositionRequest,
            raw::RedisModule_KeyAtPos,
        )
    }) else {
        return false;
    };
    if unsafe { is_request(ctx) } == 0 {
        return false;
    }
    let numkeys = argv
        .get(1)
        .map(|arg| RedisString::string_as_slice(*arg))
        .and_then(|bytes| llmrl_core::args::parse_u64(bytes, "numkeys").ok())
        .unwrap_or(0);
    let last = usize::try_from(numkeys)
        .unwrap_or(usize::MAX)
        .saturating_add(1)
        .min(argv.len().saturating_sub(1));
    for position in 2..=last {
        // SAFETY: positions within argv, as the API requires.
        unsafe { key_at(ctx, position as c_int) };
    }
    true
}

/// What Redis calls: the raw command entry point, without the per-call argument vector the
/// `redis_module!` wrapper would build.
fn dispatch(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    name: &'static str,
    entry: Entry,
) -> c_int {
    let context = Context::new(ctx);
    let argv = match usize::try_from(argc) {
        // SAFETY: Redis passes `argc` valid string pointers in `argv` for the call's duration.
        Ok(len) if !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, len) },
        _ => &[],
    };
    if matches!(entry, Entry::Multi(_)) && report_key_positions(ctx, argv) {
        return raw::Status::Ok as c_int;
    }
    let result = run(&context, argv, name, entry);
    context.reply(result) as c_int
}

macro_rules! entry_points {
    ($($entry:ident => $name:literal, $kind:ident($handler:path);)*) => {
        $(
            pub extern "C" fn $entry(
                ctx: *mut raw::RedisModuleCtx,
                argv: *mut *mut raw::RedisModuleString,
                argc: c_int,
            ) -> c_int {
                dispatch(ctx, argv, argc, $name, Entry::$kind($handler))
            }
        )*
    };
}

entry_points! {
    check => "llmrl.check", OneKey(commands::check);
    peek => "llmrl.peek", OneKey(commands::peek);
    settle => "llmrl.settle", OneKey(commands::settle);
    apply => "llmrl.apply", OneKey(commands::apply);
    load => "llmrl.load", OneKey(commands::load);
    inspect => "llmrl.inspect", OneKey(commands::inspect);
    mcheck => "llmrl.mcheck", Multi(multi::mcheck);
    mpeek => "llmrl.mpeek", Multi(multi::mpeek);
    msettle => "llmrl.msettle", Multi(multi::msettle);
    mcancel => "llmrl.mcancel", Multi(multi::mcancel);
    mapply => "llmrl.mapply", Multi(multi::mapply);
    mload => "llmrl.mload", OneKey(multi::mload);
}
