//! The policy as stored in Redis: one hash whose fields are the entities of a keys file —
//! `key:<name>`, `team:<name>`, `org:<name>`, `upstream:<name>`, `price:<model>`, `settings` —
//! each a JSON object, and `version`, which every change moves forward (nodes poll it). API keys
//! are stored as SHA-256 digests only. This module is the pure half (fields <-> a [`KeysFile`],
//! edits of one entity); the gateway holds the Redis half.

use crate::file::{KeyEntry, KeysFile, OrgEntry, Price, TeamEntry, UpstreamEntry};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// The hash field holding the policy's version.
pub const VERSION_FIELD: &str = "version";
/// The hash field holding file-wide settings.
pub const SETTINGS_FIELD: &str = "settings";

/// What kind of entity a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Key,
    Team,
    Org,
    Upstream,
    Price,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Key,
        Kind::Team,
        Kind::Org,
        Kind::Upstream,
        Kind::Price,
    ];

    /// The field prefix and the singular name: `key`, `team`, ...
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::Team => "team",
            Kind::Org => "org",
            Kind::Upstream => "upstream",
            Kind::Price => "price",
        }
    }

    /// As in the admin API's paths: `keys`, `teams`, ...
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Key => "keys",
            Kind::Team => "teams",
            Kind::Org => "orgs",
            Kind::Upstream => "upstreams",
            Kind::Price => "prices",
        }
    }

    /// `key` or `keys`, `team` or `teams`...
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.singular() == text || k.plural() == text)
    }

    pub fn field(self, name: &str) -> String {
        format!("{}:{name}", self.singular())
    }
}

/// File-wide settings (the `settings` field).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_cached_input: Option<bool>,
}

#[derive(Debug, Error, PartialEq)]
pub enum StoreError {
    #[error("field {field:?}: {message}")]
    Field { field: String, message: String },
    #[error("{kind} {name:?}: {message}")]
    Entity {
        kind: &'static str,
        name: String,
        message: String,
    },
}

/// The entity of `kind` named `name`, as JSON (a key with its digest only).
pub fn entity(file: &KeysFile, kind: Kind, name: &str) -> Option<Value> {
    let value = match kind {
        Kind::Key => serde_json::to_value(file.keys.iter().find(|k| k.name == name)?),
        Kind::Team => serde_json::to_value(file.team(name)?),
        Kind::Org => serde_json::to_value(file.org(name)?),
        Kind::Upstream => serde_json::to_value(file.upstream(name)?),
        Kind::Price => serde_json::to_value(file.prices.get(name)?),
    };
    value.ok()
}

/// The names of every entity of `kind`, in order.
pub fn names(file: &KeysFile, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Key => file.keys.iter().map(|k| k.name.clone()).collect(),
        Kind::Team => file.teams.iter().map(|t| t.name.clone()).collect(),
        Kind::Org => file.orgs.iter().map(|o| o.name.clone()).collect(),
        Kind::Upstream => file.upstreams.iter().map(|u| u.name.clone()).collect(),
        Kind::Price => file.prices.keys().cloned().collect(),
    }
}

/// Replace (or add) the entity of `kind` named `name` with `value`. Its name is the one given;
/// a plaintext `key` is replaced by its digest. The file is not validated here.
pub fn put(
    file: &mut KeysFile,
    kind: Kind,
    name: &str,
    mut value: Value,
) -> Result<(), StoreError> {
    let invalid = |message: String| StoreError::Entity {
        kind: kind.singular(),
        name: name.to_string(),
        message,
    };
    let object = value
        .as_object_mut()
        .ok_or_else(|| invalid("must be a JSON object".into()))?;
    if kind != Kind::Price {
        object.insert("name".into(), Value::String(name.to_string()));
    }
    fn upsert<T>(list: &mut Vec<T>, entry: T, name: &str, of: impl Fn(&T) -> &str) {
        match list.iter_mut().find(|e| of(e) == name) {
            Some(slot) => *slot = entry,
            None => list.push(entry),
        }
    }
    let parse_error = |e: serde_json::Error| invalid(e.to_string());
    match kind {
        Kind::Key => {
            let mut entry: KeyEntry = serde_json::from_value(value).map_err(parse_error)?;
            hash_secret(&mut entry).map_err(|e| invalid(e.to_string()))?;
            upsert(&mut file.keys, entry, name, |k| &k.name);
        }
        Kind::Team => {
            let entry: TeamEntry = serde_json::from_value(value).map_err(parse_error)?;
            upsert(&mut file.teams, entry, name, |t| &t.name);
        }
        Kind::Org => {
            let entry: OrgEntry = serde_json::from_value(value).map_err(parse_error)?;
            upsert(&mut file.orgs, entry, name, |o| &o.name);
        }
        Kind::Upstream => {
            let entry: UpstreamEntry = serde_json::from_value(value).map_err(parse_error)?;
            upsert(&mut file.upstreams, entry, name, |u| &u.name);
        }
        Kind::Price => {
            let price: Price = serde_json::from_value(value).map_err(parse_error)?;
            file.prices.insert(name.to_string(), price);
        }
    }
    Ok(())
}

