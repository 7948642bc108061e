//! One scope of a multi-scope check (`LLMRL.MCHECK`): its own clock — a sliding window or a
//! calendar period —, four summed dimensions (requests, input tokens, output tokens and a cost
//! whose charge each scope is given), and concurrency slots held by leases.
//!
//! As with [`crate::window`], deciding is read-only ([`ScopeState::evaluate`]) and every change
//! is an explicit, clock-free [`ScopeEffect`] ([`ScopeState::apply`]), so a replica or an AOF
//! replay reaches the same state as the primary.

mod calendar;
pub mod encoding;
mod leases;
#[cfg(test)]
mod tests;

pub use calendar::CalendarCounter;
use leases::SlotDecision;
pub use leases::{Lease, Leases};

use crate::period::Period;
use crate::window::{Amounts, Decision, Dimension, Retry, Window, WindowError};

/// Summed dimensions of a scope: requests, input tokens, output tokens, cost.
pub const SUMMED: usize = 4;
/// Dimensions a scope reports: the summed ones and concurrency.
pub const REPORTED: usize = 5;

/// Why a scope refuses, or which dimension a figure is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    Summed(Dimension),
    Concurrency,
}

impl Limit {
    /// The reply's reason name: `rpm`, `itpm`, `otpm`, `cost`, `concurrency`.
    pub fn reason(self) -> &'static str {
        match self {
            Limit::Summed(dimension) => dimension.reason(),
            Limit::Concurrency => "concurrency",
        }
    }

    pub const ALL: [Limit; REPORTED] = [
        Limit::Summed(Dimension::Requests),
        Limit::Summed(Dimension::InputTokens),
        Limit::Summed(Dimension::OutputTokens),
        Limit::Summed(Dimension::Cost),
        Limit::Concurrency,
    ];
}

/// How a scope measures time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Clock {
    /// A sliding window of this many ms (a positive multiple of 60), as CHECK's.
    Sliding(u64),
    /// A calendar period that resets at its boundary.
    Calendar(Period),
}

/// The limits of a scope; 0 is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScopeLimits {
    pub summed: Amounts<SUMMED>,
    pub concurrency: u64,
}

/// What one scope reports about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeDecision {
    pub allowed: bool,
    /// The limit needing the longest wait; `None` when allowed.
    pub reason: Option<Limit>,
    pub retry: Retry,
    /// Left after the decision, per [`Limit::ALL`]; `None` for an unlimited one.
    pub remaining: [Option<u64>; REPORTED],
    /// Ms until each is fully replenished (for concurrency: until the earliest lease ends).
    pub reset_ms: [u64; REPORTED],
}

/// A deterministic change to one scope: everything a replica needs, no clock required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScopeEffect {
    /// The admission's (or correction's) time.
    pub now_ms: u64,
    pub limits: ScopeLimits,
    /// Added at `now_ms`.
    pub charge: Amounts<SUMMED>,
    /// Taken back from what the admission at `at_ms` was charged (never below zero).
    pub refund: Option<(u64, Amounts<SUMMED>)>,
    /// A slot taken until `deadline_ms`, under an admission's ticket.
    pub lease: Option<Lease>,
    /// The ticket whose slot ends (idempotent: no such lease, nothing happens).
    pub release: Option<u64>,
}

/// An admitting decision's figures from the window's (or period's) and the slots': the slot this
/// request takes counted when `taking_slot`.
fn figures(summed: &Decision<SUMMED>, slot: &SlotDecision, taking_slot: bool) -> ScopeDecision {
    let mut decision = ScopeDecision {
        allowed: true,
        reason: None,
        retry: Retry::Now,
        remaining: [None; REPORTED],
        reset_ms: [0; REPORTED],
    };
    decision.remaining[..SUMMED].copy_from_slice(&summed.remaining);
    decision.reset_ms[..SUMMED].copy_from_slice(&summed.reset_ms);
    decision.remaining[SUMMED] = slot
        .free
        .map(|free| free.saturating_sub(u64::from(taking_slot)));
    decision.reset_ms[SUMMED] = slot.reset_ms;
    decision
}

/// The counters of a scope.
#[derive(Clone, Debug)]
pub enum Counter {
    Sliding(Window<SUMMED>),
    Calendar(CalendarCounter),
}

/// One scope's state.
#[derive(Clone, Debug)]
pub struct ScopeState {
    pub counter: Counter,
    pub leases: Leases,
    /// Limits of the most recent admission, for corrections' reports.
    pub limits: ScopeLimits,
}

