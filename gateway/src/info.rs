//! The routes that answer about the gateway rather than limit anything: `/v1/models` (and one
//! model), `/health`, `/metrics`.

use crate::app::App;
use crate::auth::authenticate;
use crate::dialect::openai;
use crate::error::{ErrorKind, GatewayError};
use crate::http::response::{self, full, set_header, Body};
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// Models /v1/models lists besides a key's own per-model overrides.
const KNOWN_MODELS: [&str; 6] = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o4-mini",
    "gpt-3.5-turbo",
];

fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_700_000_000u64, "owned_by": "llmrl"})
}

/// `GET /v1/models`: the common models plus the key's own (authenticated).
pub fn models(app: &App, headers: &HeaderMap) -> Result<Response<Body>, GatewayError> {
    let key = authenticate(&app.keys(), headers)?;
    let mut names: Vec<&str> = KNOWN_MODELS.to_vec();
    names.extend(key.model_names());
    names.sort_unstable();
    names.dedup();
    let data: Vec<Value> = names.iter().map(|id| model_object(id)).collect();
    let body = json!({"object": "list", "data": data});
    Ok(response::json(StatusCode::OK, body.to_string()))
}

/// `GET /v1/models/{id}` (the SDKs' `models.retrieve`). The gateway forwards any model name, so
/// every id is answered; the ones it lists are the ones it knows about.
pub fn model(app: &App, headers: &HeaderMap, id: &str) -> Result<Response<Body>, GatewayError> {
    authenticate(&app.keys(), headers)?;
    if id.is_empty() || id.len() > 256 {
        return Err(GatewayError::invalid(
            format!("The model '{id}' does not exist"),
            Some("model"),
        )
        .with_status(StatusCode::NOT_FOUND)
        .with_code("model_not_found"));
    }
    Ok(response::json(StatusCode::OK, model_object(id).to_string()))
}

pub async fn health(app: &App) -> Response<Body> {
    let redis = match &app.limiter {
        None => "disabled",
        Some(limiter) if limiter.ping().await => "up",
        Some(_) => "down",
    };
    let body = json!({
        "status": if redis == "down" { "degraded" } else { "ok" },
        "node": app.node,
        "redis": redis,
        "version": env!("CARGO_PKG_VERSION"),
        "keys": app.keys().len(),
        "policy_version": app.keys().version,
        "upstream": if app.upstreams.openai.is_some() { "proxy" } else { "mock" },
        "anthropic_upstream": if app.upstreams.anthropic.is_some() { "proxy" } else { "mock" },
    });
    response::json(StatusCode::OK, body.to_string())
}

/// `GET /v1/usage`: every scope the client's key runs under, with each limit, what is used, what
/// is left and when it resets — so a client can plan before it meets a 429.
pub async fn usage(app: &App, headers: &HeaderMap) -> Result<Response<Body>, GatewayError> {
    let key = authenticate(&app.keys(), headers)?;
    let scopes = match &app.limiter {
        None => Vec::new(),
        Some(limiter) => crate::usage::of_key(limiter, &key, false)
            .await
            .map_err(|error| {
                crate::throttle::warn_throttled!(%error, "usage: the limiter is unavailable");
                GatewayError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::LimiterUnavailable,
                "Usage is unavailable: the rate limiter cannot be reached. Please retry shortly.",
            )
            })?,
    };
    let body = json!({"object": "usage", "key": key.name, "shadow": key.shadow, "scopes": scopes});
    Ok(response::json(StatusCode::OK, body.to_string()))
}

pub fn metrics(app: &App) -> Response<Body> {
    let mut response = Response::new(full(app.metrics.render()));
    set_header(&mut response, "content-type", "text/plain; version=0.0.4");
    response
}

/// Errors of these routes use OpenAI's format.
pub fn error(error: &GatewayError) -> Response<Body> {
    response::error(&openai::CHAT, error)
}
