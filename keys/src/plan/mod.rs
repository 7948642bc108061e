//! From the keys file to what one request runs under: every scope that applies to an API key
//! and a model (the key or its model, its team, its organisation, its upstream account's model
//! pool; per minute, per day, concurrency, spend), each with its Redis key, clock and limits.
//! The gateway builds these once per keys-file load; the audit reads the same rules.

use crate::file::{KeyEntry, KeysFile, OrgEntry, Price, TeamEntry, UpstreamEntry};
use crate::limits::{BudgetPeriod, DayRule, LimitFields, LimitSet, MINUTE_MS};
use crate::{hex16, limiter_key, Scope as ClassicScope};
use llmrl_core::protocol::{Limits, PackedScope};
use llmrl_core::scope::{Clock, ScopeLimits};
use thiserror::Error;

/// Who a scope belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Key(String),
    KeyModel { key: String, model: String },
    Team(String),
    Org(String),
    Pool { upstream: String, pool: String },
}

impl Owner {
    /// How a refusal names it: `key demo`, `team ml-research`, `organization acme`...
    pub fn describe(&self) -> String {
        match self {
            Owner::Key(name) => format!("key {name}"),
            Owner::KeyModel { key, model } => format!("key {key} on {model}"),
            Owner::Team(name) => format!("team {name}"),
            Owner::Org(name) => format!("organization {name}"),
            Owner::Pool { upstream, pool } => format!("upstream {upstream} (pool {pool})"),
        }
    }

    /// How a header names it: `key:demo`, `team:ml-research`, `org:acme`, `pool:openai/gpt-4o`.
    pub fn label(&self) -> String {
        // Joined rather than `format!`ted: a gateway builds one for every limited answer.
        match self {
            Owner::Key(name) => ["key:", name].concat(),
            Owner::KeyModel { key, model } => ["key:", key, "/", model].concat(),
            Owner::Team(name) => ["team:", name].concat(),
            Owner::Org(name) => ["org:", name].concat(),
            Owner::Pool { upstream, pool } => ["pool:", upstream, "/", pool].concat(),
        }
    }
}

/// What a scope counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// A sliding window of this many ms (a minute unless a key sets `window_ms`).
    Minute(u64),
    Day(DayRule),
    Budget(BudgetPeriod),
    /// Only concurrency slots.
    Slots,
}

/// What a scope's fourth dimension counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fourth {
    /// Input + output tokens (`tpm`, `tpd`).
    Tokens,
    /// Micro-dollars (a spend budget).
    Spend,
}

impl Fourth {
    /// What a request charges this dimension: its counted input plus output tokens, or its
    /// cost in micro-dollars.
    pub fn charge(self, counted_input: u64, output: u64, micro_usd: u64) -> u64 {
        match self {
            Fourth::Tokens => counted_input.saturating_add(output),
            Fourth::Spend => micro_usd,
        }
    }
}

/// Input tokens that count toward limits: the cached prompt tokens among `input` only when the
/// policy counts them (`count_cached_input`).
pub fn counted_input(input: u64, cached: u64, count_cached: bool) -> u64 {
    if count_cached {
        input
    } else {
        input.saturating_sub(cached)
    }
}

/// One scope of a request: one Redis key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeSpec {
    pub redis_key: String,
    pub owner: Owner,
    pub window: Window,
    pub clock: Clock,
    /// Requests, input tokens, output tokens, the fourth dimension; and concurrency.
    pub limits: ScopeLimits,
    pub fourth: Fourth,
    /// `clock` and `limits` as MCHECK takes them, written once per keys-file load.
    pub packed: PackedScope,
}

/// How a request is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checks {
    /// One sliding window with at most RPM, ITPM and OTPM: `LLMRL.CHECK` on the key's classic
    /// counter (one scope needs nothing more, and CHECK is the cheaper command).
    Single {
        redis_key: String,
        limits: Limits,
        window_ms: u64,
    },
    /// Every scope at once: `LLMRL.MCHECK`.
    Multi(Vec<ScopeSpec>),
}

