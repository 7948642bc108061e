//! What `COMMAND INFO` and `COMMAND DOCS` say about each command: summary, complexity, arity,
//! arguments (optional ones marked) and a key spec whose access flags are true — PEEK and
//! INSPECT only read their key, so a read-only ACL user (`%R~llmrl:*`) can run them. Where the
//! server offers it (Redis ≥ 7.4, Valkey 8), the commands also join an ACL category `llmrl`, so
//! operators can grant `+@llmrl`. Older servers (Redis 7.0 has neither call) load the module all
//! the same, without the category.

use redis_module::{raw, Context};
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};
use std::ptr;

/// The ACL category holding every llmrl command.
pub const ACL_CATEGORY: &CStr = c"llmrl";

/// How a command touches its one key.
#[derive(Clone, Copy)]
pub enum KeyAccess {
    /// Reads only (PEEK, INSPECT).
    Read,
    /// Reads and updates in place (CHECK, SETTLE, APPLY).
    Update,
    /// Replaces whatever was there (LOAD).
    Overwrite,
}

impl KeyAccess {
    fn flags(self) -> u64 {
        let flags = match self {
            KeyAccess::Read => raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
            KeyAccess::Update => {
                raw::REDISMODULE_CMD_KEY_RW
                    | raw::REDISMODULE_CMD_KEY_ACCESS
                    | raw::REDISMODULE_CMD_KEY_UPDATE
            }
            KeyAccess::Overwrite => raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE,
        };
        u64::from(flags)
    }
}

/// One argument as `COMMAND DOCS` lists it.
#[derive(Clone, Copy)]
pub struct ArgDoc {
    pub name: &'static CStr,
    pub kind: ArgKind,
    pub optional: bool,
    pub multiple: bool,
    /// A keyword before the value (`WINDOW ms`).
    pub token: Option<&'static CStr>,
    /// The arguments of a block.
    pub block: &'static [ArgDoc],
}

#[derive(Clone, Copy)]
pub enum ArgKind {
    Key,
    Integer,
    String,
    Block,
    /// One of the arguments of a block (`DETAIL [PACKED | BINARY] | PACKED | BINARY`).
    OneOf,
    /// A keyword alone (`DETAIL`).
    PureToken,
}

impl ArgDoc {
    pub const fn int(name: &'static CStr) -> ArgDoc {
        ArgDoc {
            name,
            kind: ArgKind::Integer,
            optional: false,
            multiple: false,
            token: None,
            block: &[],
        }
    }

    pub const fn key() -> ArgDoc {
        ArgDoc {
            kind: ArgKind::Key,
            ..ArgDoc::int(c"key")
        }
    }

    pub const fn string(name: &'static CStr) -> ArgDoc {
        ArgDoc {
            kind: ArgKind::String,
            ..ArgDoc::int(name)
        }
    }

    /// A keyword with no value.
    pub const fn keyword(token: &'static CStr) -> ArgDoc {
        ArgDoc {
            kind: ArgKind::PureToken,
            token: Some(token),
            ..ArgDoc::int(token)
        }
    }

    /// An optional keyword with no value.
    pub const fn flag(token: &'static CStr) -> ArgDoc {
        ArgDoc::keyword(token).optional()
    }

    /// One of `choices`.
    pub const fn one_of(name: &'static CStr, choices: &'static [ArgDoc]) -> ArgDoc {
        ArgDoc {
            kind: ArgKind::OneOf,
            ..ArgDoc::block(name, choices)
        }
    }

    pub const fn block(name: &'static CStr, block: &'static [ArgDoc]) -> ArgDoc {
        ArgDoc {
            kind: ArgKind::Block,
            block,
            ..ArgDoc::int(name)
        }
    }

    pub const fn optional(self) -> ArgDoc {
        ArgDoc {
            optional: true,
            ..self
        }
    }

    pub const fn multiple(self) -> ArgDoc {
        ArgDoc {
            multiple: true,
            ..self
        }
    }

    pub const fn token(self, token: &'static CStr) -> ArgDoc {
        ArgDoc {
            token: Some(token),
            ..self
        }
    }
}

/// Everything documented about one command.
pub struct CommandDoc {
    pub summary: &'static CStr,
    pub complexity: &'static CStr,
    pub key: KeyAccess,
    pub keys: KeyPositions,
    pub args: &'static [ArgDoc],
}

/// Where a command's keys are.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum KeyPositions {
    /// The first argument.
    First,
    /// `numkeys key [key ...]` first.
    Numkeys,
}

/// The module version the commands first appeared in.
const SINCE: &CStr = c"1.0.0";

fn optional_str(text: Option<&'static CStr>) -> *const c_char {
    text.map_or(ptr::null(), CStr::as_ptr)
}

