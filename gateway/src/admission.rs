//! Admission: one LLMRL.CHECK per request (or the failure policy when Redis is unavailable),
//! and the settlement that later corrects the reservation with what the request really used.

use crate::app::App;
use crate::config::FailureMode;
use crate::dialect::Usage;
use crate::error::{ErrorKind, GatewayError};
use crate::policy::{ApiKey, Scope};
use hyper::StatusCode;
use llmrl_core::protocol::{Check, Settle, Usage as Correction, Verdict};
use std::sync::Arc;
use std::time::Instant;

/// What the limiter said about a request.
pub enum Admission {
    Checked(Verdict),
    /// No decision: `--no-limiter`, or Redis unavailable with `--on-redis-error open`.
    Unchecked,
}

/// One LLMRL.CHECK for `cost` (input, output tokens) in `scope`, or the failure policy.
pub async fn admit(
    app: &App,
    key: &ApiKey,
    scope: &Scope,
    input_tokens: u64,
    output_tokens: u64,
) -> Result<Admission, GatewayError> {
    let Some(limiter) = &app.limiter else {
        return Ok(Admission::Unchecked);
    };
    let started = Instant::now();
    let check = Check {
        key: &scope.redis_key,
        limits: scope.limits,
        input_tokens,
        output_tokens,
        window_ms: Some(key.window_ms),
    };
    let result = limiter.check(&check).await;
    app.metrics
        .limiter_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(verdict) => Ok(Admission::Checked(verdict)),
        Err(error) => {
            app.metrics.redis_errors.with_label_values(&["check"]).inc();
            match app.cli.on_redis_error {
                FailureMode::Open => {
                    app.metrics.fail_open.inc();
                    tracing::warn!(%error, "limiter unavailable; serving unchecked (--on-redis-error open)");
                    Ok(Admission::Unchecked)
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
    }
}

/// Everything needed to correct a reservation once real usage is known.
#[derive(Clone)]
pub struct Settlement {
    app: Arc<App>,
    redis_key: String,
    /// 0 when nothing was charged (unchecked, or a shadow key over its limit).
    ticket: u64,
    pub reserved: Usage,
}

impl Settlement {
    pub fn new(app: &Arc<App>, scope: &Scope, ticket: i64, reserved: Usage) -> Settlement {
        Settlement {
            app: Arc::clone(app),
            redis_key: scope.redis_key.clone(),
            ticket: u64::try_from(ticket).unwrap_or(0),
            reserved,
        }
    }

    fn command(&self, actual: Usage) -> Settle<'_> {
        Settle {
            key: &self.redis_key,
            ticket: self.ticket,
            input: Correction {
                reserved: self.reserved.input_tokens,
                actual: actual.input_tokens,
            },
            output: Correction {
                reserved: self.reserved.output_tokens,
                actual: actual.output_tokens,
            },
        }
    }

    /// Whether there is a reservation to correct: an admitted ticket and usage that differs.
    fn needed(&self, actual: Usage) -> bool {
        self.app.limiter.is_some() && self.command(actual).changes_anything()
    }

    /// Send LLMRL.SETTLE (once; never retried) unless there is nothing to correct.
    pub async fn settle(self, actual: Usage) {
        let Some(limiter) = self.app.limiter.as_ref() else {
            return;
        };
        if !self.needed(actual) {
            return;
        }
        let metrics = &self.app.metrics;
        for (dimension, reserved, actual) in [
            ("input", self.reserved.input_tokens, actual.input_tokens),
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
        if let Err(error) = limiter.settle(&self.command(actual)).await {
            metrics.redis_errors.with_label_values(&["settle"]).inc();
            tracing::warn!(%error, "LLMRL.SETTLE failed; the reservation stays charged");
        }
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
