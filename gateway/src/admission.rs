//! Admission: one atomic check per request — `LLMRL.CHECK` for a key's classic single scope,
//! `LLMRL.MCHECK` over every scope of its policy otherwise — or the failure policy when Redis is
//! unavailable; and the settlement that later corrects the reservation with what the request
//! really used and gives back its concurrency slots.

use crate::app::App;
use crate::config::FailureMode;
use crate::decision::Decision;
use crate::dialect::Usage;
use crate::error::{ErrorKind, GatewayError};
use crate::limiter::LimiterError;
use hyper::StatusCode;
use llmrl_core::protocol::{
    Check, MultiCheck, MultiCorrection, ScopeArgs, Settle, Usage as Correction,
};
use llmrl_keys::{Checks, Fourth, Plan, Price};
use std::sync::Arc;
use std::time::Instant;

/// What the limiter said about a request; `None` when nothing decided (`--no-limiter`, or
/// Redis unavailable with `--on-redis-error open`).
pub type Admission = Option<Decision>;

/// A cost in micro-dollars, rounded up (never under-charging a budget).
pub fn micro_usd(price: Option<Price>, usage: Usage) -> u64 {
    let Some(price) = price else {
        return 0;
    };
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    // Prices are USD per million tokens, that is micro-dollars per token.
    let cost = (usage.input_tokens - cached) as f64 * price.input
        + cached as f64 * price.cached_input.unwrap_or(price.input)
        + usage.output_tokens as f64 * price.output;
    cost.ceil().clamp(0.0, u64::MAX as f64) as u64
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
            let args: Vec<ScopeArgs> = scopes
                .iter()
                .zip(&costs)
                .map(|(scope, cost)| ScopeArgs {
                    key: &scope.redis_key,
                    clock: scope.clock,
                    limits: scope.limits,
                    cost_charge: cost[3],
                })
                .collect();
            let check = MultiCheck {
                scopes: &args,
                input_tokens: input,
                output_tokens: output,
                lease_ms: plan.holds_slots.then(|| app.cli.slot_lease_ms()),
                detail: true,
            };
            limiter
                .mcheck(&check)
                .await
                .map(|verdict| Decision::multi(&verdict, scopes, &costs))
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
/// admission's concurrency slots.
#[derive(Clone)]
pub struct Settlement {
    app: Arc<App>,
    plan: Arc<Plan>,
    /// 0 when nothing was charged (unchecked, or a shadow key over its limit).
    ticket: u64,
    pub reserved: Usage,
    reserved_cost: u64,
}

impl Settlement {
    pub fn new(
        app: &Arc<App>,
        plan: &Arc<Plan>,
        ticket: u64,
        reserved: Usage,
        reserved_cost: u64,
    ) -> Settlement {
        Settlement {
            app: Arc::clone(app),
            plan: Arc::clone(plan),
            ticket,
            reserved,
            reserved_cost,
        }
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
    pub async fn settle(self, actual: Usage) {
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
            Checks::Multi(scopes) => {
                let counted = self.counted_input(actual);
                let cost = micro_usd(self.plan.price, actual);
                let reserved = scope_costs(
                    &self.plan,
                    self.reserved,
                    self.reserved.input_tokens,
                    self.reserved_cost,
                );
                let real = scope_costs(&self.plan, actual, counted, cost);
                let keys: Vec<&str> = scopes.iter().map(|s| s.redis_key.as_str()).collect();
                let correction = MultiCorrection {
                    keys: &keys,
                    ticket: self.ticket,
                    input: Correction {
                        reserved: self.reserved.input_tokens,
                        actual: counted,
                    },
                    output: Correction {
                        reserved: self.reserved.output_tokens,
                        actual: actual.output_tokens,
                    },
                    costs: reserved
                        .iter()
                        .zip(&real)
                        .map(|(reserved, real)| Correction {
                            reserved: reserved[3],
                            actual: real[3],
                        })
                        .collect(),
                };
                limiter.msettle(&correction).await
            }
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

    /// Keep the reservation as charged (no usage was reported: the safe side) but give back the
    /// slots.
    pub async fn keep(self) {
        let reserved = self.reserved;
        self.settle(reserved).await;
    }

    /// Settle in the background, without holding up the response (shutdown waits for it).
    pub fn spawn(self, actual: Usage) {
        if !self.needed(actual) {
            return;
        }
        let tasks = self.app.tasks.clone();
        tasks.spawn(self.settle(actual));
    }
}
