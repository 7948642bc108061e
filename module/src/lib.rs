//! llmrl: a Redis module for LLM API rate limits (RPM, ITPM, OTPM over a sliding window).
//!
//! The algorithm, its persistence encoding and the command contract live in `llmrl-core`, with no
//! Redis dependency; this crate is the Redis glue: registration, command handlers, replies, the
//! native data type's callbacks, INFO and config.

// Unit tests build without the registration below, which leaves the glue unreferenced.
#![cfg_attr(test, allow(dead_code))]

mod commands;
mod config;
mod datatype;
mod dispatch;
mod keyspace;
mod reply;
mod stats;

use redis_module::{raw, Context, RedisString, Status};
use std::ffi::CStr;
use std::os::raw::c_int;

/// The commands, registered with their raw entry points (see `dispatch`):
/// name, handler, flags; the key is always the first argument.
const COMMANDS: [(&CStr, CommandEntry, &CStr); 6] = [
    (c"llmrl.check", dispatch::check, c"write deny-oom fast"),
    (c"llmrl.peek", dispatch::peek, c"readonly fast"),
    (c"llmrl.settle", dispatch::settle, c"write fast"),
    (c"llmrl.apply", dispatch::apply, c"write fast"),
    (c"llmrl.load", dispatch::load, c"write deny-oom"),
    (c"llmrl.inspect", dispatch::inspect, c"readonly"),
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
