//! A scope as flat numbers — shared by RDB, AOF rewrite (`LLMRL.MLOAD`), DEBUG DIGEST and
//! INSPECT so they never disagree — and a scope effect packed into one short argument for
//! replication (`LLMRL.MAPPLY`). Pure, so both can be fuzzed; decoding validates everything.
//!
//! State layout (type `llmrl-scp`, encoding version 1): `clock_kind clock_param rpm itpm otpm
//! cost concurrency`, then for a sliding window `head row_count` and four counters a row, for a
//! calendar period `period_start requests input output cost`, then `lease_count` and
//! `ticket deadline` a lease. `clock_kind` is 0 for a sliding window (`clock_param` its ms), 1,
//! 2, 3 for a day, week, month (`clock_param` the UTC offset in minutes plus 1440).

use super::{
    CalendarCounter, Clock, Counter, Lease, Leases, ScopeEffect, ScopeLimits, ScopeState, SUMMED,
};
use crate::encoding::{unpack_numbers, DecodeError};
use crate::period::{Period, PeriodKind, MAX_OFFSET_MINUTES};
use crate::stack_bytes::StackBytes;
use crate::window::{Snapshot, Window, WindowError, MAX_ROWS};

/// The most leases a decoded key may hold (a concurrency limit beyond it is not meaningful for
/// one key, and it bounds what a corrupt RDB can make us allocate).
pub const MAX_LEASES: u64 = 1 << 20;

/// Offsets are stored shifted so they are never negative.
const OFFSET_BIAS: i64 = 1_440;

pub fn clock_numbers(clock: Clock) -> [u64; 2] {
    match clock {
        Clock::Sliding(window_ms) => [0, window_ms],
        Clock::Calendar(period) => {
            let kind = match period.kind {
                PeriodKind::Day => 1,
                PeriodKind::Week => 2,
                PeriodKind::Month => 3,
            };
            let param = i64::from(period.offset_minutes) + OFFSET_BIAS;
            [kind, u64::try_from(param).unwrap_or(0)]
        }
    }
}

pub fn clock_from_numbers(kind: u64, param: u64) -> Result<Clock, WindowError> {
    let period_kind = match kind {
        0 => return crate::window::validate_window(param).map(Clock::Sliding),
        1 => PeriodKind::Day,
        2 => PeriodKind::Week,
        3 => PeriodKind::Month,
        _ => return Err(WindowError::InvalidState("unknown clock kind")),
    };
    let offset = i64::try_from(param)
        .ok()
        .and_then(|p| p.checked_sub(OFFSET_BIAS))
        .and_then(|o| i32::try_from(o).ok())
        .filter(|o| o.abs() <= MAX_OFFSET_MINUTES)
        .ok_or(WindowError::InvalidState("period offset out of range"))?;
    Period::new(period_kind, offset)
        .map(Clock::Calendar)
        .map_err(|_| WindowError::InvalidState("period offset out of range"))
}

pub fn encode(state: &ScopeState) -> Vec<u64> {
    let mut out = Vec::with_capacity(16);
    out.extend(clock_numbers(state.clock()));
    out.extend(state.limits.summed);
    out.push(state.limits.concurrency);
    match &state.counter {
        Counter::Sliding(window) => {
            let snapshot = window.snapshot();
            out.push(snapshot.head);
            out.push(snapshot.rows.len() as u64);
            for row in &snapshot.rows {
                out.extend(row);
            }
        }
        Counter::Calendar(counter) => {
            out.push(counter.start_ms());
            out.extend(counter.totals());
        }
    }
    out.push(state.leases.len() as u64);
    for lease in state.leases.items() {
        out.push(lease.ticket);
        out.push(lease.deadline_ms);
    }
    out
}

