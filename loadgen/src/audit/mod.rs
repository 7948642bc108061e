//! The audit: was any scope admitted more than its limits allow? Every scope the keys file
//! applies to the `--key`s — the key (or its model), its team, its organisation, its upstream
//! account's pool; per minute, per day (rolling or calendar), concurrency, spend — is checked
//! from what the client saw: when each request was sent, answered, and what its usage says it
//! used. See [`scan`] for why a flagged interval is a certain excess.

mod scan;

use crate::driver::{Outcome, Sample, Status};
use crate::Cli;
use llmrl_core::period::Period;
use llmrl_core::scope::Clock;
use llmrl_keys::{
    counted_input, Checks, Fourth, KeysFile, Owner, Price, Window, DEFAULT_WINDOW_MS,
};
use scan::{Admitted, Peak};
use serde::Serialize;

/// What a scope's limits count over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Any interval of this many ms.
    Sliding(u64),
    /// Each period of the calendar.
    Calendar(Period),
}

impl Rule {
    fn describe(&self) -> String {
        match self {
            Rule::Sliding(ms) => format!("any {ms} ms"),
            Rule::Calendar(period) => format!("each {}", period.name()),
        }
    }
}

/// One scope the audit checks.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditedScope {
    /// How the gateway names it (`key:demo`, `team:ml`, `pool:openai/gpt-4o`...).
    pub name: String,
    /// Its Redis key when known: two `--key`s sharing a scope share its limits.
    redis_key: Option<String>,
    pub rule: Rule,
    /// The `--key`s (indices) whose requests it counts.
    pub keys: Vec<usize>,
    /// Requests, input tokens, output tokens, the fourth dimension; 0 = unlimited.
    pub limits: [u64; 4],
    pub fourth: Fourth,
    pub concurrency: u64,
}

/// How usage turns into what each scope counts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Costing {
    pub price: Option<Price>,
    /// Whether cached prompt tokens count toward input-token limits.
    pub count_cached_input: bool,
}

/// What the audit checks: every scope of every `--key`, and how usage is counted.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditPlan {
    pub scopes: Vec<AuditedScope>,
    pub costing: Costing,
}

