//! The audit's scans over admitted requests, one per kind of scope: a sliding window (any
//! interval of its length), a calendar period (each period of the wall clock), and requests in
//! flight.
//!
//! Admission happens at the Redis server at some moment between a request's send time and its
//! completion time, both measured at the client. An interval is flagged only when the requests
//! counted in it were certainly admitted inside it: each sent at or after its start and
//! completed before its end. So the audit never accuses a correct limiter, and it can miss an
//! excess only within the round-trip time at an interval's edges.

use llmrl_core::period::Period;

/// One admitted request: send and completion times (ms since the run started) and what it
/// counts in each summed dimension of a scope.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Admitted {
    pub sent_ms: f64,
    pub done_ms: f64,
    pub amounts: [u64; 4],
}

/// The most seen in one interval, and the intervals over `limit`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peak {
    pub max: u64,
    pub violations: u64,
}

/// Any interval of `window` ms: for each one starting at a send time, the amount of dimension
/// `d` certainly admitted inside it. `events` sorted by send time.
pub fn sliding(events: &[Admitted], d: usize, window: f64, limit: u64) -> Peak {
    let mut peak = Peak::default();
    for (i, first) in events.iter().enumerate() {
        let end = first.sent_ms + window;
        let mut sum = 0u64;
        for event in events.get(i..).unwrap_or_default() {
            if event.sent_ms >= end {
                break;
            }
            if event.done_ms < end {
                sum = sum.saturating_add(event.amounts[d]);
                // Past the limit is enough to count this window; stop early on huge excesses.
                if sum > limit.saturating_mul(2) {
                    break;
                }
            }
        }
        peak.max = peak.max.max(sum);
        if sum > limit {
            peak.violations += 1;
        }
    }
    peak
}

/// Each calendar period of the wall clock (`start_unix_ms` is the run's start): the amount of
/// dimension `d` of the requests certainly admitted inside it (sent and completed in it).
pub fn calendar(
    events: &[Admitted],
    d: usize,
    period: Period,
    start_unix_ms: f64,
    limit: u64,
) -> Peak {
    let mut totals: Vec<(u64, u64)> = Vec::new();
    for event in events {
        let sent = (start_unix_ms + event.sent_ms).max(0.0);
        let (begin, end) = period.bounds(sent as u64);
        if start_unix_ms + event.done_ms >= end as f64 {
            continue;
        }
        match totals.iter_mut().find(|(b, _)| *b == begin) {
            Some((_, total)) => *total = total.saturating_add(event.amounts[d]),
            None => totals.push((begin, event.amounts[d])),
        }
    }
    Peak {
        max: totals.iter().map(|(_, t)| *t).max().unwrap_or(0),
        violations: totals.iter().filter(|(_, t)| *t > limit).count() as u64,
    }
}

/// Requests in flight: the most intervals (half-open, in ms) overlapping at one instant, and
/// the instants at which one more pushed the count over `limit`.
pub fn in_flight(intervals: &[(f64, f64)], limit: u64) -> Peak {
    // Ends sort before starts at the same instant: a slot freed and taken at once is one slot.
    let mut edges: Vec<(f64, i8)> = intervals
        .iter()
        .filter(|(start, end)| end > start)
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut peak = Peak::default();
    let mut open = 0u64;
    for (_, edge) in edges {
        if edge > 0 {
            open += 1;
            peak.max = peak.max.max(open);
            if open > limit {
                peak.violations += 1;
            }
        } else {
            open = open.saturating_sub(1);
        }
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmrl_core::period::PeriodKind;

    fn request(sent_ms: f64, done_ms: f64) -> Admitted {
        Admitted {
            sent_ms,
            done_ms,
            amounts: [1, 10, 5, 15],
        }
    }

    fn peak(max: u64, violations: u64) -> Peak {
        Peak { max, violations }
    }

    #[test]
    fn a_sliding_window_flags_only_certain_excesses() {
        // Three requests within 100 ms, limit 2 per 1000 ms: a violation.
        let events = [request(0.0, 10.0), request(50.0, 60.0), request(90.0, 95.0)];
        assert_eq!(sliding(&events, 0, 1000.0, 2), peak(3, 1));
        assert_eq!(sliding(&events, 1, 1000.0, 30), peak(30, 0));
        // Spread over more than a window: fine.
        let events = [
            request(0.0, 10.0),
            request(500.0, 510.0),
            request(1001.0, 1002.0),
        ];
        assert_eq!(sliding(&events, 0, 1000.0, 2), peak(2, 0));
        // The third completed after the window ended: it may have been admitted later.
        let events = [
            request(0.0, 10.0),
            request(500.0, 510.0),
            request(990.0, 1005.0),
        ];
        assert_eq!(sliding(&events, 0, 1000.0, 2), peak(2, 0));
    }

    #[test]
    fn a_calendar_period_counts_what_was_certainly_inside_it() {
        let day = Period::new(PeriodKind::Day, 0).unwrap();
        let midnight = 20_000.0 * 86_400_000.0;
        // Run started one second before midnight.
        let start = midnight - 1000.0;
        let events = [
            request(0.0, 10.0),
            request(100.0, 200.0),
            // Straddles midnight: in neither day for certain.
            request(990.0, 1010.0),
            request(1500.0, 1600.0),
        ];
        assert_eq!(calendar(&events, 0, day, start, 2), peak(2, 0));
        assert_eq!(calendar(&events, 0, day, start, 1), peak(2, 1));
        // With an offset of +1 minute, midnight there is a minute earlier: all in one day.
        let shifted = Period::new(PeriodKind::Day, 1).unwrap();
        assert_eq!(calendar(&events, 0, shifted, start, 1), peak(4, 1));
    }

    #[test]
    fn in_flight_counts_overlaps_at_an_instant() {
        let intervals = [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (12.0, 13.0)];
        // At 12: (5,15), (10,20), (12,13). At 10 the first has ended as the third starts.
        assert_eq!(in_flight(&intervals, 3), peak(3, 0));
        assert_eq!(in_flight(&intervals, 2), peak(3, 1));
        assert_eq!(in_flight(&[(1.0, 1.0)], 0), peak(0, 0));
    }
}
