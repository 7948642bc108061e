//! The window against a naive model that keeps every admitted event with its timestamp.

use super::*;
use proptest::prelude::*;

/// Every admitted event, with the time it was admitted and its net amounts after refunds.
struct Naive {
    window_ms: u64,
    events: Vec<(u64, [u128; 3])>,
}

impl Naive {
    fn new(window_ms: u64) -> Self {
        Naive {
            window_ms,
            events: Vec::new(),
        }
    }

    fn width(&self) -> u64 {
        self.window_ms / 60
    }

    /// The reference rule: an event at `t` counts until (⌊t/w⌋+1)·w + window.
    fn counts_until(&self, t: u64) -> u64 {
        (t / self.width() + 1) * self.width() + self.window_ms
    }

    fn usage(&self, now: u64) -> [u128; 3] {
        let mut usage = [0u128; 3];
        for (t, amounts) in &self.events {
            if now < self.counts_until(*t) {
                for d in 0..3 {
                    usage[d] += amounts[d];
                }
            }
        }
        usage
    }

    fn fits(&self, now: u64, limits: Amounts, cost: Amounts, d: usize) -> bool {
        limits[d] == 0 || self.usage(now)[d] + u128::from(cost[d]) <= u128::from(limits[d])
    }

    /// Brute force over every time capacity can come back: `now` and each later bucket edge.
    fn wait(&self, now: u64, limits: Amounts, cost: Amounts, d: usize) -> Retry {
        if limits[d] != 0 && cost[d] > limits[d] {
            return Retry::Never;
        }
        if self.fits(now, limits, cost, d) {
            return Retry::Now;
        }
        let mut edge = (now / self.width() + 1) * self.width();
        loop {
            if self.fits(edge, limits, cost, d) {
                return Retry::After(edge - now);
            }
            edge += self.width();
        }
    }

    fn decide(&self, now: u64, limits: Amounts, cost: Amounts) -> Decision {
        let mut retry = Retry::Now;
        let mut reason = None;
        for dim in Dimension::ALL {
            let wait = self.wait(now, limits, cost, dim as usize);
            if wait.longer_than(retry) {
                retry = wait;
                reason = Some(dim);
            }
        }
        let allowed = retry == Retry::Now;
        let usage = self.usage(now);
        let mut remaining = [None; 3];
        let mut reset_ms = [0; 3];
        for d in 0..3 {
            let charged = if allowed { u128::from(cost[d]) } else { 0 };
            if limits[d] != 0 {
                let left = u128::from(limits[d]).saturating_sub(usage[d] + charged);
                remaining[d] = Some(left as u64);
            }
            let mut until = self
                .events
                .iter()
                .filter(|(t, a)| a[d] > 0 && now < self.counts_until(*t))
                .map(|(t, _)| self.counts_until(*t))
                .max();
            if charged > 0 {
                until = Some(self.counts_until(now));
            }
            reset_ms[d] = until.map_or(0, |u| u - now);
        }
        Decision {
            allowed,
            reason,
            retry,
            remaining,
            reset_ms,
            ticket: if allowed {
                (now / self.width() + 1) * self.width()
            } else {
                0
            },
        }
    }

    fn admit(&mut self, now: u64, cost: Amounts) {
        self.events.push((now, cost.map(u128::from)));
    }