impl ScopeState {
    pub fn new(clock: Clock) -> Result<ScopeState, WindowError> {
        let counter = match clock {
            Clock::Sliding(window_ms) => Counter::Sliding(Window::new(window_ms)?),
            Clock::Calendar(period) => Counter::Calendar(CalendarCounter::new(period)),
        };
        Ok(ScopeState {
            counter,
            leases: Leases::default(),
            limits: ScopeLimits::default(),
        })
    }

    /// Heap bytes held besides the struct itself.
    pub fn heap_bytes(&self) -> usize {
        let counter = match &self.counter {
            Counter::Sliding(window) => window.heap_bytes(),
            Counter::Calendar(_) => 0,
        };
        counter + self.leases.heap_bytes()
    }

    pub fn clock(&self) -> Clock {
        match &self.counter {
            Counter::Sliding(window) => Clock::Sliding(window.window_ms()),
            Counter::Calendar(counter) => Clock::Calendar(counter.period()),
        }
    }

    /// The earliest time this scope can be charged at: a sliding window never goes behind its
    /// newest bucket, a calendar counter behind its period (the clock stepping back).
    pub fn floor_ms(&self) -> u64 {
        match &self.counter {
            Counter::Sliding(window) => window.head().saturating_mul(window.bucket_ms()),
            Counter::Calendar(counter) => counter.start_ms(),
        }
    }

    /// Decide a request of `cost` at `now_ms` (which takes a slot if `limits.concurrency` is
    /// set) on this scope alone, changing nothing. The figures count the request if admitted.
    pub fn evaluate(
        &self,
        now_ms: u64,
        limits: ScopeLimits,
        cost: Amounts<SUMMED>,
    ) -> ScopeDecision {
        let summed = self.summed(now_ms, limits.summed, cost);
        let slot = self.leases.evaluate(now_ms, limits.concurrency);
        let mut retry = summed.retry;
        let mut reason = summed.reason.map(Limit::Summed);
        if slot.retry.longer_than(retry) {
            retry = slot.retry;
            reason = Some(Limit::Concurrency);
        }
        if retry == Retry::Now {
            return figures(&summed, &slot, true);
        }
        // Refused: nothing is charged, so the figures are the scope's as it stands. A window that
        // refused already reports itself uncharged; if only the slots refused, look again
        // without the cost.
        let uncharged = if summed.allowed {
            self.summed(now_ms, limits.summed, [0; SUMMED])
        } else {
            summed
        };
        ScopeDecision {
            allowed: false,
            reason,
            retry,
            ..figures(&uncharged, &slot, false)
        }
    }

    /// The scope's figures with nothing charged (what a refused request leaves).
    pub fn report(&self, now_ms: u64, limits: ScopeLimits) -> ScopeDecision {
        let summed = self.summed(now_ms, limits.summed, [0; SUMMED]);
        figures(
            &summed,
            &self.leases.evaluate(now_ms, limits.concurrency),
            false,
        )
    }

    fn summed(
        &self,
        now_ms: u64,
        limits: Amounts<SUMMED>,
        cost: Amounts<SUMMED>,
    ) -> Decision<SUMMED> {
        match &self.counter {
            Counter::Sliding(window) => window.evaluate(now_ms, limits, cost),
            Counter::Calendar(counter) => counter.evaluate(now_ms, limits, cost),
        }
    }

    /// Apply an effect. Deterministic: the same state and effect give the same result anywhere.
    pub fn apply(&mut self, effect: &ScopeEffect) {
        self.limits = effect.limits;
        self.leases.expire(effect.now_ms);
        if let Some(ticket) = effect.release {
            self.leases.release(ticket);
        }
        match &mut self.counter {
            Counter::Sliding(window) => {
                let refund = effect.refund.and_then(|(at_ms, amounts)| {
                    let ticket = window.ticket_for_time(at_ms)?;
                    Some(crate::window::Refund { ticket, amounts })
                });
                window.apply(&crate::window::Effect {
                    now_ms: effect.now_ms,
                    limits: effect.limits.summed,
                    charge: effect.charge,
                    refund,
                });
            }
            Counter::Calendar(counter) => counter.apply(
                effect.now_ms,
                effect.limits.summed,
                effect.charge,
                effect.refund,
            ),
        }
        if let Some(lease) = effect.lease {
            self.leases.take(lease);
        }
    }

    /// When the key may expire: once nothing counts any more and every lease has ended.
    pub fn expire_at_ms(&self) -> Option<u64> {
        let counted = match &self.counter {
            Counter::Sliding(window) => window.expire_at_ms(),
            Counter::Calendar(counter) => counter.expire_at_ms(),
        };
        match (counted, self.leases.last_deadline()) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}
