//! What each scope has used and has left, read with LLMRL.PEEK / MPEEK (which record nothing):
//! for clients (`GET /v1/usage`), the admin API, the CLI and the dashboard.

use crate::limiter::{Limiter, LimiterError};
use crate::policy::{ApiKey, KeyScope};
use llmrl_core::protocol::{Check, Detail, Limits, MultiCheck, PackedScope, ScopeArgs};
use llmrl_core::scope::{Clock, ScopeLimits};
use llmrl_keys::{group_by_hash_tag, hash_tag, Fourth, Owner, ScopeSpec, Window};
use serde::Serialize;
use serde_json::Value;

/// One limited dimension of a scope.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DimensionUsage {
    /// `requests`, `input_tokens`, `output_tokens`, `tokens`, `spend_usd`, `parallel_requests`.
    pub dimension: &'static str,
    pub limit: Value,
    pub used: Value,
    pub remaining: Value,
    /// Ms until what is used now has all expired (for slots: until the earliest lease ends).
    pub reset_ms: i64,
}

/// One scope: who holds it, over what window, and each limited dimension.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScopeUsage {
    /// As the `x-llmrl-binding-scope` header names it: `key:demo`, `team:ml-research`...
    pub scope: String,
    /// `minute`, `1000ms`, `rolling 86400000ms`, `day`, `day:-480`, `month`, `slots`...
    pub window: String,
    pub limits: Vec<DimensionUsage>,
}

/// How a window is shown.
pub fn window_name(window: Window) -> String {
    use llmrl_keys::limits::{BudgetPeriod, DayRule};
    let sliding = |ms: u64| {
        if ms == 60_000 {
            "minute".to_string()
        } else {
            format!("{ms}ms")
        }
    };
    match window {
        Window::Minute(ms) => sliding(ms),
        Window::Day(DayRule::Rolling(ms)) | Window::Budget(BudgetPeriod::Rolling(ms)) => {
            if ms == 86_400_000 {
                "rolling day".to_string()
            } else {
                format!("rolling {ms}ms")
            }
        }
        Window::Day(DayRule::Calendar(period)) | Window::Budget(BudgetPeriod::Calendar(period)) => {
            period.name()
        }
        Window::Slots => "in flight".to_string(),
    }
}

/// A dimension's figures: spend in USD, the rest as counts.
fn dimension(name: &'static str, limit: u64, remaining: i64, reset_ms: i64) -> DimensionUsage {
    let remaining = u64::try_from(remaining).unwrap_or(0).min(limit);
    let used = limit - remaining;
    let number = |value: u64| {
        if name == "spend_usd" {
            serde_json::json!(value as f64 / 1_000_000.0)
        } else {
            serde_json::json!(value)
        }
    };
    DimensionUsage {
        dimension: name,
        limit: number(limit),
        used: number(used),
        remaining: number(remaining),
        // Nothing used, nothing to wait for (a peek's own request may report a window).
        reset_ms: if used == 0 { 0 } else { reset_ms.max(0) },
    }
}

/// The names of a scope's five reported dimensions.
fn dimension_names(fourth: Fourth) -> [&'static str; 5] {
    let fourth = match fourth {
        Fourth::Tokens => "tokens",
        Fourth::Spend => "spend_usd",
    };
    [
        "requests",
        "input_tokens",
        "output_tokens",
        fourth,
        "parallel_requests",
    ]
}

