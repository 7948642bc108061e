//! The `llmrl-win` native type: persistence (RDB, AOF rewrite), MEMORY USAGE, DEBUG DIGEST, COPY.

use llmrl_core::encoding::{decode, encode, DecodeError};
use llmrl_core::window::Window;
use redis_module::logging::log_warning;
use redis_module::native_types::RedisType;
use redis_module::{raw, RedisString};
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

/// Run a callback, turning a panic (a bug) into `fallback` rather than unwinding into Redis.
fn guarded<T>(fallback: T, callback: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(callback)).unwrap_or_else(|_| {
        log_warning("llmrl: caught a panic in a data type callback");
        fallback
    })
}

/// RDB encoding version. Version 1: window_ms, head, 3 limits, row count, then 3 counters a row.
pub const ENCODING_VERSION: i32 = 1;

pub static LLMRL_TYPE: RedisType = RedisType::new(
    "llmrl-win",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        free: Some(free),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        aux_load: None,
        aux_save: None,
        aux_save2: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: Some(copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    let Some(window) = value.cast::<Window>().as_ref() else {
        return;
    };
    let numbers = guarded(Vec::new(), || encode(&window.snapshot()));
    for number in numbers {
        raw::save_unsigned(rdb, number);
    }
}

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    if encver > ENCODING_VERSION {
        log_warning(format!(
            "llmrl: cannot load a key with encoding version {encver}: this module reads up to \
             version {ENCODING_VERSION}; upgrade the module"
        ));
        return ptr::null_mut();
    }
    guarded(ptr::null_mut(), || {
        match decode(|| raw::load_unsigned(rdb).ok()) {
            Ok(window) => Box::into_raw(Box::new(window)).cast::<c_void>(),
            // A short read: Redis reports the I/O error itself (HANDLE_IO_ERRORS).
            Err(DecodeError::Truncated) => ptr::null_mut(),
            Err(error) => {
                log_warning(format!("llmrl: refusing a corrupt key in the RDB: {error}"));
                ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    let (Some(window), Some(emit)) = (value.cast::<Window>().as_ref(), raw::RedisModule_EmitAOF)
    else {
        return;
    };
    // The key Redis hands us lives on its stack and cannot be retained: pass a copy.
    let key = RedisString::create_from_slice(ptr::null_mut(), RedisString::string_as_slice(key));
    let numbers = guarded(Vec::new(), || encode(&window.snapshot()));
    let numbers = numbers
        .into_iter()
        .map(|n| RedisString::create(None, n.to_string()));
    let args: Vec<RedisString> = std::iter::once(key).chain(numbers).collect();
    let argv: Vec<*mut raw::RedisModuleString> = args.iter().map(|s| s.inner).collect();
    // "v": an array of RedisModuleString pointers followed by its length.
    emit(
        aof,
        c"LLMRL.LOAD".as_ptr(),
        c"v".as_ptr(),
        argv.as_ptr(),
        argv.len(),
    );
}

unsafe extern "C" fn free(value: *mut c_void) {
    if !value.is_null() {
        drop(Box::from_raw(value.cast::<Window>()));
    }
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    value.cast::<Window>().as_ref().map_or(0, |window| {
        std::mem::size_of::<Window>() + window.heap_bytes()
    })
}

unsafe extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    let (Some(window), Some(add), Some(end)) = (
        value.cast::<Window>().as_ref(),
        raw::RedisModule_DigestAddLongLong,
        raw::RedisModule_DigestEndSequence,
    ) else {
        return;
    };
    for number in guarded(Vec::new(), || encode(&window.snapshot())) {
        add(md, number as i64);
    }
    end(md);
}

unsafe extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    match value.cast::<Window>().as_ref() {
        Some(window) => guarded(ptr::null_mut(), || {
            Box::into_raw(Box::new(window.clone())).cast::<c_void>()
        }),
        None => ptr::null_mut(),
    }
}
