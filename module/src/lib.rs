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

use redis_module::{Context, RedisString, Status};

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    // Load failures surface as I/O errors instead of aborting; WATCH and client-side caching are
    // signalled only when a command really changes a key (a denied CHECK changes nothing).
    ctx.set_module_options(
        redis_module::ModuleOptions::HANDLE_IO_ERRORS
            | redis_module::ModuleOptions::NO_IMPLICIT_SIGNAL_MODIFIED,
    );
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
        commands: [
            ["llmrl.check", commands::check, "write deny-oom fast", 1, 1, 1, ""],
            ["llmrl.peek", commands::peek, "readonly fast", 1, 1, 1, ""],
            ["llmrl.settle", commands::settle, "write fast", 1, 1, 1, ""],
            ["llmrl.apply", commands::apply, "write fast", 1, 1, 1, ""],
            ["llmrl.load", commands::load, "write deny-oom", 1, 1, 1, ""],
            ["llmrl.inspect", commands::inspect, "readonly", 1, 1, 1, ""],
        ],
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
