//! A calendar scope's counters: the sums of the period in progress, reset when the next period
//! begins. Exact per period: what a period admits never exceeds a limit.

use crate::period::Period;
use crate::window::{Amounts, Decision, Dimension, Retry};

use super::SUMMED;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalendarCounter {
    period: Period,
    /// Start of the period the totals belong to (0 before anything was counted).
    start_ms: u64,
    /// The end of that period when `start_ms` is a period's start (else `start_ms`: an empty
    /// range, so every use computes the bounds). Derived, not persisted: computing calendar
    /// bounds is the costly part of a calendar scope, and one key is used many times a period.
    end_ms: u64,
    totals: Amounts<SUMMED>,
}

impl CalendarCounter {
    pub fn new(period: Period) -> CalendarCounter {
        CalendarCounter::from_parts(period, 0, [0; SUMMED])
    }

    /// Rebuild from persisted parts (any values are safe: the period bounds every use).
    pub fn from_parts(period: Period, start_ms: u64, totals: Amounts<SUMMED>) -> CalendarCounter {
        let mut counter = CalendarCounter {
            period,
            start_ms,
            end_ms: start_ms,
            totals,
        };
        counter.begin(start_ms);
        counter
    }

    /// Count from `start_ms` on, caching its period's end if it starts one.
    fn begin(&mut self, start_ms: u64) {
        self.start_ms = start_ms;
        let (start, end) = self.period.bounds(start_ms);
        self.end_ms = if start == start_ms && start_ms != 0 {
            end
        } else {
            start_ms
        };
    }

    /// The period holding `t_ms`: the cached one when `t_ms` falls in it.
    fn bounds(&self, t_ms: u64) -> (u64, u64) {
        if (self.start_ms..self.end_ms).contains(&t_ms) {
            (self.start_ms, self.end_ms)
        } else {
            self.period.bounds(t_ms)
        }
    }

    pub fn period(&self) -> Period {
        self.period
    }

    pub fn start_ms(&self) -> u64 {
        self.start_ms
    }

    pub fn totals(&self) -> Amounts<SUMMED> {
        self.totals
    }

    /// The period counted at `now_ms` (a clock behind the counted period stays in it), and the
    /// usage that counts in it.
    fn at(&self, now_ms: u64) -> ((u64, u64), Amounts<SUMMED>) {
        let bounds = self.bounds(now_ms.max(self.start_ms));
        let usage = if bounds.0 == self.start_ms {
            self.totals
        } else {
            [0; SUMMED]
        };
        (bounds, usage)
    }

    /// Decide a request of `cost` at `now_ms` against `limits`, changing nothing.
    pub fn evaluate(
        &self,
        now_ms: u64,
        limits: Amounts<SUMMED>,
        cost: Amounts<SUMMED>,
    ) -> Decision<SUMMED> {
        let ((_, end), usage) = self.at(now_ms);
        let until_end = end.saturating_sub(now_ms).max(1);
        let mut retry = Retry::Now;
        let mut reason = None;
        for (d, dimension) in Dimension::SCOPE.into_iter().enumerate() {
            let (limit, cost, used) = (limits[d], cost[d], usage[d]);
            let wait = if limit == 0 || used.saturating_add(cost) <= limit {
                Retry::Now
            } else if cost > limit {
                Retry::Never
            } else {
                // Capacity comes back whole when the next period begins.
                Retry::After(until_end)
            };
            if wait.longer_than(retry) {
                retry = wait;
                reason = Some(dimension);
            }
        }
        let allowed = retry == Retry::Now;
        let mut remaining = [None; SUMMED];
        let mut reset_ms = [0; SUMMED];
        for d in 0..SUMMED {
            let used = usage[d].saturating_add(if allowed { cost[d] } else { 0 });
            if limits[d] != 0 {
                remaining[d] = Some(limits[d].saturating_sub(used));
            }
            if used > 0 {
                reset_ms[d] = end.saturating_sub(now_ms);
            }
        }
        Decision {
            allowed,
            reason,
            retry,
            remaining,
            reset_ms,
            ticket: 0,
        }
    }

    /// Charge `charge` at `now_ms` and take `refund` back from the admission at its time, if
    /// that admission's period is still the one counted (never below zero).
    pub fn apply(
        &mut self,
        now_ms: u64,
        _limits: Amounts<SUMMED>,
        charge: Amounts<SUMMED>,
        refund: Option<(u64, Amounts<SUMMED>)>,
    ) {
        let ((start, _), _) = self.at(now_ms);
        if start != self.start_ms {
            // A new period: the old totals no longer count.
            self.begin(start);
            self.totals = [0; SUMMED];
        }
        if let Some((at_ms, amounts)) = refund {
            if self.bounds(at_ms).0 == self.start_ms {
                for (total, amount) in self.totals.iter_mut().zip(amounts) {
                    *total = total.saturating_sub(amount);
                }
            }
        }
        if charge != [0; SUMMED] {
            for (total, amount) in self.totals.iter_mut().zip(charge) {
                *total = total.saturating_add(amount);
            }
        }
    }

    /// When the totals stop counting: the end of their period (none before anything was
    /// counted).
    pub fn expire_at_ms(&self) -> Option<u64> {
        (self.start_ms != 0 || self.totals != [0; SUMMED]).then(|| self.bounds(self.start_ms).1)
    }
}
