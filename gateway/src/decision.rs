//! What the limiter decided about a request, in the gateway's terms: per header dimension the
//! scope with the least left (so headers never promise what another scope would refuse), the
//! scope that binds, and for a refusal which limit of which scope refused, and how. Built from
//! `LLMRL.CHECK`'s verdict (one scope) or `LLMRL.MCHECK`'s (every scope); the dialects render it.

use llmrl_core::protocol::{Limits, MultiVerdict, Verdict};
use llmrl_core::scope::Limit;
use llmrl_core::window::Dimension;
use llmrl_keys::{Fourth, ScopeSpec, Window};

/// Header dimensions: requests, input tokens, output tokens, and tokens (input + output).
pub const REQUESTS: usize = 0;
pub const INPUT: usize = 1;
pub const OUTPUT: usize = 2;
pub const TOKENS: usize = 3;

/// One dimension's figures, from the scope with the least left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figure {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

impl Figure {
    fn share(&self) -> f64 {
        self.remaining as f64 / self.limit.max(1) as f64
    }
}

/// What kind of limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// Requests or tokens per window: retrying after `retry_after_ms` helps.
    Rate,
    /// The request alone exceeds the limit: retrying never helps.
    TooLarge,
    /// A spend budget is used up until its period resets.
    Budget,
    /// Every concurrency slot is taken: one frees when a request finishes.
    Concurrency,
}

/// Which limit of which scope refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    /// The refused dimension (`Cost` for tokens-per-window and budgets).
    pub dimension: Dimension,
    /// Who: `gpt-4o` (a key's own limit), `team ml-research`, `organization acme`...
    pub scope: String,
    /// What: `requests per day (RPD)`, `tokens per min (TPM)`, `spend per month`...
    pub what: String,
    /// Why, for metrics: `rpm`, `rpd`, `tpm`, `budget`, `concurrency`...
    pub reason: &'static str,
    pub limit: u64,
    pub used: u64,
    pub requested: u64,
    /// When the refusing limit is replenished (a budget's period end).
    pub reset_ms: u64,
}

/// The limiter's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// 0 when allowed; the exact wait when refused; -1 when the request can never fit.
    pub retry_after_ms: i64,
    /// Identifies the admission for settling; 0 when nothing was charged.
    pub ticket: u64,
    /// With a policy spread over several cluster slots: each slot group's own admission
    /// (group index, ticket), settled one by one.
    pub group_tickets: Vec<(usize, u64)>,
    /// Per header dimension ([`REQUESTS`]..[`TOKENS`]); `None` where nothing limits it.
    pub figures: [Option<Figure>; 4],
    /// The scope that refused, else the one with the smallest share left (multi-scope
    /// policies only): `team:ml-research`.
    pub binding: Option<String>,
    pub refusal: Option<Refusal>,
}

fn left(value: i64) -> u64 {
    value.max(0) as u64
}

