//! The command line; every flag can also come from the environment.

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailureMode {
    /// Answer 503 while the limiter is unreachable (nothing unlimited gets through).
    Closed,
    /// Serve without limits while the limiter is unreachable (counted in metrics).
    Open,
}

/// Where the keys and their limits come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PolicySource {
    /// The keys file (--keys-file), reloaded on SIGHUP.
    File,
    /// Redis (the hash --policy-key), shared by every node; changes reach each node within
    /// --policy-poll-ms. Load it with `llmrl-gateway admin import <keys file>`.
    Redis,
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
        default_value = "redis://127.0.0.1:6379/",
        global = true
    )]
    pub redis_url: String,

    /// Redis Cluster seed nodes (comma separated URLs); when set, --redis-url is ignored.
    #[arg(
        long,
        env = "LLMRL_REDIS_CLUSTER",
        value_delimiter = ',',
        global = true
    )]
    pub redis_cluster: Vec<String>,

    /// Where keys and limits come from: the keys file, or Redis (shared by every node).
    #[arg(long, env = "LLMRL_POLICIES", value_enum, default_value = "file")]
    pub policies: PolicySource,

    /// The Redis hash holding the policy (--policies redis, and the admin commands).
    #[arg(
        long,
        env = "LLMRL_POLICY_KEY",
        default_value = "llmrl:policy",
        global = true
    )]
    pub policy_key: String,

    /// How often each node checks the stored policy's version, in ms (--policies redis).
    #[arg(long, env = "LLMRL_POLICY_POLL_MS", default_value_t = 250)]
    pub policy_poll_ms: u64,

    /// The admin API and dashboard's address. Default: 127.0.0.1, the API's port + 1000. Only
    /// served when an admin token is set.
    #[arg(long, env = "LLMRL_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// The admin API's bearer token (prefer the environment variable: arguments show in `ps`).
    /// Without one there is no admin listener.
    #[arg(long, env = "LLMRL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    #[command(subcommand)]
    pub command: Option<crate::admin::cli::Command>,

    /// API keys and their limits (TOML, or JSON when the name ends in .json). Reloaded on SIGHUP.
    #[arg(long, env = "LLMRL_KEYS_FILE", default_value = "keys.toml")]
    pub keys_file: PathBuf,

    /// Proxy admitted requests to this OpenAI-compatible server (e.g. https://api.openai.com)
    /// instead of answering with the built-in mock. Its API key is read from the environment
    /// variable LLMRL_UPSTREAM_API_KEY.
    #[arg(long, env = "LLMRL_UPSTREAM")]
    pub upstream: Option<String>,

    /// Proxy admitted Anthropic Messages requests (/v1/messages) to this Anthropic API server
    /// (e.g. https://api.anthropic.com) instead of the built-in mock. Its API key is read from
    /// the environment variable LLMRL_ANTHROPIC_API_KEY.
    #[arg(long, env = "LLMRL_ANTHROPIC_UPSTREAM")]
    pub anthropic_upstream: Option<String>,

    /// Upstream request timeout, in ms.
    #[arg(long, env = "LLMRL_UPSTREAM_TIMEOUT_MS", default_value_t = 600_000)]
    pub upstream_timeout_ms: u64,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "LLMRL_BODY_LIMIT", default_value_t = 1 << 20)]
    pub body_limit: usize,

    /// Time allowed to receive a request's headers and body, in ms (slow clients get 408).
    #[arg(long, env = "LLMRL_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub read_timeout_ms: u64,

    /// Timeout of each Redis call, in ms; past it the limiter counts as unavailable. The
    /// default is about 40 x the p99.9 round trip `make bench` measures at full load on 2
    /// cores: a busy machine never trips it, and an outage still answers within a quarter second.
    #[arg(long, env = "LLMRL_REDIS_TIMEOUT_MS", default_value_t = 250)]
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

    /// How long a concurrency slot (`max_parallel_requests`) is held at most, in ms: a gateway
    /// that dies mid-request leaks its slots for no longer than this. Default: the upstream
    /// timeout plus 30 s.
    #[arg(long, env = "LLMRL_SLOT_LEASE_MS")]
    pub slot_lease_ms: Option<u64>,

    /// How long a graceful shutdown waits for requests in flight, in ms.
    #[arg(long, env = "LLMRL_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// Let browsers on these origins call the gateway (comma separated, `*` for any): CORS
    /// preflights (OPTIONS) are answered and answers carry Access-Control-Allow-Origin. Off by
    /// default.
    #[arg(long, env = "LLMRL_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,

    /// Benchmarks only: skip the limiter entirely (no Redis calls, no rate-limit headers).
    #[arg(long, env = "LLMRL_NO_LIMITER")]
    pub no_limiter: bool,
}

impl Cli {
    /// The lease of a concurrency slot (see `slot_lease_ms`).
    pub fn slot_lease_ms(&self) -> u64 {
        self.slot_lease_ms
            .unwrap_or(self.upstream_timeout_ms.saturating_add(30_000))
            .max(1)
    }

    /// Where the admin listener goes (see `admin_listen`).
    pub fn admin_address(&self) -> SocketAddr {
        self.admin_listen.unwrap_or_else(|| {
            let port = self.listen.port().saturating_add(1000);
            SocketAddr::from(([127, 0, 0, 1], port))
        })
    }

    pub fn node_id(&self) -> String {
        self.node_id
            .clone()
            .unwrap_or_else(|| format!("gw-{}", self.listen.port()))
    }
}
