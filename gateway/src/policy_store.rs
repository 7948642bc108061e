//! The policy stored in Redis, shared by every node (`--policies redis`): one hash (see
//! `llmrl_keys::store` for its fields), read whole, watched through its `version` field, and
//! changed only by one script that checks the version it was prepared against — two admins
//! editing at once never lose each other's change.

use crate::limiter::{Limiter, LimiterError};
use crate::policy::{KeyStore, KeysError};
use llmrl_keys::store::{from_fields, to_fields, VERSION_FIELD};
use llmrl_keys::KeysFile;
use redis::Value;
use std::time::Duration;
use thiserror::Error;

/// Check the version, apply the changes (an empty value deletes a field; `replace` first
/// empties the hash), and move the version forward: to the server's time in microseconds, or
/// one past the old version if that is later — so a version is never reused, even after Redis
/// lost the hash and it was imported again, and a node never mistakes new content for old.
const WRITE_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] ~= '*' and (current or '') ~= ARGV[2] then
  return redis.error_reply('CONFLICT the policy changed since it was read')
end
if ARGV[3] == 'replace' then redis.call('DEL', KEYS[1]) end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local version = math.max(now, (tonumber(current) or 0) + 1)
version = string.format('%d', version)
redis.call('HSET', KEYS[1], ARGV[1], version)
return version
";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Redis(#[from] LimiterError),
    #[error("no policy is stored at {0:?} in Redis; import one with `llmrl-gateway admin import <keys file>`")]
    Missing(String),
    #[error("the stored policy is invalid: {0}")]
    Invalid(String),
    /// A policy to be written (an import) does not hold together; nothing was written.
    #[error("the policy is invalid, nothing was written: {0}")]
    Refused(String),
    #[error("the policy changed while this change was being made; try again")]
    Conflict,
    #[error("unexpected reply from Redis: {0}")]
    Reply(String),
}

impl From<KeysError> for StoreError {
    fn from(error: KeysError) -> StoreError {
        StoreError::Invalid(error.to_string())
    }
}

/// The version a change was prepared against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this one (`None`: no policy stored yet).
    Version(Option<String>),
    /// Whatever is there (an import replacing everything).
    Any,
}

pub struct PolicyStore {
    redis: Limiter,
    key: String,
}

impl PolicyStore {
    pub fn new(redis_url: &str, cluster: &[String], key: &str) -> Result<PolicyStore, StoreError> {
        Ok(PolicyStore {
            redis: Limiter::new(redis_url, cluster, Duration::from_secs(2))?,
            key: key.to_string(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The stored version (`None`: nothing stored).
    pub async fn version(&self) -> Result<Option<String>, StoreError> {
        let cmd = redis::cmd("HGET").arg(&self.key).arg(VERSION_FIELD).clone();
        match self.redis.query_routed(&cmd, Some(&self.key)).await? {
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            other => Err(StoreError::Reply(format!("{other:?}"))),
        }
    }

    /// The stored policy as a keys file, with its version.
    pub async fn load_file(&self) -> Result<(Option<String>, KeysFile), StoreError> {
        let cmd = redis::cmd("HGETALL").arg(&self.key).clone();
        let reply = self.redis.query_routed(&cmd, Some(&self.key)).await?;
        let fields: Vec<(String, String)> =
            redis::from_redis_value(&reply).map_err(|e| StoreError::Reply(e.to_string()))?;
        if fields.is_empty() {
            return Err(StoreError::Missing(self.key.clone()));
        }
        from_fields(fields).map_err(|e| StoreError::Invalid(e.to_string()))
    }

    /// The stored policy, checked and planned.
    pub async fn load(&self) -> Result<KeyStore, StoreError> {
        let (version, file) = self.load_file().await?;
        Ok(KeyStore::from_file(file, version)?)
    }

    /// Apply `changes` (field, new value or `None` to delete) if the version is as expected;
    /// `replace`: the changes are the whole policy. The new version.
    pub async fn write(
        &self,
        expect: &Expect,
        replace: bool,
        changes: &[(String, Option<String>)],
    ) -> Result<String, StoreError> {
        let expected = match expect {
            Expect::Any => "*".to_string(),
            Expect::Version(version) => version.clone().unwrap_or_default(),
        };
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(WRITE_SCRIPT)
            .arg(1)
            .arg(&self.key)
            .arg(VERSION_FIELD)
            .arg(expected)
            .arg(if replace { "replace" } else { "patch" });
        for (field, value) in changes {
            cmd.arg(field).arg(value.as_deref().unwrap_or(""));
        }
        match self.redis.query_routed(&cmd, Some(&self.key)).await {
            Ok(Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(other) => Err(StoreError::Reply(format!("{other:?}"))),
            Err(LimiterError::Redis(error)) if error.code() == Some("CONFLICT") => {
                Err(StoreError::Conflict)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Replace the whole stored policy with `file` (checked first; API keys stored as digests).
    pub async fn import(&self, file: KeysFile) -> Result<String, StoreError> {
        let fields = to_fields(&file).map_err(|e| StoreError::Refused(e.to_string()))?;
        KeyStore::from_file(file, None).map_err(|e| StoreError::Refused(e.to_string()))?;
        let changes: Vec<(String, Option<String>)> =
            fields.into_iter().map(|(f, v)| (f, Some(v))).collect();
        self.write(&Expect::Any, true, &changes).await
    }
}