/// The classic `-tokens` figure: whichever of input and output has the smaller share left.
fn tighter<T>(input: Option<T>, output: Option<T>, share: impl Fn(&T) -> f64) -> Option<T> {
    match (input, output) {
        (Some(a), Some(b)) => Some(if share(&b) < share(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// A refusal of requests or tokens: too large if it can never fit, else a rate limit.
fn rate_kind(never_fits: bool) -> RefusalKind {
    if never_fits {
        RefusalKind::TooLarge
    } else {
        RefusalKind::Rate
    }
}

/// How a window reads in a message: `per min`, `per day`, `per 10s`.
fn per(window: Window) -> String {
    match window {
        Window::Minute(60_000) => "per min".into(),
        Window::Minute(ms) => format!("per {}", crate::dialect::duration(ms)),
        Window::Day(_) => "per day".into(),
        Window::Budget(_) | Window::Slots => String::new(),
    }
}

/// OpenAI's names for a limit: `requests per min (RPM)`, `tokens per day (TPD)`.
fn limit_name(dimension: Dimension, window: Window) -> (String, &'static str) {
    let day = matches!(window, Window::Day(_));
    let (noun, short, reason) = match (dimension, day) {
        (Dimension::Requests, false) => ("requests", "RPM", "rpm"),
        (Dimension::Requests, true) => ("requests", "RPD", "rpd"),
        (Dimension::InputTokens, _) => ("input tokens", "ITPM", "itpm"),
        (Dimension::OutputTokens, _) => ("output tokens", "OTPM", "otpm"),
        (Dimension::Cost, false) => ("tokens", "TPM", "tpm"),
        (Dimension::Cost, true) => ("tokens", "TPD", "tpd"),
    };
    let per = per(window);
    let short = if matches!(window, Window::Minute(ms) if ms != 60_000) {
        String::new()
    } else {
        format!(" ({short})")
    };
    (format!("{noun} {per}{short}"), reason)
}

impl Decision {
    /// From LLMRL.CHECK's verdict on a key's classic scope with `limits`, for `model`;
    /// `cost` is the request's (requests, input tokens, output tokens).
    pub fn single(
        verdict: &Verdict,
        limits: Limits,
        window_ms: u64,
        model: &str,
        cost: [u64; 3],
    ) -> Decision {
        let limits = limits.as_array();
        let mut figures = [None; 4];
        for d in [REQUESTS, INPUT, OUTPUT] {
            if limits[d] > 0 {
                figures[d] = Some(Figure {
                    limit: limits[d],
                    remaining: left(verdict.remaining[d]),
                    reset_ms: left(verdict.reset_ms[d]),
                });
            }
        }
        figures[TOKENS] = tighter(figures[INPUT], figures[OUTPUT], Figure::share);
        let refusal = verdict
            .reason
            .dimension()
            .filter(|_| !verdict.allowed)
            .map(|dimension| {
                let d = dimension as usize;
                let limit = limits.get(d).copied().unwrap_or(0);
                let (what, reason) = limit_name(dimension, Window::Minute(window_ms));
                let remaining = verdict.remaining.get(d).copied().map_or(0, left);
                Refusal {
                    kind: rate_kind(verdict.too_large()),
                    dimension,
                    scope: model.to_string(),
                    what,
                    reason,
                    limit,
                    used: limit.saturating_sub(remaining),
                    requested: cost.get(d).copied().unwrap_or(0),
                    reset_ms: verdict.reset_ms.get(d).copied().map_or(0, left),
                }
            });
        Decision {
            allowed: verdict.allowed,
            retry_after_ms: verdict.retry_after_ms,
            ticket: u64::try_from(verdict.ticket).unwrap_or(0),
            group_tickets: Vec::new(),
            figures,
            binding: None,
            refusal,
        }
    }

    /// From LLMRL.MCHECK's verdict with DETAIL over `scopes`; `costs[i]` is what the request
    /// costs in scope `i` (requests, input, output, fourth dimension).
    pub fn multi(verdict: &MultiVerdict, scopes: &[ScopeSpec], costs: &[[u64; 4]]) -> Decision {
        let mut figures: [Option<(Figure, usize)>; 4] = [None; 4];
        let mut offer = |d: usize, figure: Figure, scope: usize| {
            let better = match figures[d] {
                None => true,
                Some((best, _)) => {
                    figure.remaining < best.remaining
                        || figure.remaining == best.remaining && figure.reset_ms > best.reset_ms
                }
            };
            if better {
                figures[d] = Some((figure, scope));
            }
        };
        for (i, (spec, own)) in scopes.iter().zip(&verdict.scopes).enumerate() {
            let summed = spec.limits.summed;
            let header_of = |d: usize| match d {
                3 if spec.fourth == Fourth::Tokens => Some(TOKENS),
                3 => None,
                d => Some(d),
            };
            for (d, &limit) in summed.iter().enumerate() {
                let (Some(header), true) = (header_of(d), limit > 0) else {
                    continue;
                };
                offer(
                    header,
                    Figure {
                        limit,
                        remaining: left(own.remaining[d]),
                        reset_ms: left(own.reset_ms[d]),
                    },
                    i,
                );
            }
        }
        if figures[TOKENS].is_none() {
            figures[TOKENS] = tighter(figures[INPUT], figures[OUTPUT], |(figure, _)| {
                figure.share()
            });
        }
        // A refusal's own scope binds (a budget has no header figure, and a request too
        // large for one scope may leave it the largest share); otherwise the smallest share.
        let refusing = verdict.scope.filter(|_| !verdict.allowed);
        let binding = refusing
            .or_else(|| {
                figures
                    .iter()
                    .flatten()
                    .min_by(|a, b| a.0.share().total_cmp(&b.0.share()))
                    .map(|(_, scope)| *scope)
            })
            .and_then(|scope| scopes.get(scope))
            .map(|spec| spec.owner.label());
        let refusal = if verdict.allowed {
            None
        } else {
            verdict.scope.zip(verdict.reason).and_then(|(i, reason)| {
                refusal(
                    verdict,
                    scopes.get(i)?,
                    verdict.scopes.get(i)?,
                    costs.get(i)?,
                    reason,
                )
            })
        };
        Decision {
            allowed: verdict.allowed,
            retry_after_ms: verdict.retry_after_ms,
            ticket: verdict.ticket,
            group_tickets: Vec::new(),
            figures: figures.map(|f| f.map(|(figure, _)| figure)),
            binding,
            refusal,
        }
    }
}

/// Which limit of the deciding scope refused, and how it reads.
fn refusal(
    verdict: &MultiVerdict,
    spec: &ScopeSpec,
    own: &llmrl_core::protocol::ScopeVerdict,
    cost: &[u64; 4],
    reason: Limit,
) -> Option<Refusal> {
    let scope = spec.owner.describe();
    let never = verdict.retry_after_ms < 0;
    let Limit::Summed(dimension) = reason else {
        let limit = spec.limits.concurrency;
        return Some(Refusal {
            kind: RefusalKind::Concurrency,
            dimension: Dimension::Requests,
            scope,
            what: "concurrent requests".into(),
            reason: "concurrency",
            limit,
            used: limit.saturating_sub(left(own.remaining[4])),
            requested: 1,
            reset_ms: left(own.reset_ms[4]),
        });
    };
    let d = dimension as usize;
    let limit = *spec.limits.summed.get(d)?;
    let used = limit.saturating_sub(left(*own.remaining.get(d)?));
    let requested = *cost.get(d)?;
    let reset_ms = left(*own.reset_ms.get(d)?);
    if dimension == Dimension::Cost && spec.fourth == Fourth::Spend {
        let what = match spec.window {
            Window::Budget(llmrl_keys::limits::BudgetPeriod::Calendar(period)) => {
                format!(
                    "spend per {}",
                    period.name().split(':').next().unwrap_or("period")
                )
            }
            Window::Budget(llmrl_keys::limits::BudgetPeriod::Rolling(ms)) => {
                format!("spend per {}", crate::dialect::duration(ms))
            }
            _ => "spend".into(),
        };
        return Some(Refusal {
            kind: if never {
                RefusalKind::TooLarge
            } else {
                RefusalKind::Budget
            },
            dimension,
            scope,
            what,
            reason: "budget",
            limit,
            used,
            requested,
            reset_ms,
        });
    }
    let (what, reason) = limit_name(dimension, spec.window);
    Some(Refusal {
        kind: rate_kind(never),
        dimension,
        scope,
        what,
        reason,
        limit,
        used,
        requested,
        reset_ms,
    })
}
