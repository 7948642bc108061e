//! Every command the module registers: name, raw entry point, flags and documentation.

use crate::command_info::{ArgDoc, CommandDoc, KeyAccess, KeyPositions};
use crate::dispatch;
use redis_module::raw;
use std::ffi::CStr;
use std::os::raw::c_int;

pub type CommandEntry =
    extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

const NUMKEYS: ArgDoc = ArgDoc::int(c"numkeys");
const KEYS: ArgDoc = ArgDoc::key().multiple();
/// MCHECK's and MPEEK's arguments.
const MCHECK_ARGS: [ArgDoc; 8] = [
    NUMKEYS,
    KEYS,
    ArgDoc::int(c"input_tokens"),
    ArgDoc::int(c"output_tokens"),
    ArgDoc::int(c"ms").token(c"LEASE").optional(),
    ArgDoc::one_of(c"detail", &DETAIL).optional(),
    // The keyword may be left out: a scope starts with its window, never an option.
    ArgDoc::flag(c"SCOPES"),
    ArgDoc::block(c"scope", &SCOPE).multiple(),
];
/// `DETAIL [PACKED | BINARY]`, `PACKED` or `BINARY`: each scope's figures, nested, or the
/// whole reply in one string (text or words).
const DETAIL: [ArgDoc; 3] = [
    ArgDoc::block(c"detail", &DETAIL_FORM).token(c"DETAIL"),
    ArgDoc::keyword(c"PACKED"),
    ArgDoc::keyword(c"BINARY"),
];
const DETAIL_FORM: [ArgDoc; 1] = [ArgDoc::one_of(c"form", &FORMS).optional()];
const FORMS: [ArgDoc; 2] = [ArgDoc::keyword(c"PACKED"), ArgDoc::keyword(c"BINARY")];
/// One scope of MCHECK / MPEEK.
const SCOPE: [ArgDoc; 7] = [
    ArgDoc::string(c"window"),
    ArgDoc::int(c"rpm"),
    ArgDoc::int(c"itpm"),
    ArgDoc::int(c"otpm"),
    ArgDoc::int(c"cost_limit"),
    ArgDoc::int(c"cost_charge"),
    ArgDoc::int(c"concurrency"),
];

/// One command: its name, raw entry point, flags and documentation. The key is always the
/// first argument.
pub struct Command {
    pub name: &'static CStr,
    pub entry: CommandEntry,
    pub flags: &'static CStr,
    pub doc: CommandDoc,
}

const WINDOW: ArgDoc = ArgDoc::int(c"ms").token(c"WINDOW").optional();
/// The reply as one string of words instead of an array (any order with `WINDOW`).
const BINARY: ArgDoc = ArgDoc::flag(c"BINARY");
const LIMITS: [ArgDoc; 3] = [
    ArgDoc::int(c"rpm"),
    ArgDoc::int(c"itpm"),
    ArgDoc::int(c"otpm"),
];

