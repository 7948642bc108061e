//! The gateway's side of the llmrl module: LLMRL.CHECK / SETTLE and MCHECK / MSETTLE over one
//! Redis or a Redis Cluster, each call bounded by a timeout, reconnecting by itself after an outage.

use llmrl_core::protocol::{
    Check, Field, MultiCheck, MultiCorrection, MultiVerdict, ReplyError, Settle, Verdict,
};
use llmrl_core::redis_client::{command, field, multi_verdict, verdict};
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::AsyncConnectionConfig;
use redis::{Cmd, ErrorKind, Value};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Mutex;

/// How many times a call that a cluster redirected (or asked to try again) is sent again.
const REDIRECTED_CALLS_RESENT: u32 = 4;

/// Errors a cluster answers before running the command: a slot that moved or is moving, or a
/// cluster not ready to serve it.
fn not_run(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Moved | ErrorKind::Ask | ErrorKind::TryAgain | ErrorKind::ClusterDown
    )
}

#[derive(Debug, Error)]
pub enum LimiterError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from LLMRL: {0}")]
    Reply(#[from] ReplyError),
}

enum Target {
    Single(redis::Client),
    Cluster(ClusterClient),
}

#[derive(Clone)]
enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

pub struct Limiter {
    target: Target,
    /// Established lazily, so the gateway starts (and answers 503 or fails open) while Redis is
    /// down; once made, the connection reconnects by itself. Requests read it without waiting
    /// on each other; only establishing it takes the async lock.
    connection: std::sync::RwLock<Option<Connection>>,
    connecting: Mutex<()>,
    timeout: Duration,
}

impl Limiter {
    pub fn new(
        redis_url: &str,
        cluster: &[String],
        timeout: Duration,
    ) -> Result<Limiter, LimiterError> {
        let target = if cluster.is_empty() {
            Target::Single(redis::Client::open(redis_url)?)
        } else {
            Target::Cluster(
                ClusterClient::builder(cluster.to_vec())
                    .connection_timeout(Duration::from_secs(1))
                    .response_timeout(timeout.max(Duration::from_millis(10)))
                    .retries(2)
                    .build()?,
            )
        };
        Ok(Limiter {
            target,
            connection: std::sync::RwLock::new(None),
            connecting: Mutex::new(()),
            timeout,
        })
    }

