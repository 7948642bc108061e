//! The keys file as written: API keys, teams, organisations, upstream accounts with their model
//! pools, and prices. TOML, or JSON when named `*.json`; unknown fields are errors.

use crate::limits::{entry_with_limits, LimitError};
use crate::sha256;
use llmrl_core::window::validate_window;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use thiserror::Error;

pub const DEFAULT_WINDOW_MS: u64 = 60_000;
pub const DEFAULT_OUTPUT_RESERVATION: u64 = 1024;

entry_with_limits! {
    /// Limits of one model with its own counters, within a key: its per-minute limits replace
    /// the key's for this model; its day, concurrency and budget limits add to the key's.
    pub struct ModelEntry {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub default_output_reservation: Option<u64>,
    }
}

entry_with_limits! {
    /// One API key.
    pub struct KeyEntry {
        pub name: String,
        /// The API key itself, or...
        #[serde(skip_serializing_if = "Option::is_none")]
        pub key: Option<String>,
        /// ...its SHA-256 in hex, so the file need not hold the secret.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub key_sha256: Option<String>,
        #[serde(default = "default_reservation")]
        pub default_output_reservation: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub shadow: bool,
        /// A disabled key is refused (401) but kept, with its usage, until enabled again.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub disabled: bool,
        #[serde(default = "default_window")]
        pub window_ms: u64,
        /// The team the key belongs to (its limits apply too).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub team: Option<String>,
        /// The organisation, for a key without a team (a team names its own).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub org: Option<String>,
        /// The upstream account whose pool limits apply (else the team's, else the org's).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub upstream: Option<String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pub models: BTreeMap<String, ModelEntry>,
    }
}

entry_with_limits! {
    /// A team: its limits are shared by all its keys.
    pub struct TeamEntry {
        pub name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub org: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub upstream: Option<String>,
    }
}

entry_with_limits! {
    /// An organisation: its limits are shared by all its teams and keys.
    pub struct OrgEntry {
        pub name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub upstream: Option<String>,
    }
}

entry_with_limits! {
    /// A model pool of an upstream account: the provider's own limits, shared by every key that
    /// uses the account, for every model named (`"*"`: any model no other pool names).
    pub struct PoolEntry {
        pub name: String,
        pub models: Vec<String>,
    }
}

/// A provider account behind the gateway.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    pub name: String,
    #[serde(default)]
    pub pools: Vec<PoolEntry>,
}

/// A model's price in USD per million tokens.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    /// Cached prompt tokens (default: the input price).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    pub output: f64,
}

impl Price {
    /// What a request costs in micro-dollars, rounded up (a budget is never under-charged):
    /// `cached` of the `input` tokens at the cached-input price. Prices are USD per million
    /// tokens, that is micro-dollars per token.
    pub fn micro_usd(&self, input: u64, cached: u64, output: u64) -> u64 {
        let cached = cached.min(input);
        let cost = (input - cached) as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + output as f64 * self.output;
        cost.ceil().clamp(0.0, u64::MAX as f64) as u64
    }
}

fn default_reservation() -> u64 {
    DEFAULT_OUTPUT_RESERVATION
}

fn default_window() -> u64 {
    DEFAULT_WINDOW_MS
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    pub keys: Vec<KeyEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<TeamEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orgs: Vec<OrgEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamEntry>,
    /// Per model (`"*"`: every other model).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, Price>,
    /// Whether cached prompt tokens count toward input-token limits when settling (`false`:
    /// Anthropic's rule, cache reads do not count toward ITPM). They are always priced. Unset:
    /// each API's own rule (OpenAI's routes count them, Anthropic's Messages does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_cached_input: Option<bool>,
}

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    Parse { path: String, message: String },
}

/// Why an entry names no API key.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("give exactly one of key or key_sha256")]
    KeyMissingOrTwice,
    #[error("key_sha256 must be 64 hex digits")]
    BadDigest,
}

/// A keys file that does not hold together.
#[derive(Debug, Error, PartialEq)]
pub enum FileError {
    #[error("{what} {name:?}: {source}")]
    Limits {
        what: &'static str,
        name: String,
        source: LimitError,
    },
    #[error("{what} {name:?} names {kind} {missing:?}, which the file does not define")]
    Missing {
        what: &'static str,
        name: String,
        kind: &'static str,
        missing: String,
    },
    #[error("{what} {name:?} is defined twice")]
    Twice { what: &'static str, name: String },
    #[error(
        "{what} {name:?}: names are 1-64 letters, digits, '.', '_' or '-' (they appear in Redis key names, headers and admin URLs)"
    )]
    BadName { what: &'static str, name: String },
    #[error("team {team:?} belongs to org {team_org:?}, but key {key:?} says org {key_org:?}")]
    OrgConflict {
        key: String,
        team: String,
        team_org: String,
        key_org: String,
    },
    #[error("price of {model:?}: prices are non-negative USD per million tokens")]
    BadPrice { model: String },
}

