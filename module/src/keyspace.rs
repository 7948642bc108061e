//! Every raw call into the Redis module API that a command makes: the server clock, reading and
//! writing a key's window, its absolute expiry, keyspace events, and replication of effects.
//! The command handlers (`commands.rs`) work through these functions and never touch `raw`.

use crate::datatype::Persisted;
use llmrl_core::encoding::pack_effect;
use llmrl_core::error::CommandError;
use llmrl_core::multi::PerScope;
use llmrl_core::scope::encoding as scope_encoding;
use llmrl_core::scope::{Clock, ScopeEffect, ScopeState};
use llmrl_core::window::{Effect, Window};
use redis_module::key::{RedisKey, RedisKeyWritable};
use redis_module::{raw, Context, RedisError, RedisString};
use std::ffi::CStr;

/// How a Redis error from opening or typing a key reads as a command error.
pub fn command_error(error: RedisError) -> CommandError {
    match error {
        RedisError::WrongType => CommandError::WrongType,
        // How redis-module 2.0.8 reports a key holding another type.
        RedisError::Str(message) if message.contains("wrong Redis type") => CommandError::WrongType,
        _ => CommandError::Internal,
    }
}

/// The state a key holds (a window or a scope), for reading; `None` if the key is missing.
/// Another type: WRONGTYPE.
pub fn read<T: Persisted>(key: &RedisKey) -> Result<Option<&T>, CommandError> {
    key.get_value::<T>(T::redis_type()).map_err(command_error)
}

/// The state a key holds, for changing it.
pub fn read_mut<T: Persisted>(key: &RedisKeyWritable) -> Result<Option<&mut T>, CommandError> {
    key.get_value::<T>(T::redis_type()).map_err(command_error)
}

/// Replace whatever the key holds with `state`.
pub fn store<T: Persisted>(key: &RedisKeyWritable, state: T) -> Result<(), CommandError> {
    key.set_value(T::redis_type(), state).map_err(command_error)
}

/// Replace a key with exactly `state` (LOAD and MLOAD: what an AOF rewrite emits), with the
/// expiry the state implies, replicated as it came, and answer OK.
pub fn replace<T: Persisted>(
    ctx: &Context,
    key_name: &RedisString,
    state: T,
    expire_at_ms: Option<u64>,
) -> Result<(), CommandError> {
    let key = ctx.open_key_writable(key_name);
    store(&key, state)?;
    drop(key);
    if let Some(at) = expire_at_ms {
        expire_at(ctx, key_name, at);
    }
    signal_modified(ctx, key_name, c"llmrl.load");
    ctx.replicate_verbatim();
    ctx.reply_simple_string("OK");
    Ok(())
}

/// The server's clock, read once per command. Replicas and AOF replay never call this.
pub fn now_ms() -> Result<u64, CommandError> {
    // SAFETY: the API table is filled once at module load, before any command runs.
    let clock = unsafe { raw::RedisModule_Milliseconds }.ok_or(CommandError::NoClock)?;
    u64::try_from(unsafe { clock() }).map_err(|_| CommandError::NoClock)
}