    fn established(&self) -> Option<Connection> {
        self.connection
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn connection(&self) -> redis::RedisResult<Connection> {
        if let Some(connection) = self.established() {
            return Ok(connection);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(connection) = self.established() {
            return Ok(connection);
        }
        let connection = match &self.target {
            Target::Single(client) => {
                let config =
                    AsyncConnectionConfig::new().set_connection_timeout(Duration::from_secs(1));
                Connection::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Target::Cluster(client) => Connection::Cluster(client.get_async_connection().await?),
        };
        *self
            .connection
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(connection.clone());
        Ok(connection)
    }

    async fn query(&self, cmd: &Cmd) -> Result<Value, LimiterError> {
        self.query_routed(cmd, None).await
    }

    /// A call; in a cluster, sent to the primary of `key`'s slot when given. The cluster client
    /// routes a command it does not know by its first argument, which for the multi-key
    /// commands is `numkeys` — every call would be redirected (`MOVED`), and the redirections
    /// make the client refresh its slot map again and again under load.
    ///
    /// While a slot moves, a call can meet more redirections than the cluster client's own
    /// retries follow (it counts MOVED and ASK as retries). A redirection means the command did
    /// not run, so sending it again cannot count anything twice: it is sent again, a few times,
    /// within the same timeout.
    pub async fn query_routed(&self, cmd: &Cmd, key: Option<&str>) -> Result<Value, LimiterError> {
        let call = async {
            let mut redirected = 0;
            loop {
                match self.query_once(cmd, key).await {
                    Err(error) if not_run(&error) && redirected < REDIRECTED_CALLS_RESENT => {
                        redirected += 1;
                        if error.kind() != ErrorKind::Moved && error.kind() != ErrorKind::Ask {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    result => break result.map_err(LimiterError::from),
                }
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| LimiterError::Timeout(self.timeout))?
    }

    async fn query_once(&self, cmd: &Cmd, key: Option<&str>) -> redis::RedisResult<Value> {
        let value = match (self.connection().await?, key) {
            (Connection::Single(mut c), _) => cmd.query_async(&mut c).await,
            (Connection::Cluster(mut c), Some(key)) => {
                let route = Route::new(llmrl_keys::key_slot(key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                c.route_command(cmd, routing).await
            }
            (Connection::Cluster(mut c), None) => cmd.query_async(&mut c).await,
        };
        value.inspect_err(|error| {
            // A dropped connection is replaced on the next call; the cluster client reconnects
            // by itself.
            if error.is_connection_dropped() || error.is_io_error() {
                self.forget_single_connection();
            }
        })
    }

    fn forget_single_connection(&self) {
        let mut slot = self
            .connection
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if matches!(*slot, Some(Connection::Single(_))) {
            *slot = None;
        }
    }

    /// One LLMRL.CHECK.
    pub async fn check(&self, check: &Check<'_>) -> Result<Verdict, LimiterError> {
        let reply = self.query(&command(Check::NAME, check.args())).await?;
        Ok(verdict(&reply)?)
    }

    /// One LLMRL.SETTLE (never retried: a retry could correct twice).
    pub async fn settle(&self, settle: &Settle<'_>) -> Result<Verdict, LimiterError> {
        let reply = self.query(&command(Settle::NAME, settle.args())).await?;
        Ok(verdict(&reply)?)
    }

    /// Whether this is a Redis Cluster (a call's keys must then share one slot).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// One LLMRL.MCANCEL: undo an admission (the compensation when a later slot refuses).
    pub async fn mcancel(&self, correction: &MultiCorrection<'_>) -> Result<(), LimiterError> {
        let cmd = command(MultiCorrection::CANCEL, correction.cancel_args());
        self.correct(cmd, correction).await
    }

    /// One LLMRL.MCHECK.
    pub async fn mcheck(&self, check: &MultiCheck<'_>) -> Result<MultiVerdict, LimiterError> {
        self.multi_check(MultiCheck::NAME, check).await
    }

    /// One LLMRL.MSETTLE (never retried, like SETTLE).
    pub async fn msettle(&self, correction: &MultiCorrection<'_>) -> Result<(), LimiterError> {
        let cmd = command(MultiCorrection::SETTLE, correction.settle_args());
        self.correct(cmd, correction).await
    }

    /// MSETTLE or MCANCEL, routed by the correction's first key.
    async fn correct(
        &self,
        cmd: Cmd,
        correction: &MultiCorrection<'_>,
    ) -> Result<(), LimiterError> {
        let key = correction.keys.first().copied();
        self.query_routed(&cmd, key).await.map(|_| ())
    }

    /// MCHECK or MPEEK (`name`), routed by the first scope's key.
    async fn multi_check(
        &self,
        name: &str,
        check: &MultiCheck<'_>,
    ) -> Result<MultiVerdict, LimiterError> {
        let key = check.scopes.first().map(|scope| scope.key);
        let reply = self.query_routed(&command(name, check.args()), key).await?;
        Ok(multi_verdict(&reply)?)
    }

    /// One LLMRL.PEEK: CHECK's decision, recording nothing.
    pub async fn peek(&self, check: &Check<'_>) -> Result<Verdict, LimiterError> {
        let reply = self
            .query_routed(&command("LLMRL.PEEK", check.args()), Some(check.key))
            .await?;
        Ok(verdict(&reply)?)
    }

    /// One LLMRL.MPEEK: MCHECK's decision, recording nothing.
    pub async fn mpeek(&self, check: &MultiCheck<'_>) -> Result<MultiVerdict, LimiterError> {
        self.multi_check(MultiCheck::PEEK, check).await
    }

    /// Delete one key (a scope's usage).
    pub async fn delete(&self, key: &str) -> Result<bool, LimiterError> {
        let reply = self
            .query_routed(redis::cmd("DEL").arg(key), Some(key))
            .await?;
        Ok(matches!(reply, Value::Int(n) if n > 0))
    }

    /// The llmrl module's version as `MODULE LIST` reports it (in a cluster, on the node the
    /// client asks); `None` when no module of that name is loaded.
    pub async fn module_version(&self) -> Result<Option<i64>, LimiterError> {
        let reply = self.query(redis::cmd("MODULE").arg("LIST")).await?;
        Ok(module_version_in(&reply))
    }

    pub async fn ping(&self) -> bool {
        matches!(
            self.query(&redis::cmd("PING")).await,
            Ok(Value::SimpleString(_)) | Ok(Value::Okay)
        )
    }
}

/// The `ver` of the module named `llmrl` in a `MODULE LIST` reply: a list of modules, each a
/// flat name/value list (RESP2) or a map (RESP3).
fn module_version_in(reply: &Value) -> Option<i64> {
    let Value::Array(modules) = reply else {
        return None;
    };
    modules.iter().find_map(|module| {
        let pairs: Vec<(&Value, &Value)> = match module {
            Value::Array(fields) => fields
                .chunks_exact(2)
                .filter_map(|pair| Some((pair.first()?, pair.get(1)?)))
                .collect(),
            Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
            _ => return None,
        };
        let get = |name: &[u8]| {
            pairs
                .iter()
                .find(|(key, _)| field(key) == Field::Text(name))
                .map(|(_, value)| field(value))
        };
        if get(b"name")? != Field::Text(b"llmrl") {
            return None;
        }
        match get(b"ver")? {
            Field::Int(version) => Some(version),
            Field::Text(text) => std::str::from_utf8(text).ok()?.parse().ok(),
            Field::Other => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn the_module_version_is_read_from_either_protocol() {
        let other = Value::Array(vec![bulk("name"), bulk("bf"), bulk("ver"), Value::Int(9)]);
        let resp2 = Value::Array(vec![
            other.clone(),
            Value::Array(vec![
                bulk("name"),
                bulk("llmrl"),
                bulk("ver"),
                Value::Int(2),
                bulk("path"),
                bulk("/x/libllmrl.so"),
            ]),
        ]);
        assert_eq!(module_version_in(&resp2), Some(2));
        let resp3 = Value::Array(vec![Value::Map(vec![
            (Value::SimpleString("name".into()), bulk("llmrl")),
            (Value::SimpleString("ver".into()), Value::Int(1)),
        ])]);
        assert_eq!(module_version_in(&resp3), Some(1));
        assert_eq!(module_version_in(&Value::Array(vec![other])), None);
        assert_eq!(module_version_in(&Value::Array(Vec::new())), None);
        assert_eq!(module_version_in(&Value::Nil), None);
    }

    #[test]
    fn only_errors_a_cluster_answers_before_running_a_command_are_sent_again() {
        let error = |kind, text: &'static str| redis::RedisError::from((kind, text));
        for kind in [
            ErrorKind::Moved,
            ErrorKind::Ask,
            ErrorKind::TryAgain,
            ErrorKind::ClusterDown,
        ] {
            assert!(not_run(&error(kind, "redirected")), "{kind:?}");
        }
        // These may come after the command ran (or say it failed): never sent again.
        for kind in [
            ErrorKind::IoError,
            ErrorKind::ResponseError,
            ErrorKind::ParseError,
            ErrorKind::ReadOnly,
        ] {
            assert!(!not_run(&error(kind, "other")), "{kind:?}");
        }
    }
}