/// The usage of multi-scope scopes: one MPEEK per hash tag (one cluster slot each).
pub async fn of_scopes(
    limiter: &Limiter,
    specs: &[ScopeSpec],
) -> Result<Vec<ScopeUsage>, LimiterError> {
    let mut usage = Vec::with_capacity(specs.len());
    for members in group_by_hash_tag(specs) {
        let group: Vec<&ScopeSpec> = members.iter().filter_map(|&i| specs.get(i)).collect();
        let Some(tag) = group.first().map(|s| hash_tag(&s.redis_key)) else {
            continue;
        };
        // A scope that can never admit (it would cost 2 of a limit of 1): the peek is refused
        // as a whole, and a refused MPEEK reports every scope as it stands — nothing of the probe
        // charged, no slot counted. The probe's key is never created (a peek records nothing).
        let probe = format!("llmrl:{{{tag}}}:usage-probe");
        let mut args: Vec<ScopeArgs> = group
            .iter()
            .map(|spec| ScopeArgs {
                key: &spec.redis_key,
                scope: &spec.packed,
                cost_charge: 0,
            })
            .collect();
        let probe_scope = PackedScope::new(
            Clock::Sliding(60_000),
            ScopeLimits {
                summed: [0, 0, 0, 1],
                concurrency: 0,
            },
        );
        args.push(ScopeArgs {
            key: &probe,
            scope: &probe_scope,
            cost_charge: 2,
        });
        let verdict = limiter
            .mpeek(&MultiCheck {
                scopes: &args,
                input_tokens: 0,
                output_tokens: 0,
                lease_ms: Some(1),
                detail: Detail::Binary,
            })
            .await?;
        for (spec, scope) in group.iter().zip(&verdict.scopes) {
            let names = dimension_names(spec.fourth);
            let mut limits_of = spec.limits.summed.to_vec();
            limits_of.push(spec.limits.concurrency);
            let limits = (0..names.len())
                .filter(|&d| limits_of[d] > 0)
                .map(|d| {
                    dimension(
                        names[d],
                        limits_of[d],
                        scope.remaining[d],
                        scope.reset_ms[d],
                    )
                })
                .collect();
            usage.push(ScopeUsage {
                scope: spec.owner.label(),
                window: window_name(spec.window),
                limits,
            });
        }
    }
    Ok(usage)
}

/// The usage of a classic single-scope key (PEEK). A peek costs one request, so an admitting
/// reply counts it: it is taken back out of `used` (its requests' reset is then an upper bound).
pub async fn of_classic(
    limiter: &Limiter,
    redis_key: &str,
    limits: Limits,
    window_ms: u64,
    owner: &Owner,
) -> Result<ScopeUsage, LimiterError> {
    let verdict = limiter
        .peek(&Check {
            key: redis_key,
            limits,
            input_tokens: 0,
            output_tokens: 0,
            window_ms: Some(window_ms),
            binary: true,
        })
        .await?;
    let names = ["requests", "input_tokens", "output_tokens"];
    let values = [limits.rpm, limits.itpm, limits.otpm];
    let limits = (0..3)
        .filter(|&d| values[d] > 0)
        .map(|d| {
            let probe = i64::from(d == 0 && verdict.allowed);
            let remaining = verdict.remaining[d].saturating_add(probe);
            dimension(names[d], values[d], remaining, verdict.reset_ms[d])
        })
        .collect();
    Ok(ScopeUsage {
        scope: owner.label(),
        window: window_name(Window::Minute(window_ms)),
        limits,
    })
}

/// Every scope that applies to an API key, over all its models' plans (each scope once); with
/// `own_only`, only those the key holds itself (not its team's, organisation's or pools').
pub async fn of_key(
    limiter: &Limiter,
    key: &ApiKey,
    own_only: bool,
) -> Result<Vec<ScopeUsage>, LimiterError> {
    let mut usage = Vec::new();
    let mut specs: Vec<ScopeSpec> = Vec::new();
    for scope in key.scopes() {
        if own_only && !scope.is_own() {
            continue;
        }
        match scope {
            KeyScope::Classic {
                redis_key,
                limits,
                window_ms,
                owner,
            } => {
                if limits != Limits::default() {
                    usage.push(of_classic(limiter, &redis_key, limits, window_ms, &owner).await?);
                }
            }
            KeyScope::Multi(spec) => specs.push(spec),
        }
    }
    usage.extend(of_scopes(limiter, &specs).await?);
    Ok(usage)
}
