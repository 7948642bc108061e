//! One scope on its own: leases, calendar periods, the clock stepping back.

use super::*;
use crate::multi::{decide, plan_correction, ScopeRequest};
use crate::period::{Period, PeriodKind};

fn request(clock: Clock, limits: ScopeLimits) -> ScopeRequest {
    ScopeRequest {
        clock,
        limits,
        cost: [1, 10, 5, 15],
    }
}

const T: u64 = 1_800_000_000_000;

#[test]
fn leases_end_on_release_or_deadline_and_release_is_idempotent() {
    let limits = ScopeLimits {
        summed: [0; SUMMED],
        concurrency: 2,
    };
    let request = request(Clock::Sliding(60_000), limits);
    let mut state = ScopeState::new(request.clock).unwrap();
    let mut tickets = Vec::new();
    for at in [T, T + 10] {
        let d = decide(&[Some(&state)], &[request], at, Some(1_000)).unwrap();
        assert!(d.allowed);
        state.apply(&d.effects(&[request]).next().unwrap());
        tickets.push(d.ticket);
    }
    assert_eq!(state.leases.len(), 2);
    let full = decide(&[Some(&state)], &[request], T + 20, Some(1_000)).unwrap();
    assert!(!full.allowed);
    assert_eq!(full.reason, Some(Limit::Concurrency));
    assert_eq!(
        full.retry,
        Retry::After(980),
        "until the earliest lease ends"
    );
    assert_eq!(full.remaining[SUMMED], Some(0));
    // Releasing the first frees a slot; releasing it again changes nothing.
    let release = plan_correction(
        Some(&state),
        T + 30,
        tickets[0],
        [1, 10, 5, 15],
        [1, 10, 5, 15],
    )
    .unwrap()
    .expect("a slot to release");
    state.apply(&release);
    assert_eq!(state.leases.len(), 1);
    assert_eq!(
        plan_correction(
            Some(&state),
            T + 31,
            tickets[0],
            [1, 10, 5, 15],
            [1, 10, 5, 15]
        )
        .unwrap(),
        None
    );
    // The second one's lease ends by itself: reclaimed by the next command.
    let later = decide(&[Some(&state)], &[request], T + 1_010, Some(1_000)).unwrap();
    assert!(later.allowed);
    assert_eq!(later.remaining[SUMMED], Some(1));
    state.apply(&later.effects(&[request]).next().unwrap());
    assert_eq!(
        state.leases.len(),
        1,
        "the expired lease is gone, the new one held"
    );
    assert_eq!(state.expire_at_ms(), Some(T + 1_010 + 60_000 + 1_000 - 10));
}

#[test]
fn calendar_scopes_reset_at_the_period_boundary() {
    let pacific_day = Clock::Calendar(Period::new(PeriodKind::Day, -480).unwrap());
    let limits = ScopeLimits {
        summed: [2, 0, 0, 0],
        concurrency: 0,
    };
    let request = request(pacific_day, limits);
    let mut state = ScopeState::new(pacific_day).unwrap();
    let (_, end) = Period::new(PeriodKind::Day, -480).unwrap().bounds(T);
    for at in [end - 5_000, end - 4_000] {
        let d = decide(&[Some(&state)], &[request], at, None).unwrap();
        assert!(d.allowed);
        state.apply(&d.effects(&[request]).next().unwrap());
    }
    let refused = decide(&[Some(&state)], &[request], end - 3_000, None).unwrap();
    assert_eq!(refused.retry, Retry::After(3_000), "until midnight Pacific");
    assert_eq!(refused.reset_ms[0], 3_000);
    let next_day = decide(&[Some(&state)], &[request], end, None).unwrap();
    assert!(next_day.allowed);
    assert_eq!(next_day.remaining[0], Some(1));
    // A request whose cost can never fit is told so.
    let huge = ScopeRequest {
        cost: [3, 0, 0, 0],
        ..request
    };
    assert_eq!(
        decide(&[Some(&state)], &[huge], end, None).unwrap().retry,
        Retry::Never
    );
}

#[test]
fn a_clock_stepping_back_charges_every_scope_at_the_newest_instant() {
    let minute = Clock::Sliding(60_000);
    let day = Clock::Calendar(Period::new(PeriodKind::Day, 0).unwrap());
    let limits = ScopeLimits {
        summed: [1, 0, 0, 0],
        concurrency: 0,
    };
    let requests = [
        request(minute, limits),
        request(day, ScopeLimits::default()),
    ];
    let mut states = [
        ScopeState::new(minute).unwrap(),
        ScopeState::new(day).unwrap(),
    ];
    let first = decide(
        &[Some(&states[0]), Some(&states[1])],
        &requests,
        T + 5_500,
        None,
    )
    .unwrap();
    for (state, effect) in states.iter_mut().zip(first.effects(&requests)) {
        state.apply(&effect);
    }
    // The server clock is now 5 s behind: the admission counts at the newest bucket's start.
    let behind = decide(&[Some(&states[0]), Some(&states[1])], &requests, T, None).unwrap();
    assert_eq!(behind.at_ms, T + 5_000);
    assert!(!behind.allowed);
    // Measured from the server's clock: the 5 s behind plus the minute from that bucket.
    assert_eq!(behind.retry, Retry::After(5_000 + 61_000));
    let retried = decide(
        &[Some(&states[0]), Some(&states[1])],
        &requests,
        T + 66_000,
        None,
    )
    .unwrap();
    assert!(retried.allowed);
    let early = decide(
        &[Some(&states[0]), Some(&states[1])],
        &requests,
        T + 65_999,
        None,
    )
    .unwrap();
    assert!(!early.allowed);
}