pub const COMMANDS: [Command; 12] = [
    Command {
        name: c"llmrl.check",
        entry: dispatch::check,
        flags: c"write deny-oom fast",
        doc: CommandDoc {
            summary: c"Decides a request against RPM/ITPM/OTPM limits over a sliding window and, if admitted, records it",
            complexity: c"O(1)",
            keys: KeyPositions::First,
            key: KeyAccess::Update,
            args: &[
                ArgDoc::key(),
                LIMITS[0],
                LIMITS[1],
                LIMITS[2],
                ArgDoc::int(c"input_tokens"),
                ArgDoc::int(c"output_tokens"),
                WINDOW,
                BINARY,
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
            keys: KeyPositions::First,
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
                BINARY,
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
            keys: KeyPositions::First,
            key: KeyAccess::Update,
            args: &[
                ArgDoc::key(),
                ArgDoc::int(c"ticket"),
                ArgDoc::int(c"reserved_input"),
                ArgDoc::int(c"actual_input"),
                ArgDoc::int(c"reserved_output"),
                ArgDoc::int(c"actual_output"),
                BINARY,
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
            keys: KeyPositions::First,
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
            keys: KeyPositions::First,
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
            keys: KeyPositions::First,
            key: KeyAccess::Read,
            args: &[ArgDoc::key()],
        },
    },
    Command {
        name: c"llmrl.mcheck",
        entry: dispatch::mcheck,
        flags: c"write deny-oom getkeys-api",
        doc: CommandDoc {
            summary: c"Decides a request against several scopes at once (windows or calendar periods, four summed dimensions, concurrency slots) and, if every scope admits it, records it in all",
            complexity: c"O(N) where N is the number of keys",
            key: KeyAccess::Update,
            keys: KeyPositions::Numkeys,
            args: &MCHECK_ARGS,
        },
    },
    Command {
        name: c"llmrl.mpeek",
        entry: dispatch::mpeek,
        flags: c"readonly getkeys-api",
        doc: CommandDoc {
            summary: c"Reports what LLMRL.MCHECK would decide, recording nothing",
            complexity: c"O(N) where N is the number of keys",
            key: KeyAccess::Read,
            keys: KeyPositions::Numkeys,
            args: &MCHECK_ARGS,
        },
    },
    Command {
        name: c"llmrl.msettle",
        entry: dispatch::msettle,
        flags: c"write getkeys-api",
        doc: CommandDoc {
            summary: c"Corrects an MCHECK admission's reservation with its actual usage in every scope and releases its concurrency slots",
            complexity: c"O(N) where N is the number of keys",
            key: KeyAccess::Update,
            keys: KeyPositions::Numkeys,
            args: &[
                NUMKEYS,
                KEYS,
                ArgDoc::int(c"ticket"),
                ArgDoc::int(c"reserved_input"),
                ArgDoc::int(c"actual_input"),
                ArgDoc::int(c"reserved_output"),
                ArgDoc::int(c"actual_output"),
                ArgDoc::block(
                    c"cost",
                    &[ArgDoc::int(c"reserved_cost"), ArgDoc::int(c"actual_cost")],
                )
                .token(c"COSTS")
                .optional()
                .multiple(),
            ],
        },
    },
    Command {
        name: c"llmrl.mcancel",
        entry: dispatch::mcancel,
        flags: c"write getkeys-api",
        doc: CommandDoc {
            summary: c"Undoes an MCHECK admission entirely (request, tokens, cost, slot) in the scopes named",
            complexity: c"O(N) where N is the number of keys",
            key: KeyAccess::Update,
            keys: KeyPositions::Numkeys,
            args: &[
                NUMKEYS,
                KEYS,
                ArgDoc::int(c"ticket"),
                ArgDoc::int(c"input_tokens"),
                ArgDoc::int(c"output_tokens"),
                ArgDoc::int(c"cost").token(c"COSTS").optional().multiple(),
            ],
        },
    },
    Command {
        name: c"llmrl.mapply",
        entry: dispatch::mapply,
        flags: c"write getkeys-api",
        doc: CommandDoc {
            summary: c"Applies the scopes' replicated effects of one call with the primary's timestamp (replication and AOF; not for applications)",
            complexity: c"O(N) where N is the number of keys",
            key: KeyAccess::Update,
            keys: KeyPositions::Numkeys,
            args: &[NUMKEYS, KEYS, ArgDoc::string(c"effect").multiple()],
        },
    },
    Command {
        name: c"llmrl.mload",
        entry: dispatch::mload,
        flags: c"write deny-oom",
        doc: CommandDoc {
            summary: c"Replaces a key with exactly the given scope state (what an AOF rewrite emits)",
            complexity: c"O(N) where N is the number of buckets and leases",
            key: KeyAccess::Overwrite,
            keys: KeyPositions::First,
            args: &[ArgDoc::key(), ArgDoc::int(c"number").multiple()],
        },
    },
];
