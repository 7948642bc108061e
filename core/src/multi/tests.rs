//! The multi-scope check against a naive model that keeps every admission with its time, its
//! ticket and its lease, and decides by brute force.

// Dimensions are indexed across several arrays at once; index loops read plainest.
#![allow(clippy::needless_range_loop)]

use super::*;
use crate::period::{Period, PeriodKind};
use proptest::prelude::*;

/// One scope, naively: every admission ever made, net of corrections, and every lease.
#[derive(Clone, Debug)]
struct NaiveScope {
    clock: Clock,
    /// (time, amounts, admission): the admission's number in the run, not its ticket — two
    /// admissions in one ms without slots share a ticket, and each is corrected on its own.
    events: Vec<(u64, [u128; SUMMED], usize)>,
    /// (ticket, deadline)
    leases: Vec<(u64, u64)>,
}

impl NaiveScope {
    fn new(clock: Clock) -> Self {
        NaiveScope {
            clock,
            events: Vec::new(),
            leases: Vec::new(),
        }
    }

    /// Whether an event at `at` still counts at `t`.
    fn counts(&self, at: u64, t: u64) -> bool {
        match self.clock {
            Clock::Sliding(window) => {
                let width = window / 60;
                t < (at / width + 1) * width + window
            }
            Clock::Calendar(period) => period.bounds(at).0 == period.bounds(t).0,
        }
    }

    fn usage(&self, t: u64) -> [u128; SUMMED] {
        let mut usage = [0; SUMMED];
        for (at, amounts, _) in &self.events {
            if self.counts(*at, t) {
                for d in 0..SUMMED {
                    usage[d] += amounts[d];
                }
            }
        }
        usage
    }

    fn live(&self, t: u64) -> u64 {
        self.leases
            .iter()
            .filter(|(_, deadline)| *deadline > t)
            .count() as u64
    }

    fn admits(&self, t: u64, request: &ScopeRequest) -> bool {
        let usage = self.usage(t);
        let summed = (0..SUMMED).all(|d| {
            let limit = request.limits.summed[d];
            limit == 0 || usage[d] + u128::from(request.cost[d]) <= u128::from(limit)
        });
        let limit = request.limits.concurrency;
        summed && (limit == 0 || self.live(t) < limit)
    }

    /// When this scope alone admits the request with no other traffic: brute force over every
    /// instant anything changes.
    fn wait(&self, t: u64, request: &ScopeRequest) -> Retry {
        let never = (0..SUMMED).any(|d| {
            let limit = request.limits.summed[d];
            limit != 0 && request.cost[d] > limit
        });
        if never {
            return Retry::Never;
        }
        if self.admits(t, request) {
            return Retry::Now;
        }
        let mut candidates: Vec<u64> = self.leases.iter().map(|(_, deadline)| *deadline).collect();
        for (at, _, _) in &self.events {
            candidates.push(match self.clock {
                Clock::Sliding(window) => {
                    let width = window / 60;
                    (at / width + 1) * width + window
                }
                Clock::Calendar(period) => period.bounds(*at).1,
            });
        }
        candidates.sort_unstable();
        for candidate in candidates.into_iter().filter(|c| *c > t) {
            if self.admits(candidate, request) {
                return Retry::After(candidate - t);
            }
        }
        panic!("the naive model found no time at which {request:?} fits: {self:?}");
    }
}

fn clock() -> impl Strategy<Value = Clock> {
    prop_oneof![
        prop::sample::select(vec![600u64, 6_000, 60_000]).prop_map(Clock::Sliding),
        (-600i32..600)
            .prop_map(|offset| Clock::Calendar(Period::new(PeriodKind::Day, offset).unwrap())),
    ]
}

fn limit(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 3 => 1..max]
}

#[derive(Clone, Debug)]
struct ScopeSpec {
    clock: Clock,
    limits: ScopeLimits,
    /// What a request costs in the cost dimension here, per input+output token (0: not counted).
    cost_rate: u64,
}

fn scope_spec() -> impl Strategy<Value = ScopeSpec> {
    (
        clock(),
        limit(8),
        limit(300),
        limit(300),
        limit(2_000),
        prop_oneof![Just(0u64), 1..4u64],
        0..3u64,
    )
        .prop_map(
            |(clock, rpm, itpm, otpm, cost, concurrency, cost_rate)| ScopeSpec {
                clock,
                limits: ScopeLimits {
                    summed: [rpm, itpm, otpm, cost],
                    concurrency,
                },
                cost_rate,
            },
        )
}

