//! The policy: the API keys the gateway accepts and, for each request, which limits apply and
//! which Redis key counts them. Built once per keys-file load, never per request.

use llmrl_core::protocol::Limits;
use llmrl_keys::{limiter_key, sha256, KeyEntry, KeysFile, ReadError, Scope as KeyScope};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// What the gateway knows about one API key (never the key itself).
#[derive(Debug)]
pub struct ApiKey {
    pub name: String,
    digest: [u8; 32],
    pub shadow: bool,
    pub window_ms: u64,
    /// Built once at load: the scope most requests use, and one per model override.
    default_scope: Scope,
    models: HashMap<String, Scope>,
}

/// The limits that apply to one request: which Redis key, which limits, which reservation.
#[derive(Debug, Clone)]
pub struct Scope {
    pub redis_key: String,
    pub limits: Limits,
    pub default_output_reservation: u64,
}

impl Scope {
    /// Output tokens to reserve per choice: the request's own maximum if it gives one; else
    /// the scope's `default_output_reservation`, but never more than the OTPM limit allows for
    /// `n` choices — a default above the limit would make every such request "too large",
    /// while the settlement corrects the reservation to what was really produced anyway.
    pub fn output_reservation_per_choice(&self, max_output_tokens: Option<u64>, n: u64) -> u64 {
        match max_output_tokens {
            Some(max) => max,
            None if self.limits.otpm > 0 => self
                .default_output_reservation
                .min((self.limits.otpm / n.max(1)).max(1)),
            None => self.default_output_reservation,
        }
    }
}

impl ApiKey {
    /// Per-model overrides get their own Redis key; every other model shares "default".
    pub fn scope(&self, model: &str) -> &Scope {
        self.models.get(model).unwrap_or(&self.default_scope)
    }

    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

#[derive(Debug, Error)]
pub enum KeysError {
    #[error(transparent)]
    File(#[from] ReadError),
    #[error("key {name:?}: {message}")]
    Invalid { name: String, message: String },
}

#[derive(Debug, Default)]
pub struct KeyStore {
    by_digest: HashMap<[u8; 32], Arc<ApiKey>>,
}

impl KeyStore {
    pub fn load(path: &Path) -> Result<KeyStore, KeysError> {
        KeyStore::from_entries(KeysFile::read(path)?.keys)
    }

    fn from_entries(entries: Vec<KeyEntry>) -> Result<KeyStore, KeysError> {
        let mut by_digest = HashMap::new();
        for entry in entries {
            let invalid = |message: &str| KeysError::Invalid {
                name: entry.name.clone(),
                message: message.to_string(),
            };
            let digest = entry.digest().map_err(|e| invalid(&e.to_string()))?;
            // The module's bounds: a positive multiple of 60, at most i64::MAX.
            if entry.window_ms == 0
                || entry.window_ms > i64::MAX as u64
                || !entry.window_ms.is_multiple_of(60)
            {
                return Err(invalid(
                    "window_ms must be a positive multiple of 60, at most 9223372036854775800",
                ));
            }
            let window = entry.window_ms;
            let models = entry
                .models
                .iter()
                .map(|(model, m)| {
                    let scope = Scope {
                        redis_key: limiter_key(&digest, window, KeyScope::Model(model)),
                        limits: m.limits(),
                        default_output_reservation: m
                            .default_output_reservation
                            .unwrap_or(entry.default_output_reservation),
                    };
                    (model.clone(), scope)
                })
                .collect();
            let key = ApiKey {
                name: entry.name.clone(),
                digest,
                default_scope: Scope {
                    redis_key: limiter_key(&digest, window, KeyScope::Default),
                    limits: entry.limits(),
                    default_output_reservation: entry.default_output_reservation,
                },
                shadow: entry.shadow,
                window_ms: entry.window_ms,
                models,
            };
            if by_digest.insert(digest, Arc::new(key)).is_some() {
                return Err(invalid("the same API key appears twice"));
            }
        }
        Ok(KeyStore { by_digest })
    }

