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
use smallvec::SmallVec;
use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

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
/// Redis looks it up once and replicas apply every scope of the call together. Effects are
/// packed back to back on the stack as they are added; [`ScopeReplication::send`] hands them
/// over.
pub struct ScopeReplication<'a> {
    ctx: &'a Context,
    keys: PerScope<*mut raw::RedisModuleString>,
    packed: SmallVec<[u8; 1024]>,
    /// Where each effect ends in `packed`.
    ends: PerScope<usize>,
}

/// `RedisModule_Replicate` with `LLMRL.MAPPLY`, `numkeys` (a kept string), the keys and the
/// effects as buffers (format `s`, one `s` per key, one `b` per effect). Redis sizes its argv
/// by the format's length, and strings built from buffers need no create/free round trip here:
/// cheaper than a vector of strings (`v`), which reallocates the argv and needs every effect as
/// a string, or a number (`l`), which Redis formats into a new string every time.
macro_rules! replicate_mapply {
    ($replicate:expr, $ctx:expr, $format:literal, [$($key:expr),+], [$($effect:expr),+]) => {{
        let numkeys = numkeys_string([$($key),+].len());
        if !numkeys.is_null() {
            $replicate(
                $ctx,
                c"LLMRL.MAPPLY".as_ptr(),
                $format.as_ptr(),
                numkeys,
                $($key,)+
                $($effect.as_ptr(), $effect.len(),)+
            );
        }
    }};
}

/// `"1"` to `"5"` as Redis strings, made once and kept for the process's life (replication
/// only takes references to them).
static NUMKEYS: [AtomicPtr<raw::RedisModuleString>; 5] = [
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
    AtomicPtr::new(std::ptr::null_mut()),
];

/// The kept string for `count` (1 to 5), made on first use; null if Redis could not make it.
fn numkeys_string(count: usize) -> *mut raw::RedisModuleString {
    let Some(slot) = count.checked_sub(1).and_then(|i| NUMKEYS.get(i)) else {
        return std::ptr::null_mut();
    };
    let kept = slot.load(Ordering::Relaxed);
    if !kept.is_null() {
        return kept;
    }
    // SAFETY: the API table is filled at load; a null context makes a string no context owns,
    // so it outlives every command. Commands run on Redis's main thread only.
    let Some(create) = (unsafe { raw::RedisModule_CreateStringFromLongLong }) else {
        return std::ptr::null_mut();
    };
    let made = unsafe { create(std::ptr::null_mut(), count as std::os::raw::c_longlong) };
    slot.store(made, Ordering::Relaxed);
    made
}

impl<'a> ScopeReplication<'a> {
    pub fn new(ctx: &'a Context) -> Self {
        ScopeReplication {
            ctx,
            keys: PerScope::new(),
            packed: SmallVec::new(),
            ends: PerScope::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn push(&mut self, key_name: &RedisString, clock: Clock, effect: &ScopeEffect) {
        let packed = scope_encoding::pack_effect(clock, effect);
        self.packed.extend_from_slice(packed.as_slice());
        self.ends.push(self.packed.len());
        self.keys.push(key_name.inner);
    }

    /// Replicate what was added (nothing if nothing was). Dropping does the same, so a command
    /// that fails half-way still replicates the scopes it already changed. By reference: moving
    /// the kilobyte of packed effects into a consuming `send` cost a copy per command.
    pub fn send(&mut self) {
        self.replicate();
        self.keys.clear();
        self.ends.clear();
        self.packed.clear();
    }

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
        let mut effects: PerScope<&[u8]> = PerScope::new();
        let mut start = 0;
        for &end in &self.ends {
            effects.push(self.packed.get(start..end).unwrap_or_default());
            start = end;
        }
        let ctx = self.ctx.ctx;
        // SAFETY: every key string and effect buffer is live for the call, which copies the
        // buffers and keeps its own references to the strings; each format names exactly the
        // arguments that follow it.
        unsafe {
            match (self.keys.as_slice(), effects.as_slice()) {
                ([k], [e]) => replicate_mapply!(replicate, ctx, c"ssb", [*k], [e]),
                ([k1, k2], [e1, e2]) => {
                    replicate_mapply!(replicate, ctx, c"sssbb", [*k1, *k2], [e1, e2])
                }
                ([k1, k2, k3], [e1, e2, e3]) => {
                    replicate_mapply!(replicate, ctx, c"ssssbbb", [*k1, *k2, *k3], [e1, e2, e3])
                }
                ([k1, k2, k3, k4], [e1, e2, e3, e4]) => replicate_mapply!(
                    replicate,
                    ctx,
                    c"sssssbbbb",
                    [*k1, *k2, *k3, *k4],
                    [e1, e2, e3, e4]
                ),
                ([k1, k2, k3, k4, k5], [e1, e2, e3, e4, e5]) => replicate_mapply!(
                    replicate,
                    ctx,
                    c"ssssssbbbbb",
                    [*k1, *k2, *k3, *k4, *k5],
                    [e1, e2, e3, e4, e5]
                ),
                (keys, effects) => self.replicate_vector(replicate, keys, effects),
            }
        }
    }

    /// More scopes than the formats above spell out: every effect as a string, one vector.
    fn replicate_vector(
        &self,
        replicate: ReplicateFn,
        keys: &[*mut raw::RedisModuleString],
        effects: &[&[u8]],
    ) {
        // SAFETY: as in `replicate`; the strings created here are freed before returning.
        unsafe {
            let (Some(create), Some(free)) =
                (raw::RedisModule_CreateString, raw::RedisModule_FreeString)
            else {
                return;
            };
            let mut argv: PerScope<*mut raw::RedisModuleString> = PerScope::new();
            argv.extend_from_slice(keys);
            for effect in effects {
                argv.push(create(self.ctx.ctx, effect.as_ptr().cast(), effect.len()));
            }
            if argv.iter().any(|string| string.is_null()) {
                self.ctx
                    .log_warning("llmrl: could not replicate a multi-scope change");
            } else {
                replicate(
                    self.ctx.ctx,
                    c"LLMRL.MAPPLY".as_ptr(),
                    c"lv".as_ptr(),
                    keys.len() as std::os::raw::c_longlong,
                    argv.as_ptr(),
                    argv.len(),
                );
            }
            for string in argv.iter().skip(keys.len()).filter(|s| !s.is_null()) {
                free(self.ctx.ctx, *string);
            }
        }
    }
}

type ReplicateFn = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *const std::os::raw::c_char,
    *const std::os::raw::c_char,
    ...
) -> std::os::raw::c_int;

impl Drop for ScopeReplication<'_> {
    fn drop(&mut self) {
        self.replicate();
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
    replicate(
        ctx,
        c"LLMRL.APPLY",
        key_name,
        pack_effect(&numbers).as_slice(),
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
