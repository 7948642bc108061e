//! Command line (every flag also from the environment) and the API keys file.

use clap::{Parser, ValueEnum};
use llmrl_keys::{sha256, KeyEntry, KeysFile, ReadError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailureMode {
    /// Answer 503 while the limiter is unreachable (nothing unlimited gets through).
    Closed,
    /// Serve without limits while the limiter is unreachable (counted in metrics).
    Open,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "llmrl-gateway",
    version,
    about = "OpenAI-compatible gateway that enforces RPM/ITPM/OTPM limits with the llmrl Redis module"
)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "LLMRL_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// This node's name (reported by /health and in logs); default "gw-<port>".
    #[arg(long, env = "LLMRL_NODE_ID")]
    pub node_id: Option<String>,

    /// Redis with the llmrl module loaded.
    #[arg(
        long,
        env = "LLMRL_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,

    /// Redis Cluster seed nodes (comma separated URLs); when set, --redis-url is ignored.
    #[arg(long, env = "LLMRL_REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,

    /// API keys and their limits (TOML, or JSON when the name ends in .json). Reloaded on SIGHUP.
    #[arg(long, env = "LLMRL_KEYS_FILE", default_value = "keys.toml")]
    pub keys_file: PathBuf,

    /// Proxy admitted requests to this OpenAI-compatible server (e.g. https://api.openai.com)
    /// instead of answering with the built-in mock. Its API key is read from the environment
    /// variable LLMRL_UPSTREAM_API_KEY.
    #[arg(long, env = "LLMRL_UPSTREAM")]
    pub upstream: Option<String>,

    /// Upstream request timeout, in ms.
    #[arg(long, env = "LLMRL_UPSTREAM_TIMEOUT_MS", default_value_t = 600_000)]
    pub upstream_timeout_ms: u64,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "LLMRL_BODY_LIMIT", default_value_t = 1 << 20)]
    pub body_limit: usize,

    /// Time allowed to receive a request's headers and body, in ms (slow clients get 408).
    #[arg(long, env = "LLMRL_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub read_timeout_ms: u64,

    /// Timeout of each Redis call, in ms; past it the limiter counts as unavailable.
    #[arg(long, env = "LLMRL_REDIS_TIMEOUT_MS", default_value_t = 50)]
    pub redis_timeout_ms: u64,

    /// What to do when Redis cannot be reached or answers too slowly.
    #[arg(
        long,
        env = "LLMRL_ON_REDIS_ERROR",
        value_enum,
        default_value = "closed"
    )]
    pub on_redis_error: FailureMode,

    /// Completion length (tokens per choice) of the built-in mock upstream, before max_tokens.
    #[arg(long, env = "LLMRL_MOCK_TOKENS", default_value_t = 32)]
    pub mock_tokens: u64,

    /// Delay between streamed mock chunks, in ms (to imitate a model's pace).
    #[arg(long, env = "LLMRL_MOCK_CHUNK_DELAY_MS", default_value_t = 0)]
    pub mock_chunk_delay_ms: u64,

    /// Open client connections served at most; past it, each new connection gets one 503
    /// (`overloaded`, retry-after 1) and is closed, so memory stays bounded under overload.
    #[arg(long, env = "LLMRL_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// How long a graceful shutdown waits for requests in flight, in ms.
    #[arg(long, env = "LLMRL_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// Benchmarks only: skip the limiter entirely (no Redis calls, no rate-limit headers).
    #[arg(long, env = "LLMRL_NO_LIMITER")]
    pub no_limiter: bool,
}

impl Cli {
    pub fn node_id(&self) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| format!("gw-{}", self.listen.port()))
    }
}

/// Limits of one (key, model scope); 0 means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: u64,
    pub itpm: u64,
    pub otpm: u64,
}

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
            let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            // The window is part of the key name: a key keeps the window it was created with, so
            // a reload that changes window_ms starts a new key instead of failing every CHECK.
            let window = entry.window_ms;
            let models = entry
                .models
                .iter()
                .map(|(model, m)| {
                    let scope = Scope {
                        redis_key: format!("llmrl:{{{hash}}}:w{window}:model:{model}"),
                        limits: Limits {
                            rpm: m.rpm,
                            itpm: m.itpm,
                            otpm: m.otpm,
                        },
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
                    redis_key: format!("llmrl:{{{hash}}}:w{window}:default"),
                    limits: Limits {
                        rpm: entry.rpm,
                        itpm: entry.itpm,
                        otpm: entry.otpm,
                    },
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
