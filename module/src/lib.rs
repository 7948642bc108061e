//! llmrl: a Redis module for LLM API rate limits (RPM, ITPM, OTPM over a sliding window).
//!
//! The algorithm, its persistence encoding and the command contract live in `llmrl-core`, with no
//! Redis dependency; this crate is the Redis glue: registration, command handlers, replies, the
//! native data type's callbacks, INFO and config.

// Unit tests build without the registration below, which leaves the glue unreferenced.
#![cfg_attr(test, allow(dead_code))]

mod command_info;
mod command_table;
mod commands;
mod config;
mod datatype;
mod dispatch;
mod keyspace;
mod multi;
mod reply;
mod stats;

use command_info::KeyPositions;
use command_table::COMMANDS;
use redis_module::{raw, Context, RedisString, Status};
use std::os::raw::c_int;

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
    let category = command_info::add_acl_category(ctx);
    for command in &COMMANDS {
        let (name, flags) = (command.name, command.flags);
        // Keys after numkeys are described by the key spec `describe` sets.
        let first = match command.doc.keys {
            KeyPositions::First => 1,
            KeyPositions::Numkeys => 0,
        };
        if unsafe {
            create(
                ctx.ctx,
                name.as_ptr(),
                Some(command.entry),
                flags.as_ptr(),
                first,
                first,
                first,
            )
        } == raw::Status::Err as c_int
        {
            ctx.log_warning(&format!("llmrl: could not register {name:?}"));
            return Status::Err;
        }
        command_info::describe(ctx, name, &command.doc, category);
    }
    Status::Ok
}

#[cfg(not(test))]
mod registration {
    use super::*;
    use datatype::{LLMRL_TYPE, SCOPE_TYPE};
    use redis_module::configuration::ConfigurationFlags;
    use redis_module::{redis_module, InfoContext, RedisResult};

    fn info(ctx: &InfoContext, for_crash_report: bool) {
        let _ = stats::add_info(ctx, for_crash_report);
    }

    redis_module! {
        name: "llmrl",
        version: llmrl_core::protocol::MODULE_VERSION,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [LLMRL_TYPE, SCOPE_TYPE],
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
