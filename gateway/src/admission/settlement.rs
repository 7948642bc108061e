//! The settlement of an admitted request: its reservation corrected to real usage in every
//! scope (MSETTLE, or SETTLE for a classic key), its concurrency slots given back — on success,
//! error, timeout, and when the request's future is dropped.

use super::{micro_usd, scope_costs, usd_header};
use crate::app::App;
use crate::decision::Decision;
use crate::dialect::Usage;
use crate::limiter::{Limiter, LimiterError};
use hyper::header::{HeaderName, HeaderValue};
use llmrl_core::protocol::{MultiCorrection, Settle, Usage as Correction};
use llmrl_keys::{Checks, Plan, ScopeSpec};
use std::sync::Arc;

/// Everything needed to correct a reservation once real usage is known, and to give back the
/// admission's concurrency slots. Dropped without being settled (the client left while the
/// upstream was still answering, so the request's future was dropped), it gives the slots back
/// by itself and keeps the reservation.
pub struct Settlement {
    app: Arc<App>,
    plan: Arc<Plan>,
    /// 0 when nothing was charged (unchecked, or a shadow key over its limit).
    ticket: u64,
    /// Per slot group (policies spread over cluster slots): its index and ticket.
    group_tickets: Vec<(usize, u64)>,
    pub reserved: Usage,
    reserved_cost: u64,
    /// Whether cached prompt tokens count toward input-token limits (the keys file's rule, else
    /// the API's own).
    count_cached_input: bool,
    /// Still to be settled (cleared once `settle` runs).
    pending: bool,
}

impl Drop for Settlement {
    fn drop(&mut self) {
        if !self.pending || !self.plan.holds_slots || self.ticket == 0 {
            return;
        }
        self.pending = false;
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        // Not pending itself: if this task is dropped unrun too (shutdown), nothing respawns.
        let unsettled = Settlement {
            app: Arc::clone(&self.app),
            plan: Arc::clone(&self.plan),
            ticket: self.ticket,
            group_tickets: std::mem::take(&mut self.group_tickets),
            reserved: self.reserved,
            reserved_cost: self.reserved_cost,
            count_cached_input: self.count_cached_input,
            pending: false,
        };
        tracing::debug!("request dropped before it was settled; giving its slots back");
        let tasks = self.app.tasks.clone();
        tasks.spawn(unsettled.keep());
    }
}

impl Settlement {
    pub fn new(
        app: &Arc<App>,
        plan: &Arc<Plan>,
        admission: Option<&Decision>,
        reserved: Usage,
        reserved_cost: u64,
        count_cached_input: bool,
    ) -> Settlement {
        let admitted = admission.filter(|decision| decision.allowed);
        Settlement {
            app: Arc::clone(app),
            plan: Arc::clone(plan),
            ticket: admitted.map_or(0, |decision| decision.ticket),
            group_tickets: admitted.map_or(Vec::new(), |decision| decision.group_tickets.clone()),
            reserved,
            reserved_cost,
            count_cached_input,
            pending: true,
        }
    }

    /// `x-llmrl-cost-usd`: what the request really cost, when its model has a price (for
    /// answers whose usage is known before their headers go out).
    pub fn cost_header(&self, actual: Usage) -> Option<(HeaderName, HeaderValue)> {
        self.plan.price?;
        Some((
            HeaderName::from_static("x-llmrl-cost-usd"),
            usd_header(micro_usd(self.plan.price, actual)),
        ))
    }

    /// Input tokens that count toward limits: cached prompt tokens only if the policy says so.
    fn counted_input(&self, actual: Usage) -> u64 {
        llmrl_keys::counted_input(
            actual.input_tokens,
            actual.cached_input_tokens,
            self.count_cached_input,
        )
    }

