//! `CONFIG SET/GET llmrl.*` and `loadmodule` arguments.

use llmrl_core::window::{validate_window, DEFAULT_WINDOW_MS};
use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::RedisError;
use std::sync::atomic::{AtomicI64, Ordering};

/// The window a key gets when its first CHECK names none (`llmrl.default-window-ms`).
pub struct DefaultWindow(AtomicI64);

pub static DEFAULT_WINDOW: DefaultWindow = DefaultWindow(AtomicI64::new(DEFAULT_WINDOW_MS as i64));

pub fn default_window_ms() -> u64 {
    u64::try_from(DEFAULT_WINDOW.0.load(Ordering::Relaxed)).unwrap_or(DEFAULT_WINDOW_MS)
}

impl ConfigurationValue<i64> for DefaultWindow {
    fn get(&self, _ctx: &ConfigurationContext) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, _ctx: &ConfigurationContext, value: i64) -> Result<(), RedisError> {
        let ms = u64::try_from(value)
            .ok()
            .and_then(|ms| validate_window(ms).ok())
            .ok_or(RedisError::Str(
                "llmrl.default-window-ms must be a positive multiple of 60",
            ))?;
        self.0.store(ms as i64, Ordering::Relaxed);
        Ok(())
    }
}
