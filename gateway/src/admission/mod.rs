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
use hyper::header::HeaderValue;
use hyper::StatusCode;
use llmrl_core::protocol::{
    Check, Detail, MultiCheck, MultiCorrection, MultiVerdict, ScopeArgs, ScopeVerdict,
    Usage as Correction,
};
use llmrl_core::scope::REPORTED;
use llmrl_keys::{Checks, Plan, Price, ScopeSpec};
use std::time::Instant;

/// What the limiter said about a request; `None` when nothing decided (`--no-limiter`, or
/// Redis unavailable with `--on-redis-error open`).
pub type Admission = Option<Decision>;

mod settlement;
pub use settlement::Settlement;

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
    // Written with itoa: `format!` here cost more than the rest of the header (two per answer).
    let mut number = itoa::Buffer::new();
    let mut text = String::with_capacity(28);
    text.push_str(number.format(micro_usd / 1_000_000));
    text.push('.');
    let fraction = number.format(micro_usd % 1_000_000);
    text.extend(std::iter::repeat_n(
        '0',
        6usize.saturating_sub(fraction.len()),
    ));
    text.push_str(fraction);
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("0"))
}

/// What a request costs in each scope of a multi-scope plan: requests, input tokens, output
/// tokens, and the scope's fourth dimension (tokens, or micro-dollars).
pub fn scope_costs(plan: &Plan, usage: Usage, counted_input: u64, cost: u64) -> Vec<[u64; 4]> {
    let Checks::Multi(scopes) = &plan.checks else {
        return Vec::new();
    };
    let output = usage.output_tokens;
    scopes
        .iter()
        .map(|scope| {
            let fourth = scope.fourth.charge(counted_input, output, cost);
            [1, counted_input, output, fourth]
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
                binary: true,
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
            scope: &scope.packed,
            cost_charge: cost[3],
        })
        .collect();
    let check = MultiCheck {
        scopes: &args,
        input_tokens: reserved.input_tokens,
        output_tokens: reserved.output_tokens,
        lease_ms,
        detail: Detail::Binary,
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
            crate::throttle::warn_throttled!(%error, "LLMRL.MCANCEL failed; the admission stays charged in one slot group");
        }
    }
}

/// The failure policy when Redis does not answer.
fn unavailable(app: &App, error: LimiterError) -> Result<Admission, GatewayError> {
    app.metrics.redis_errors.with_label_values(&["check"]).inc();
    match app.cli.on_redis_error {
        FailureMode::Open => {
            app.metrics.fail_open.inc();
            crate::throttle::warn_throttled!(%error, "limiter unavailable; serving unchecked (--on-redis-error open)");
            Ok(None)
        }
        FailureMode::Closed => {
            crate::throttle::warn_throttled!(%error, "limiter unavailable; answering 503 (--on-redis-error closed)");
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

#[cfg(test)]
mod tests {
    use super::usd_header;

    #[test]
    fn usd_headers_read_to_the_micro_dollar() {
        for (micro, text) in [
            (0, "0.000000"),
            (11, "0.000011"),
            (100_000, "0.100000"),
            (1_234_567, "1.234567"),
            (u64::MAX, "18446744073709.551615"),
        ] {
            assert_eq!(usd_header(micro), text);
        }
    }
}
