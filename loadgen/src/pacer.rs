//! Waiting to the microsecond inside a tokio runtime, for the open loop's schedule: a timerfd
//! watched by the runtime's own poller. tokio's timer ticks in whole milliseconds, which would
//! release requests late in bursts and blame the server for it; a separate sleeping thread that
//! hands each request over costs a thread wakeup or two a request, and on a small machine the
//! server under test pays for them.

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub struct Pacer {
    timer: AsyncFd<OwnedFd>,
}

impl Pacer {
    /// A pacer on the current tokio runtime (which must have I/O enabled).
    pub fn new() -> io::Result<Pacer> {
        let timer = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which keeps it open, and always the
        // same descriptor, until the `AsyncFd` is dropped.
        let timer = unsafe { AsyncFd::register_with_interest(timer, Interest::READABLE) }?;
        Ok(Pacer { timer })
    }

    /// Wait until `at`; at once if it has passed. `Instant` is CLOCK_MONOTONIC on Linux, the
    /// timer's clock, so a relative wait from `Instant::now()` ends at `at`.
    pub async fn until(&self, at: Instant) -> io::Result<()> {
        let Some(wait) = at
            .checked_duration_since(Instant::now())
            .filter(|wait| !wait.is_zero())
        else {
            return Ok(());
        };
        let none = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let once = Itimerspec {
            it_interval: none,
            it_value: Timespec {
                tv_sec: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: wait.subsec_nanos().into(),
            },
        };
        timerfd_settime(self.timer.get_ref(), TimerfdTimerFlags::empty(), &once)?;
        loop {
            let mut ready = self.timer.readable().await?;
            let mut expirations = [0u8; 8];
            // Readiness left over from the last wait reads as WouldBlock, which clears it.
            match ready.try_io(|timer| Ok(rustix::io::read(timer.get_ref(), &mut expirations)?)) {
                Ok(result) => return result.map(drop),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn never_wakes_before_the_instant() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pacer = Pacer::new().unwrap();
            let start = Instant::now();
            // A wait in the past returns at once; the same timer serves wait after wait.
            pacer.until(start - Duration::from_millis(1)).await.unwrap();
            for step in 1..=20u32 {
                let at = start + Duration::from_micros(250) * step;
                pacer.until(at).await.unwrap();
                assert!(Instant::now() >= at, "woke before the instant, step {step}");
            }
        });
    }
}
