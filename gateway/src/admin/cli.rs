//! `llmrl-gateway admin ...`: the admin API's operations from the command line, straight on
//! Redis (no gateway needs to run): import a keys file, manage keys and any entity, read and
//! reset usage.

use super::ops::{self, AdminError};
use crate::config::Cli;
use crate::limiter::Limiter;
use crate::policy::KeyStore;
use crate::policy_store::PolicyStore;
use crate::usage::ScopeUsage;
use clap::Subcommand;
use llmrl_keys::store::Kind;
use llmrl_keys::KeysFile;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Manage the policy stored in Redis (what `--policies redis` nodes enforce) and read usage.
    Admin {
        #[command(subcommand)]
        action: Action,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum Action {
    /// Replace the stored policy with a keys file (TOML, or JSON if *.json); keys are stored as
    /// SHA-256 digests. Every node takes it within its poll interval.
    Import {
        file: PathBuf,
        /// Only if no policy is stored yet (keep what is there, edits included).
        #[arg(long)]
        if_empty: bool,
    },
    /// Print the stored policy as a JSON keys file (keys as digests).
    Export,
    /// API keys: add, list, set, disable, enable (remove one with `delete key <name>`).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Create or change a team, org, upstream or price: `set team ml-research rpm=200 rpd=`
    /// (`field=` removes a field; values are JSON, or text).
    Set {
        kind: String,
        name: String,
        fields: Vec<String>,
    },
    /// Remove a key, team, org, upstream or price.
    Delete { kind: String, name: String },
    /// Usage of every scope of a key (its own and its team's, org's, pool's), a team, an org, or
    /// an upstream (`name` or `name/pool`).
    Usage { kind: String, name: String },
    /// Forget what a key, team, org or upstream pool has used (its own scopes only).
    Reset {
        kind: String,
        name: String,
        /// Only this window, as `usage` names it (`minute`, `day:-480`, `month`, `in flight`).
        #[arg(long)]
        window: Option<String>,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum KeysAction {
    /// Add a key with `field=value` limits (`rpm=60 team=ml-research`); prints the new API key
    /// once.
    Add { name: String, fields: Vec<String> },
    /// Every key, as stored (digests only).
    List,
    /// Change a key's fields: `keys set demo rpm=120 itpm=` (`key=<new secret>` rotates it).
    Set { name: String, fields: Vec<String> },
    /// Refuse the key (401) until enabled again; its usage is kept.
    Disable { name: String },
    /// Accept a disabled key again.
    Enable { name: String },
}

/// `field=value` pairs as a JSON object: the value parsed as JSON when it is, else text; an
/// empty value is `null` (a merge patch removes the field).
fn fields_object(pairs: &[String]) -> Result<Value, String> {
    let mut object = Map::new();
    for pair in pairs {
        let (field, text) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?}: expected field=value"))?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        };
        object.insert(field.to_string(), value);
    }
    Ok(Value::Object(object))
}

fn kind_of(text: &str) -> Result<Kind, String> {
    Kind::parse(text)
        .ok_or_else(|| format!("{text:?}: expected one of key, team, org, upstream, price"))
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A usage table, one row per limited dimension.
fn print_usage(scopes: &[ScopeUsage]) {
    println!(
        "{:<32} {:<12} {:<18} {:>14} {:>14} {:>14} {:>10}",
        "SCOPE", "WINDOW", "DIMENSION", "USED", "LIMIT", "REMAINING", "RESET"
    );
    for scope in scopes {
        for d in &scope.limits {
            println!(
                "{:<32} {:<12} {:<18} {:>14} {:>14} {:>14} {:>9.1}s",
                scope.scope,
                scope.window,
                d.dimension,
                d.used.to_string(),
                d.limit.to_string(),
                d.remaining.to_string(),
                d.reset_ms as f64 / 1000.0
            );
        }
    }
}

/// Run one admin command; its exit code.
pub async fn run(cli: &Cli, command: Command) -> ExitCode {
    let Command::Admin { action } = command;
    match execute(cli, action).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("llmrl-gateway admin: {message}");
            ExitCode::from(1)
        }
    }
}

async fn execute(cli: &Cli, action: Action) -> Result<(), String> {
    let store = PolicyStore::new(&cli.redis_url, &cli.redis_cluster, &cli.policy_key)
        .map_err(|e| e.to_string())?;
    let failed = |e: AdminError| e.to_string();
    match action {
        Action::Import { file, if_empty } => {
            if if_empty {
                if let Some(version) = store.version().await.map_err(|e| e.to_string())? {
                    println!(
                        "a policy is already stored in {:?} (version {version}); kept",
                        store.key()
                    );
                    return Ok(());
                }
            }
            let keys = KeysFile::read(&file).map_err(|e| e.to_string())?;
            let count = keys.keys.len();
            let version = store.import(keys).await.map_err(|e| e.to_string())?;
            println!(
                "imported {} ({count} keys) into {:?}, version {version}",
                file.display(),
                store.key()
            );
        }
        Action::Export => {
            let (_, file) = store.load_file().await.map_err(|e| e.to_string())?;
            print_json(&serde_json::to_value(&file).map_err(|e| e.to_string())?);
        }
        Action::Keys { action } => keys(&store, action).await?,
        Action::Set { kind, name, fields } => {
            let kind = kind_of(&kind)?;
            let changes = fields_object(&fields)?;
            let value = ops::set(&store, kind, &name, changes).await;
            print_json(&value.map_err(failed)?);
        }
        Action::Delete { kind, name } => {
            ops::delete(&store, kind_of(&kind)?, &name)
                .await
                .map_err(failed)?;
            println!("deleted {kind} {name:?}");
        }
        Action::Usage { kind, name } => {
            let (limiter, keys) = usage_context(cli, &store).await?;
            let target = ops::target(&keys, &kind, &name).map_err(failed)?;
            let scopes = ops::usage(&limiter, &keys, &target).await.map_err(failed)?;
            print_usage(&scopes);
        }
        Action::Reset { kind, name, window } => {
            let (limiter, keys) = usage_context(cli, &store).await?;
            let target = ops::target(&keys, &kind, &name).map_err(failed)?;
            let removed = ops::reset(&limiter, &keys, &target, window.as_deref())
                .await
                .map_err(failed)?;
            println!("reset {kind} {name:?}: {removed} scope(s) cleared");
        }
    }
    Ok(())
}

async fn usage_context(cli: &Cli, store: &PolicyStore) -> Result<(Limiter, KeyStore), String> {
    let limiter = Limiter::new(&cli.redis_url, &cli.redis_cluster, Duration::from_secs(2))
        .map_err(|e| e.to_string())?;
    let keys = store.load().await.map_err(|e| e.to_string())?;
    Ok((limiter, keys))
}

/// A key's fields that are not its own limits (left out of `keys list`'s LIMITS).
const NOT_LIMITS: &[&str] = &[
    "name",
    "key",
    "key_sha256",
    "default_output_reservation",
    "shadow",
    "disabled",
    "window_ms",
    "team",
    "org",
    "upstream",
];

async fn keys(store: &PolicyStore, action: KeysAction) -> Result<(), String> {
    let failed = |e: AdminError| e.to_string();
    match action {
        KeysAction::Add { name, fields } => {
            let body = fields_object(&fields)?;
            let (secret, _) = ops::create_key(store, &name, body).await.map_err(failed)?;
            match secret {
                Some(secret) => {
                    eprintln!("key {name:?} added; its API key (shown only now):");
                    println!("{secret}");
                }
                None => eprintln!("key {name:?} added"),
            }
        }
        KeysAction::List => {
            let (_, file) = store.load_file().await.map_err(|e| e.to_string())?;
            println!(
                "{:<24} {:<16} {:<10} {:<9} LIMITS",
                "NAME", "TEAM/ORG", "STATUS", "SHA256"
            );
            for key in &file.keys {
                let group = key.team.as_deref().or(key.org.as_deref()).unwrap_or("-");
                let status = if key.disabled {
                    "disabled"
                } else if key.shadow {
                    "shadow"
                } else {
                    "active"
                };
                let digest = key
                    .key_sha256
                    .as_deref()
                    .unwrap_or("")
                    .get(..8)
                    .unwrap_or("");
                let mut limits = serde_json::to_value(key).unwrap_or(Value::Null);
                if let Some(object) = limits.as_object_mut() {
                    for field in NOT_LIMITS {
                        object.remove(*field);
                    }
                }
                let mut limits = limits.to_string();
                if limits == "{}" {
                    limits = "unlimited".into();
                }
                println!(
                    "{:<24} {:<16} {:<10} {:<9} {limits}",
                    key.name, group, status, digest
                );
            }
        }
        KeysAction::Set { name, fields } => {
            let value = ops::patch(store, Kind::Key, &name, fields_object(&fields)?)
                .await
                .map_err(failed)?;
            print_json(&value);
        }
        KeysAction::Disable { name } => switch(store, &name, true).await?,
        KeysAction::Enable { name } => switch(store, &name, false).await?,
    }
    Ok(())
}

/// `keys disable` and `keys enable`.
async fn switch(store: &PolicyStore, name: &str, disabled: bool) -> Result<(), String> {
    ops::set_disabled(store, name, disabled)
        .await
        .map_err(|e| e.to_string())?;
    let done = if disabled { "disabled" } else { "enabled" };
    println!("key {name:?} {done}");
    Ok(())
}
