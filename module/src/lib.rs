//! llmrl: a Redis module for LLM API rate limits (RPM, ITPM, OTPM over a sliding window).
//!
//! `window` is the algorithm, with no Redis dependency; the other modules are the Redis glue:
//! argument parsing, replies, the native data type (persistence), commands, INFO and config.

// Unit tests build without the registration below, which leaves the glue unreferenced.
#![cfg_attr(test, allow(dead_code))]

pub mod args;
mod commands;
mod config;
mod datatype;
pub mod encoding;
pub mod error;
#[cfg(test)]
mod fuzz;
mod reply;
mod stats;
pub mod window;

use redis_module::{raw, Context, RedisString, Status};
use std::ffi::CStr;
use std::os::raw::c_int;

/// The commands, registered with their raw entry points (see `commands::dispatch`):
/// name, handler, flags; the key is always the first argument.
const COMMANDS: [(&CStr, CommandEntry, &CStr); 6] = [
    (c"llmrl.check", commands::check, c"write deny-oom fast"),
    (c"llmrl.peek", commands::peek, c"readonly fast"),
    (c"llmrl.settle", commands::settle, c"write fast"),
    (c"llmrl.apply", commands::apply, c"write fast"),
    (c"llmrl.load", commands::load, c"write deny-oom"),
    (c"llmrl.inspect", commands::inspect, c"readonly"),
];

type CommandEntry =
    extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    // Load failures surface as I/O errors instead of aborting; WATCH and client-side caching are
    // signalled only when a command really changes a key (a denied CHECK changes nothing).
    ctx.set_module_options(
        redis_module::ModuleOptions::HANDLE_IO_ERRORS
            | redis_module::ModuleOptions::NO_IMPLICIT_SIGNAL_MODIFIED,
    );
    // SAFETY: the API table is filled before init runs; names and flags are static C strings.
    let Some(create) = (unsafe { raw::RedisModule_CreateCommand }) else {
        return Status::Err;
    };
    for (name, entry, flags) in COMMANDS {
        if unsafe { create(ctx.ctx, name.as_ptr(), Some(entry), flags.as_ptr(), 1, 1, 1) }
            == raw::Status::Err as c_int
        {
            ctx.log_warning(&format!("llmrl: could not register {name:?}"));
            return Status::Err;
        }
    }
    Status::Ok
}

#[cfg(not(test))]
mod registration {
    use super::*;
    use datatype::LLMRL_TYPE;
    use redis_module::configuration::ConfigurationFlags;
    use redis_module::{redis_module, InfoContext, RedisResult};

    fn info(ctx: &InfoContext, for_crash_report: bool) {
        let _ = stats::add_info(ctx, for_crash_report);
    }

    redis_module! {
        name: "llmrl",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [LLMRL_TYPE],
        init: init,
        info: info,
                commands: [],
        configurations: [
            i64: [
                ["default-window-ms", &config::DEFAULT_WINDOW, 60_000, 60, i64::MAX, ConfigurationFlags::DEFAULT, None],
            ],
            string: [],
            bool: [],
            enum: [],
            module_args_as_configuration: true,
        ]
    }
}