/// Remove the entity; whether it was there.
pub fn remove(file: &mut KeysFile, kind: Kind, name: &str) -> bool {
    fn drop_named<T>(list: &mut Vec<T>, name: &str, of: impl Fn(&T) -> &str) -> bool {
        let before = list.len();
        list.retain(|e| of(e) != name);
        list.len() != before
    }
    match kind {
        Kind::Key => drop_named(&mut file.keys, name, |k| &k.name),
        Kind::Team => drop_named(&mut file.teams, name, |t| &t.name),
        Kind::Org => drop_named(&mut file.orgs, name, |o| &o.name),
        Kind::Upstream => drop_named(&mut file.upstreams, name, |u| &u.name),
        Kind::Price => file.prices.remove(name).is_some(),
    }
}

/// A JSON merge patch (RFC 7396): objects merge, `null` removes a member, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(members) = target {
        for (name, change) in changes {
            if change.is_null() {
                members.remove(name);
            } else {
                merge_patch(members.entry(name.clone()).or_insert(Value::Null), change);
            }
        }
    }
}

/// Store a key by its digest only: a plaintext `key` becomes `key_sha256`.
fn hash_secret(entry: &mut KeyEntry) -> Result<(), crate::EntryError> {
    let digest = entry.digest()?;
    entry.key = None;
    entry.key_sha256 = Some(digest.iter().map(|b| format!("{b:02x}")).collect());
    Ok(())
}

/// Every field of the hash that holds `file` (plaintext keys hashed; no `version`).
pub fn to_fields(file: &KeysFile) -> Result<Vec<(String, String)>, StoreError> {
    let mut fields = Vec::new();
    let mut push = |kind: Kind, name: &str, value: Result<String, serde_json::Error>| {
        let value = value.map_err(|e| StoreError::Field {
            field: kind.field(name),
            message: e.to_string(),
        })?;
        fields.push((kind.field(name), value));
        Ok::<(), StoreError>(())
    };
    for key in &file.keys {
        let mut stored = key.clone();
        hash_secret(&mut stored).map_err(|e| StoreError::Entity {
            kind: "key",
            name: key.name.clone(),
            message: e.to_string(),
        })?;
        push(Kind::Key, &key.name, serde_json::to_string(&stored))?;
    }
    for team in &file.teams {
        push(Kind::Team, &team.name, serde_json::to_string(team))?;
    }
    for org in &file.orgs {
        push(Kind::Org, &org.name, serde_json::to_string(org))?;
    }
    for upstream in &file.upstreams {
        push(
            Kind::Upstream,
            &upstream.name,
            serde_json::to_string(upstream),
        )?;
    }
    for (model, price) in &file.prices {
        push(Kind::Price, model, serde_json::to_string(price))?;
    }
    let settings = Settings {
        count_cached_input: file.count_cached_input,
    };
    fields.push((
        SETTINGS_FIELD.to_string(),
        serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into()),
    ));
    Ok(fields)
}