impl KeysFile {
    /// Read a keys file: JSON if it is named `*.json`, TOML otherwise.
    pub fn read(path: &Path) -> Result<KeysFile, ReadError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ReadError::Read {
            path: display.clone(),
            source,
        })?;
        if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        }
        .map_err(|message| ReadError::Parse {
            path: display,
            message,
        })
    }

    /// The entry for a presented API key, by digest (so `key_sha256` entries match too).
    pub fn find(&self, api_key: &str) -> Option<&KeyEntry> {
        let digest = sha256(api_key.as_bytes());
        self.keys.iter().find(|e| e.digest() == Ok(digest))
    }

    pub fn team(&self, name: &str) -> Option<&TeamEntry> {
        self.teams.iter().find(|t| t.name == name)
    }

    pub fn org(&self, name: &str) -> Option<&OrgEntry> {
        self.orgs.iter().find(|o| o.name == name)
    }

    pub fn upstream(&self, name: &str) -> Option<&UpstreamEntry> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The price of `model` (or the `"*"` price).
    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices
            .get(model)
            .or_else(|| self.prices.get("*"))
            .copied()
    }

    /// Every reference resolves, every name is usable in a Redis key, every limit is valid.
    /// (API keys themselves are checked where they are hashed: [`KeyEntry::digest`].)
    pub fn validate(&self) -> Result<(), FileError> {
        let limits = |what, name: &str, fields: crate::limits::LimitFields| {
            fields
                .check()
                .map(|_| ())
                .map_err(|source| FileError::Limits {
                    what,
                    name: name.to_string(),
                    source,
                })
        };
        let missing = |what, name: &str, kind, target: &str| FileError::Missing {
            what,
            name: name.to_string(),
            kind,
            missing: target.to_string(),
        };
        unique("key", self.keys.iter().map(|k| k.name.as_str()))?;
        unique("team", self.teams.iter().map(|t| t.name.as_str()))?;
        unique("org", self.orgs.iter().map(|o| o.name.as_str()))?;
        unique("upstream", self.upstreams.iter().map(|u| u.name.as_str()))?;
        for org in &self.orgs {
            limits("org", &org.name, org.limit_fields())?;
            if let Some(upstream) = &org.upstream {
                self.upstream(upstream)
                    .ok_or_else(|| missing("org", &org.name, "upstream", upstream))?;
            }
        }
        for team in &self.teams {
            limits("team", &team.name, team.limit_fields())?;
            if let Some(org) = &team.org {
                self.org(org)
                    .ok_or_else(|| missing("team", &team.name, "org", org))?;
            }
            if let Some(upstream) = &team.upstream {
                self.upstream(upstream)
                    .ok_or_else(|| missing("team", &team.name, "upstream", upstream))?;
            }
        }
        for upstream in &self.upstreams {
            unique("pool", upstream.pools.iter().map(|p| p.name.as_str()))?;
            for pool in &upstream.pools {
                limits("pool", &pool.name, pool.limit_fields())?;
            }
        }
        for key in &self.keys {
            limits("key", &key.name, key.limit_fields())?;
            // The module's windows: a positive multiple of 60 ms, at most i64::MAX.
            validate_window(key.window_ms).map_err(|_| FileError::Limits {
                what: "key",
                name: key.name.clone(),
                source: LimitError::Window,
            })?;
            for (model, entry) in &key.models {
                limits("model", model, entry.limit_fields())?;
            }
            if let Some(team_name) = &key.team {
                let team = self
                    .team(team_name)
                    .ok_or_else(|| missing("key", &key.name, "team", team_name))?;
                if let (Some(team_org), Some(key_org)) = (&team.org, &key.org) {
                    if team_org != key_org {
                        return Err(FileError::OrgConflict {
                            key: key.name.clone(),
                            team: team_name.clone(),
                            team_org: team_org.clone(),
                            key_org: key_org.clone(),
                        });
                    }
                }
            }
            if let Some(org) = &key.org {
                self.org(org)
                    .ok_or_else(|| missing("key", &key.name, "org", org))?;
            }
            if let Some(upstream) = &key.upstream {
                self.upstream(upstream)
                    .ok_or_else(|| missing("key", &key.name, "upstream", upstream))?;
            }
        }
        for (model, price) in &self.prices {
            let valid = |p: f64| p.is_finite() && p >= 0.0;
            if !valid(price.input) || !valid(price.output) || !price.cached_input.is_none_or(valid)
            {
                return Err(FileError::BadPrice {
                    model: model.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Names are part of Redis key names (and hash tags), of the binding-scope header and of the
/// admin API's URLs: plain, short, unique.
fn unique<'a>(what: &'static str, names: impl Iterator<Item = &'a str>) -> Result<(), FileError> {
    let mut seen = HashSet::new();
    for name in names {
        let plain = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !plain {
            return Err(FileError::BadName {
                what,
                name: name.to_string(),
            });
        }
        if !seen.insert(name) {
            return Err(FileError::Twice {
                what,
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

impl KeyEntry {
    /// The SHA-256 of the API key this entry names: hashed from `key`, or parsed from
    /// `key_sha256`.
    pub fn digest(&self) -> Result<[u8; 32], EntryError> {
        match (&self.key, &self.key_sha256) {
            (Some(key), None) if !key.is_empty() => Ok(sha256(key.as_bytes())),
            (None, Some(hex)) => parse_hex_digest(hex).ok_or(EntryError::BadDigest),
            _ => Err(EntryError::KeyMissingOrTwice),
        }
    }
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}
