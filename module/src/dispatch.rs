//! The raw command entry points Redis calls: argv is borrowed (no per-call argument vector, no
//! copies), errors become `ERR` replies, and a panic (a bug) is caught and answered with an error
//! instead of unwinding into — and aborting — the user's Redis.

use crate::commands;
use crate::stats;
use llmrl_core::error::CommandError;
use redis_module::{raw, Context, RedisError, RedisResult, RedisString, RedisValue};
use std::mem::ManuallyDrop;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub type Handler = fn(&Context, &RedisString, &[&[u8]]) -> Result<(), CommandError>;

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
    ($($entry:ident => $name:literal, $handler:path;)*) => {
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
    check => "llmrl.check", commands::check;
    peek => "llmrl.peek", commands::peek;
    settle => "llmrl.settle", commands::settle;
    apply => "llmrl.apply", commands::apply;
    load => "llmrl.load", commands::load;
    inspect => "llmrl.inspect", commands::inspect;
}
