//! Admission: one atomic check per request — `LLMRL.CHECK` for a key's classic single scope,
//! `LLMRL.MCHECK` over every scope of its policy otherwise — or the failure policy when Redis is
//! unavailable; and the settlement that later corrects the reservation with what the request
//! really used and gives back its concurrency slots.

use crate::app::App;
use crate::config::FailureMode;
use crate::decision::Decision;
use crate::dialect::Usage;
use crate::error::{ErrorKind, GatewayError};
use crate::limiter::{Limiter, LimiterError};
use hyper::header::{HeaderName, HeaderValue};
use hyper::StatusCode;
use llmrl_core::protocol::{
    Check, MultiCheck, MultiCorrection, MultiVerdict, ScopeArgs, ScopeVerdict, Settle,
    Usage as Correction,
};
use llmrl_core::scope::REPORTED;
use llmrl_keys::{Checks, Fourth, Plan, Price, ScopeSpec};
use std::sync::Arc;
use std::time::Instant;

/// What the limiter said about a request; `None` when nothing decided (`--no-limiter`, or
/// Redis unavailable with `--on-redis-error open`).
pub type Admission = Option<Decision>;

/// A cost in micro-dollars, rounded up (never under-charging a budget).
pub fn micro_usd(price: Option<Price>, usage: Usage) -> u64 {
    price.map_or(0, |price| {
        price.micro_usd(
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens,
        )
    })
}

/// Micro-dollars as a header value in dollars, to the micro-dollar.
pub fn usd_header(micro_usd: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}.{:06}",
        micro_usd / 1_000_000,
        micro_usd % 1_000_000
    ))
    .unwrap_or(HeaderValue::from_static("0"))
}

/// What a request costs in each scope of a multi-scope plan: requests, input tokens, output
/// tokens, and the scope's fourth dimension (tokens, or micro-dollars).
pub fn scope_costs(plan: &Plan, usage: Usage, counted_input: u64, cost: u64) -> Vec<[u64; 4]> {
    let Checks::Multi(scopes) = &plan.checks else {
        return Vec::new();
    };
    let tokens = counted_input.saturating_add(usage.output_tokens);
    scopes
        .iter()
        .map(|scope| {
            let fourth = match scope.fourth {
                Fourth::Tokens => tokens,
                Fourth::Spend => cost,
            };
            [1, counted_input, usage.output_tokens, fourth]
        })
        .collect()
}

/// One atomic check of `reserved` (input and output tokens) costing `reserved_cost`
/// micro-dollars under `plan`, or the failure policy.
pub async fn admit(
    app: &App,
    plan: &Plan,
    model: &str,
    reserved: Usage,
    reserved_cost: u64,
) -> Result<Admission, GatewayError> {
    let Some(limiter) = &app.limiter else {
        return Ok(None);
    };
    let started = Instant::now();
    let (input, output) = (reserved.input_tokens, reserved.output_tokens);
    let result = match &plan.checks {
        Checks::Single {
            redis_key,
            limits,
            window_ms,
        } => {
            let check = Check {
                key: redis_key,
                limits: *limits,
                input_tokens: input,
                output_tokens: output,
                window_ms: Some(*window_ms),
            };
            limiter.check(&check).await.map(|verdict| {
                Decision::single(&verdict, *limits, *window_ms, model, [1, input, output])
            })
        }
        Checks::Multi(scopes) => {
            let costs = scope_costs(plan, reserved, input, reserved_cost);
            if limiter.is_cluster() && plan.groups.len() > 1 {
                admit_by_slot(app, limiter, plan, scopes, &costs, reserved).await
            } else {
                let lease = plan.holds_slots.then(|| app.cli.slot_lease_ms());
                mcheck(limiter, scopes, &costs, reserved, lease)
                    .await
                    .map(|verdict| Decision::multi(&verdict, scopes, &costs))
            }
        }
    };
    app.metrics
        .limiter_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(decision) => Ok(Some(decision)),
        Err(error) => unavailable(app, error),
    }
}

/// One LLMRL.MCHECK (with each scope's figures) of `scopes`, each costing `costs[i]`.
async fn mcheck(
    limiter: &Limiter,
    scopes: &[ScopeSpec],
    costs: &[[u64; 4]],
    reserved: Usage,
    lease_ms: Option<u64>,
) -> Result<MultiVerdict, LimiterError> {
    let args: Vec<ScopeArgs> = scopes
        .iter()
        .zip(costs)
        .map(|(scope, cost)| ScopeArgs {
            key: &scope.redis_key,
            clock: scope.clock,
            limits: scope.limits,
            cost_charge: cost[3],
        })
        .collect();
    let check = MultiCheck {
        scopes: &args,
        input_tokens: reserved.input_tokens,
        output_tokens: reserved.output_tokens,
        lease_ms,
        detail: true,
    };
    limiter.mcheck(&check).await
}

/// The scopes and costs of one slot group.
fn group_of(
    members: &[usize],
    scopes: &[ScopeSpec],
    costs: &[[u64; 4]],
) -> (Vec<ScopeSpec>, Vec<[u64; 4]>) {
    members
        .iter()
        .filter_map(|&i| Some((scopes.get(i)?.clone(), *costs.get(i)?)))
        .unzip()
}

