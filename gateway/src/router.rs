//! Every request enters here: the header-size guard, the route table, methods, CORS, the
//! request id and the metrics of every answer.

use crate::app::App;
use crate::dialect::{self, anthropic, openai, Dialect};
use crate::error::{ErrorKind, GatewayError};
use crate::http::cors::Cors;
use crate::http::response::{self, Body};
use crate::info;
use crate::pipeline;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

/// Request headers accepted in all, in bytes (names and values). hyper refuses heads past its
/// read buffer with a bare 431; this answers a smaller excess with a JSON error.
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// What a path serves.
enum Route {
    /// A limited API route, in its dialect.
    Limited(&'static dyn Dialect),
    /// A dialect's token-counting route (unlimited).
    CountTokens(&'static dyn Dialect),
    Models,
    Model(String),
    Health,
    Metrics,
    /// What the client's key has used and has left in every scope.
    Usage,
}

impl Route {
    fn find(path: &str) -> Option<Route> {
        Some(match path {
            "/v1/chat/completions" => Route::Limited(&openai::CHAT),
            "/v1/completions" => Route::Limited(&openai::COMPLETIONS),
            "/v1/responses" => Route::Limited(&openai::RESPONSES),
            "/v1/embeddings" => Route::Limited(&openai::EMBEDDINGS),
            "/v1/messages" => Route::Limited(&anthropic::MESSAGES),
            "/v1/messages/count_tokens" => Route::CountTokens(&anthropic::COUNT_TOKENS),
            "/v1/models" => Route::Models,
            "/health" => Route::Health,
            "/metrics" => Route::Metrics,
            "/v1/usage" => Route::Usage,
            _ => Route::Model(path.strip_prefix("/v1/models/")?.to_string()),
        })
    }

    fn method(&self) -> Method {
        match self {
            Route::Limited(_) | Route::CountTokens(_) => Method::POST,
            _ => Method::GET,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Route::Limited(dialect) | Route::CountTokens(dialect) => dialect.route(),
            Route::Models | Route::Model(_) => "models",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::Usage => "usage",
        }
    }

    /// The dialect errors on this route are written in.
    fn dialect(&self) -> &'static dyn Dialect {
        match self {
            Route::Limited(dialect) | Route::CountTokens(dialect) => *dialect,
            _ => &openai::CHAT,
        }
    }
}

struct InFlight<'a>(&'a App);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.in_flight.dec();
    }
}

/// Entry point for every request.
pub async fn handle(
    app: Arc<App>,
    cors: Arc<Cors>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    app.metrics.in_flight.inc();
    let _in_flight = InFlight(&app);
    let request_id = app.request_id();
    let started = Instant::now();
    // The request log line's method and path, copied only when that line is written.
    let logged = tracing::enabled!(tracing::Level::DEBUG)
        .then(|| (request.method().clone(), request.uri().path().to_string()));
    let origin = cors.allowed_origin(request.headers());
    let routed = route(&app, &cors, request, &request_id);
    let (mut response, route, reason) = dialect::with_request_id(request_id.clone(), routed).await;
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        let headers = response.headers_mut();
        headers.insert(HeaderName::from_static("x-request-id"), id.clone());
        // Anthropic's clients read `request-id`.
        headers.insert(HeaderName::from_static("request-id"), id);
    }
    cors.decorate(origin.as_deref(), &mut response);
    let status = response.status().as_u16();
    app.metrics.count(route, status, reason);
    if let Some((method, path)) = logged {
        tracing::debug!(%method, %path, status, reason, elapsed_us = started.elapsed().as_micros() as u64, request_id, "request");
    }
    Ok(response)
}

/// The answer to every request on a connection accepted over `--max-connections`.
pub async fn overloaded(
    app: Arc<App>,
    _request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let error = GatewayError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Overloaded,
        format!(
            "The gateway is at its connection limit ({}); please retry shortly.",
            app.cli.max_connections
        ),
    )
    .with_code("overloaded")
    .with_header("retry-after", "1")
    .closing_connection();
    app.metrics.count("any", 503, "overloaded");
    Ok(info::error(&error))
}

type Routed = (Response<Body>, &'static str, &'static str);

/// Whether a request carries a body we may leave unread.
fn has_body(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    headers.contains_key(hyper::header::TRANSFER_ENCODING)
        || headers
            .get(hyper::header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0")
}

/// An error answered without reading the body; a body left on the connection means closing it.
fn refuse(
    dialect: &dyn Dialect,
    error: GatewayError,
    body_unread: bool,
    route: &'static str,
    reason: &'static str,
) -> Routed {
    let error = if body_unread {
        error.closing_connection()
    } else {
        error
    };
    (response::error(dialect, &error), route, reason)
}

async fn route(
    app: &Arc<App>,
    cors: &Cors,
    request: Request<Incoming>,
    request_id: &str,
) -> Routed {
    let unread = has_body(&request);
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        let error = GatewayError::invalid(
            format!(
                "Request headers are too large ({header_bytes} bytes; the limit is {MAX_HEADER_BYTES})."
            ),
            None,
        )
        .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        return refuse(&openai::CHAT, error, unread, "unknown", "headers_too_large");
    }
    let path = request.uri().path();
    let Some(route) = Route::find(path) else {
        let message = format!("Invalid URL ({} {})", request.method(), path);
        let error = GatewayError::invalid(message, None).with_status(StatusCode::NOT_FOUND);
        return refuse(&openai::CHAT, error, unread, "unknown", "not_found");
    };
    let allowed = route.method();
    if request.method() == Method::OPTIONS && cors.enabled() {
        let methods = format!("{allowed}, OPTIONS");
        return (
            cors.preflight(request.headers(), &methods),
            route.name(),
            "preflight",
        );
    }
    if request.method() != allowed {
        let error = GatewayError::invalid(
            format!(
                "Method {} is not allowed for {path}; use {allowed}.",
                request.method()
            ),
            None,
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
        .with_header("allow", allowed.as_str());
        return refuse(
            route.dialect(),
            error,
            unread,
            route.name(),
            "method_not_allowed",
        );
    }
    let name = route.name();
    let result = match route {
        Route::Limited(dialect) => {
            let (response, reason) = pipeline::serve(app, dialect, request, request_id).await;
            app.metrics.recent.record(response.status().as_u16());
            return (response, name, reason);
        }
        Route::CountTokens(dialect) => {
            let (response, reason) = pipeline::count_tokens(app, dialect, request).await;
            return (response, name, reason);
        }
        Route::Models => info::models(app, request.headers()),
        Route::Model(id) => info::model(app, request.headers(), &id),
        Route::Health => Ok(info::health(app).await),
        Route::Metrics => Ok(info::metrics(app)),
        Route::Usage => info::usage(app, request.headers()).await,
    };
    match result {
        Ok(response) => (response, name, "ok"),
        Err(error) => {
            let reason = if error.status == StatusCode::UNAUTHORIZED {
                "auth"
            } else {
                "not_found"
            };
            (info::error(&error), name, reason)
        }
    }
}
