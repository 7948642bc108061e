//! llmrl-gateway: an OpenAI-compatible HTTP gateway that enforces per-key RPM/ITPM/OTPM limits
//! with one atomic LLMRL.CHECK per request, shared by every node through Redis.
//!
//! The rooms, in the order a request meets them: `router` (routes, methods, CORS, metrics),
//! `pipeline` (the stages of a limited request, in order), `auth` and `policy` (who is asking,
//! which limits apply), `dialect` (the API's wire format: parsing, errors, headers, usage),
//! `counting` over `tokens` (input tokens, off the async workers when large), `admission` (check
//! and settle, over `limiter`), `answer` (the mock, or a proxy to the `upstream`). `info` serves
//! models, health and metrics; `http` is body and response plumbing; `app` is the shared state.
//! Arrows run one way: nothing imports `router` or `pipeline`, and the leaves (`error`,
//! `tokens`, `limiter`, `upstream`, `metrics`, `policy`) import no room above them.

mod admin;
mod admission;
mod answer;
mod app;
mod auth;
mod config;
mod counting;
mod decision;
mod dialect;
mod error;
mod http;
mod info;
mod limiter;
mod metrics;
mod pipeline;
mod policy;
mod policy_store;
mod router;
mod throttle;
mod tokens;
mod upstream;
mod usage;

use app::App;
use clap::Parser;
use config::{Cli, PolicySource};
use http::cors::Cors;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use policy::KeyStore;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

// Every request allocates many small short-lived objects (JSON, headers); mimalloc handles that
// pattern markedly better than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LLMRL_LOG")
                // The Redis client warns on every reconnection attempt: thousands of lines a
                // second in an outage, which the gateway's own throttled warnings cover.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,redis=error")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    if let Some(command) = cli.command.clone() {
        return admin::cli::run(&cli, command).await;
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::from(2)
        }
    }
}

/// The stored policy at startup: Redis gets a few seconds to come up; a missing or invalid
/// policy is an error (a node with no keys would refuse everyone).
async fn first_policy(store: &policy_store::PolicyStore) -> Result<KeyStore, String> {
    let mut attempts = 0;
    loop {
        match store.load().await {
            Ok(keys) => return Ok(keys),
            Err(policy_store::StoreError::Redis(error)) if attempts < 20 => {
                attempts += 1;
                tracing::warn!(%error, "cannot read the policy from Redis yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let (keys, policy_store) = match cli.policies {
        PolicySource::File => (
            KeyStore::load(&cli.keys_file).map_err(|e| e.to_string())?,
            None,
        ),
        PolicySource::Redis => {
            let store =
                policy_store::PolicyStore::new(&cli.redis_url, &cli.redis_cluster, &cli.policy_key)
                    .map_err(|e| e.to_string())?;
            (first_policy(&store).await?, Some(Arc::new(store)))
        }
    };
    let limiter = if cli.no_limiter {
        tracing::warn!("--no-limiter: requests are NOT rate limited (benchmarking mode)");
        None
    } else {
        let timeout = Duration::from_millis(cli.redis_timeout_ms);
        Some(
            limiter::Limiter::new(&cli.redis_url, &cli.redis_cluster, timeout)
                .map_err(|e| e.to_string())?,
        )
    };
    let upstream = |url: &Option<String>, key_variable: &str, auth| match url {
        None => Ok(None),
        Some(url) => {
            let api_key = std::env::var(key_variable).ok().filter(|k| !k.is_empty());
            let timeout = Duration::from_millis(cli.upstream_timeout_ms);
            upstream::Upstream::new(url, api_key, auth, timeout).map(Some)
        }
    };
    let upstreams = app::Upstreams {
        openai: upstream(
            &cli.upstream,
            "LLMRL_UPSTREAM_API_KEY",
            upstream::Auth::Bearer,
        )?,
        anthropic: upstream(
            &cli.anthropic_upstream,
            "LLMRL_ANTHROPIC_API_KEY",
            upstream::Auth::Anthropic,
        )?,
    };
    // Signal handlers first: once the port accepts, a supervisor may send SIGHUP or SIGTERM at
    // once (`make run` waits for the port), and an uninstalled handler would kill the process.
    let hangup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let admin_token = cli.admin_token.clone().filter(|t| !t.is_empty());
    let admin_listener = match &admin_token {
        Some(_) => Some(admin::bind(cli.admin_address()).await?),
        None => None,
    };
    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let cors = Arc::new(Cors::new(&cli.cors_allow_origin));
    let read_timeout = Duration::from_millis(cli.read_timeout_ms);
    let grace = Duration::from_millis(cli.shutdown_grace_ms);
    let max_connections = i64::try_from(cli.max_connections).unwrap_or(i64::MAX);
    let app = Arc::new(App::new(cli, keys, limiter, upstreams, policy_store));
    if let (Some(token), Some(listener)) = (admin_token, admin_listener) {
        admin::serve(Arc::clone(&app), listener, admin::AdminToken::new(&token));
    }
    tracing::info!(
        listen = %app.cli.listen,
        node = %app.node,
        keys = app.keys().len(),
        redis = if app.cli.redis_cluster.is_empty() { app.cli.redis_url.as_str() } else { "cluster" },
        upstream = app.cli.upstream.as_deref().unwrap_or("mock"),
        anthropic_upstream = app.cli.anthropic_upstream.as_deref().unwrap_or("mock"),
        policies = ?app.cli.policies,
        on_redis_error = ?app.cli.on_redis_error,
        "llmrl gateway ready"
    );
    tokio::spawn(check_module(Arc::clone(&app)));
    tokio::spawn(reload_on_sighup(Arc::clone(&app), hangup));
    tokio::spawn(sample_traffic(Arc::clone(&app)));
    if app.policy_store.is_some() {
        tokio::spawn(watch_policy(Arc::clone(&app)));
    }

    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        crate::throttle::warn_throttled!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let mut builder = http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(read_timeout)
                    .max_buf_size(64 * 1024);
                let app = Arc::clone(&app);
                app.metrics.connections.inc();
                if app.metrics.open_connections.get() >= max_connections {
                    // Over the limit: one quick 503 and close, instead of holding the connection.
                    let connection = builder
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service_fn(move |request| router::overloaded(Arc::clone(&app), request)));
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(read_timeout, connection).await;
                    });
                    continue;
                }
                app.metrics.open_connections.inc();
                let connection = builder.serve_connection(
                    TokioIo::new(stream),
                    service_fn({
                        let app = Arc::clone(&app);
                        let cors = Arc::clone(&cors);
                        move |request| router::handle(Arc::clone(&app), Arc::clone(&cors), request)
                    }),
                );
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    app.metrics.open_connections.dec();
                });
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    // Settlements (and streams) still running get a moment to finish.
    app.tasks.close();
    if tokio::time::timeout(Duration::from_secs(2), app.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            tasks = app.tasks.len(),
            "background tasks still running at exit"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Once a second, close this node's second of traffic (the dashboard's chart).