    /// Find the key a client presented. The map is keyed by SHA-256, so lookup time says
    /// nothing about the secret; the final comparison is constant-time.
    pub fn authenticate(&self, presented: &[u8]) -> Option<Arc<ApiKey>> {
        let digest = sha256(presented);
        let found = self.by_digest.get(&digest)?;
        bool::from(found.digest.ct_eq(&digest)).then(|| Arc::clone(found))
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(toml_text: &str) -> Result<KeyStore, KeysError> {
        let file: KeysFile = toml::from_str(toml_text).map_err(|e| ReadError::Parse {
            path: "test".into(),
            message: e.to_string(),
        })?;
        KeyStore::from_entries(file.keys)
    }

    #[test]
    fn keys_scopes_and_hashes() {
        let digest: String = sha256(b"sk-two")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let text = format!(
            r#"
            [[keys]]
            name = "one"
            key = "sk-one"
            rpm = 10
            itpm = 1000
            [keys.models."gpt-4o"]
            rpm = 5
            default_output_reservation = 77

            [[keys]]
            name = "two"
            key_sha256 = "{digest}"
            shadow = true
            window_ms = 600
            "#
        );
        let store = store(&text).unwrap();
        assert_eq!(store.len(), 2);
        let one = store.authenticate(b"sk-one").unwrap();
        assert_eq!(one.name, "one");
        let default = one.scope("gpt-4o-mini");
        assert_eq!(
            default.limits,
            Limits {
                rpm: 10,
                itpm: 1000,
                otpm: 0
            }
        );
        assert_eq!(default.default_output_reservation, 1024);
        let special = one.scope("gpt-4o");
        assert_eq!(special.limits.rpm, 5);
        assert_eq!(special.default_output_reservation, 77);
        assert_ne!(special.redis_key, default.redis_key);
        assert!(
            !default.redis_key.contains("sk-one"),
            "plaintext keys never reach Redis"
        );
        let two = store.authenticate(b"sk-two").unwrap();
        assert!(two.shadow);
        assert_eq!(two.window_ms, 600);
        assert!(store.authenticate(b"sk-three").is_none());
        assert!(store.authenticate(b"").is_none());
    }

    #[test]
    fn a_default_reservation_never_exceeds_the_output_limit() {
        let store = store(
            "[[keys]]\nname = \"x\"\nkey = \"a\"\notpm = 300\ndefault_output_reservation = 1024\n\
             [[keys]]\nname = \"y\"\nkey = \"b\"\n",
        )
        .unwrap();
        let limited = store.authenticate(b"a").unwrap();
        let scope = limited.scope("m");
        assert_eq!(scope.output_reservation_per_choice(None, 1), 300);
        assert_eq!(scope.output_reservation_per_choice(None, 4), 75);
        assert_eq!(scope.output_reservation_per_choice(None, 1000), 1);
        assert_eq!(scope.output_reservation_per_choice(Some(500), 1), 500);
        let unlimited = store.authenticate(b"b").unwrap();
        assert_eq!(
            unlimited.scope("m").output_reservation_per_choice(None, 3),
            1024
        );
    }

    #[test]
    fn json_files_and_the_sample_load() {
        let dir = std::env::temp_dir().join(format!("llmrl-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("keys.json");
        std::fs::write(&json, r#"{"keys": [{"name": "j", "key": "sk-j", "otpm": 9, "models": {"gpt-4o": {"rpm": 2}}}]}"#).unwrap();
        let store = KeyStore::load(&json).unwrap();
        let key = store.authenticate(b"sk-j").unwrap();
        assert_eq!(key.scope("other").limits.otpm, 9);
        assert_eq!(
            key.scope("gpt-4o").limits,
            Limits {
                rpm: 2,
                itpm: 0,
                otpm: 0
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys.sample.toml");
        let store = KeyStore::load(&sample).unwrap();
        assert!(store.authenticate(b"sk-llmrl-demo").is_some());
        assert!(store.authenticate(b"sk-llmrl-shadow").unwrap().shadow);
        assert!(matches!(
            KeyStore::load(&dir.join("missing.toml")),
            Err(KeysError::File(ReadError::Read { .. }))
        ));
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(store("[[keys]]\nname = \"x\"\n").is_err(), "no key");
        assert!(store("[[keys]]\nname = \"x\"\nkey = \"a\"\nkey_sha256 = \"00\"\n").is_err());
        assert!(store("[[keys]]\nname = \"x\"\nkey = \"a\"\nwindow_ms = 61\n").is_err());
        assert!(
            store("[[keys]]\nname = \"x\"\nkey = \"a\"\nrpn = 1\n").is_err(),
            "typo"
        );
        assert!(store(
            "[[keys]]\nname = \"x\"\nkey = \"a\"\n[[keys]]\nname = \"y\"\nkey = \"a\"\n"
        )
        .is_err());
    }
}