/// Apply `effect` to the key (creating it when needed), keep its TTL at the absolute time its
/// newest bucket stops counting, and replicate the effect as `LLMRL.APPLY`, which carries the
/// timestamp, so replicas and AOF replay reach the same state without reading a clock.
pub fn commit(
    ctx: &Context,
    key: RedisKeyWritable,
    key_name: &RedisString,
    window_ms: u64,
    effect: &Effect,
    event: &CStr,
) -> Result<(), CommandError> {
    let (before, after) = match read_mut::<Window>(&key)? {
        Some(window) => {
            let before = window.expire_at_ms();
            window.apply(effect);
            (before, window.expire_at_ms())
        }
        None => {
            let mut window = Window::new(window_ms)?;
            window.apply(effect);
            let after = window.expire_at_ms();
            store(&key, window)?;
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

/// Apply a scope's effect (creating the key when needed) and keep its TTL at the absolute time
/// nothing in it counts any more (its window, its period, its leases). A scope left holding
/// nothing is deleted. The caller replicates every scope of the call at once
/// ([`ScopeReplication`]).
pub fn commit_scope(
    ctx: &Context,
    key: RedisKeyWritable,
    key_name: &RedisString,
    clock: Clock,
    effect: &ScopeEffect,
    event: &CStr,
) -> Result<(), CommandError> {
    let (before, after) = match read_mut::<ScopeState>(&key)? {
        Some(state) => {
            let before = state.expire_at_ms();
            state.apply(effect);
            (before, state.expire_at_ms())
        }
        None => {
            let mut state = ScopeState::new(clock)?;
            state.apply(effect);
            let after = state.expire_at_ms();
            if after.is_some() {
                store(&key, state)?;
            }
            (None, after)
        }
    };
    if after.is_none() && before.is_some() {
        let _ = key.delete();
    }
    drop(key);
    if after != before {
        if let Some(at) = after {
            expire_at(ctx, key_name, at);
        }
    }
    signal_modified(ctx, key_name, event);
    Ok(())
}

/// The effects of one call, replicated as a single `LLMRL.MAPPLY numkeys key [key ...] effect
/// [effect ...]` (each effect packed with its key's clock): one command for all scopes, so
/// Redis looks it up once and replicas apply every scope of the call together. Each effect is
/// packed into a Redis string as it is added; [`ScopeReplication::send`] hands them over.
pub struct ScopeReplication<'a> {
    ctx: &'a Context,
    keys: PerScope<*mut raw::RedisModuleString>,
    effects: PerScope<*mut raw::RedisModuleString>,
}

impl<'a> ScopeReplication<'a> {
    pub fn new(ctx: &'a Context) -> Self {
        ScopeReplication {
            ctx,
            keys: PerScope::new(),
            effects: PerScope::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn push(&mut self, key_name: &RedisString, clock: Clock, effect: &ScopeEffect) {
        // SAFETY: the API table is filled once at load, before any command runs.
        let Some(create) = (unsafe { raw::RedisModule_CreateString }) else {
            return;
        };
        let packed = scope_encoding::pack_effect(clock, effect);
        let bytes = packed.as_slice();
        // SAFETY: a valid context and buffer; the string is freed in `drop`.
        let string = unsafe { create(self.ctx.ctx, bytes.as_ptr().cast(), bytes.len()) };
        if string.is_null() {
            return;
        }
        self.keys.push(key_name.inner);
        self.effects.push(string);
    }

    /// Replicate what was added (nothing if nothing was). Dropping does the same, so a command
    /// that fails half-way still replicates the scopes it already changed.
    pub fn send(self) {}

    fn replicate(&self) {
        if self.keys.is_empty() {
            return;
        }
        // SAFETY: the API table is filled once at load, before any command runs.
        let Some(replicate) = (unsafe { raw::RedisModule_Replicate }) else {
            self.ctx
                .log_warning("llmrl: RedisModule_Replicate is unavailable");
            return;
        };
        let mut argv: PerScope<*mut raw::RedisModuleString> = PerScope::new();
        argv.extend_from_slice(&self.keys);
        argv.extend_from_slice(&self.effects);
        // SAFETY: every string is live for the call, which keeps its own references ("l":
        // numkeys; "v": the keys and effects as an array of strings and its length).
        unsafe {
            replicate(
                self.ctx.ctx,
                c"LLMRL.MAPPLY".as_ptr(),
                c"lv".as_ptr(),
                self.keys.len() as std::os::raw::c_longlong,
                argv.as_ptr(),
                argv.len(),
            );
        }
    }
}

impl Drop for ScopeReplication<'_> {
    fn drop(&mut self) {
        self.replicate();
        // SAFETY: strings created by `push` and not freed elsewhere.
        if let Some(free) = unsafe { raw::RedisModule_FreeString } {
            for string in self.effects.drain(..) {
                unsafe { free(self.ctx.ctx, string) };
            }
        }
    }
}

/// Replicate `command key <one binary argument>`.
fn replicate(ctx: &Context, command: &CStr, key_name: &RedisString, packed: &[u8]) {
    // SAFETY: the API table is filled once at load, before any command runs.
    match unsafe { raw::RedisModule_Replicate } {
        // SAFETY: "sb" is the key (a RedisModuleString) and a buffer given as pointer + length;
        // `packed` outlives the call, which copies it.
        Some(replicate) => unsafe {
            replicate(
                ctx.ctx,
                command.as_ptr(),
                c"sb".as_ptr(),
                key_name.inner,
                packed.as_ptr(),
                packed.len(),
            );
        },
        None => ctx.log_warning("llmrl: RedisModule_Replicate is unavailable"),
    }
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
    replicate(
        ctx,
        c"LLMRL.APPLY",
        key_name,
        packed.get(..len).unwrap_or(&packed),
    );
}

/// Set an absolute expiry. PEXPIREAT through RM_Call is not itself replicated (no `!` flag):
/// replicas and the AOF derive the same absolute time from the replicated effect.
pub fn expire_at(ctx: &Context, key_name: &RedisString, at_ms: u64) {
    let at = at_ms.to_string();
    if let Err(error) = ctx.call("PEXPIREAT", &[key_name.as_slice(), at.as_bytes()]) {
        ctx.log_warning(&format!("llmrl: could not set the key's expiry: {error}"));
    }
}

pub fn signal_modified(ctx: &Context, key_name: &RedisString, event: &CStr) {
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
