//! Policies as the gateway builds them, and what their scopes recorded in Redis.

use crate::redis_server::multi;
use llmrl_keys::{Checks, KeysFile, ScopeSpec};
use std::path::Path;

/// Every scope a request for `model` under `api_key` runs under, as the gateway builds them
/// from the keys file at `path`.
pub fn policy_scopes(path: &Path, api_key: &str, model: &str) -> Vec<ScopeSpec> {
    let file = KeysFile::read(path).expect("keys file");
    let entry = file.find(api_key).expect("key in file");
    match file.plan(entry, model).expect("plan").checks {
        Checks::Multi(scopes) => scopes,
        Checks::Single { .. } => panic!("expected a multi-scope plan"),
    }
}

/// Peeked under this limit in every dimension, a scope's remaining figure says what it used.
const PEEK_LIMIT: u64 = 1_000_000_000_000_000;

/// What a scope has used so far in `dimension` (0 requests .. 3 its fourth), read with MPEEK
/// (which records nothing).
pub fn scope_used(con: &mut redis::Connection, scope: &ScopeSpec, dimension: usize) -> u64 {
    let clock = match scope.clock {
        llmrl_core::scope::Clock::Sliding(ms) => ms.to_string(),
        llmrl_core::scope::Clock::Calendar(period) => period.name(),
    };
    let limit = PEEK_LIMIT.to_string();
    let args = [
        "LLMRL.MPEEK",
        "1",
        &scope.redis_key,
        "0",
        "0",
        "DETAIL",
        "SCOPES",
        &clock,
        &limit,
        &limit,
        &limit,
        &limit,
        "0",
        "0",
    ];
    let reply = multi(con, &args);
    // The figures count the peeked request itself: one request, nothing else.
    let peeked = u64::from(dimension == 0);
    PEEK_LIMIT - reply.scopes[0].remaining[dimension].max(0) as u64 - peeked
}
