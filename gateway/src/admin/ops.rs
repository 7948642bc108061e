//! What the admin API and the CLI both do: change one entity of the stored policy (checked as a
//! whole before it is written, written only if nobody changed the policy meanwhile), import a
//! whole file, and read or reset the usage of any scope.

use crate::limiter::Limiter;
use crate::policy::{ApiKey, KeyStore};
use crate::policy_store::{Expect, PolicyStore, StoreError};
use crate::usage::{self, ScopeUsage};
use llmrl_keys::store::{self as doc, Kind};
use llmrl_keys::{KeysFile, Owner, Window};
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("this node reads its policy from a keys file (--policies file): change the file and send SIGHUP, or run the nodes with --policies redis")]
    ReadOnly,
    #[error("the policy kept changing while this change was being made; try again")]
    Conflict,
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> AdminError {
        match error {
            StoreError::Invalid(message) | StoreError::Refused(message) => {
                AdminError::Invalid(message)
            }
            StoreError::Conflict => AdminError::Conflict,
            StoreError::Missing(_) => AdminError::NotFound(error.to_string()),
            StoreError::Redis(_) | StoreError::Reply(_) => AdminError::Unavailable(format!(
                "Redis cannot be reached or answered unexpectedly: {error}"
            )),
        }
    }
}

pub fn not_found(kind: Kind, name: &str) -> AdminError {
    AdminError::NotFound(format!("{} {name:?} does not exist", kind.singular()))
}

/// Apply `edit` to the stored policy: load it, let `edit` change it and name the entities it
/// touched, check the whole policy, write those entities if the version is still the one read.
/// A concurrent change makes it start over (a few times).
pub async fn change<F>(store: &PolicyStore, mut edit: F) -> Result<(String, KeysFile), AdminError>
where
    F: FnMut(&mut KeysFile) -> Result<Vec<(Kind, String)>, AdminError>,
{
    for _attempt in 0..5 {
        let (version, mut file) = match store.load_file().await {
            Ok(loaded) => loaded,
            Err(StoreError::Missing(_)) => (None, KeysFile::default()),
            Err(error) => return Err(error.into()),
        };
        let touched = edit(&mut file)?;
        KeyStore::from_file(file.clone(), None).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let changes: Vec<(String, Option<String>)> = touched
            .iter()
            .map(|(kind, name)| {
                let value = doc::entity(&file, *kind, name).map(|v| v.to_string());
                (kind.field(name), value)
            })
            .collect();
        match store
            .write(&Expect::Version(version), false, &changes)
            .await
        {
            Ok(version) => return Ok((version, file)),
            Err(StoreError::Conflict) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(AdminError::Conflict)
}

/// A new API key: `sk-llmrl-` and 40 random hex digits.
pub fn new_api_key() -> Result<String, AdminError> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes)
        .map_err(|e| AdminError::Unavailable(format!("no randomness for a new key: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sk-llmrl-{hex}"))
}

/// Create a key named `name` with the fields of `body` (limits, team, ...). Unless the body
/// brings its own `key` or `key_sha256`, one is made; it is returned (and never seen again).
pub async fn create_key(
    store: &PolicyStore,
    name: &str,
    mut body: Value,
) -> Result<(Option<String>, Value), AdminError> {
    let object = body
        .as_object_mut()
        .ok_or_else(|| AdminError::Invalid("the key must be a JSON object".into()))?;
    let made = if object.contains_key("key") || object.contains_key("key_sha256") {
        None
    } else {
        let key = new_api_key()?;
        object.insert("key".into(), Value::String(key.clone()));
        Some(key)
    };
    let stored = edit_one(store, Kind::Key, name, |file| {
        if doc::entity(file, Kind::Key, name).is_some() {
            return Err(AdminError::Exists(format!("key {name:?} already exists")));
        }
        Ok(body.clone())
    })
    .await?;
    Ok((made, stored))
}

/// One entity changed: `edit` gives its new value from the policy as read; the value as stored.
async fn edit_one<F>(
    store: &PolicyStore,
    kind: Kind,
    name: &str,
    mut edit: F,
) -> Result<Value, AdminError>
where
    F: FnMut(&KeysFile) -> Result<Value, AdminError>,
{
    let (_, file) = change(store, |file| {
        let value = edit(file)?;
        doc::put(file, kind, name, value).map_err(|e| AdminError::Invalid(e.to_string()))?;
        Ok(vec![(kind, name.to_string())])
    })
    .await?;
    Ok(doc::entity(&file, kind, name).unwrap_or(Value::Null))
}

/// Create or replace an entity.
pub async fn put(
    store: &PolicyStore,
    kind: Kind,
    name: &str,
    body: Value,
) -> Result<Value, AdminError> {
    edit_one(store, kind, name, |_| Ok(body.clone())).await
}

/// An entity with `changes` merged in (a JSON merge patch: `null` removes a field); a new
/// plaintext `key` replaces the stored digest (rotating the key). A missing entity starts empty
/// when `create`, else is not found.
async fn merge(
    store: &PolicyStore,
    kind: Kind,
    name: &str,
    changes: Value,
    create: bool,
) -> Result<Value, AdminError> {
    if !changes.is_object() {
        return Err(AdminError::Invalid("a patch is a JSON object".into()));
    }
    edit_one(store, kind, name, |file| {
        let mut entity = match doc::entity(file, kind, name) {
            Some(entity) => entity,
            None if create => Value::Object(Default::default()),
            None => return Err(not_found(kind, name)),
        };
        if kind == Kind::Key && changes.get("key").is_some_and(Value::is_string) {
            if let Some(object) = entity.as_object_mut() {
                object.remove("key_sha256");
            }
        }
        doc::merge_patch(&mut entity, &changes);
        Ok(entity)
    })
    .await
}

/// Change some fields of an existing entity (see [`merge`]).
pub async fn patch(
    store: &PolicyStore,
    kind: Kind,
    name: &str,
    changes: Value,
) -> Result<Value, AdminError> {
    merge(store, kind, name, changes, false).await
}

/// Change some fields of an entity, creating it from them if it does not exist yet (the CLI's
/// `set`), decided and written as one change.
pub async fn set(
    store: &PolicyStore,
    kind: Kind,
    name: &str,
    changes: Value,
) -> Result<Value, AdminError> {
    merge(store, kind, name, changes, true).await
}

/// Disable a key (refused with 401, its usage kept) or enable it again.
pub async fn set_disabled(
    store: &PolicyStore,
    name: &str,
    disabled: bool,
) -> Result<Value, AdminError> {
    let flag = if disabled {
        Value::Bool(true)
    } else {
        Value::Null
    };
    patch(
        store,
        Kind::Key,
        name,
        serde_json::json!({ "disabled": flag }),
    )
    .await
}

/// Remove an entity (refused while others name it: the policy would not hold together).
pub async fn delete(store: &PolicyStore, kind: Kind, name: &str) -> Result<(), AdminError> {
    change(store, |file| {
        if !doc::remove(file, kind, name) {
            return Err(not_found(kind, name));
        }
        Ok(vec![(kind, name.to_string())])
    })
    .await
    .map(|_| ())
}

/// Every entity of a kind, as stored.
pub fn list(file: &KeysFile, kind: Kind) -> Vec<Value> {
    doc::names(file, kind)
        .iter()
        .filter_map(|name| {
            let mut value = doc::entity(file, kind, name)?;
            if kind == Kind::Price {
                value = serde_json::json!({"model": name, "price": value});
            }
            Some(value)
        })
        .collect()
}

/// Who `kind`/`name` means, for usage: a key, a team, an organisation, or an upstream's pools
/// (`upstream/pool` for one).
pub enum Target<'a> {
    Key(&'a ApiKey),
    Group(Owner),
}

pub fn target<'a>(keys: &'a KeyStore, kind: &str, name: &str) -> Result<Target<'a>, AdminError> {
    let missing = |what: &str| AdminError::NotFound(format!("{what} {name:?} does not exist"));
    let file = &keys.file;
    match Kind::parse(kind) {
        Some(Kind::Key) => keys
            .by_name(name)
            .map(|key| Target::Key(key))
            .ok_or_else(|| missing("key")),
        Some(Kind::Team) => file
            .team(name)
            .map(|_| Target::Group(Owner::Team(name.to_string())))
            .ok_or_else(|| missing("team")),
        Some(Kind::Org) => file
            .org(name)
            .map(|_| Target::Group(Owner::Org(name.to_string())))
            .ok_or_else(|| missing("org")),
        Some(Kind::Upstream) => {
            let (upstream, pool) = name.split_once('/').unwrap_or((name, ""));
            let found = file
                .upstream(upstream)
                .is_some_and(|u| pool.is_empty() || u.pools.iter().any(|p| p.name == pool));
            found
                .then(|| {
                    Target::Group(Owner::Pool {
                        upstream: upstream.to_string(),
                        pool: pool.to_string(),
                    })
                })
                .ok_or_else(|| missing("upstream or pool"))
        }
        Some(Kind::Price) | None => Err(AdminError::Invalid(format!(
            "usage is kept per key, team, org or upstream, not per {kind:?}"
        ))),
    }
}

