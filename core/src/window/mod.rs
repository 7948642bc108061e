//! The sliding-window limiter, with no Redis dependency.
//!
//! A window of `window_ms` is split into 60 buckets of width `w = window_ms / 60`. An event
//! admitted at time `t` is charged to bucket `b = ⌊t/w⌋` and counts until `(b + 1)·w + window`,
//! the end of its bucket plus one window. At a time in bucket `c` the live buckets are therefore
//! `c-60 ..= c` (61 of them). A check is admitted iff, in every limited dimension, live usage plus
//! the request's cost fits the limit, which makes the sum admitted in ANY interval of one window
//! at most the limit, with capacity coming back at most one bucket late and never early.
//!
//! Mutation happens only through [`Window::apply`], which takes an explicit timestamp and explicit
//! effects. The primary decides (read-only) and then applies; a replica or an AOF replay applies
//! the very same [`Effect`], so both end with identical state without reading a clock.

mod ring;

use ring::Ring;
pub use ring::{Row, MAX_ROWS};
use thiserror::Error;

/// Buckets in one window.
pub const BUCKETS_PER_WINDOW: u64 = 60;
/// Buckets that count at any moment: the current one plus one window behind it.
pub const LIVE_BUCKETS: u64 = BUCKETS_PER_WINDOW + 1;
pub const DEFAULT_WINDOW_MS: u64 = 60_000;
/// The longest window: i64::MAX rounded down to a multiple of 60, so every duration fits an
/// integer reply and bucket arithmetic has room (about 292 million years).
pub const MAX_WINDOW_MS: u64 = i64::MAX as u64 / BUCKETS_PER_WINDOW * BUCKETS_PER_WINDOW;

/// The limited dimensions, in reply order: CHECK's three, and the fourth summed dimension of a
/// multi-scope check's scope (whose charge each scope gives: total tokens, micro-dollars, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dimension {
    Requests = 0,
    InputTokens = 1,
    OutputTokens = 2,
    Cost = 3,
}

impl Dimension {
    /// CHECK's dimensions.
    pub const ALL: [Dimension; 3] = [
        Dimension::Requests,
        Dimension::InputTokens,
        Dimension::OutputTokens,
    ];

    /// A scope's summed dimensions: CHECK's three and the cost.
    pub const SCOPE: [Dimension; 4] = [
        Dimension::Requests,
        Dimension::InputTokens,
        Dimension::OutputTokens,
        Dimension::Cost,
    ];

    /// The short name used as a denial reason.
    pub fn reason(self) -> &'static str {
        match self {
            Dimension::Requests => "rpm",
            Dimension::InputTokens => "itpm",
            Dimension::OutputTokens => "otpm",
            Dimension::Cost => "cost",
        }
    }

    /// The first `n` dimensions (a window counting `n` of them).
    fn first(n: usize) -> impl Iterator<Item = Dimension> {
        Dimension::SCOPE.into_iter().take(n)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One amount per dimension: requests, input tokens, output tokens (and the cost, in a scope). A
/// limit of 0 is unlimited.
pub type Amounts<const N: usize = 3> = [u64; N];

#[derive(Debug, Error, PartialEq, Eq, Clone, Copy)]
pub enum WindowError {
    #[error("WINDOW must be a positive multiple of 60 milliseconds, at most 9223372036854775800")]
    InvalidWindow,
    #[error("invalid ticket")]
    InvalidTicket,
    #[error("ticket is in the future")]
    TicketInFuture,
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
}

/// When a denied request could be admitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retry {
    /// Admitted now.
    #[default]
    Now,
    /// Admitted after this many ms if no other traffic arrives.
    After(u64),
    /// Its own cost exceeds a limit: it can never be admitted.
    Never,
}

impl Retry {
    /// The wire form: 0, the wait in ms, or -1.
    pub fn as_i64(self) -> i64 {
        match self {
            Retry::Now => 0,
            Retry::After(ms) => i64::try_from(ms).unwrap_or(i64::MAX),
            Retry::Never => -1,
        }
    }