async fn sample_traffic(app: Arc<App>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        app.metrics.recent.tick(app.metrics.in_flight.get());
    }
}

/// `--policies redis`: poll the stored policy's version and take each new one. Polling rather
/// than pub/sub: a missed message, a Redis restart or failover cannot leave a node behind — the
/// next poll sees the version. While Redis is unreachable, or the policy is missing or invalid,
/// the node keeps enforcing the last policy it loaded.
async fn watch_policy(app: Arc<App>) {
    let mut ticker = tokio::time::interval(Duration::from_millis(app.cli.policy_poll_ms.max(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_problem = String::new();
    loop {
        ticker.tick().await;
        match app.refresh_policy().await {
            Ok(_) => last_problem.clear(),
            Err(error) => {
                let problem = error.to_string();
                if problem != last_problem {
                    tracing::error!(error = %problem, "cannot take the stored policy; keeping the one in force");
                    last_problem = problem;
                }
            }
        }
    }
}

/// SIGHUP re-reads the keys file (or, with --policies redis, the stored policy); new limits apply
/// from the next request, usage is kept (it lives in Redis). A broken file is reported and the
/// old keys stay in force.
async fn reload_on_sighup(app: Arc<App>, mut hangup: tokio::signal::unix::Signal) {
    while hangup.recv().await.is_some() {
        if app.policy_store.is_some() {
            if let Err(error) = app.refresh_policy().await {
                tracing::error!(%error, "policy reload failed; keeping the previous keys");
            }
            continue;
        }
        match KeyStore::load(&app.cli.keys_file) {
            Ok(keys) => {
                let count = keys.len();
                app.replace_keys(keys);
                tracing::info!(keys = count, "keys file reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "keys file reload failed; keeping the previous keys")
            }
        }
    }
}

/// Say at startup whether the Redis behind the limiter has a module this gateway can use: a
/// missing or outdated module would otherwise show only as every limited request failing.
/// Nothing is decided on it (Redis may be down now and upgraded later).
async fn check_module(app: Arc<App>) {
    use llmrl_core::protocol::REQUIRED_MODULE_VERSION as REQUIRED;
    let Some(limiter) = app.limiter.as_ref() else {
        return;
    };
    match limiter.module_version().await {
        Ok(Some(version)) if version >= i64::from(REQUIRED) => {
            tracing::info!(version, "llmrl module found");
        }
        Ok(Some(version)) => tracing::error!(
            version,
            required = REQUIRED,
            "the llmrl module in Redis is older than this gateway needs; limited requests will fail until it is upgraded"
        ),
        Ok(None) => tracing::error!(
            "Redis has no llmrl module loaded (MODULE LIST); limited requests will fail until it is (redis-server --loadmodule libllmrl.so)"
        ),
        // Redis down, or an ACL user without MODULE: requests will tell.
        Err(error) => tracing::warn!(%error, "could not read the llmrl module's version"),
    }
}