/// Read a scope from `next` (one number per call, `None` when exhausted), validating it.
pub fn decode(mut next: impl FnMut() -> Option<u64>) -> Result<ScopeState, DecodeError> {
    let mut next = || next().ok_or(DecodeError::Truncated);
    let clock = clock_from_numbers(next()?, next()?)?;
    let summed = [next()?, next()?, next()?, next()?];
    let limits = ScopeLimits {
        summed,
        concurrency: next()?,
    };
    let counter = match clock {
        Clock::Sliding(window_ms) => {
            let head = next()?;
            let count = next()?;
            if count > MAX_ROWS as u64 {
                return Err(DecodeError::TooManyRows);
            }
            let mut rows = Vec::with_capacity(count as usize);
            for _ in 0..count {
                rows.push([next()?, next()?, next()?, next()?]);
            }
            Counter::Sliding(Window::from_snapshot(&Snapshot {
                window_ms,
                head,
                limits: summed,
                rows,
            })?)
        }
        Clock::Calendar(period) => {
            let start = next()?;
            let totals = [next()?, next()?, next()?, next()?];
            if period.bounds(start).0 != start && start != 0 {
                return Err(DecodeError::Invalid(WindowError::InvalidState(
                    "a period start that is not a period's start",
                )));
            }
            Counter::Calendar(CalendarCounter::from_parts(period, start, totals))
        }
    };
    let count = next()?;
    if count > MAX_LEASES {
        return Err(DecodeError::Invalid(WindowError::InvalidState(
            "too many leases",
        )));
    }
    let mut leases: Vec<Lease> = Vec::new();
    let mut tickets = std::collections::HashSet::new();
    for _ in 0..count {
        let lease = Lease {
            ticket: next()?,
            deadline_ms: next()?,
        };
        // Leases are kept by deadline, then ticket, each ticket once: anything else is corrupt.
        if leases.last().is_some_and(|last| {
            (last.deadline_ms, last.ticket) >= (lease.deadline_ms, lease.ticket)
        }) || !tickets.insert(lease.ticket)
        {
            return Err(DecodeError::Invalid(WindowError::InvalidState(
                "leases out of order or repeated",
            )));
        }
        leases.push(lease);
    }
    Ok(ScopeState {
        counter,
        leases: Leases::from_items(leases),
        limits,
    })
}

/// Numbers in a packed scope effect.
pub const EFFECT_NUMBERS: usize = 23;
/// Version byte of a packed scope effect (1 is CHECK's effect).
pub const PACKED_SCOPE_EFFECT_VERSION: u8 = 2;

/// The longest packed scope effect: the version byte and every number at 10 bytes.
pub const MAX_PACKED_SCOPE_EFFECT: usize = 1 + EFFECT_NUMBERS * 10;

/// A packed scope effect, on the stack (it is built for every scope of every admission).
pub type PackedScopeEffect = StackBytes<MAX_PACKED_SCOPE_EFFECT>;

/// An effect with the clock of the key it applies to (a replica may have to create the key),
/// packed as [`pack_numbers`] would, without allocating.
pub fn pack_effect(clock: Clock, effect: &ScopeEffect) -> PackedScopeEffect {
    let (refund_at, refund) = effect.refund.unwrap_or((0, [0; SUMMED]));
    let lease = effect.lease.unwrap_or(Lease {
        ticket: 0,
        deadline_ms: 0,
    });
    let [kind, param] = clock_numbers(clock);
    let [l0, l1, l2, l3] = effect.limits.summed;
    let [c0, c1, c2, c3] = effect.charge;
    let [r0, r1, r2, r3] = refund;
    let numbers: [u64; EFFECT_NUMBERS] = [
        kind,
        param,
        effect.now_ms,
        l0,
        l1,
        l2,
        l3,
        effect.limits.concurrency,
        c0,
        c1,
        c2,
        c3,
        u64::from(effect.refund.is_some()),
        refund_at,
        r0,
        r1,
        r2,
        r3,
        u64::from(effect.lease.is_some()),
        lease.ticket,
        lease.deadline_ms,
        u64::from(effect.release.is_some()),
        effect.release.unwrap_or(0),
    ];
    let mut packed = PackedScopeEffect::default();
    packed.push(&[PACKED_SCOPE_EFFECT_VERSION]);
    for number in numbers {
        packed.push_leb128(number);
    }
    packed
}

#[derive(Debug, PartialEq, Eq)]
pub struct MalformedEffect;

/// Unpack what [`pack_effect`] wrote; anything else is refused.
pub fn unpack_effect(bytes: &[u8]) -> Result<(Clock, ScopeEffect), MalformedEffect> {
    let numbers = unpack_numbers(PACKED_SCOPE_EFFECT_VERSION, bytes, EFFECT_NUMBERS)
        .map_err(|_| MalformedEffect)?;
    let n = |i: usize| numbers.get(i).copied().unwrap_or(0);
    let four = |from: usize| [n(from), n(from + 1), n(from + 2), n(from + 3)];
    let flag = |i: usize| match n(i) {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(MalformedEffect),
    };
    let clock = clock_from_numbers(n(0), n(1)).map_err(|_| MalformedEffect)?;
    let effect = ScopeEffect {
        now_ms: n(2),
        limits: ScopeLimits {
            summed: four(3),
            concurrency: n(7),
        },
        charge: four(8),
        refund: flag(12)?.then(|| (n(13), four(14))),
        lease: flag(18)?.then(|| Lease {
            ticket: n(19),
            deadline_ms: n(20),
        }),
        release: flag(21)?.then(|| n(22)),
    };
    Ok((clock, effect))
}
