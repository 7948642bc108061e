//! The policy: the API keys the gateway accepts and, for each request, what it runs under —
//! every scope of its key, model, team, organisation and upstream pool, with their Redis keys
//! (see `llmrl_keys::Plan`). Built once per keys-file load, never per request.

use llmrl_core::protocol::Limits;
use llmrl_keys::{
    sha256, Checks, FileError, KeysFile, Owner, Plan, PlanError, ReadError, ScopeSpec, Window,
};
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
    /// Refused (401) while disabled; kept with its usage.
    pub disabled: bool,
    /// Models with limits (and counters) of their own under this key.
    models_with_limits: Vec<String>,
    /// The plan of every model named in the file for this key (its model entries, its upstream's
    /// pools, prices), and the plan every other model shares.
    plans: HashMap<String, Arc<Plan>>,
    default_plan: Arc<Plan>,
}

impl ApiKey {
    /// What a request for `model` runs under.
    pub fn plan(&self, model: &str) -> &Arc<Plan> {
        self.plans.get(model).unwrap_or(&self.default_plan)
    }

    pub fn model_names(&self) -> impl Iterator<Item = &str> {
        self.plans.keys().map(String::as_str)
    }

    /// Every counter its requests are checked against, over every model's plan (in model name
    /// order, then every other model's), each once.
    pub fn scopes(&self) -> Vec<KeyScope> {
        let mut models: Vec<&String> = self.plans.keys().collect();
        models.sort();
        let plans = models
            .into_iter()
            .map(|model| (Some(model.as_str()), &self.plans[model]))
            .chain(std::iter::once((None, &self.default_plan)));
        let mut scopes: Vec<KeyScope> = Vec::new();
        for (model, plan) in plans {
            let found: Vec<KeyScope> = match &plan.checks {
                Checks::Multi(specs) => specs.iter().cloned().map(KeyScope::Multi).collect(),
                Checks::Single {
                    redis_key,
                    limits,
                    window_ms,
                } => {
                    let owner = match model {
                        Some(model) if self.models_with_limits.iter().any(|m| m == model) => {
                            Owner::KeyModel {
                                key: self.name.clone(),
                                model: model.to_string(),
                            }
                        }
                        _ => Owner::Key(self.name.clone()),
                    };
                    vec![KeyScope::Classic {
                        redis_key: redis_key.clone(),
                        limits: *limits,
                        window_ms: *window_ms,
                        owner,
                    }]
                }
            };
            for scope in found {
                if !scopes.iter().any(|s| s.redis_key() == scope.redis_key()) {
                    scopes.push(scope);
                }
            }
        }
        scopes
    }
}

/// One counter a key's requests are checked against.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyScope {
    /// A classic single-scope counter (`LLMRL.CHECK`).
    Classic {
        redis_key: String,
        limits: Limits,
        window_ms: u64,
        owner: Owner,
    },
    /// A scope of a multi-scope plan (`LLMRL.MCHECK`).
    Multi(ScopeSpec),
}

impl KeyScope {
    pub fn redis_key(&self) -> &str {
        match self {
            KeyScope::Classic { redis_key, .. } => redis_key,
            KeyScope::Multi(spec) => &spec.redis_key,
        }
    }

    pub fn window(&self) -> Window {
        match self {
            KeyScope::Classic { window_ms, .. } => Window::Minute(*window_ms),
            KeyScope::Multi(spec) => spec.window,
        }
    }

    /// Whether the key holds it itself (not its team, organisation or pool).
    pub fn is_own(&self) -> bool {
        match self {
            KeyScope::Classic { .. } => true,
            KeyScope::Multi(spec) => matches!(spec.owner, Owner::Key(_) | Owner::KeyModel { .. }),
        }
    }
}