fn unavailable(error: impl std::fmt::Display) -> AdminError {
    AdminError::Unavailable(format!("the limiter cannot be reached: {error}"))
}

/// The usage of every scope that applies to a key, or that a group holds.
pub async fn usage(
    limiter: &Limiter,
    keys: &KeyStore,
    target: &Target<'_>,
) -> Result<Vec<ScopeUsage>, AdminError> {
    match target {
        Target::Key(key) => usage::of_key(limiter, key, false)
            .await
            .map_err(unavailable),
        Target::Group(owner) => {
            let scopes = keys
                .file
                .scopes_of(owner)
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            usage::of_scopes(limiter, &scopes)
                .await
                .map_err(unavailable)
        }
    }
}

/// Forget what a key or group has used (its own scopes only: a key's reset leaves its team's
/// usage alone), in every window or only in `window` (as usage names it: `minute`, `day:-480`,
/// `month`, `in flight`...). Slots held by requests in flight go too. The number of Redis keys
/// removed.
pub async fn reset(
    limiter: &Limiter,
    keys: &KeyStore,
    target: &Target<'_>,
    window: Option<&str>,
) -> Result<usize, AdminError> {
    let chosen = |w: Window| window.is_none_or(|name| usage::window_name(w) == name);
    let mut redis_keys: Vec<String> = Vec::new();
    match target {
        Target::Key(key) => redis_keys.extend(
            key.scopes()
                .iter()
                .filter(|scope| scope.is_own() && chosen(scope.window()))
                .map(|scope| scope.redis_key().to_string()),
        ),
        Target::Group(owner) => {
            let scopes = keys
                .file
                .scopes_of(owner)
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            redis_keys.extend(
                scopes
                    .into_iter()
                    .filter(|s| chosen(s.window))
                    .map(|s| s.redis_key),
            );
        }
    }
    if redis_keys.is_empty() {
        return Err(AdminError::NotFound(format!(
            "no scope of its own{}",
            window.map_or(String::new(), |w| format!(" counts over {w:?}"))
        )));
    }
    redis_keys.sort();
    redis_keys.dedup();
    let mut removed = 0;
    for key in &redis_keys {
        if limiter.delete(key).await.map_err(unavailable)? {
            removed += 1;
        }
    }
    Ok(removed)
}
