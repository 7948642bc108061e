//! Warnings whose cause can repeat on every request (Redis down, an upstream failing, accept
//! errors) are logged at most once a second per call site, saying how many were left out: an
//! outage at 20,000 requests a second writes a line a second, not 20,000.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Instant;

/// How often a throttled warning is logged at most.
const INTERVAL_MS: u64 = 1_000;

/// One call site's throttle.
pub struct Throttle {
    /// When the last line was logged: milliseconds since the process's first throttled
    /// warning, plus one (0 = never).
    last_logged: AtomicU64,
    /// Occurrences not logged since then.
    left_out: AtomicU64,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            last_logged: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// Whether this occurrence is logged now; if so, how many were left out before it.
    pub fn admit(&self) -> Option<u64> {
        static START: LazyLock<Instant> = LazyLock::new(Instant::now);
        let now = u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.admit_at(now.saturating_add(1))
    }

    /// [`Throttle::admit`] at `now` (milliseconds, at least 1).
    fn admit_at(&self, now: u64) -> Option<u64> {
        let last = self.last_logged.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= INTERVAL_MS;
        // Of the threads that find it due at once, the one that moves the time logs.
        if due
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.left_out.swap(0, Ordering::Relaxed));
        }
        self.left_out.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `tracing::warn!` at most once a second per call site, with a `left_out` field counting the
/// occurrences not logged since the previous line.
macro_rules! warn_throttled {
    ($($field:tt)+) => {{
        static THROTTLE: $crate::throttle::Throttle = $crate::throttle::Throttle::new();
        if let Some(left_out) = THROTTLE.admit() {
            tracing::warn!(left_out, $($field)+);
        }
    }};
}
pub(crate) use warn_throttled;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn one_line_a_second_counting_what_was_left_out() {
        let throttle = Throttle::new();
        assert_eq!(throttle.admit_at(1), Some(0));
        assert_eq!(throttle.admit_at(10), None);
        assert_eq!(throttle.admit_at(999), None);
        assert_eq!(throttle.admit_at(1_001), Some(2));
        assert_eq!(throttle.admit_at(1_500), None);
        // A quiet spell, then the next occurrence is logged at once.
        assert_eq!(throttle.admit_at(60_000), Some(1));
        assert_eq!(throttle.admit_at(60_001), None);
    }

    #[test]
    fn threads_at_once_log_one_line_and_lose_no_count() {
        let throttle = Arc::new(Throttle::new());
        let logged: u64 = (0..4)
            .map(|_| {
                let throttle = Arc::clone(&throttle);
                std::thread::spawn(move || {
                    (0..1_000)
                        .filter(|_| throttle.admit_at(5).is_some())
                        .count() as u64
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|thread| thread.join().unwrap_or(0))
            .sum();
        assert_eq!(logged, 1);
        assert_eq!(throttle.admit_at(2_000), Some(3_999));
    }
}