/// Everything a request for one model under one API key runs under.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub checks: Checks,
    /// Output tokens reserved per choice when a request gives no maximum.
    pub default_output_reservation: u64,
    /// The smallest output-token limit (OTPM or TPM) of any scope: a default reservation is
    /// never larger (it would make every such request too large).
    pub output_cap: Option<u64>,
    pub price: Option<Price>,
    /// Whether a scope holds concurrency slots (the check takes a lease).
    pub holds_slots: bool,
    /// Whether a scope counts spend.
    pub counts_spend: bool,
    /// Whether cached prompt tokens count toward input-token limits (see [`KeysFile`]).
    pub count_cached_input: Option<bool>,
    /// The scopes by hash tag (indices into [`Checks::Multi`], in order): each group lives in
    /// one Redis Cluster slot; an organisation's scopes are one group, an upstream pool another.
    pub groups: Vec<Vec<usize>>,
}

/// The hash tag of a Redis key (what Redis Cluster hashes), or the whole key.
pub fn hash_tag(key: &str) -> &str {
    key.split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key)
}

/// Redis Cluster's slot of a key: CRC16-XMODEM of its hash tag, mod 16384.
pub fn key_slot(key: &str) -> u16 {
    let mut crc: u16 = 0;
    for &byte in hash_tag(key).as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// Scope indices grouped by hash tag (each group one Redis Cluster slot), groups in order of
/// first appearance.
pub fn group_by_hash_tag(scopes: &[ScopeSpec]) -> Vec<Vec<usize>> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (index, scope) in scopes.iter().enumerate() {
        let tag = hash_tag(&scope.redis_key);
        match groups.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, members)) => members.push(index),
            None => groups.push((tag, vec![index])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

impl Plan {
    /// Output tokens to reserve per choice: the request's own maximum if it gives one; else the
    /// default reservation, but never more than the smallest output limit allows for `n`
    /// choices — a default above it would make every such request "too large", while the
    /// settlement corrects the reservation to what was really produced anyway.
    pub fn output_reservation_per_choice(&self, max_output_tokens: Option<u64>, n: u64) -> u64 {
        match (max_output_tokens, self.output_cap) {
            (Some(max), _) => max,
            (None, Some(cap)) => self.default_output_reservation.min((cap / n.max(1)).max(1)),
            (None, None) => self.default_output_reservation,
        }
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum PlanError {
    #[error("key {0:?}: {1}")]
    Key(String, String),
}

/// The scopes of one owner with limits `set`, its Redis keys under `prefix`; `slots_here`: its
/// concurrency goes in its minute scope (used by every request of the owner) rather than a
/// scope of its own.
fn owner_scopes(
    owner: Owner,
    prefix: &str,
    set: &LimitSet,
    minute_ms: u64,
    slots_here: bool,
    out: &mut Vec<ScopeSpec>,
) {
    let scope = |suffix: String, window, clock, summed, concurrency, fourth| {
        let limits = ScopeLimits {
            summed,
            concurrency,
        };
        ScopeSpec {
            redis_key: format!("{prefix}:{suffix}"),
            owner: owner.clone(),
            window,
            clock,
            limits,
            fourth,
            packed: PackedScope::new(clock, limits),
        }
    };
    let slots = set.max_parallel_requests;
    let per_minute = [set.rpm, set.itpm, set.otpm, set.tpm];
    if per_minute != [0; 4] || (slots_here && slots > 0) {
        out.push(scope(
            format!("w{minute_ms}"),
            Window::Minute(minute_ms),
            Clock::Sliding(minute_ms),
            per_minute,
            if slots_here { slots } else { 0 },
            Fourth::Tokens,
        ));
    }
    if !slots_here && slots > 0 {
        out.push(scope(
            "slots".into(),
            Window::Slots,
            Clock::Sliding(MINUTE_MS),
            [0; 4],
            slots,
            Fourth::Tokens,
        ));
    }
    if let Some(day) = set.day {
        let (suffix, clock) = match day {
            DayRule::Rolling(ms) => (format!("d:r{ms}"), Clock::Sliding(ms)),
            DayRule::Calendar(period) => (format!("d:{}", period.name()), Clock::Calendar(period)),
        };
        out.push(scope(
            suffix,
            Window::Day(day),
            clock,
            [set.rpd, 0, 0, set.tpd],
            0,
            Fourth::Tokens,
        ));
    }
    if let Some(budget) = set.budget {
        let (suffix, clock) = match budget.period {
            BudgetPeriod::Rolling(ms) => (format!("spend:r{ms}"), Clock::Sliding(ms)),
            BudgetPeriod::Calendar(period) => {
                (format!("spend:{}", period.name()), Clock::Calendar(period))
            }
        };
        out.push(scope(
            suffix,
            Window::Budget(budget.period),
            clock,
            [0, 0, 0, budget.micro_usd],
            0,
            Fourth::Spend,
        ));
    }
}

/// The groups a key belongs to.
struct Groups<'a> {
    team: Option<&'a TeamEntry>,
    org_name: Option<&'a str>,
    org: Option<&'a OrgEntry>,
    upstream: Option<&'a UpstreamEntry>,
}

impl KeysFile {
    /// A key's team, its organisation (the team's, else the key's own), and its upstream
    /// account (the key's, else the team's, else the organisation's).
    fn groups<'a>(&'a self, key: &'a KeyEntry) -> Groups<'a> {
        let team = key.team.as_deref().and_then(|name| self.team(name));
        let org_name = team.and_then(|t| t.org.as_deref()).or(key.org.as_deref());
        let org = org_name.and_then(|name| self.org(name));
        let upstream = key
            .upstream
            .as_deref()
            .or(team.and_then(|t| t.upstream.as_deref()))
            .or(org.and_then(|o| o.upstream.as_deref()))
            .and_then(|name| self.upstream(name));
        Groups {
            team,
            org_name,
            org,
            upstream,
        }
    }

    /// What a request for `model` under `key` runs under. The file must have passed
    /// [`KeysFile::validate`].
    pub fn plan(&self, key: &KeyEntry, model: &str) -> Result<Plan, PlanError> {
        let invalid = |message: String| PlanError::Key(key.name.clone(), message);
        let digest = key.digest().map_err(|e| invalid(e.to_string()))?;
        let check = |fields: LimitFields| fields.check().map_err(|e| invalid(e.to_string()));
        let Groups {
            team,
            org_name,
            org,
            upstream,
        } = self.groups(key);
        // One hash tag for every scope of an organisation (else of a team, else of the key), so
        // they share a cluster slot and one MCHECK decides them all.
        let hash = hex16(&digest);
        let tag = match (org_name, team) {
            (Some(org), _) => format!("o:{org}"),
            (None, Some(team)) => format!("t:{}", team.name),
            (None, None) => hash.clone(),
        };
        let key_prefix = format!("llmrl:{{{tag}}}:k:{hash}");
        let model_entry = key.models.get(model);
        let key_limits = check(key.limit_fields())?;
        let mut scopes = Vec::new();
        let mut key_set = key_limits;
        if model_entry.is_some() {
            // The model's per-minute limits replace the key's for it.
            (key_set.rpm, key_set.itpm, key_set.otpm, key_set.tpm) = (0, 0, 0, 0);
        }
        let key_owner = Owner::Key(key.name.clone());
        owner_scopes(
            key_owner,
            &key_prefix,
            &key_set,
            key.window_ms,
            false,
            &mut scopes,
        );
        if let Some(entry) = model_entry {
            let owner = Owner::KeyModel {
                key: key.name.clone(),
                model: model.to_string(),
            };
            let prefix = format!("{key_prefix}:model:{model}");
            let set = check(entry.limit_fields())?;
            owner_scopes(owner, &prefix, &set, key.window_ms, false, &mut scopes);
        }
        if let Some(team) = team {
            let prefix = format!("llmrl:{{{tag}}}:t:{}", team.name);
            let set = check(team.limit_fields())?;
            let owner = Owner::Team(team.name.clone());
            owner_scopes(owner, &prefix, &set, MINUTE_MS, true, &mut scopes);
        }
        if let Some(org) = org {
            let prefix = format!("llmrl:{{{tag}}}:o:{}", org.name);
            let set = check(org.limit_fields())?;
            let owner = Owner::Org(org.name.clone());
            owner_scopes(owner, &prefix, &set, MINUTE_MS, true, &mut scopes);
        }
        if let Some(upstream) = upstream {
            let named = |pattern: &str| {
                upstream
                    .pools
                    .iter()
                    .find(|p| p.models.iter().any(|m| m == pattern))
            };
            if let Some(pool) = named(model).or_else(|| named("*")) {
                let prefix = format!("llmrl:{{u:{}}}:p:{}", upstream.name, pool.name);
                let set = check(pool.limit_fields())?;
                let owner = Owner::Pool {
                    upstream: upstream.name.clone(),
                    pool: pool.name.clone(),
                };
                owner_scopes(owner, &prefix, &set, MINUTE_MS, true, &mut scopes);
            }
        }
        let output_cap = scopes
            .iter()
            .flat_map(|s| {
                let tokens = if s.fourth == Fourth::Tokens {
                    s.limits.summed[3]
                } else {
                    0
                };
                [s.limits.summed[2], tokens]
            })
            .filter(|limit| *limit > 0)
            .min();
        let holds_slots = scopes.iter().any(|s| s.limits.concurrency > 0);
        let counts_spend = scopes.iter().any(|s| s.fourth == Fourth::Spend);
        let classic = match scopes.as_slice() {
            [] => true,
            [only] => {
                matches!(only.window, Window::Minute(_))
                    && only.limits.summed[3] == 0
                    && only.limits.concurrency == 0
                    && matches!(only.owner, Owner::Key(_) | Owner::KeyModel { .. })
            }
            _ => false,
        };
        let groups = group_by_hash_tag(&scopes);
        let checks = if classic {
            let [rpm, itpm, otpm, _] = scopes.first().map_or([0; 4], |s| s.limits.summed);
            let scope = if model_entry.is_some() {
                ClassicScope::Model(model)
            } else {
                ClassicScope::Default
            };
            Checks::Single {
                redis_key: limiter_key(&digest, key.window_ms, scope),
                limits: Limits { rpm, itpm, otpm },
                window_ms: key.window_ms,
            }
        } else {
            Checks::Multi(scopes)
        };
        let default_output_reservation = model_entry
            .and_then(|m| m.default_output_reservation)
            .unwrap_or(key.default_output_reservation);
        Ok(Plan {
            checks,
            default_output_reservation,
            output_cap,
            price: self.price(model),
            holds_slots,
            counts_spend,
            count_cached_input: self.count_cached_input,
            groups,
        })
    }

    /// The scopes a team, an organisation or an upstream pool holds itself, with their Redis
    /// keys as every plan names them (for reading or resetting its usage). An upstream's name
    /// gives all its pools. A key's scopes are in its plans.
    pub fn scopes_of(&self, owner: &Owner) -> Result<Vec<ScopeSpec>, PlanError> {
        let invalid = |name: &str, e: crate::limits::LimitError| {
            PlanError::Key(name.to_string(), e.to_string())
        };
        let mut scopes = Vec::new();
        match owner {
            Owner::Team(name) => {
                if let Some(team) = self.team(name) {
                    let tag = team
                        .org
                        .as_ref()
                        .map_or_else(|| format!("t:{name}"), |org| format!("o:{org}"));
                    let set = team.limit_fields().check().map_err(|e| invalid(name, e))?;
                    let prefix = format!("llmrl:{{{tag}}}:t:{name}");
                    owner_scopes(owner.clone(), &prefix, &set, MINUTE_MS, true, &mut scopes);
                }
            }
            Owner::Org(name) => {
                if let Some(org) = self.org(name) {
                    let set = org.limit_fields().check().map_err(|e| invalid(name, e))?;
                    let prefix = format!("llmrl:{{o:{name}}}:o:{name}");
                    owner_scopes(owner.clone(), &prefix, &set, MINUTE_MS, true, &mut scopes);
                }
            }
            Owner::Pool { upstream, pool } => {
                let pools = self.upstream(upstream).into_iter().flat_map(|u| &u.pools);
                for entry in pools.filter(|p| pool.is_empty() || p.name == *pool) {
                    let set = entry.limit_fields().check().map_err(|e| invalid(pool, e))?;
                    let prefix = format!("llmrl:{{u:{upstream}}}:p:{}", entry.name);
                    let owner = Owner::Pool {
                        upstream: upstream.clone(),
                        pool: entry.name.clone(),
                    };
                    owner_scopes(owner, &prefix, &set, MINUTE_MS, true, &mut scopes);
                }
            }
            Owner::Key(_) | Owner::KeyModel { .. } => {}
        }
        Ok(scopes)
    }

    /// Model names with a plan of their own under `key` (its model entries and the models its
    /// upstream's pools name); every other model shares the plan of `"*"`-or-nothing.
    pub fn planned_models(&self, key: &KeyEntry) -> Vec<String> {
        let mut models: Vec<String> = key.models.keys().cloned().collect();
        if let Some(upstream) = self.groups(key).upstream {
            for pool in &upstream.pools {
                models.extend(pool.models.iter().filter(|m| *m != "*").cloned());
            }
        }
        models.extend(self.prices.keys().filter(|m| *m != "*").cloned());
        models.sort();
        models.dedup();
        models
    }
}

#[cfg(test)]
mod tests;