#[derive(Clone, Debug)]
enum Op {
    /// Advance the clock by this many ms, then check a request of (input, output) tokens.
    Check {
        advance: u64,
        input: u64,
        output: u64,
    },
    /// Settle the n-th admission still open with (actual input, actual output) no larger than
    /// reserved (so no excess is charged, and the limits stay strict).
    Settle {
        advance: u64,
        nth: usize,
        input_percent: u64,
        output_percent: u64,
    },
    /// Cancel the n-th admission still open.
    Cancel { advance: u64, nth: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let advance = prop_oneof![3 => 0u64..500, 2 => 0u64..20_000, 1 => 0u64..100_000_000];
    prop_oneof![
        6 => (advance.clone(), 0u64..120, 0u64..120).prop_map(|(advance, input, output)| Op::Check { advance, input, output }),
        2 => (advance.clone(), any::<usize>(), 0u64..=100, 0u64..=100).prop_map(|(advance, nth, input_percent, output_percent)| Op::Settle { advance, nth, input_percent, output_percent }),
        1 => (advance, any::<usize>()).prop_map(|(advance, nth)| Op::Cancel { advance, nth }),
    ]
}

/// An admission still open: its ticket, time, and what each scope was charged.
struct Open {
    /// Its number in the run.
    id: usize,
    ticket: u64,
    at: u64,
    charged: Vec<Amounts<SUMMED>>,
}

fn requests(specs: &[ScopeSpec], input: u64, output: u64) -> Vec<ScopeRequest> {
    specs
        .iter()
        .map(|spec| ScopeRequest {
            clock: spec.clock,
            limits: spec.limits,
            cost: [1, input, output, (input + output) * spec.cost_rate],
        })
        .collect()
}

fn apply_all(states: &mut [Option<ScopeState>], effects: &[ScopeEffect], specs: &[ScopeSpec]) {
    for ((state, effect), spec) in states.iter_mut().zip(effects).zip(specs) {
        state
            .get_or_insert_with(|| ScopeState::new(spec.clock).unwrap())
            .apply(effect);
    }
}

/// Every scope's state, laid out plainly, to see that a refusal changes nothing.
fn fingerprint(states: &[Option<ScopeState>]) -> String {
    format!("{states:?}")
}

const LEASE_MS: u64 = 5_000;

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// All or nothing, exact retry times, and every scope strict: the real decision equals the
    /// naive one at every step, a refusal records nothing anywhere, and the admitted events never
    /// exceed any scope's limits in any window (or period), nor its concurrency.
    #[test]
    fn matches_the_naive_model(specs in prop::collection::vec(scope_spec(), 1..4), ops in prop::collection::vec(op(), 1..60)) {
        let mut states: Vec<Option<ScopeState>> = vec![None; specs.len()];
        let mut naive: Vec<NaiveScope> = specs.iter().map(|s| NaiveScope::new(s.clock)).collect();
        let mut open: Vec<Open> = Vec::new();
        let mut admissions = 0usize;
        let mut now = 1_800_000_000_000u64;
        for op in ops {
            match op {
                Op::Check { advance, input, output } => {
                    now += advance;
                    let requests = requests(&specs, input, output);
                    let views: Vec<Option<&ScopeState>> = states.iter().map(Option::as_ref).collect();
                    let before = fingerprint(&states);
                    let decision = decide(&views, &requests, now, Some(LEASE_MS)).unwrap();
                    prop_assert_eq!(decision.at_ms, now);
                    // The naive verdict: every scope's own wait; the longest decides.
                    let waits: Vec<Retry> = naive.iter().zip(&requests).map(|(n, r)| n.wait(now, r)).collect();
                    let mut expected = Retry::Now;
                    for wait in &waits {
                        if wait.longer_than(expected) { expected = *wait; }
                    }
                    prop_assert_eq!(decision.retry, expected, "waits {:?}", waits);
                    prop_assert_eq!(decision.allowed, expected == Retry::Now);
                    if let Some(scope) = decision.scope {
                        prop_assert_eq!(waits[scope], expected);
                        prop_assert!(decision.reason.is_some());
                    }
                    for (index, (scope, n)) in decision.scopes.iter().zip(&naive).enumerate() {
                        let usage = n.usage(now);
                        for d in 0..SUMMED {
                            let limit = requests[index].limits.summed[d];
                            let charged = if decision.allowed { u128::from(requests[index].cost[d]) } else { 0 };
                            let want = (limit != 0).then(|| u128::from(limit).saturating_sub(usage[d] + charged) as u64);
                            prop_assert_eq!(scope.remaining[d], want, "scope {} dim {}", index, d);
                        }
                        let concurrency = requests[index].limits.concurrency;
                        let taken = u64::from(decision.allowed);
                        let want = (concurrency != 0).then(|| concurrency.saturating_sub(n.live(now) + taken));
                        prop_assert_eq!(scope.remaining[SUMMED], want, "scope {} slots", index);
                    }
                    // The least remaining over the scopes, per dimension.
                    for d in 0..REPORTED {
                        let least = decision.scopes.iter().filter_map(|s| s.remaining[d]).min();
                        prop_assert_eq!(decision.remaining[d], least);
                    }
                    if !decision.allowed {
                        prop_assert_eq!(decision.effects(&requests).count(), 0);
                        prop_assert_eq!(decision.ticket, 0);
                        prop_assert_eq!(fingerprint(&states), before, "a refusal records nothing");
                        // Exact: refused 1 ms before the wait, admitted at it (no other traffic).
                        if let Retry::After(wait) = decision.retry {
                            let views: Vec<Option<&ScopeState>> = states.iter().map(Option::as_ref).collect();
                            let at = decide(&views, &requests, now + wait, Some(LEASE_MS)).unwrap();
                            prop_assert!(at.allowed, "admitted after {} ms", wait);
                            if wait > 1 {
                                let early = decide(&views, &requests, now + wait - 1, Some(LEASE_MS)).unwrap();
                                prop_assert!(!early.allowed, "refused 1 ms before {} ms", wait);
                            }
                        }
                        continue;
                    }
                    // Tickets name leases: unique wherever a slot is held (elsewhere the ticket's
                    // time alone says what to correct).
                    if specs.iter().any(|s| s.limits.concurrency > 0) {
                        prop_assert!(open.iter().all(|o| o.ticket != decision.ticket), "tickets are unique");
                    }
                    let effects: Vec<ScopeEffect> = decision.effects(&requests).collect();
                        apply_all(&mut states, &effects, &specs);
                    for (n, r) in naive.iter_mut().zip(&requests) {
                        n.events.push((now, r.cost.map(u128::from), admissions));
                        if r.limits.concurrency > 0 {
                            n.leases.push((decision.ticket, now + LEASE_MS));
                        }
                    }
                    open.push(Open { id: admissions, ticket: decision.ticket, at: now, charged: requests.iter().map(|r| r.cost).collect() });
                    admissions += 1;
                }
                Op::Settle { advance, nth, input_percent, output_percent } => {
                    if open.is_empty() {
                        continue;
                    }
                    now += advance;
                    let admission = open.remove(nth % open.len());
                    for (index, spec) in specs.iter().enumerate() {
                        let reserved = admission.charged[index];
                        let input = reserved[1] * input_percent / 100;
                        let output = reserved[2] * output_percent / 100;
                        let actual = [reserved[0], input, output, (input + output) * spec.cost_rate];
                        correct(&mut states[index], &mut naive[index], &admission, now, reserved, actual)?;
                    }
                }
                Op::Cancel { advance, nth } => {
                    if open.is_empty() {
                        continue;
                    }
                    now += advance;
                    let admission = open.remove(nth % open.len());
                    for index in 0..specs.len() {
                        let reserved = admission.charged[index];
                        correct(&mut states[index], &mut naive[index], &admission, now, reserved, [0; SUMMED])?;
                    }
                }
            }
        }
        for (spec, n) in specs.iter().zip(&naive) {
            assert_strict(spec, n)?;
        }
    }
}