    fn settle(&mut self, now: u64, ticket: u64, reserved: [u64; 2], actual: [u64; 2]) {
        let width = self.width();
        let bucket = ticket / width - 1;
        if now >= (bucket + 1) * width + self.window_ms {
            return;
        }
        for (d, (r, a)) in [(1, (reserved[0], actual[0])), (2, (reserved[1], actual[1]))] {
            let mut refund = u128::from(r.saturating_sub(a));
            for (t, amounts) in self.events.iter_mut().rev() {
                if *t / width == bucket && refund > 0 {
                    let taken = amounts[d].min(refund);
                    amounts[d] -= taken;
                    refund -= taken;
                }
            }
            if a > r {
                let mut excess = [0u128; 3];
                excess[d] = u128::from(a - r);
                self.events.push((now, excess));
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Check {
        dt: u64,
        cost: Amounts,
    },
    Peek {
        dt: u64,
        cost: Amounts,
    },
    /// Settle the `pick`-th admitted request (modulo their count) with these actual usages.
    Settle {
        dt: u64,
        pick: usize,
        actual: [u64; 2],
    },
}

fn op_strategy(width: u64, allow_excess: bool) -> impl Strategy<Value = Op> {
    let dt = prop_oneof![
        8 => 0..width * 2,
        1 => 0..width * 70,
    ];
    let cost = (0u64..4, 0u64..40, 0u64..40).prop_map(|(r, i, o)| [r.min(1), i, o]);
    let actual_max: u64 = if allow_excess { 60 } else { 40 };
    prop_oneof![
        6 => (dt.clone(), cost.clone()).prop_map(|(dt, cost)| Op::Check { dt, cost }),
        1 => (dt.clone(), cost).prop_map(|(dt, cost)| Op::Peek { dt, cost }),
        2 => (dt, any::<usize>(), 0u64..actual_max, 0u64..actual_max)
            .prop_map(|(dt, pick, i, o)| Op::Settle { dt, pick, actual: [i, o] }),
    ]
}

struct Admitted {
    ticket: u64,
    cost: Amounts,
}

/// Run a sequence against the window and the naive model side by side, comparing every reply.
fn run(
    window_ms: u64,
    limits: Amounts,
    ops: &[Op],
    allow_excess: bool,
) -> Result<Naive, TestCaseError> {
    let mut window = Window::new(window_ms).unwrap();
    let mut naive = Naive::new(window_ms);
    let mut now = 1_700_000_000_000u64;
    let mut admitted: Vec<Admitted> = Vec::new();
    for op in ops {
        match op {
            Op::Check { dt, cost } | Op::Peek { dt, cost } => {
                now += dt;
                // Every check costs one request, as the CHECK command does.
                let cost = [1, cost[1], cost[2]];
                let got = window.evaluate(now, limits, cost);
                let want = naive.decide(now, limits, cost);
                prop_assert_eq!(&got, &want, "at {} cost {:?}", now, cost);
                if let Retry::After(ms) = got.retry {
                    prop_assert!(!window.evaluate(now + ms - 1, limits, cost).allowed);
                    prop_assert!(window.evaluate(now + ms, limits, cost).allowed);
                }
                if got.allowed && matches!(op, Op::Check { .. }) {
                    window.apply(&Effect {
                        now_ms: now,
                        limits,
                        charge: cost,
                        refund: None,
                    });
                    naive.admit(now, cost);
                    admitted.push(Admitted {
                        ticket: got.ticket,
                        cost,
                    });
                }
            }
            Op::Settle { dt, pick, actual } => {
                now += dt;
                if admitted.is_empty() {
                    continue;
                }
                let chosen = &admitted[pick % admitted.len()];
                let reserved = [chosen.cost[1], chosen.cost[2]];
                let actual = if allow_excess {
                    *actual
                } else {
                    [actual[0].min(reserved[0]), actual[1].min(reserved[1])]
                };
                let plan = window
                    .plan_settle(now, chosen.ticket, reserved, actual)
                    .unwrap();
                if let Some(effect) = plan {
                    window.apply(&effect);
                }
                naive.settle(now, chosen.ticket, reserved, actual);
            }
        }
        // Whatever happened, the totals must equal the rows and no row may be out of place.
        let snapshot = window.snapshot();
        let rebuilt = Window::from_snapshot(&snapshot).unwrap();
        prop_assert_eq!(rebuilt.totals, window.totals);
        prop_assert!(snapshot.rows.len() <= MAX_ROWS);
    }
    Ok(naive)
}

fn limits_strategy() -> impl Strategy<Value = Amounts> {
    (
        prop_oneof![Just(0u64), 1u64..12],
        prop_oneof![Just(0u64), 1u64..200],
        prop_oneof![Just(0u64), 1u64..200],
    )
        .prop_map(|(r, i, o)| [r, i, o])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every field of every decision equals the naive model's, with settles that refund and charge.
    #[test]
    fn agrees_with_naive_model(
        window_ms in prop_oneof![Just(600u64), Just(60u64), Just(6_000u64)],
        limits in limits_strategy(),
        ops in proptest::collection::vec(op_strategy(10, true), 1..120),
    ) {
        let width = window_ms / 60;
        // Rescale the generated gaps to this window's bucket width.
        let ops: Vec<Op> = ops.into_iter().map(|op| match op {
            Op::Check { dt, cost } => Op::Check { dt: dt * width / 10, cost },
            Op::Peek { dt, cost } => Op::Peek { dt: dt * width / 10, cost },
            Op::Settle { dt, pick, actual } => Op::Settle { dt: dt * width / 10, pick, actual },
        }).collect();
        run(window_ms, limits, &ops, true)?;
    }

    /// The strict guarantee: in ANY interval of one window, admitted (net) usage fits every limit.
    #[test]
    fn never_exceeds_a_limit_in_any_window(
        limits in limits_strategy(),
        ops in proptest::collection::vec(op_strategy(10, false), 1..200),
    ) {
        let window_ms = 600;
        let naive = run(window_ms, limits, &ops, false)?;
        for (start, _) in &naive.events {
            for d in 0..3 {
                if limits[d] == 0 {
                    continue;
                }
                let sum: u128 = naive
                    .events
                    .iter()
                    .filter(|(t, _)| *t >= *start && *t < *start + window_ms)
                    .map(|(_, a)| a[d])
                    .sum();
                prop_assert!(sum <= u128::from(limits[d]), "dimension {} used {} in a window", d, sum);
            }
        }
    }
}

#[test]
fn rejects_bad_windows() {
    assert_eq!(Window::<3>::new(0).unwrap_err(), WindowError::InvalidWindow);
    assert_eq!(
        Window::<3>::new(61).unwrap_err(),
        WindowError::InvalidWindow
    );
    assert!(Window::<3>::new(60).is_ok());
}

#[test]
fn too_large_request_never_fits() {
    let window = Window::new(60_000).unwrap();
    let decision = window.evaluate(5_000_000, [10, 100, 100], [1, 101, 0]);
    assert!(!decision.allowed);
    assert_eq!(decision.retry, Retry::Never);
    assert_eq!(decision.reason, Some(Dimension::InputTokens));
    assert_eq!(decision.ticket, 0);
}

#[test]
fn capacity_returns_one_bucket_after_the_window() {
    let mut window = Window::new(60_000).unwrap();
    let t0 = 1_000_000_500; // half way through a bucket
    let d = window.evaluate(t0, [1, 0, 0], [1, 0, 0]);
    assert!(d.allowed);
    assert_eq!(d.remaining, [Some(0), None, None]);
    window.apply(&Effect {
        now_ms: t0,
        limits: [1, 0, 0],
        charge: [1, 0, 0],
        refund: None,
    });
    let denied = window.evaluate(t0 + 1, [1, 0, 0], [1, 0, 0]);
    assert_eq!(denied.reason, Some(Dimension::Requests));
    // End of the bucket (500 ms away) plus one window.
    assert_eq!(denied.retry, Retry::After(60_499));
    assert_eq!(denied.reset_ms, [60_499, 0, 0]);
    assert!(!window.evaluate(t0 + 60_499, [1, 0, 0], [1, 0, 0]).allowed);
    assert!(window.evaluate(t0 + 60_500, [1, 0, 0], [1, 0, 0]).allowed);
}

#[test]
fn clock_stepping_back_clamps_to_the_newest_bucket() {
    let mut window = Window::new(600).unwrap();
    let t0 = 1_000_000;
    for _ in 0..3 {
        window.apply(&Effect {
            now_ms: t0,
            limits: [3, 0, 0],
            charge: [1, 0, 0],
            refund: None,
        });
    }
    // The clock jumps back a long way: the three requests still count, nothing is corrupted.
    let back = t0 - 50_000;
    let d = window.evaluate(back, [3, 0, 0], [1, 0, 0]);
    assert!(!d.allowed);
    window.apply(&Effect {
        now_ms: back,
        limits: [4, 0, 0],
        charge: [1, 0, 0],
        refund: None,
    });
    assert_eq!(window.head(), t0 / 10);
    assert_eq!(window.snapshot().rows, vec![[4, 0, 0]]);
    assert_eq!(window.expire_at_ms(), Some((t0 / 10 + 61) * 10));
}

#[test]
fn settle_validates_tickets() {
    let mut window = Window::new(600).unwrap();
    let now = 1_000_000;
    window.apply(&Effect {
        now_ms: now,
        limits: [0, 0, 0],
        charge: [1, 10, 10],
        refund: None,
    });
    let ticket = window.ticket_for_bucket(now / 10);
    assert_eq!(
        window.plan_settle(now, ticket + 10, [10, 10], [5, 5]),
        Err(WindowError::TicketInFuture)
    );
    assert_eq!(
        window.plan_settle(now, ticket + 1, [10, 10], [5, 5]),
        Err(WindowError::InvalidTicket)
    );
    assert_eq!(
        window.plan_settle(now, 0, [10, 10], [5, 5]),
        Err(WindowError::InvalidTicket)
    );
    assert_eq!(
        window.plan_settle(now, ticket, [10, 10], [10, 10]),
        Ok(None)
    );
    assert_eq!(
        window.plan_settle(now + 700, ticket, [10, 10], [0, 0]),
        Ok(None)
    );
    let effect = window
        .plan_settle(now, ticket, [10, 10], [4, 25])
        .unwrap()
        .unwrap();
    window.apply(&effect);
    assert_eq!(window.snapshot().rows, vec![[1, 4, 25]]);
}

#[test]
fn snapshot_round_trips_and_rejects_garbage() {
    let mut window = Window::new(600).unwrap();
    for i in 0..100u64 {
        window.apply(&Effect {
            now_ms: 1_000_000 + i * 7,
            limits: [5, 6, 7],
            charge: [1, i * 1_000_000_000, i],
            refund: None,
        });
    }
    let snapshot = window.snapshot();
    let restored = Window::from_snapshot(&snapshot).unwrap();
    assert_eq!(restored.snapshot(), snapshot);
    let mut bad = snapshot.clone();
    bad.rows = vec![[1, 1, 1]; 62];
    assert!(Window::from_snapshot(&bad).is_err());
    let mut bad = snapshot.clone();
    bad.head = 3;
    assert!(Window::from_snapshot(&bad).is_err());
    let mut bad = snapshot;
    bad.window_ms = 61;
    assert!(Window::from_snapshot(&bad).is_err());
}

#[test]
fn huge_amounts_saturate_without_panicking() {
    let mut window = Window::new(60).unwrap();
    let limits = [0, u64::MAX, 0];
    assert!(window.evaluate(u64::MAX - 1, limits, [u64::MAX; 3]).allowed);
    for _ in 0..3 {
        window.apply(&Effect {
            now_ms: u64::MAX - 1,
            limits,
            charge: [u64::MAX; 3],
            refund: None,
        });
    }
    assert_eq!(window.snapshot().rows, vec![[u64::MAX; 3]]);
    let d = window.evaluate(u64::MAX, limits, [1, 1, 1]);
    assert!(!d.allowed);
    assert_eq!(d.remaining[1], Some(0));
}

#[test]
fn far_future_timestamps_leave_a_state_that_can_be_saved() {
    // Found by `make fuzz`: an APPLY carrying now_ms near u64::MAX once left a head whose expiry
    // overflowed, which the RDB loader (rightly) refuses. The clock is now clamped.
    for window_ms in [60, 60_000, MAX_WINDOW_MS] {
        let mut window = Window::new(window_ms).unwrap();
        window.apply(&Effect {
            now_ms: u64::MAX,
            limits: [1, 1, 1],
            charge: [1, 1, 1],
            refund: None,
        });
        let restored = Window::from_snapshot(&window.snapshot()).unwrap();
        assert_eq!(restored.snapshot(), window.snapshot());
        assert!(window.expire_at_ms().is_some());
        assert!(!window.evaluate(u64::MAX, [1, 1, 1], [1, 1, 1]).allowed);
    }
    assert_eq!(
        Window::<3>::new(MAX_WINDOW_MS + 60).unwrap_err(),
        WindowError::InvalidWindow
    );
}
