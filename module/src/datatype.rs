//! The native types and their callbacks: persistence (RDB, AOF rewrite), MEMORY USAGE, DEBUG
//! DIGEST, COPY. Two types, one set of generic callbacks:
//! - `llmrl-win`: a key of `LLMRL.CHECK` (a sliding window of three dimensions);
//! - `llmrl-scp`: a scope of `LLMRL.MCHECK` (a window or calendar period of four dimensions, and
//!   concurrency leases).
//!
//! Both persist as a flat list of numbers (`llmrl-core`'s encodings), so RDB, AOF rewrite and
//! DEBUG DIGEST can never disagree on what the state is.

use llmrl_core::encoding::DecodeError;
use llmrl_core::scope::ScopeState;
use llmrl_core::window::Window;
use redis_module::logging::log_warning;
use redis_module::native_types::RedisType;
use redis_module::{raw, RedisString};
use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

/// A value one of the types holds.
pub trait Persisted: Clone + Sized {
    /// The command an AOF rewrite emits to rebuild the key from [`Persisted::encode`]'s numbers.
    const LOAD_COMMAND: &'static CStr;
    fn encode(&self) -> Vec<u64>;
    fn decode(next: impl FnMut() -> Option<u64>) -> Result<Self, DecodeError>;
    fn heap_bytes(&self) -> usize;
    /// The native type holding it.
    fn redis_type() -> &'static RedisType;
}

impl Persisted for Window {
    const LOAD_COMMAND: &'static CStr = c"LLMRL.LOAD";
    fn encode(&self) -> Vec<u64> {
        llmrl_core::encoding::encode(&self.snapshot())
    }
    fn decode(next: impl FnMut() -> Option<u64>) -> Result<Self, DecodeError> {
        llmrl_core::encoding::decode(next)
    }
    fn heap_bytes(&self) -> usize {
        Window::heap_bytes(self)
    }
    fn redis_type() -> &'static RedisType {
        &LLMRL_TYPE
    }
}

impl Persisted for ScopeState {
    const LOAD_COMMAND: &'static CStr = c"LLMRL.MLOAD";
    fn encode(&self) -> Vec<u64> {
        llmrl_core::scope::encoding::encode(self)
    }
    fn decode(next: impl FnMut() -> Option<u64>) -> Result<Self, DecodeError> {
        llmrl_core::scope::encoding::decode(next)
    }
    fn heap_bytes(&self) -> usize {
        ScopeState::heap_bytes(self)
    }
    fn redis_type() -> &'static RedisType {
        &SCOPE_TYPE
    }
}

/// Run a callback, turning a panic (a bug) into `fallback` rather than unwinding into Redis.
fn guarded<T>(fallback: T, callback: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(callback)).unwrap_or_else(|_| {
        log_warning("llmrl: caught a panic in a data type callback");
        fallback
    })
}

/// RDB encoding version of `llmrl-win`. Version 1: window_ms, head, 3 limits, row count, then 3
/// counters a row.
pub const ENCODING_VERSION: i32 = 1;
/// RDB encoding version of `llmrl-scp` (see `llmrl_core::scope::encoding`).
pub const SCOPE_ENCODING_VERSION: i32 = 1;

const fn methods<T: Persisted>() -> raw::RedisModuleTypeMethods {
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load::<T>),
        rdb_save: Some(rdb_save::<T>),
        aof_rewrite: Some(aof_rewrite::<T>),
        free: Some(free::<T>),
        mem_usage: Some(mem_usage::<T>),
        digest: Some(digest::<T>),
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: Some(copy::<T>),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    }
}

pub static LLMRL_TYPE: RedisType =
    RedisType::new("llmrl-win", ENCODING_VERSION, methods::<Window>());

pub static SCOPE_TYPE: RedisType =
    RedisType::new("llmrl-scp", SCOPE_ENCODING_VERSION, methods::<ScopeState>());

unsafe extern "C" fn rdb_save<T: Persisted>(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    let Some(state) = value.cast::<T>().as_ref() else {
        return;
    };
    for number in guarded(Vec::new(), || state.encode()) {
        raw::save_unsigned(rdb, number);
    }
}

unsafe extern "C" fn rdb_load<T: Persisted>(
    rdb: *mut raw::RedisModuleIO,
    encver: c_int,
) -> *mut c_void {
    // Both types are at version 1; a newer encoding is refused rather than misread.
    if encver > ENCODING_VERSION.max(SCOPE_ENCODING_VERSION) {
        log_warning(format!(
            "llmrl: cannot load a key with encoding version {encver}: this module reads up to \
             version {ENCODING_VERSION}; upgrade the module"
        ));
        return ptr::null_mut();
    }
    guarded(ptr::null_mut(), || {
        match T::decode(|| raw::load_unsigned(rdb).ok()) {
            Ok(state) => Box::into_raw(Box::new(state)).cast::<c_void>(),
            // A short read: Redis reports the I/O error itself (HANDLE_IO_ERRORS).
            Err(DecodeError::Truncated) => ptr::null_mut(),
            Err(error) => {
                log_warning(format!("llmrl: refusing a corrupt key in the RDB: {error}"));
                ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn aof_rewrite<T: Persisted>(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    let (Some(state), Some(emit)) = (value.cast::<T>().as_ref(), raw::RedisModule_EmitAOF) else {
        return;
    };
    // The key Redis hands us lives on its stack and cannot be retained: pass a copy.
    let key = RedisString::create_from_slice(ptr::null_mut(), RedisString::string_as_slice(key));
    let numbers = guarded(Vec::new(), || state.encode())
        .into_iter()
        .map(|n| RedisString::create(None, n.to_string()));
    let args: Vec<RedisString> = std::iter::once(key).chain(numbers).collect();
    let argv: Vec<*mut raw::RedisModuleString> = args.iter().map(|s| s.inner).collect();
    // "v": an array of RedisModuleString pointers followed by its length.
    emit(
        aof,
        T::LOAD_COMMAND.as_ptr(),
        c"v".as_ptr(),
        argv.as_ptr(),
        argv.len(),
    );
}

unsafe extern "C" fn free<T: Persisted>(value: *mut c_void) {
    if !value.is_null() {
        drop(Box::from_raw(value.cast::<T>()));
    }
}

unsafe extern "C" fn mem_usage<T: Persisted>(value: *const c_void) -> usize {
    value
        .cast::<T>()
        .as_ref()
        .map_or(0, |state| std::mem::size_of::<T>() + state.heap_bytes())
}

unsafe extern "C" fn digest<T: Persisted>(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    let (Some(state), Some(add), Some(end)) = (
        value.cast::<T>().as_ref(),
        raw::RedisModule_DigestAddLongLong,
        raw::RedisModule_DigestEndSequence,
    ) else {
        return;
    };
    for number in guarded(Vec::new(), || state.encode()) {
        add(md, number as i64);
    }
    end(md);
}

unsafe extern "C" fn copy<T: Persisted>(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    match value.cast::<T>().as_ref() {
        Some(state) => guarded(ptr::null_mut(), || {
            Box::into_raw(Box::new(state.clone())).cast::<c_void>()
        }),
        None => ptr::null_mut(),
    }
}
