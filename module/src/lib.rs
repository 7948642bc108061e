//! llmrl: a Redis module for LLM API rate limits (RPM, ITPM, OTPM over a sliding window).
//!
//! The algorithm, its persistence encoding and the command contract live in `llmrl-core`, with no
//! Redis dependency; this crate is the Redis glue: registration, command handlers, replies, the
//! native data type's callbacks, INFO and config.

// Unit tests build without the registration below, which leaves the glue unreferenced.
#![cfg_attr(test, allow(dead_code))]

mod command_info;
mod commands;
mod config;
mod datatype;
mod dispatch;
mod keyspace;
mod reply;
mod stats;

use command_info::{ArgDoc, CommandDoc, KeyAccess};
use redis_module::{raw, Context, RedisString, Status};
use std::ffi::CStr;
use std::os::raw::c_int;

/// One command: its name, raw entry point, flags and documentation. The key is always the
/// first argument.
struct Command {
    name: &'static CStr,
    entry: CommandEntry,
    flags: &'static CStr,
    doc: CommandDoc,
}

const WINDOW: ArgDoc = ArgDoc::int(c"ms").token(c"WINDOW").optional();
const LIMITS: [ArgDoc; 3] = [
    ArgDoc::int(c"rpm"),
    ArgDoc::int(c"itpm"),
    ArgDoc::int(c"otpm"),
];

const COMMANDS: [Command; 6] = [
    Command {
        name: c"llmrl.check",
        entry: dispatch::check,
        flags: c"write deny-oom fast",
        doc: CommandDoc {
            summary: c"Decides a request against RPM/ITPM/OTPM limits over a sliding window and, if admitted, records it",
            complexity: c"O(1)",
            key: KeyAccess::Update,
            args: &[
                ArgDoc::key(),
                LIMITS[0],
                LIMITS[1],
                LIMITS[2],
                ArgDoc::int(c"input_tokens"),
                ArgDoc::int(c"output_tokens"),
                WINDOW,
            ],
        },
    },
    Command {
        name: c"llmrl.peek",
        entry: dispatch::peek,
        flags: c"readonly fast",
        doc: CommandDoc {
            summary: c"Reports what LLMRL.CHECK would decide, recording nothing",
            complexity: c"O(1)",
            key: KeyAccess::Read,
            args: &[
                ArgDoc::key(),
                LIMITS[0],
                LIMITS[1],
                LIMITS[2],
                ArgDoc::block(
                    c"cost",
                    &[ArgDoc::int(c"input_tokens"), ArgDoc::int(c"output_tokens")],
                )
                .optional(),
                WINDOW,
            ],
        },
    },
    Command {
        name: c"llmrl.settle",
        entry: dispatch::settle,
        flags: c"write fast",
        doc: CommandDoc {
            summary: c"Corrects an admitted request's token reservation with its actual usage",
            complexity: c"O(1)",
            key: KeyAccess::Update,
            args: &[
                ArgDoc::key(),
                ArgDoc::int(c"ticket"),
                ArgDoc::int(c"reserved_input"),
                ArgDoc::int(c"actual_input"),
                ArgDoc::int(c"reserved_output"),
                ArgDoc::int(c"actual_output"),
            ],
        },
    },
    Command {
        name: c"llmrl.apply",
        entry: dispatch::apply,
        flags: c"write fast",
        doc: CommandDoc {
            summary: c"Applies a replicated effect with the primary's timestamp (replication and AOF; not for applications)",
            complexity: c"O(1)",
            key: KeyAccess::Update,
            args: &[ArgDoc::key(), ArgDoc::string(c"effect").multiple()],
        },
    },
    Command {
        name: c"llmrl.load",
        entry: dispatch::load,
        flags: c"write deny-oom",
        doc: CommandDoc {
            summary: c"Replaces a key with exactly the given window state (what an AOF rewrite emits)",
            complexity: c"O(N) where N is the number of buckets (at most 61)",
            key: KeyAccess::Overwrite,
            args: &[
                ArgDoc::key(),
                ArgDoc::int(c"window_ms"),
                ArgDoc::int(c"head_bucket"),
                LIMITS[0],
                LIMITS[1],
                LIMITS[2],
                ArgDoc::int(c"bucket_count"),
                ArgDoc::block(
                    c"bucket",
                    &[
                        ArgDoc::int(c"requests"),
                        ArgDoc::int(c"input_tokens"),
                        ArgDoc::int(c"output_tokens"),
                    ],
                )
                .optional()
                .multiple(),
            ],
        },
    },
    Command {
        name: c"llmrl.inspect",
        entry: dispatch::inspect,
        flags: c"readonly",
        doc: CommandDoc {
            summary: c"Shows a key's window state, for debugging",
            complexity: c"O(1)",
            key: KeyAccess::Read,
            args: &[ArgDoc::key()],
        },
    },
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
    let category = command_info::add_acl_category(ctx);
    for command in &COMMANDS {
        let (name, flags) = (command.name, command.flags);
        if unsafe {
            create(
                ctx.ctx,
                name.as_ptr(),
                Some(command.entry),
                flags.as_ptr(),
                1,
                1,
                1,
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
