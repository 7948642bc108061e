//! Counters for `INFO llmrl`. Commands run on Redis's main thread; relaxed atomics are enough.

use redis_module::{InfoContext, RedisResult};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub static CHECKS: Counter = Counter::new();
pub static ALLOWED: Counter = Counter::new();
pub static DENIED_RPM: Counter = Counter::new();
pub static DENIED_ITPM: Counter = Counter::new();
pub static DENIED_OTPM: Counter = Counter::new();
pub static TOO_LARGE: Counter = Counter::new();
pub static PEEKS: Counter = Counter::new();
pub static SETTLES: Counter = Counter::new();
pub static SETTLE_NOOPS: Counter = Counter::new();
pub static APPLIES: Counter = Counter::new();
pub static MCHECKS: Counter = Counter::new();
pub static MALLOWED: Counter = Counter::new();
pub static MDENIED: Counter = Counter::new();
pub static MSETTLES: Counter = Counter::new();
pub static MCANCELS: Counter = Counter::new();
pub static ERRORS: Counter = Counter::new();
pub static PANICS: Counter = Counter::new();

pub fn add_info(ctx: &InfoContext, _for_crash_report: bool) -> RedisResult<()> {
    let fields = [
        ("checks", &CHECKS),
        ("allowed", &ALLOWED),
        ("denied_rpm", &DENIED_RPM),
        ("denied_itpm", &DENIED_ITPM),
        ("denied_otpm", &DENIED_OTPM),
        ("too_large", &TOO_LARGE),
        ("peeks", &PEEKS),
        ("settles", &SETTLES),
        ("settle_noops", &SETTLE_NOOPS),
        ("applies", &APPLIES),
        ("mchecks", &MCHECKS),
        ("mchecks_allowed", &MALLOWED),
        ("mchecks_denied", &MDENIED),
        ("msettles", &MSETTLES),
        ("mcancels", &MCANCELS),
        ("errors", &ERRORS),
        ("panics_caught", &PANICS),
    ];
    // An empty section name gives the section the module's name: `INFO llmrl`.
    let mut section = ctx.builder().add_section("");
    for (name, counter) in fields {
        section = section.field(name, counter.get().to_string())?;
    }
    section = section.field(
        "default_window_ms",
        crate::config::default_window_ms().to_string(),
    )?;
    section.build_section()?.build_info()?;
    Ok(())
}