/// Lay out `args` as Redis reads them: a NULL-named entry ends every list. Leaked on purpose:
/// built once at load, and Redis may keep pointing at it for the life of the process.
fn arg_list(args: &[ArgDoc]) -> *mut raw::RedisModuleCommandArg {
    let mut list: Vec<raw::RedisModuleCommandArg> = args
        .iter()
        .map(|arg| {
            let kind = match arg.kind {
                ArgKind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
                ArgKind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
                ArgKind::String => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
                ArgKind::Block => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
                ArgKind::OneOf => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
                ArgKind::PureToken => {
                    raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN
                }
            };
            let mut flags = 0;
            if arg.optional {
                flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
            }
            if arg.multiple {
                flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
            }
            raw::RedisModuleCommandArg {
                name: arg.name.as_ptr(),
                type_: kind,
                key_spec_index: if matches!(arg.kind, ArgKind::Key) {
                    0
                } else {
                    -1
                },
                token: optional_str(arg.token),
                summary: ptr::null(),
                since: ptr::null(),
                flags: flags as c_int,
                deprecated_since: ptr::null(),
                subargs: if arg.block.is_empty() {
                    ptr::null_mut()
                } else {
                    arg_list(arg.block)
                },
                display_text: ptr::null(),
            }
        })
        .collect();
    // SAFETY: an all-zero RedisModuleCommandArg (null pointers, zero integers) is the list's
    // terminator, as the API documents.
    list.push(unsafe { std::mem::zeroed() });
    Box::leak(list.into_boxed_slice()).as_mut_ptr()
}

/// The key spec of a command whose one key is its first argument.
fn key_specs(access: KeyAccess, positions: KeyPositions) -> *mut raw::RedisModuleCommandKeySpec {
    // SAFETY: all-zero is a valid key spec value (null notes, zero flags and unions) and, as the
    // second element, the list's terminator.
    let mut spec: raw::RedisModuleCommandKeySpec = unsafe { std::mem::zeroed() };
    spec.flags = access.flags();
    spec.begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
    spec.bs.index.pos = 1;
    match positions {
        KeyPositions::First => {
            spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
            spec.fk.range.lastkey = 0;
            spec.fk.range.keystep = 1;
            spec.fk.range.limit = 0;
        }
        KeyPositions::Numkeys => {
            // The count at argument 1, the keys right after it.
            spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_KEYNUM;
            spec.fk.keynum.keynumidx = 0;
            spec.fk.keynum.firstkey = 1;
            spec.fk.keynum.keystep = 1;
        }
    }
    let specs = vec![spec, unsafe { std::mem::zeroed() }];
    Box::leak(specs.into_boxed_slice()).as_mut_ptr()
}

/// Whether the server can hold module ACL categories (checked once, before registering).
pub fn add_acl_category(ctx: &Context) -> bool {
    // SAFETY: the API table is filled before init; the name is a static C string.
    match unsafe { raw::RedisModule_AddACLCategory } {
        Some(add) => (unsafe { add(ctx.ctx, ACL_CATEGORY.as_ptr()) }) == raw::Status::Ok as c_int,
        None => false,
    }
}

/// Document command `name` (already created) and put it in the `llmrl` ACL category when the
/// category exists. Failures are logged, never fatal: the command works without its docs.
pub fn describe(ctx: &Context, name: &CStr, doc: &CommandDoc, in_category: bool) {
    // SAFETY: the API table is filled before init; names are static C strings.
    let (Some(get_command), Some(set_info)) =
        (unsafe { (raw::RedisModule_GetCommand, raw::RedisModule_SetCommandInfo) })
    else {
        return;
    };
    let command = unsafe { get_command(ctx.ctx, name.as_ptr()) };
    if command.is_null() {
        return;
    }
    // Redis checks these sizes against its own to read the structs right.
    let version = Box::leak(Box::new(raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    }));
    let info = raw::RedisModuleCommandInfo {
        version,
        summary: doc.summary.as_ptr(),
        complexity: doc.complexity.as_ptr(),
        since: SINCE.as_ptr(),
        history: ptr::null_mut(),
        tips: ptr::null(),
        // Left to the module (0: "-1", any count): its own arity errors name the command and
        // are counted in INFO llmrl like every other bad argument.
        arity: 0,
        key_specs: key_specs(doc.key, doc.keys),
        args: arg_list(doc.args),
    };
    if unsafe { set_info(command, &info) } != raw::Status::Ok as c_int {
        ctx.log_warning(&format!("llmrl: the server refused the docs of {name:?}"));
    }
    if in_category {
        if let Some(set_categories) = unsafe { raw::RedisModule_SetCommandACLCategories } {
            if unsafe { set_categories(command, ACL_CATEGORY.as_ptr()) } != raw::Status::Ok as c_int
            {
                ctx.log_warning(&format!("llmrl: could not put {name:?} in @llmrl"));
            }
        }
    }
}
