//! The keys file: API keys and their limits. The gateway enforces it and the load generator's
//! audit checks against it; both read it here, so they can never disagree on what it says.
//! The rules that turn an entry into limiter scopes live here too, once: which limits a request
//! for a model runs under ([`KeyEntry::limits_for`]) and the Redis key that counts them
//! ([`limiter_key`]).

use llmrl_core::protocol::Limits;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use thiserror::Error;

pub const DEFAULT_WINDOW_MS: u64 = 60_000;
pub const DEFAULT_OUTPUT_RESERVATION: u64 = 1024;

/// Limits (0 = unlimited) of one model with its own counters. The three limits are repeated in
/// [`KeyEntry`] rather than flattened: serde's flatten cannot be combined with
/// deny_unknown_fields, which turns a typo in the file into an error instead of no limit.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    #[serde(default)]
    pub rpm: u64,
    #[serde(default)]
    pub itpm: u64,
    #[serde(default)]
    pub otpm: u64,
    pub default_output_reservation: Option<u64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    /// The API key itself, or...
    pub key: Option<String>,
    /// ...its SHA-256 in hex, so the file need not hold the secret.
    pub key_sha256: Option<String>,
    #[serde(default)]
    pub rpm: u64,
    #[serde(default)]
    pub itpm: u64,
    #[serde(default)]
    pub otpm: u64,
    #[serde(default = "default_reservation")]
    pub default_output_reservation: u64,
    #[serde(default)]
    pub shadow: bool,
    #[serde(default = "default_window")]
    pub window_ms: u64,
    #[serde(default)]
    pub models: HashMap<String, ModelEntry>,
}

fn default_reservation() -> u64 {
    DEFAULT_OUTPUT_RESERVATION
}

fn default_window() -> u64 {
    DEFAULT_WINDOW_MS
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    pub keys: Vec<KeyEntry>,
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

impl ModelEntry {
    pub fn limits(&self) -> Limits {
        Limits {
            rpm: self.rpm,
            itpm: self.itpm,
            otpm: self.otpm,
        }
    }
}

impl KeyEntry {
    /// The key's own limits (every model without an entry of its own).
    pub fn limits(&self) -> Limits {
        Limits {
            rpm: self.rpm,
            itpm: self.itpm,
            otpm: self.otpm,
        }
    }

    /// The limits a request for `model` runs under: the model's own entry, if it has one, else
    /// the key's (shared by every such model).
    pub fn limits_for(&self, model: &str) -> Limits {
        self.models
            .get(model)
            .map_or_else(|| self.limits(), ModelEntry::limits)
    }

    /// The Redis key counting a request for `model` (see [`limiter_key`]).
    pub fn limiter_key_for(&self, model: &str) -> Result<String, EntryError> {
        let scope = if self.models.contains_key(model) {
            Scope::Model(model)
        } else {
            Scope::Default
        };
        Ok(limiter_key(&self.digest()?, self.window_ms, scope))
    }
}

/// Which counters of a key a request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Shared by every model without limits of its own.
    Default,
    /// A model with its own limits.
    Model(&'a str),
}

/// The Redis key of one API key's scope: `llmrl:{<first 16 bytes of SHA-256(api key), hex>}:
/// w<window_ms>:default` or `...:model:<model>`. The API key itself never reaches Redis; the hash
/// tag keeps an API key's scopes in one cluster slot; the window is part of the name because a
/// key keeps the window it was created with, so a reload that changes `window_ms` starts a fresh
/// key instead of failing every CHECK.
pub fn limiter_key(digest: &[u8; 32], window_ms: u64, scope: Scope) -> String {
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    match scope {
        Scope::Default => format!("llmrl:{{{hash}}}:w{window_ms}:default"),
        Scope::Model(model) => format!("llmrl:{{{hash}}}:w{window_ms}:model:{model}"),
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_their_key_by_digest() {
        let hex: String = sha256(b"sk-two")
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let file: KeysFile = toml::from_str(&format!(
            "[[keys]]\nname = \"one\"\nkey = \"sk-one\"\n\n\
             [[keys]]\nname = \"two\"\nkey_sha256 = \"{hex}\"\n\n\
             [[keys]]\nname = \"both\"\nkey = \"sk-one\"\nkey_sha256 = \"{hex}\"\n\n\
             [[keys]]\nname = \"bad\"\nkey_sha256 = \"zz\"\n"
        ))
        .unwrap();
        assert_eq!(file.find("sk-one").unwrap().name, "one");
        assert_eq!(
            file.find("sk-two").unwrap().name,
            "two",
            "upper-case hex too"
        );
        assert!(file.find("sk-three").is_none());
        assert_eq!(file.keys[2].digest(), Err(EntryError::KeyMissingOrTwice));
        assert_eq!(file.keys[3].digest(), Err(EntryError::BadDigest));
        assert_eq!(file.keys[0].window_ms, DEFAULT_WINDOW_MS);
        assert_eq!(
            file.keys[0].default_output_reservation,
            DEFAULT_OUTPUT_RESERVATION
        );
    }
}