#[test]
fn a_key_keeps_its_clock_and_concurrency_needs_a_lease() {
    let state = ScopeState::new(Clock::Sliding(60_000)).unwrap();
    let other = request(Clock::Sliding(600), ScopeLimits::default());
    assert_eq!(
        decide(&[Some(&state)], &[other], T, None).unwrap_err(),
        crate::multi::MultiError::ClockMismatch { index: 0 }
    );
    let slots = request(
        Clock::Sliding(60_000),
        ScopeLimits {
            summed: [0; SUMMED],
            concurrency: 1,
        },
    );
    assert_eq!(
        decide(&[None], &[slots], T, None).unwrap_err(),
        crate::multi::MultiError::LeaseRequired { index: 0 }
    );
}

#[test]
fn scopes_and_effects_survive_their_encodings() {
    use super::encoding::{decode, encode, pack_effect, unpack_effect};
    use crate::encoding::DecodeError;
    let clocks = [
        Clock::Sliding(60_000),
        Clock::Calendar(Period::new(PeriodKind::Month, -60).unwrap()),
        Clock::Calendar(Period::new(PeriodKind::Week, 540).unwrap()),
    ];
    for clock in clocks {
        let limits = ScopeLimits {
            summed: [5, 100, 100, 1_000],
            concurrency: 3,
        };
        let mut state = ScopeState::new(clock).unwrap();
        for step in 0..4u64 {
            let requests = [request(clock, limits)];
            let d = decide(&[Some(&state)], &requests, T + step * 7_000, Some(9_000)).unwrap();
            for effect in d.effects(&requests) {
                let packed = pack_effect(clock, &effect);
                let packed = packed.as_slice();
                assert!(packed.len() < 64, "{} bytes", packed.len());
                assert_eq!(unpack_effect(packed), Ok((clock, effect)));
                for cut in 0..packed.len() {
                    assert!(unpack_effect(&packed[..cut]).is_err());
                }
                state.apply(&effect);
            }
        }
        let numbers = encode(&state);
        let mut source = numbers.iter().copied();
        let decoded = decode(|| source.next()).unwrap();
        assert_eq!(encode(&decoded), numbers, "{clock:?}");
        assert_eq!(decoded.leases, state.leases);
        for cut in 0..numbers.len() {
            let mut source = numbers[..cut].iter().copied();
            assert_eq!(decode(|| source.next()).err(), Some(DecodeError::Truncated));
        }
    }
    // A hostile lease count is refused before anything is allocated.
    let mut hostile = encode(&ScopeState::new(Clock::Sliding(600)).unwrap());
    let last = hostile.len() - 1;
    hostile[last] = u64::MAX;
    let mut source = hostile.into_iter();
    assert!(matches!(
        decode(|| source.next()),
        Err(DecodeError::Invalid(_))
    ));
}

/// The cached period end is only a shortcut: a counter whose persisted start is not a period's
/// start (a hostile LOAD) counts nothing from it, exactly as without the cache, and a counter
/// crossing into the next period resets there.
#[test]
fn calendar_counters_cache_bounds_without_changing_decisions() {
    let period = Period::new(PeriodKind::Day, 60).unwrap();
    let (start, end) = period.bounds(T);
    let limits = [2, 0, 0, 0];
    let aligned = CalendarCounter::from_parts(period, start, [2, 0, 0, 0]);
    assert!(!aligned.evaluate(T, limits, [1, 0, 0, 0]).allowed);
    assert_eq!(aligned.expire_at_ms(), Some(end));
    let misaligned = CalendarCounter::from_parts(period, start + 1, [2, 0, 0, 0]);
    assert!(misaligned.evaluate(T, limits, [1, 0, 0, 0]).allowed);
    assert_eq!(misaligned.expire_at_ms(), Some(end));
    let mut counter = aligned;
    assert!(counter.evaluate(end, limits, [1, 0, 0, 0]).allowed);
    counter.apply(end, limits, [1, 0, 0, 0], None);
    assert_eq!(counter.start_ms(), end);
    assert_eq!(counter.totals(), [1, 0, 0, 0]);
    assert_eq!(counter.expire_at_ms(), Some(period.bounds(end).1));
}
