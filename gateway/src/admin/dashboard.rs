//! The live dashboard: a plain page and script served by the admin listener (no build step, no
//! CDN), and the overview it polls — usage of every key, team, organisation and upstream pool
//! from Redis (so the same on every node), and this node's traffic second by second.

use super::ops;
use crate::app::App;
use crate::usage;
use llmrl_keys::store::{names, Kind};
use serde_json::{json, Value};

pub const HTML: &str = include_str!("dashboard.html");
pub const SCRIPT: &str = include_str!("dashboard.js");

/// Entities of each kind shown at most (each costs a Redis round trip per refresh).
const SHOWN_PER_KIND: usize = 100;

/// `GET /admin/overview`.
pub async fn overview(app: &App) -> Value {
    let keys = app.keys();
    let mut entities = Vec::new();
    let mut problem = None;
    if let Some(limiter) = &app.limiter {
        'kinds: for kind in [Kind::Key, Kind::Team, Kind::Org, Kind::Upstream] {
            for name in names(&keys.file, kind).into_iter().take(SHOWN_PER_KIND) {
                let Ok(target) = ops::target(&keys, kind.singular(), &name) else {
                    continue;
                };
                // A key's row shows its own scopes; its team's and the rest have their own rows.
                let usage = match &target {
                    ops::Target::Key(key) => usage::of_key(limiter, key, true)
                        .await
                        .map_err(|e| e.to_string()),
                    ops::Target::Group(_) => ops::usage(limiter, &keys, &target)
                        .await
                        .map_err(|e| e.to_string()),
                };
                match usage {
                    Ok(scopes) => {
                        let key = keys.by_name(&name).filter(|_| kind == Kind::Key);
                        let disabled = key.is_some_and(|k| k.disabled);
                        let shadow = key.is_some_and(|k| k.shadow);
                        entities.push(json!({
                            "kind": kind, "name": name, "disabled": disabled, "shadow": shadow,
                            "scopes": scopes,
                        }));
                    }
                    Err(error) => {
                        problem = Some(error);
                        break 'kinds;
                    }
                }
            }
        }
    } else {
        problem = Some("this node runs without a limiter (--no-limiter)".to_string());
    }
    json!({
        "node": app.node,
        "policies": if app.policy_store.is_some() { "redis" } else { "file" },
        "version": keys.version,
        "now_ms": crate::metrics::unix_ms(),
        "in_flight": app.metrics.in_flight.get(),
        "traffic": app.metrics.recent.seconds(),
        "entities": entities,
        "error": problem,
    })
}