    /// Whether this wait is longer (`Never` is the longest).
    pub fn longer_than(self, other: Retry) -> bool {
        match (self, other) {
            (Retry::Never, Retry::Never) => false,
            (Retry::Never, _) => true,
            (_, Retry::Never) => false,
            (a, b) => a.as_i64() > b.as_i64(),
        }
    }
}

/// What CHECK, PEEK and SETTLE report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<const N: usize = 3> {
    pub allowed: bool,
    /// The dimension that denied (the one needing the longest wait); `None` when allowed.
    pub reason: Option<Dimension>,
    pub retry: Retry,
    /// Left in the window after the decision; `None` for an unlimited dimension.
    pub remaining: [Option<u64>; N],
    /// Ms until each dimension's usage is fully replenished (0 when nothing is in use).
    pub reset_ms: [u64; N],
    /// The bucket charged (see [`Window::ticket_for_bucket`]); 0 when nothing was charged.
    pub ticket: u64,
}

/// A refund of part of a reservation, against the bucket a ticket names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refund<const N: usize = 3> {
    pub ticket: u64,
    pub amounts: Amounts<N>,
}

/// A deterministic state change: everything a replica needs, no clock required.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effect<const N: usize = 3> {
    pub now_ms: u64,
    /// The limits to remember (those of the admitted CHECK, or the remembered ones for SETTLE).
    pub limits: Amounts<N>,
    /// Added to the current bucket.
    pub charge: Amounts<N>,
    pub refund: Option<Refund<N>>,
}

/// Per-key limiter state.
#[derive(Clone, Debug)]
pub struct Window<const N: usize = 3> {
    window_ms: u64,
    /// Absolute index of the newest bucket ever charged (the clock never goes behind it).
    head: u64,
    /// Limits of the most recent admitted CHECK, used by SETTLE's report.
    limits: Amounts<N>,
    /// Sum of every row, per dimension (u128: the sum of 61 saturated u64 rows cannot overflow).
    totals: [u128; N],
    /// Rows for buckets `head - len + 1 ..= head`, oldest first.
    ring: Ring<N>,
}

/// The state of a window laid out plainly, for persistence and inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot<const N: usize = 3> {
    pub window_ms: u64,
    pub head: u64,
    pub limits: Amounts<N>,
    /// Rows for buckets `head - rows.len() + 1 ..= head`, oldest first.
    pub rows: Vec<Row<N>>,
}

pub fn validate_window(window_ms: u64) -> Result<u64, WindowError> {
    if window_ms == 0 || window_ms > MAX_WINDOW_MS || !window_ms.is_multiple_of(BUCKETS_PER_WINDOW)
    {
        return Err(WindowError::InvalidWindow);
    }
    Ok(window_ms)
}

