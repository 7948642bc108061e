//! The keys file: API keys, their teams and organisations, upstream accounts and prices. The
//! gateway enforces it and the load generator's audit checks against it; both read it here, so
//! they can never disagree on what it says. The rules that turn it into limiter scopes live here
//! too, once: [`KeysFile::plan`] (every scope a request runs under, with its Redis key), and the
//! classic single-scope rules ([`KeyEntry::limits_for`], [`limiter_key`]).

mod file;
pub mod limits;
mod plan;
pub mod store;

pub use file::{
    EntryError, FileError, KeyEntry, KeysFile, ModelEntry, OrgEntry, PoolEntry, Price, ReadError,
    TeamEntry, UpstreamEntry, DEFAULT_OUTPUT_RESERVATION, DEFAULT_WINDOW_MS,
};
pub use plan::{
    counted_input, group_by_hash_tag, hash_tag, key_slot, Checks, Fourth, Owner, Plan, PlanError,
    ScopeSpec, Window,
};

use llmrl_core::protocol::Limits;
use sha2::{Digest, Sha256};

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
    /// The key's own per-minute limits (every model without an entry of its own).
    pub fn limits(&self) -> Limits {
        Limits {
            rpm: self.rpm,
            itpm: self.itpm,
            otpm: self.otpm,
        }
    }

    /// The per-minute limits a request for `model` runs under: the model's own entry, if it
    /// has one, else the key's (shared by every such model).
    pub fn limits_for(&self, model: &str) -> Limits {
        self.models
            .get(model)
            .map_or_else(|| self.limits(), ModelEntry::limits)
    }

    /// The classic Redis key counting a request for `model` (see [`limiter_key`]).
    pub fn limiter_key_for(&self, model: &str) -> Result<String, EntryError> {
        let scope = if self.models.contains_key(model) {
            Scope::Model(model)
        } else {
            Scope::Default
        };
        Ok(limiter_key(&self.digest()?, self.window_ms, scope))
    }
}

/// Which classic counter of a key a request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Shared by every model without limits of its own.
    Default,
    /// A model with its own limits.
    Model(&'a str),
}

/// The first 16 bytes of an API key's SHA-256, in hex: how Redis key names refer to it.
pub fn hex16(digest: &[u8; 32]) -> String {
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The Redis key of one API key's classic scope (checked with `LLMRL.CHECK`):
/// `llmrl:{<hex16>}:w<window_ms>:default` or `...:model:<model>`. The API key itself never
/// reaches Redis; the hash tag keeps an API key's scopes in one cluster slot; the window is part
/// of the name because a key keeps the window it was created with, so a reload that changes
/// `window_ms` starts a fresh key instead of failing every CHECK.
pub fn limiter_key(digest: &[u8; 32], window_ms: u64, scope: Scope) -> String {
    let hash = hex16(digest);
    match scope {
        Scope::Default => format!("llmrl:{{{hash}}}:w{window_ms}:default"),
        Scope::Model(model) => format!("llmrl:{{{hash}}}:w{window_ms}:model:{model}"),
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
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