/// The policy a hash holds: its version (`None` when it has none) and the keys file. Fields
/// are taken in name order, so every node assembles the same file.
pub fn from_fields(
    fields: impl IntoIterator<Item = (String, String)>,
) -> Result<(Option<String>, KeysFile), StoreError> {
    let mut fields: Vec<(String, String)> = fields.into_iter().collect();
    fields.sort();
    let mut file = KeysFile::default();
    let mut version = None;
    for (field, text) in fields {
        let invalid = |message: String| StoreError::Field {
            field: field.clone(),
            message,
        };
        if field == VERSION_FIELD {
            version = Some(text);
            continue;
        }
        if field == SETTINGS_FIELD {
            let settings: Settings =
                serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            file.count_cached_input = settings.count_cached_input;
            continue;
        }
        let Some((kind, name)) = field
            .split_once(':')
            .and_then(|(kind, name)| Some((Kind::parse(kind)?, name)))
        else {
            return Err(invalid("not a policy field".into()));
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        put(&mut file, kind, name, value)?;
    }
    Ok((version, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeysFile {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("gateway")
            .join("keys.sample.toml");
        KeysFile::read(&path).unwrap()
    }

    #[test]
    fn a_file_survives_the_round_trip_without_its_secrets() {
        let file = sample();
        let fields = to_fields(&file).unwrap();
        assert!(
            fields.iter().all(|(_, v)| !v.contains("sk-llmrl")),
            "{fields:?}"
        );
        let mut shuffled = fields.clone();
        shuffled.reverse();
        shuffled.push((VERSION_FIELD.into(), "7".into()));
        let (version, back) = from_fields(shuffled).unwrap();
        assert_eq!(version.as_deref(), Some("7"));
        back.validate().unwrap();
        assert_eq!(back.keys.len(), file.keys.len());
        assert_eq!(
            back.find("sk-llmrl-demo").map(|k| k.name.as_str()),
            Some("demo")
        );
        for key in &file.keys {
            let stored = back.keys.iter().find(|k| k.name == key.name).unwrap();
            assert_eq!(stored.digest(), key.digest());
            assert_eq!(stored.limit_fields(), key.limit_fields());
            assert_eq!(stored.models.len(), key.models.len());
            for model in ["gpt-4o", "m"] {
                assert_eq!(
                    file.plan(key, model).unwrap(),
                    back.plan(stored, model).unwrap(),
                    "the same scopes and Redis keys"
                );
            }
        }
        assert_eq!(back.prices, file.prices);
        let mut again = to_fields(&back).unwrap();
        let mut first = fields;
        again.sort();
        first.sort();
        assert_eq!(again, first, "stable");
    }

    #[test]
    fn edits_replace_merge_and_remove_one_entity() {
        let mut file = sample();
        let mut team = entity(&file, Kind::Team, "ml-research").unwrap();
        merge_patch(&mut team, &serde_json::json!({"rpm": 7, "day_reset": null}));
        put(&mut file, Kind::Team, "ml-research", team).unwrap();
        let edited = file.team("ml-research").unwrap();
        assert_eq!(edited.rpm, 7);
        assert_eq!(edited.day_reset, None);
        assert_eq!(edited.tpd, 2_000_000, "the rest kept");
        put(
            &mut file,
            Kind::Key,
            "new",
            serde_json::json!({"key": "sk-new", "rpm": 1, "name": "ignored"}),
        )
        .unwrap();
        let added = file.find("sk-new").unwrap();
        assert_eq!(added.name, "new");
        assert_eq!(added.key, None, "hashed");
        assert!(put(&mut file, Kind::Key, "bad", serde_json::json!({"rpn": 1})).is_err());
        assert!(put(&mut file, Kind::Team, "x", serde_json::json!(3)).is_err());
        assert!(remove(&mut file, Kind::Key, "new"));
        assert!(!remove(&mut file, Kind::Key, "new"));
        assert!(file.find("sk-new").is_none());
        assert!(remove(&mut file, Kind::Price, "*"));
        assert_eq!(Kind::parse("orgs"), Some(Kind::Org));
        assert_eq!(Kind::parse("pool"), None);
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = from_fields([("team:x".to_string(), "{\"rpm\": -1}".to_string())]);
        assert!(matches!(bad, Err(StoreError::Entity { .. })), "{bad:?}");
        let unknown = from_fields([("color:x".to_string(), "{}".to_string())]);
        assert!(matches!(unknown, Err(StoreError::Field { .. })));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = serde_json::json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(
            &mut doc,
            &serde_json::json!({"a": "z", "c": {"f": null}, "n": [1]}),
        );
        assert_eq!(
            doc,
            serde_json::json!({"a": "z", "c": {"d": "e"}, "n": [1]})
        );
    }
}
