//! The gateway's side of the llmrl module: LLMRL.CHECK / LLMRL.SETTLE over one Redis or a Redis
//! Cluster, each call bounded by a timeout, reconnecting by itself after an outage.

use crate::config::Limits;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::AsyncConnectionConfig;
use redis::{Cmd, Value};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Mutex;

#[derive(Debug, Error)]
pub enum LimiterError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from LLMRL: {0}")]
    Reply(String),
}

/// LLMRL.CHECK's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub reason: String,
    pub retry_after_ms: i64,
    /// Requests, input tokens, output tokens; -1 for unlimited.
    pub remaining: [i64; 3],
    pub reset_ms: [i64; 3],
    pub ticket: i64,
}

impl Verdict {
    fn from_value(value: Value) -> Result<Verdict, LimiterError> {
        let Value::Array(items) = value else {
            return Err(LimiterError::Reply(format!("{value:?}")));
        };
        let int = |i: usize| match items.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            other => Err(LimiterError::Reply(format!("field {i}: {other:?}"))),
        };
        let reason = match items.get(1) {
            Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            other => return Err(LimiterError::Reply(format!("reason: {other:?}"))),
        };
        Ok(Verdict {
            allowed: int(0)? == 1,
            reason,
            retry_after_ms: int(2)?,
            remaining: [int(3)?, int(4)?, int(5)?],
            reset_ms: [int(6)?, int(7)?, int(8)?],
            ticket: int(9)?,
        })
    }
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

    async fn connection(&self) -> Result<Connection, LimiterError> {
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
        let call = async {
            let value = match self.connection().await? {
                Connection::Single(mut c) => cmd.query_async(&mut c).await,
                Connection::Cluster(mut c) => cmd.query_async(&mut c).await,
            };
            value.map_err(|error| {
                // A dropped connection is replaced on the next call; the cluster client
                // reconnects by itself.
                if error.is_connection_dropped() || error.is_io_error() {
                    self.forget_single_connection();
                }
                LimiterError::from(error)
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| LimiterError::Timeout(self.timeout))?
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

    pub async fn check(
        &self,
        key: &str,
        limits: Limits,
        input_tokens: u64,
        output_tokens: u64,
        window_ms: u64,
    ) -> Result<Verdict, LimiterError> {
        let mut cmd = redis::cmd("LLMRL.CHECK");
        cmd.arg(key)
            .arg(limits.rpm)
            .arg(limits.itpm)
            .arg(limits.otpm)
            .arg(input_tokens)
            .arg(output_tokens)
            .arg("WINDOW")
            .arg(window_ms);
        Verdict::from_value(self.query(&cmd).await?)
    }

    pub async fn settle(
        &self,
        key: &str,
        ticket: i64,
        input: (u64, u64),
        output: (u64, u64),
    ) -> Result<(), LimiterError> {
        let mut cmd = redis::cmd("LLMRL.SETTLE");
        cmd.arg(key)
            .arg(ticket)
            .arg(input.0)
            .arg(input.1)
            .arg(output.0)
            .arg(output.1);
        Verdict::from_value(self.query(&cmd).await?).map(|_| ())
    }

    pub async fn ping(&self) -> bool {
        matches!(
            self.query(&redis::cmd("PING")).await,
            Ok(Value::SimpleString(_)) | Ok(Value::Okay)
        )
    }
}