#[derive(Debug, Error)]
pub enum KeysError {
    #[error(transparent)]
    File(#[from] ReadError),
    #[error(transparent)]
    Invalid(#[from] FileError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("key {name:?}: {message}")]
    Key { name: String, message: String },
}

#[derive(Debug, Default)]
pub struct KeyStore {
    by_digest: HashMap<[u8; 32], Arc<ApiKey>>,
    by_name: HashMap<String, Arc<ApiKey>>,
    /// The policy these keys came from (keys by digest only when it came from Redis).
    pub file: Arc<KeysFile>,
    /// The stored policy's version (none for a keys file).
    pub version: Option<String>,
}

impl KeyStore {
    pub fn load(path: &Path) -> Result<KeyStore, KeysError> {
        KeyStore::from_file(KeysFile::read(path)?, None)
    }

    /// The keys of a whole policy, checked.
    pub fn from_file(file: KeysFile, version: Option<String>) -> Result<KeyStore, KeysError> {
        file.validate()?;
        let mut by_digest = HashMap::new();
        let mut by_name = HashMap::new();
        for entry in &file.keys {
            let invalid = |message: &str| KeysError::Key {
                name: entry.name.clone(),
                message: message.to_string(),
            };
            let digest = entry.digest().map_err(|e| invalid(&e.to_string()))?;
            let mut plans = HashMap::new();
            for model in file.planned_models(entry) {
                let plan = Arc::new(file.plan(entry, &model)?);
                plans.insert(model, plan);
            }
            // Every other model: the key's own limits and any catch-all ("*") pool and price.
            let default_plan = Arc::new(file.plan(entry, "*")?);
            let key = Arc::new(ApiKey {
                name: entry.name.clone(),
                digest,
                shadow: entry.shadow,
                disabled: entry.disabled,
                models_with_limits: entry.models.keys().cloned().collect(),
                plans,
                default_plan,
            });
            if by_digest.insert(digest, Arc::clone(&key)).is_some() {
                return Err(invalid("the same API key appears twice"));
            }
            // Names are unique: `validate` checked.
            by_name.insert(entry.name.clone(), key);
        }
        Ok(KeyStore {
            by_digest,
            by_name,
            file: Arc::new(file),
            version,
        })
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<ApiKey>> {
        self.by_name.get(name)
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

    use llmrl_core::protocol::Limits;
    use llmrl_keys::Checks;

    fn store(toml_text: &str) -> Result<KeyStore, KeysError> {
        let file: KeysFile = toml::from_str(toml_text).map_err(|e| ReadError::Parse {
            path: "test".into(),
            message: e.to_string(),
        })?;
        KeyStore::from_file(file, None)
    }

    /// A classic plan's Redis key and limits.
    fn classic(plan: &Plan) -> (&str, Limits) {
        match &plan.checks {
            Checks::Single {
                redis_key, limits, ..
            } => (redis_key, *limits),
            Checks::Multi(_) => panic!("expected a single scope: {plan:?}"),
        }
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
        let default = one.plan("gpt-4o-mini");
        assert_eq!(
            classic(default).1,
            Limits {
                rpm: 10,
                itpm: 1000,
                otpm: 0
            }
        );
        assert_eq!(default.default_output_reservation, 1024);
        let special = one.plan("gpt-4o");
        assert_eq!(classic(special).1.rpm, 5);
        assert_eq!(special.default_output_reservation, 77);
        assert_ne!(classic(special).0, classic(default).0);
        assert!(
            !classic(default).0.contains("sk-one"),
            "plaintext keys never reach Redis"
        );
        let two = store.authenticate(b"sk-two").unwrap();
        assert!(two.shadow);
        assert!(classic(two.plan("m")).0.contains(":w600:"));
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
        let plan = limited.plan("m");
        assert_eq!(plan.output_reservation_per_choice(None, 1), 300);
        assert_eq!(plan.output_reservation_per_choice(None, 4), 75);
        assert_eq!(plan.output_reservation_per_choice(None, 1000), 1);
        assert_eq!(plan.output_reservation_per_choice(Some(500), 1), 500);
        let unlimited = store.authenticate(b"b").unwrap();
        assert_eq!(
            unlimited.plan("m").output_reservation_per_choice(None, 3),
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
        assert_eq!(classic(key.plan("other")).1.otpm, 9);
        assert_eq!(
            classic(key.plan("gpt-4o")).1,
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