impl<const N: usize> Window<N> {
    pub fn new(window_ms: u64) -> Result<Self, WindowError> {
        Ok(Window {
            window_ms: validate_window(window_ms)?,
            head: 0,
            limits: [0; N],
            totals: [0; N],
            ring: Ring::new(),
        })
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    pub fn bucket_ms(&self) -> u64 {
        self.window_ms / BUCKETS_PER_WINDOW
    }

    pub fn limits(&self) -> Amounts<N> {
        self.limits
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    /// Heap bytes held besides the struct itself.
    pub fn heap_bytes(&self) -> usize {
        self.ring.heap_bytes()
    }

    /// The ticket naming bucket `bucket`: the time its bucket ends, in ms (never 0).
    pub fn ticket_for_bucket(&self, bucket: u64) -> u64 {
        bucket.saturating_add(1).saturating_mul(self.bucket_ms())
    }

    /// The ticket of the bucket an admission at `at_ms` was charged to, if it was charged at
    /// that time (a clock behind the newest bucket charges the newest bucket instead).
    pub fn ticket_for_time(&self, at_ms: u64) -> Option<u64> {
        let bucket = at_ms / self.bucket_ms();
        (bucket <= self.last_bucket()).then(|| self.ticket_for_bucket(bucket))
    }

    /// The bucket a check at `now_ms` falls in, clamped so a clock stepping back never
    /// rewinds the ring, and so a timestamp in the far future (only a hostile APPLY can carry
    /// one) leaves a state whose expiry still fits in u64 — one that can be saved and loaded.
    fn current_bucket(&self, now_ms: u64) -> u64 {
        (now_ms / self.bucket_ms())
            .min(self.last_bucket())
            .max(self.head)
    }

    /// The newest bucket a state may have: its expiry, `(bucket + 62) · width`, must fit in u64
    /// (what [`Window::from_snapshot`] checks).
    fn last_bucket(&self) -> u64 {
        (u64::MAX / self.bucket_ms()).saturating_sub(LIVE_BUCKETS + 1)
    }

    /// When a row of bucket `bucket` stops counting: the end of its bucket plus one window.
    fn bucket_expiry_ms(&self, bucket: u64) -> u64 {
        bucket
            .saturating_add(LIVE_BUCKETS)
            .saturating_mul(self.bucket_ms())
    }

    /// The absolute time (ms) the key can expire: when its newest bucket stops counting.
    pub fn expire_at_ms(&self) -> Option<u64> {
        if self.ring.is_empty() {
            None
        } else {
            Some(self.bucket_expiry_ms(self.head))
        }
    }

    fn first_bucket(&self) -> u64 {
        // head >= len - 1 holds by construction and is validated on load.
        self.head
            .saturating_add(1)
            .saturating_sub(self.ring.len() as u64)
    }

    /// One dimension of the live rows at bucket `current`, oldest first, with their bucket index.
    fn live_values(
        &self,
        current: u64,
        d: usize,
    ) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        let first = self.first_bucket();
        let oldest_live = current.saturating_sub(BUCKETS_PER_WINDOW);
        // Rows before `skip` have expired; bucket indexes grow by one per row.
        let skip = usize::try_from(oldest_live.saturating_sub(first))
            .unwrap_or(usize::MAX)
            .min(self.ring.len());
        (skip..self.ring.len()).map(move |i| (first + i as u64, self.ring.value(i, d)))
    }

    /// Usage that counts at bucket `current`: totals minus the rows already expired.
    fn usage(&self, current: u64) -> [u128; N] {
        let mut usage = self.totals;
        let first = self.first_bucket();
        let oldest_live = current.saturating_sub(BUCKETS_PER_WINDOW);
        for (i, row) in self.ring.iter().enumerate() {
            if first + i as u64 >= oldest_live {
                break;
            }
            for (total, value) in usage.iter_mut().zip(row) {
                *total = total.saturating_sub(u128::from(value));
            }
        }
        usage
    }

    /// Decide a request of `cost` at `now_ms` against `limits`, changing nothing.
    pub fn evaluate(&self, now_ms: u64, limits: Amounts<N>, cost: Amounts<N>) -> Decision<N> {
        let current = self.current_bucket(now_ms);
        let usage = self.usage(current);
        let mut retry = Retry::Now;
        let mut reason = None;
        for dim in Dimension::first(N) {
            let d = dim.index();
            let wait = self.wait_for(now_ms, current, usage[d], limits[d], cost[d], d);
            if wait.longer_than(retry) {
                retry = wait;
                reason = Some(dim);
            }
        }
        let allowed = retry == Retry::Now;
        let charged = if allowed { cost } else { [0; N] };
        let mut remaining = [None; N];
        let mut reset_ms = [0; N];
        for dim in Dimension::first(N) {
            let d = dim.index();
            let used = usage[d].saturating_add(u128::from(charged[d]));
            if limits[d] != 0 {
                let left = u128::from(limits[d]).saturating_sub(used);
                remaining[d] = Some(u64::try_from(left).unwrap_or(u64::MAX));
            }
            // A charge lands in the current bucket; otherwise find the newest live use (only
            // then: this scan is the one per-bucket walk on the allow path).
            let newest = if charged[d] > 0 {
                Some(current)
            } else {
                self.live_values(current, d)
                    .rev()
                    .find(|(_, value)| *value > 0)
                    .map(|(bucket, _)| bucket)
            };
            if let Some(bucket) = newest {
                reset_ms[d] = self.bucket_expiry_ms(bucket).saturating_sub(now_ms);
            }
        }
        Decision {
            allowed,
            reason,
            retry,
            remaining,
            reset_ms,
            ticket: if allowed {
                self.ticket_for_bucket(current)
            } else {
                0
            },
        }
    }

    /// How long until `cost` fits under `limit` in dimension `d`, with no new traffic.
    fn wait_for(
        &self,
        now_ms: u64,
        current: u64,
        usage: u128,
        limit: u64,
        cost: u64,
        d: usize,
    ) -> Retry {
        if limit == 0 {
            return Retry::Now;
        }
        let (limit, cost) = (u128::from(limit), u128::from(cost));
        if cost > limit {
            return Retry::Never;
        }
        if usage + cost <= limit {
            return Retry::Now;
        }
        // Age rows out oldest first; the request fits once the row that tips it has expired.
        let mut left = usage;
        for (bucket, value) in self.live_values(current, d) {
            left = left.saturating_sub(u128::from(value));
            if left + cost <= limit {
                return Retry::After(self.bucket_expiry_ms(bucket).saturating_sub(now_ms).max(1));
            }
        }
        // Unreachable while totals match the rows; a full window is the safe answer.
        Retry::After(self.bucket_expiry_ms(current).saturating_sub(now_ms).max(1))
    }

    /// Apply an effect. Deterministic: the same state and effect give the same result anywhere.
    pub fn apply(&mut self, effect: &Effect<N>) {
        self.limits = effect.limits;
        let current = self.current_bucket(effect.now_ms);
        if let Some(refund) = effect.refund {
            self.refund(current, refund);
        }
        if effect.charge != [0; N] {
            self.advance(current);
            if self.ring.is_empty() {
                self.ring.push_back_zero();
            }
            let newest = self.ring.len().saturating_sub(1);
            let mut row = self.ring.get(newest);
            for ((value, total), charge) in row.iter_mut().zip(&mut self.totals).zip(effect.charge)
            {
                let before = *value;
                *value = before.saturating_add(charge);
                *total += u128::from(*value - before);
            }
            self.ring.set(newest, row);
        }
    }

    fn refund(&mut self, current: u64, refund: Refund<N>) {
        let Some(bucket) = self.bucket_of_ticket(refund.ticket) else {
            return;
        };
        if bucket > self.head || bucket < current.saturating_sub(BUCKETS_PER_WINDOW) {
            return;
        }
        let Some(index) = bucket.checked_sub(self.first_bucket()) else {
            return;
        };
        let index = index as usize;
        let mut row = self.ring.get(index);
        for ((value, total), amount) in row.iter_mut().zip(&mut self.totals).zip(refund.amounts) {
            let taken = (*value).min(amount);
            *value -= taken;
            *total = total.saturating_sub(u128::from(taken));
        }
        self.ring.set(index, row);
    }

    /// Move the newest bucket to `current`, dropping rows that no longer count.
    fn advance(&mut self, current: u64) {
        if current > self.head && !self.ring.is_empty() {
            let gap = current - self.head;
            if gap >= LIVE_BUCKETS {
                self.ring.clear();
                self.totals = [0; N];
            } else {
                let oldest_live = current.saturating_sub(BUCKETS_PER_WINDOW);
                while !self.ring.is_empty() && self.first_bucket() < oldest_live {
                    self.drop_oldest();
                }
                for _ in 0..gap {
                    self.ring.push_back_zero();
                }
            }
        }
        self.head = self.head.max(current);
        // Leading empty rows carry no information; dropping them keeps sparse keys small.
        while !self.ring.is_empty() && self.ring.get(0) == [0; N] {
            self.drop_oldest();
        }
        self.ring.shrink_if_sparse();
    }

    fn drop_oldest(&mut self) {
        let row = self.ring.pop_front();
        for (total, value) in self.totals.iter_mut().zip(row) {
            *total = total.saturating_sub(u128::from(value));
        }
    }

    fn bucket_of_ticket(&self, ticket: u64) -> Option<u64> {
        let width = self.bucket_ms();
        if ticket == 0 || !ticket.is_multiple_of(width) {
            return None;
        }
        Some(ticket / width - 1)
    }

    /// Plan a correction of an admission charged to the bucket `ticket` names: refund
    /// `reserved - actual` from that bucket where actual is smaller, charge `actual - reserved` to
    /// the current bucket where it is larger. `None` when there is nothing to do (exact
    /// reservation, or a ticket whose bucket left the window).
    pub fn plan_correction(
        &self,
        now_ms: u64,
        ticket: u64,
        reserved: Amounts<N>,
        actual: Amounts<N>,
    ) -> Result<Option<Effect<N>>, WindowError> {
        let bucket = self
            .bucket_of_ticket(ticket)
            .ok_or(WindowError::InvalidTicket)?;
        let current = self.current_bucket(now_ms);
        if bucket > current {
            return Err(WindowError::TicketInFuture);
        }
        if bucket < current.saturating_sub(BUCKETS_PER_WINDOW) {
            return Ok(None);
        }
        let mut refund = [0; N];
        let mut charge = [0; N];
        for d in 0..N {
            refund[d] = reserved[d].saturating_sub(actual[d]);
            charge[d] = actual[d].saturating_sub(reserved[d]);
        }
        if refund == [0; N] && charge == [0; N] {
            return Ok(None);
        }
        Ok(Some(Effect {
            now_ms,
            limits: self.limits,
            charge,
            refund: (refund != [0; N]).then_some(Refund {
                ticket,
                amounts: refund,
            }),
        }))
    }

    /// The running totals, for invariant checks (they must equal the sum of the rows).
    #[cfg(test)]
    pub(crate) fn totals(&self) -> [u128; N] {
        self.totals
    }

    pub fn snapshot(&self) -> Snapshot<N> {
        Snapshot {
            window_ms: self.window_ms,
            head: self.head,
            limits: self.limits,
            rows: self.ring.iter().collect(),
        }
    }

    /// Rebuild a window from a snapshot, validating everything (the input may be hostile).
    pub fn from_snapshot(snapshot: &Snapshot<N>) -> Result<Self, WindowError> {
        let window_ms = validate_window(snapshot.window_ms)?;
        if snapshot.rows.len() > MAX_ROWS {
            return Err(WindowError::InvalidState("more than 61 buckets"));
        }
        if (snapshot.rows.len() as u64) > snapshot.head.saturating_add(1) {
            return Err(WindowError::InvalidState("buckets before time zero"));
        }
        if snapshot.head.checked_add(LIVE_BUCKETS + 1).is_none()
            || snapshot
                .head
                .saturating_add(LIVE_BUCKETS + 1)
                .checked_mul(window_ms / BUCKETS_PER_WINDOW)
                .is_none()
        {
            return Err(WindowError::InvalidState("bucket index out of range"));
        }
        let mut totals = [0u128; N];
        for row in &snapshot.rows {
            for (total, value) in totals.iter_mut().zip(row) {
                *total += u128::from(*value);
            }
        }
        Ok(Window {
            window_ms,
            head: snapshot.head,
            limits: snapshot.limits,
            totals,
            ring: Ring::from_rows(&snapshot.rows),
        })
    }
}

impl Window<3> {
    /// Plan SETTLE: correct the input and output tokens reserved at admission with real usage
    /// (the request count never changes). See [`Window::plan_correction`].
    pub fn plan_settle(
        &self,
        now_ms: u64,
        ticket: u64,
        reserved: [u64; 2],
        actual: [u64; 2],
    ) -> Result<Option<Effect>, WindowError> {
        self.plan_correction(
            now_ms,
            ticket,
            [0, reserved[0], reserved[1]],
            [0, actual[0], actual[1]],
        )
    }
}

#[cfg(test)]
mod tests;