/// A policy spread over several Redis Cluster slots (an upstream pool is shared by every
/// organisation, so it has its own): one MCHECK per slot group, in order; when a group refuses,
/// the groups already admitted are cancelled (LLMRL.MCANCEL). Never over-admits: a request
/// proceeds only once every group admitted it. Between an admission and its cancellation the
/// earlier groups count the refused request, so for that moment they may refuse a request they
/// would have admitted (a brief under-admission, never an excess).
async fn admit_by_slot(
    app: &App,
    limiter: &Limiter,
    plan: &Plan,
    scopes: &[ScopeSpec],
    costs: &[[u64; 4]],
    reserved: Usage,
) -> Result<Decision, LimiterError> {
    let lease = plan.holds_slots.then(|| app.cli.slot_lease_ms());
    let mut admitted: Vec<(usize, u64)> = Vec::new();
    let mut figures: Vec<(usize, ScopeVerdict)> = Vec::with_capacity(scopes.len());
    for (group, members) in plan.groups.iter().enumerate() {
        let (group_scopes, group_costs) = group_of(members, scopes, costs);
        let verdict = match mcheck(limiter, &group_scopes, &group_costs, reserved, lease).await {
            Ok(verdict) => verdict,
            Err(error) => {
                cancel(limiter, plan, scopes, costs, &admitted, reserved).await;
                return Err(error);
            }
        };
        if !verdict.allowed {
            cancel(limiter, plan, scopes, costs, &admitted, reserved).await;
            return Ok(Decision::multi(&verdict, &group_scopes, &group_costs));
        }
        admitted.push((group, verdict.ticket));
        figures.extend(members.iter().copied().zip(verdict.scopes));
    }
    figures.sort_by_key(|(index, _)| *index);
    let merged = MultiVerdict {
        allowed: true,
        reason: None,
        scope: None,
        retry_after_ms: 0,
        remaining: [-1; REPORTED],
        reset_ms: [0; REPORTED],
        binding: [-1; REPORTED],
        ticket: admitted.first().map_or(0, |(_, ticket)| *ticket),
        scopes: figures.into_iter().map(|(_, figure)| figure).collect(),
    };
    let mut decision = Decision::multi(&merged, scopes, costs);
    decision.group_tickets = admitted;
    Ok(decision)
}

/// Undo the admissions of the slot groups already admitted (best effort: a failed cancel
/// leaves the reservation charged, never an excess).
async fn cancel(
    limiter: &Limiter,
    plan: &Plan,
    scopes: &[ScopeSpec],
    costs: &[[u64; 4]],
    admitted: &[(usize, u64)],
    reserved: Usage,
) {
    for &(group, ticket) in admitted {
        let Some(members) = plan.groups.get(group) else {
            continue;
        };
        let (group_scopes, group_costs) = group_of(members, scopes, costs);
        let keys: Vec<&str> = group_scopes.iter().map(|s| s.redis_key.as_str()).collect();
        let correction = MultiCorrection {
            keys: &keys,
            ticket,
            input: Correction {
                reserved: reserved.input_tokens,
                actual: 0,
            },
            output: Correction {
                reserved: reserved.output_tokens,
                actual: 0,
            },
            costs: group_costs
                .iter()
                .map(|cost| Correction {
                    reserved: cost[3],
                    actual: 0,
                })
                .collect(),
        };
        if let Err(error) = limiter.mcancel(&correction).await {
            tracing::warn!(%error, "LLMRL.MCANCEL failed; the admission stays charged in one slot group");
        }
    }
}

/// The failure policy when Redis does not answer.
fn unavailable(app: &App, error: LimiterError) -> Result<Admission, GatewayError> {
    app.metrics.redis_errors.with_label_values(&["check"]).inc();
    match app.cli.on_redis_error {
        FailureMode::Open => {
            app.metrics.fail_open.inc();
            tracing::warn!(%error, "limiter unavailable; serving unchecked (--on-redis-error open)");
            Ok(None)
        }
        FailureMode::Closed => {
            tracing::warn!(%error, "limiter unavailable; answering 503 (--on-redis-error closed)");
            Err(GatewayError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::LimiterUnavailable,
                "The rate limiter is temporarily unavailable, so this request was not served. Please retry shortly.",
            )
            .with_code("rate_limiter_unavailable")
            .with_header("retry-after", "1"))
        }
    }
}

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
    ) -> Settlement {
        let admitted = admission.filter(|decision| decision.allowed);
        Settlement {
            app: Arc::clone(app),
            plan: Arc::clone(plan),
            ticket: admitted.map_or(0, |decision| decision.ticket),
            group_tickets: admitted.map_or(Vec::new(), |decision| decision.group_tickets.clone()),
            reserved,
            reserved_cost,
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
        if self.plan.count_cached_input {
            actual.input_tokens
        } else {
            actual
                .input_tokens
                .saturating_sub(actual.cached_input_tokens)
        }
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
            tracing::warn!(%error, "settling failed; the reservation stays charged (and any slot held until its lease ends)");
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