/// Settle or cancel `admission` in one scope, in the module and in the model.
fn correct(
    state: &mut Option<ScopeState>,
    naive: &mut NaiveScope,
    admission: &Open,
    now: u64,
    reserved: Amounts<SUMMED>,
    actual: Amounts<SUMMED>,
) -> Result<(), TestCaseError> {
    let effect = plan_correction(state.as_ref(), now, admission.ticket, reserved, actual)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    if let (Some(effect), Some(state)) = (effect, state.as_mut()) {
        state.apply(&effect);
        // Released: a second release of the same admission changes nothing.
        let again = plan_correction(Some(state), now, admission.ticket, actual, actual)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, None);
    }
    if naive.counts(admission.at, now) {
        for event in naive.events.iter_mut().filter(|e| e.2 == admission.id) {
            for d in 0..SUMMED {
                event.1[d] =
                    event.1[d].saturating_sub(u128::from(reserved[d].saturating_sub(actual[d])));
            }
        }
    }
    naive
        .leases
        .retain(|(ticket, _)| *ticket != admission.ticket);
    Ok(())
}

/// No real interval of one window (or one period) ever holds more than a limit.
fn assert_strict(spec: &ScopeSpec, naive: &NaiveScope) -> Result<(), TestCaseError> {
    for (start, _, _) in &naive.events {
        let mut sum = [0u128; SUMMED];
        for (at, amounts, _) in &naive.events {
            let inside = match spec.clock {
                Clock::Sliding(window) => *at >= *start && *at < start + window,
                Clock::Calendar(period) => period.bounds(*at).0 == period.bounds(*start).0,
            };
            if inside {
                for d in 0..SUMMED {
                    sum[d] += amounts[d];
                }
            }
        }
        for d in 0..SUMMED {
            let limit = spec.limits.summed[d];
            prop_assert!(
                limit == 0 || sum[d] <= u128::from(limit),
                "dim {} holds {} over {}",
                d,
                sum[d],
                limit
            );
        }
    }
    Ok(())
}