/// The scopes of every `--key`, from `--keys-file` (every scope of its policy) or `--limits`
/// (one window per key).
pub fn plan_for(cli: &Cli) -> Result<AuditPlan, String> {
    if let Some(path) = &cli.keys_file {
        let file = KeysFile::read(path).map_err(|e| e.to_string())?;
        // Unset in the file, each API follows its provider: Anthropic's cache reads do not count.
        let cached_counts = cli.api != crate::Api::Messages;
        return from_keys_file(&file, &cli.keys, &cli.model, cached_counts)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    let Some(spec) = &cli.limits else {
        return Err("--audit needs --keys-file or --limits RPM,ITPM,OTPM[,WINDOW_MS]".into());
    };
    let numbers: Vec<u64> = spec
        .split(',')
        .map(|n| {
            n.trim()
                .parse::<u64>()
                .map_err(|_| format!("bad --limits {spec:?}"))
        })
        .collect::<Result<_, _>>()?;
    let (limits, window_ms) = match numbers.as_slice() {
        &[rpm, itpm, otpm, ref window @ ..] if window.len() <= 1 => (
            [rpm, itpm, otpm, 0],
            window.first().copied().unwrap_or(DEFAULT_WINDOW_MS),
        ),
        _ => return Err(format!("bad --limits {spec:?}: RPM,ITPM,OTPM[,WINDOW_MS]")),
    };
    let scopes = (0..cli.keys.len())
        .map(|key| AuditedScope {
            name: format!(
                "{} {}",
                crate::report::mask(&cli.keys[key]),
                Rule::Sliding(window_ms).describe()
            ),
            redis_key: None,
            rule: Rule::Sliding(window_ms),
            keys: vec![key],
            limits,
            fourth: Fourth::Tokens,
            concurrency: 0,
        })
        .collect();
    Ok(AuditPlan {
        scopes,
        costing: Costing::default(),
    })
}

/// Every scope the gateway checks for requests for `model` under each of `api_keys`, shared
/// scopes (a team's, a pool's) once with every key that counts in them; cached prompt tokens
/// count toward input limits as the file says, else as `cached_counts` (the API's rule).
pub fn from_keys_file(
    file: &KeysFile,
    api_keys: &[String],
    model: &str,
    cached_counts: bool,
) -> Result<AuditPlan, String> {
    file.validate().map_err(|e| e.to_string())?;
    let mut scopes: Vec<AuditedScope> = Vec::new();
    let mut add = |scope: AuditedScope, key: usize| match scopes
        .iter_mut()
        .find(|s| s.redis_key == scope.redis_key)
    {
        Some(known) => known.keys.push(key),
        None => scopes.push(scope),
    };
    for (index, api_key) in api_keys.iter().enumerate() {
        let entry = file
            .find(api_key)
            .ok_or_else(|| format!("a --key ({}) is not in it", crate::report::mask(api_key)))?;
        let plan = file.plan(entry, model).map_err(|e| e.to_string())?;
        match plan.checks {
            Checks::Single {
                redis_key,
                limits,
                window_ms,
            } => {
                // As the gateway labels it: the key, or the key on its model's own limits.
                let owner = if entry.models.contains_key(model) {
                    Owner::KeyModel {
                        key: entry.name.clone(),
                        model: model.to_string(),
                    }
                } else {
                    Owner::Key(entry.name.clone())
                };
                add(
                    AuditedScope {
                        name: format!("{} {}", owner.label(), Rule::Sliding(window_ms).describe()),
                        redis_key: Some(redis_key),
                        rule: Rule::Sliding(window_ms),
                        keys: vec![index],
                        limits: [limits.rpm, limits.itpm, limits.otpm, 0],
                        fourth: Fourth::Tokens,
                        concurrency: 0,
                    },
                    index,
                )
            }
            Checks::Multi(specs) => {
                for spec in specs {
                    let rule = match spec.clock {
                        Clock::Calendar(period) => Rule::Calendar(period),
                        Clock::Sliding(ms) => Rule::Sliding(ms),
                    };
                    let window = match spec.window {
                        Window::Slots => " in flight".to_string(),
                        _ => format!(" {}", rule.describe()),
                    };
                    add(
                        AuditedScope {
                            name: format!("{}{window}", spec.owner.label()),
                            redis_key: Some(spec.redis_key),
                            rule,
                            keys: vec![index],
                            limits: spec.limits.summed,
                            fourth: spec.fourth,
                            concurrency: spec.limits.concurrency,
                        },
                        index,
                    );
                }
            }
        }
    }
    Ok(AuditPlan {
        scopes,
        costing: Costing {
            price: file.price(model),
            count_cached_input: file.count_cached_input.unwrap_or(cached_counts),
        },
    })
}

/// One dimension of one scope.
#[derive(Clone, Debug, Serialize)]
pub struct DimensionAudit {
    pub dimension: &'static str,
    pub limit: u64,
    /// The total admitted over the run (for concurrency: the requests whose slot was seen).
    pub admitted: u64,
    /// The most seen in one window or period (for concurrency: in flight at one instant).
    pub max_in_window: u64,
    /// Windows, periods or instants over the limit (expected: 0).
    pub violations: u64,
    /// Admitted over the most the limit allows in the run's duration (for concurrency: the
    /// most in flight over the limit).
    pub utilization: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScopeAudit {
    pub scope: String,
    /// The `--key`s (indices) counted in it.
    pub keys: Vec<usize>,
    pub admitted_requests: u64,
    pub violations: u64,
    pub dimensions: Vec<DimensionAudit>,
    /// What could not be audited, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What one admitted request counts in a scope: requests, input tokens, output tokens, and the
/// fourth dimension (tokens, or micro-dollars at the file's prices).
fn amounts(sample: &Sample, fourth: Fourth, costing: Costing) -> [u64; 4] {
    let (prompt, cached, output) = (
        sample.prompt_tokens,
        sample.cached_tokens,
        sample.completion_tokens,
    );
    let input = counted_input(prompt, cached, costing.count_cached_input);
    let cost = costing
        .price
        .map_or(0, |price| price.micro_usd(prompt, cached, output));
    [1, input, output, fourth.charge(input, output, cost)]
}

/// Every scope of `plan` over the run's admitted requests; `slack_ms` is trimmed from the end of
/// each streamed answer's in-flight interval (`--audit-slack-ms`).
pub fn audit(outcome: &Outcome, plan: &AuditPlan, slack_ms: f64) -> Vec<ScopeAudit> {
    plan.scopes
        .iter()
        .map(|scope| audit_scope(outcome, scope, plan.costing, slack_ms))
        .collect()
}

fn audit_scope(
    outcome: &Outcome,
    scope: &AuditedScope,
    costing: Costing,
    slack_ms: f64,
) -> ScopeAudit {
    let admitted: Vec<&Sample> = outcome
        .samples
        .iter()
        .filter(|s| s.status == Status::Ok && scope.keys.contains(&s.key))
        .collect();
    let mut events: Vec<Admitted> = admitted
        .iter()
        .map(|s| Admitted {
            sent_ms: s.sent_ms,
            done_ms: s.done_ms,
            amounts: amounts(s, scope.fourth, costing),
        })
        .collect();
    events.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    let duration_ms = outcome.elapsed.as_secs_f64() * 1000.0;
    let fourth_name = match scope.fourth {
        Fourth::Tokens => "tokens",
        Fourth::Spend => "spend_micro_usd",
    };
    let names = ["requests", "input_tokens", "output_tokens", fourth_name];
    let mut dimensions: Vec<DimensionAudit> = (0..4)
        .filter(|d| scope.limits[*d] > 0)
        .map(|d| {
            let limit = scope.limits[d];
            let (peak, intervals_in_run) = match scope.rule {
                Rule::Sliding(ms) => (
                    scan::sliding(&events, d, ms as f64, limit),
                    (duration_ms / ms as f64).ceil(),
                ),
                Rule::Calendar(period) => (
                    scan::calendar(&events, d, period, outcome.start_unix_ms, limit),
                    periods_spanned(period, outcome.start_unix_ms, duration_ms),
                ),
            };
            let total: u64 = events.iter().map(|e| e.amounts[d]).sum();
            DimensionAudit {
                dimension: names[d],
                limit,
                admitted: total,
                max_in_window: peak.max,
                violations: peak.violations,
                utilization: total as f64 / (limit as f64 * intervals_in_run.max(1.0)),
            }
        })
        .collect();
    let mut note = None;
    if scope.concurrency > 0 {
        let streamed: Vec<(f64, f64)> = admitted.iter().filter_map(|s| s.streaming).collect();
        let intervals: Vec<(f64, f64)> = streamed
            .iter()
            .map(|(start, end)| (*start, end - slack_ms))
            .filter(|(start, end)| end > start)
            .collect();
        if streamed.is_empty() {
            note = Some("concurrency is audited on streamed answers (--stream)".to_string());
        } else {
            if intervals.len() < streamed.len() {
                note = Some(format!(
                    "{} of {} streams were shorter than --audit-slack-ms ({} ms) and are not counted in flight",
                    streamed.len() - intervals.len(),
                    streamed.len(),
                    slack_ms
                ));
            }
            let Peak { max, violations } = scan::in_flight(&intervals, scope.concurrency);
            dimensions.push(DimensionAudit {
                dimension: "concurrency",
                limit: scope.concurrency,
                admitted: intervals.len() as u64,
                max_in_window: max,
                violations,
                utilization: max as f64 / scope.concurrency as f64,
            });
        }
    }
    ScopeAudit {
        scope: scope.name.clone(),
        keys: scope.keys.clone(),
        admitted_requests: events.len() as u64,
        violations: dimensions.iter().map(|d| d.violations).sum(),
        dimensions,
        note,
    }
}

/// How many of `period`'s periods the run touched.
fn periods_spanned(period: Period, start_unix_ms: f64, duration_ms: f64) -> f64 {
    let last = (start_unix_ms + duration_ms).max(0.0) as u64;
    let mut begin = period.bounds(start_unix_ms.max(0.0) as u64).0;
    let mut count = 0.0;
    while begin <= last {
        count += 1.0;
        let end = period.bounds(begin).1;
        if end <= begin {
            break;
        }
        begin = end;
    }
    count
}

#[cfg(test)]
mod tests;