    fn single_command<'a>(&self, redis_key: &'a str, actual: Usage) -> Settle<'a> {
        Settle {
            key: redis_key,
            ticket: self.ticket,
            input: Correction {
                reserved: self.reserved.input_tokens,
                actual: self.counted_input(actual),
            },
            output: Correction {
                reserved: self.reserved.output_tokens,
                actual: actual.output_tokens,
            },
            binary: true,
        }
    }

    /// Whether there is something to correct: an admission, and usage that differs or slots
    /// to give back.
    fn needed(&self, actual: Usage) -> bool {
        if self.app.limiter.is_none() || self.ticket == 0 {
            return false;
        }
        match &self.plan.checks {
            Checks::Single { redis_key, .. } => {
                self.single_command(redis_key, actual).changes_anything()
            }
            Checks::Multi(_) => {
                self.plan.holds_slots
                    || self.counted_input(actual) != self.reserved.input_tokens
                    || actual.output_tokens != self.reserved.output_tokens
                    || (self.plan.counts_spend
                        && micro_usd(self.plan.price, actual) != self.reserved_cost)
            }
        }
    }

    fn count_tokens(&self, actual: Usage) {
        let metrics = &self.app.metrics;
        for (dimension, reserved, actual) in [
            (
                "input",
                self.reserved.input_tokens,
                self.counted_input(actual),
            ),
            ("output", self.reserved.output_tokens, actual.output_tokens),
        ] {
            if actual < reserved {
                metrics
                    .tokens_settled
                    .with_label_values(&[dimension, "refund"])
                    .inc_by(reserved - actual);
            } else if actual > reserved {
                metrics
                    .tokens_settled
                    .with_label_values(&[dimension, "charge"])
                    .inc_by(actual - reserved);
            }
        }
    }

    /// Settle (once; never retried: a retry could correct twice) unless there is nothing to
    /// correct: LLMRL.SETTLE, or LLMRL.MSETTLE in every scope, releasing the slots.
    pub async fn settle(mut self, actual: Usage) {
        self.pending = false;
        let Some(limiter) = self.app.limiter.as_ref() else {
            return;
        };
        if !self.needed(actual) {
            return;
        }
        self.count_tokens(actual);
        let result = match &self.plan.checks {
            Checks::Single { redis_key, .. } => limiter
                .settle(&self.single_command(redis_key, actual))
                .await
                .map(|_| ()),
            Checks::Multi(scopes) => self.msettle(limiter, scopes, actual).await,
        };
        if let Err(error) = result {
            self.app
                .metrics
                .redis_errors
                .with_label_values(&["settle"])
                .inc();
            crate::throttle::warn_throttled!(%error, "settling failed; the reservation stays charged (and any slot held until its lease ends)");
        }
    }

    /// LLMRL.MSETTLE of every scope: one call, or one per slot group.
    async fn msettle(
        &self,
        limiter: &Limiter,
        scopes: &[ScopeSpec],
        actual: Usage,
    ) -> Result<(), LimiterError> {
        let counted = self.counted_input(actual);
        let cost = micro_usd(self.plan.price, actual);
        let reserved = scope_costs(
            &self.plan,
            self.reserved,
            self.reserved.input_tokens,
            self.reserved_cost,
        );
        let real = scope_costs(&self.plan, actual, counted, cost);
        let every: Vec<usize> = (0..scopes.len()).collect();
        let groups: Vec<(&[usize], u64)> = if self.group_tickets.is_empty() {
            vec![(&every, self.ticket)]
        } else {
            self.group_tickets
                .iter()
                .filter_map(|&(group, ticket)| {
                    Some((self.plan.groups.get(group)?.as_slice(), ticket))
                })
                .collect()
        };
        let mut result = Ok(());
        for (members, ticket) in groups {
            let keys: Vec<&str> = members
                .iter()
                .filter_map(|&i| scopes.get(i))
                .map(|scope| scope.redis_key.as_str())
                .collect();
            let costs = members
                .iter()
                .filter_map(|&i| {
                    Some(Correction {
                        reserved: reserved.get(i)?[3],
                        actual: real.get(i)?[3],
                    })
                })
                .collect();
            let correction = MultiCorrection {
                keys: &keys,
                ticket,
                input: Correction {
                    reserved: self.reserved.input_tokens,
                    actual: counted,
                },
                output: Correction {
                    reserved: self.reserved.output_tokens,
                    actual: actual.output_tokens,
                },
                costs,
            };
            if let Err(error) = limiter.msettle(&correction).await {
                result = Err(error);
            }
        }
        result
    }

    /// Keep the reservation as charged (no usage was reported: the safe side) but give back the
    /// slots.
    pub async fn keep(self) {
        let reserved = self.reserved;
        self.settle(reserved).await;
    }

    /// Settle before the answer goes out when the request holds concurrency slots (so a client
    /// that sends its next request as soon as it has this answer finds its slot free), else in
    /// the background.
    pub async fn complete(self, actual: Usage) {
        if self.plan.holds_slots {
            self.settle(actual).await;
        } else {
            self.spawn(actual);
        }
    }

    /// Settle in the background, without holding up the response (shutdown waits for it).
    pub fn spawn(mut self, actual: Usage) {
        if !self.needed(actual) {
            self.pending = false;
            return;
        }
        let tasks = self.app.tasks.clone();
        tasks.spawn(self.settle(actual));
    }
}
