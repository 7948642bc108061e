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
/// The first pause before sending again a call the cluster could not serve yet (TRYAGAIN,
/// CLUSTERDOWN, a slot with no connected primary); each further one is twice as long.
const PAUSE_BEFORE_RESENDING: Duration = Duration::from_millis(5);

/// Where a call goes.
#[derive(Debug, Clone, PartialEq)]
enum Destination<'a> {
    /// The client's own choice: the one Redis, or in a cluster a node picked by the command.
    Default,
    /// The primary that serves this key's slot, as the cluster client's slot map says.
    SlotOf(&'a str),
    /// The node a cluster redirected the call to; after `ASK` the call is preceded by
    /// `ASKING`, since the slot is still being imported there.
    Node {
        host: String,
        port: u16,
        asking: bool,
    },
}

/// Where to send a failed call again and after what pause, or `None` when it must not be sent
/// again. Only errors a cluster answers before running a command qualify — a redirection
/// (`MOVED`, `ASK`), a slot not ready (`TRYAGAIN`, `CLUSTERDOWN`), or a node the client could
/// not reach at all — so that a call sent again can never count twice. An error after the call
/// may have run (a dropped connection, a timeout) is never sent again: a second MCHECK would
/// reserve twice, a second MSETTLE refund twice.
fn resend<'a>(
    error: &redis::RedisError,
    first: &Destination<'a>,
    last: &Destination<'a>,
) -> Option<(Destination<'a>, Duration)> {
    let redirected_to = |asking| {
        let (address, _slot) = error.redirect_node()?;
        let (host, port) = address.rsplit_once(':')?;
        Some(Destination::Node {
            host: host.to_string(),
            port: port.parse().ok()?,
            asking,
        })
    };
    let again = Some((first.clone(), PAUSE_BEFORE_RESENDING));
    match error.kind() {
        kind @ (ErrorKind::Moved | ErrorKind::Ask) => redirected_to(kind == ErrorKind::Ask)
            .map(|node| (node, Duration::ZERO))
            .or(again),
        ErrorKind::TryAgain | ErrorKind::ClusterDown | ErrorKind::ClusterConnectionNotFound => {
            again
        }
        // The client holds no connection to the node it was redirected to (a node new to its
        // slot map): the call did not leave, so it goes by the slot map again.
        ErrorKind::ClientError if matches!(last, Destination::Node { .. }) => again,
        _ if error.is_connection_refusal() => again,
        _ => None,
    }
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
                    // Redirections are followed by `query_routed`, which never resends a call
                    // that may have run.
                    .retries(0)
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
    /// The cluster client sends nothing again by itself (`retries(0)`): it would also resend
    /// after a dropped connection or a timeout, when the call may have run. The gateway follows
    /// redirections here instead (see [`resend`]), a few times, within the same timeout.
    pub async fn query_routed(&self, cmd: &Cmd, key: Option<&str>) -> Result<Value, LimiterError> {
        let first = key.map_or(Destination::Default, Destination::SlotOf);
        let call = async {
            let mut destination = first.clone();
            let mut resent = 0;
            loop {
                let error = match self.query_once(cmd, &destination).await {
                    Ok(value) => return Ok(value),
                    Err(error) => error,
                };
                // A single Redis answers none of these but a refused connection: down, not
                // moving, so the 503 (or failing open) comes at once.
                match resend(&error, &first, &destination).filter(|_| self.is_cluster()) {
                    Some((next, pause)) if resent < REDIRECTED_CALLS_RESENT => {
                        // Doubling pauses (5, 10, 20, 40 ms): a slot map refreshing after a
                        // failover gets time, a moving slot a quick answer.
                        if !pause.is_zero() {
                            tokio::time::sleep(pause.saturating_mul(1 << resent)).await;
                        }
                        resent += 1;
                        destination = next;
                    }
                    _ => return Err(LimiterError::from(error)),
                }
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| LimiterError::Timeout(self.timeout))?
    }

    async fn query_once(
        &self,
        cmd: &Cmd,
        destination: &Destination<'_>,
    ) -> redis::RedisResult<Value> {
        let value = match (self.connection().await?, destination) {
            (Connection::Single(mut c), _) => cmd.query_async(&mut c).await,
            (Connection::Cluster(mut c), Destination::Default) => cmd.query_async(&mut c).await,
            (Connection::Cluster(mut c), Destination::SlotOf(key)) => {
                let route = Route::new(llmrl_keys::key_slot(key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                c.route_command(cmd, routing).await
            }
            (Connection::Cluster(mut c), Destination::Node { host, port, asking }) => {
                let node = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                };
                if *asking {
                    let mut pipeline = redis::pipe();
                    pipeline.cmd("ASKING").add_command(cmd.clone());
                    let mut replies = c.route_pipeline(&pipeline, 1, 1, node).await?;
                    Ok(replies.pop().unwrap_or(Value::Nil))
                } else {
                    c.route_command(cmd, RoutingInfo::SingleNode(node)).await
                }
            }
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
        let redirected =
            |kind, detail: &str| redis::RedisError::from((kind, "redirected", detail.to_string()));
        let first = Destination::SlotOf("llmrl:{t}:k");
        let node = |port, asking| Destination::Node {
            host: "127.0.0.1".to_string(),
            port,
            asking,
        };
        // Redirections go straight to the node named, ASK with ASKING before the call.
        for (kind, address, port, asking) in [
            (ErrorKind::Moved, "4232 127.0.0.1:7001", 7001, false),
            (ErrorKind::Ask, "4232 127.0.0.1:7002", 7002, true),
        ] {
            assert_eq!(
                resend(&redirected(kind, address), &first, &first),
                Some((node(port, asking), Duration::ZERO)),
                "{kind:?}"
            );
        }
        // A redirection without a readable node, or a slot not ready: by the slot map, later.
        let again = Some((first.clone(), PAUSE_BEFORE_RESENDING));
        assert_eq!(
            resend(&redirected(ErrorKind::Moved, "4232"), &first, &first),
            again
        );
        for kind in [
            ErrorKind::TryAgain,
            ErrorKind::ClusterDown,
            ErrorKind::ClusterConnectionNotFound,
        ] {
            assert_eq!(
                resend(&error(kind, "not ready"), &first, &first),
                again,
                "{kind:?}"
            );
        }
        let refused =
            redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(resend(&refused, &first, &node(7001, false)), again);
        // No connection to the node redirected to: the call never left.
        let unknown_node = error(ErrorKind::ClientError, "Requested connection not found");
        assert_eq!(resend(&unknown_node, &first, &node(7001, false)), again);
        assert_eq!(resend(&unknown_node, &first, &first), None);
        // These may come after the command ran (or say it failed): never sent again.
        for io in [
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            let dropped = redis::RedisError::from(std::io::Error::from(io));
            assert_eq!(resend(&dropped, &first, &first), None, "{io:?}");
        }
        for kind in [
            ErrorKind::ResponseError,
            ErrorKind::ParseError,
            ErrorKind::ReadOnly,
        ] {
            assert_eq!(
                resend(&error(kind, "other"), &first, &first),
                None,
                "{kind:?}"
            );
        }
    }
}
