//! Request handling: routing, authentication, body limits, the limiter decision, the answer
//! (mock or upstream), settlement, and OpenAI-style headers and errors.

use crate::config::{ApiKey, Cli, FailureMode, KeyStore, Scope};
use crate::headers::{self, DIMENSIONS};
use crate::limiter::{Limiter, Verdict};
use crate::metrics::Metrics;
use crate::openai::{self, ApiError, Endpoint, Request as ApiRequest};
use crate::tokens::Tokenizer;
use crate::upstream::Upstream;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

pub type Body = BoxBody<Bytes, Infallible>;

pub struct App {
    pub cli: Cli,
    pub node: String,
    pub keys: RwLock<Arc<KeyStore>>,
    pub limiter: Option<Limiter>,
    pub tokenizer: Tokenizer,
    pub metrics: Metrics,
    pub upstream: Option<Upstream>,
    next_id: AtomicU64,
    /// Settlements still running in the background (waited for at shutdown).
    pub pending_settles: AtomicUsize,
}

const EXPOSED_HEADERS: &str = "x-request-id, retry-after, retry-after-ms, x-should-retry, \
    x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
    x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, \
    x-ratelimit-limit-input-tokens, x-ratelimit-remaining-input-tokens, x-ratelimit-reset-input-tokens, \
    x-ratelimit-limit-output-tokens, x-ratelimit-remaining-output-tokens, x-ratelimit-reset-output-tokens";

/// Models /v1/models lists besides a key's own per-model overrides.
const KNOWN_MODELS: [&str; 6] = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o4-mini",
    "gpt-3.5-turbo",
];

impl App {
    pub fn new(
        cli: Cli,
        keys: KeyStore,
        limiter: Option<Limiter>,
        upstream: Option<Upstream>,
    ) -> App {
        let node = cli.node_id();
        App {
            metrics: Metrics::new(&node),
            node,
            keys: RwLock::new(Arc::new(keys)),
            limiter,
            tokenizer: Tokenizer::new(),
            upstream,
            next_id: AtomicU64::new(1),
            pending_settles: AtomicUsize::new(0),
            cli,
        }
    }

    fn keys(&self) -> Arc<KeyStore> {
        match self.keys.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn replace_keys(&self, keys: KeyStore) {
        match self.keys.write() {
            Ok(mut slot) => *slot = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    json_text_response(status, value.to_string())
}

/// A JSON response from an already serialized body.
fn json_text_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, &error.body())
}

fn set_header(response: &mut Response<Body>, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        response.headers_mut().insert(name, value);
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Entry point for every request.
pub async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    app.metrics.in_flight.inc();
    let _in_flight = InFlight(&app.metrics);
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("req_{}_{id:x}", app.node);
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (mut response, route, reason) = route(&app, request, &request_id).await;
    set_header(&mut response, "x-request-id", &request_id);
    set_header(
        &mut response,
        "access-control-expose-headers",
        EXPOSED_HEADERS,
    );
    let status = response.status().as_u16();
    app.metrics.count(route, status, reason);
    tracing::debug!(%method, %path, status, reason, elapsed_us = started.elapsed().as_micros() as u64, request_id, "request");
    Ok(response)
}

/// The answer to every request on a connection accepted over `--max-connections`.
pub async fn overloaded(
    app: Arc<App>,
    _request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let error = ApiError {
        status: 503,
        message: format!(
            "The gateway is at its connection limit ({}); please retry shortly.",
            app.cli.max_connections
        ),
        kind: "server_error",
        param: None,
        code: Some("overloaded"),
    };
    let mut response = error_response(&error);
    set_header(&mut response, "retry-after", "1");
    set_header(&mut response, "connection", "close");
    app.metrics.count("any", 503, "overloaded");
    Ok(response)
}

type Routed = (Response<Body>, &'static str, &'static str);

/// Request headers accepted in all, in bytes (names and values). hyper refuses heads past its
/// read buffer with a bare 431; this answers a smaller excess with an OpenAI-format error.
const MAX_HEADER_BYTES: usize = 32 * 1024;

async fn route(app: &Arc<App>, request: Request<Incoming>, request_id: &str) -> Routed {
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        let mut error = ApiError::invalid(
            format!(
                "Request headers are too large ({header_bytes} bytes; the limit is {MAX_HEADER_BYTES})."
            ),
            None,
        );
        error.status = 431;
        return (error_response(&error), "unknown", "headers_too_large");
    }
    let path = request.uri().path();
    let (route, allowed) = match path {
        "/v1/chat/completions" => ("chat", Method::POST),
        "/v1/completions" => ("completions", Method::POST),
        "/v1/models" => ("models", Method::GET),
        "/health" => ("health", Method::GET),
        "/metrics" => ("metrics", Method::GET),
        _ => {
            let message = format!("Invalid URL ({} {})", request.method(), path);
            let mut error = ApiError::invalid(message, None);
            error.status = 404;
            return (error_response(&error), "unknown", "not_found");
        }
    };
    if request.method() != allowed {
        let mut error = ApiError::invalid(
            format!(
                "Method {} is not allowed for {path}; use {allowed}.",
                request.method()
            ),
            None,
        );
        error.status = 405;
        let mut response = error_response(&error);
        set_header(&mut response, "allow", allowed.as_str());
        return (response, route, "method_not_allowed");
    }
    match route {
        "chat" => completion(app, request, Endpoint::Chat, request_id).await,
        "completions" => completion(app, request, Endpoint::Completions, request_id).await,
        "models" => models(app, &request),
        "health" => (health(app).await, route, "ok"),
        _ => {
            let mut response = Response::new(full(app.metrics.render()));
            set_header(&mut response, "content-type", "text/plain; version=0.0.4");
            (response, route, "ok")
        }
    }
}

fn route_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "chat",
        Endpoint::Completions => "completions",
    }
}

fn authenticate(app: &App, request: &Request<Incoming>) -> Result<Arc<ApiKey>, ApiError> {
    let unauthorized = |message: &str| ApiError {
        status: 401,
        message: message.to_string(),
        kind: "invalid_request_error",
        param: None,
        code: Some("invalid_api_key"),
    };
    let Some(header) = request.headers().get(hyper::header::AUTHORIZATION) else {
        return Err(unauthorized("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."));
    };
    let bytes = header.as_bytes();
    let token = bytes
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| bytes.get(7..))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(unauthorized("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."));
    };
    app.keys().authenticate(token).ok_or_else(|| {
        unauthorized(
            "Incorrect API key provided. You can find your API keys in the gateway's keys file.",
        )
    })
}

fn models(app: &App, request: &Request<Incoming>) -> Routed {
    let key = match authenticate(app, request) {
        Ok(key) => key,
        Err(error) => return (error_response(&error), "models", "auth"),
    };
    let mut names: Vec<&str> = KNOWN_MODELS.to_vec();
    names.extend(key.model_names());
    names.sort_unstable();
    names.dedup();
    let data: Vec<Value> = names
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000u64, "owned_by": "llmrl"}))
        .collect();
    (
        json_response(StatusCode::OK, &json!({"object": "list", "data": data})),
        "models",
        "ok",
    )
}

async fn health(app: &App) -> Response<Body> {
    let redis = match &app.limiter {
        None => "disabled",
        Some(limiter) if limiter.ping().await => "up",
        Some(_) => "down",
    };
    json_response(
        StatusCode::OK,
        &json!({
            "status": if redis == "down" { "degraded" } else { "ok" },
            "node": app.node,
            "redis": redis,
            "version": env!("CARGO_PKG_VERSION"),
            "keys": app.keys().len(),
            "upstream": if app.upstream.is_some() { "proxy" } else { "mock" },
        }),
    )
}

enum BodyError {
    TooLarge,
    Timeout,
    Broken,
}

async fn read_body(app: &App, request: Request<Incoming>) -> Result<Bytes, BodyError> {
    let limit = app.cli.body_limit;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let body = Limited::new(request.into_body(), limit);
    let timeout = Duration::from_millis(app.cli.read_timeout_ms);
    match tokio::time::timeout(timeout, body.collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(BodyError::TooLarge)
        }
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}

/// What the limiter said about a request.
enum Admission {
    Checked(Verdict),
    /// No decision: `--no-limiter`, or Redis unavailable with `--on-redis-error open`.
    Unchecked,
}

/// Everything needed to correct a reservation once real usage is known.
#[derive(Clone)]
pub struct Settlement {
    app: Arc<App>,
    redis_key: String,
    ticket: i64,
    pub reserved_input: u64,
    pub reserved_output: u64,
}

impl Settlement {
    /// Whether there is a reservation to correct: an admitted ticket and usage that differs.
    fn needed(&self, actual_input: u64, actual_output: u64) -> bool {
        self.app.limiter.is_some()
            && self.ticket > 0
            && (actual_input != self.reserved_input || actual_output != self.reserved_output)
    }

    /// Send LLMRL.SETTLE (once; never retried) unless there is nothing to correct.
    pub async fn settle(self, actual_input: u64, actual_output: u64) {
        let Some(limiter) = self.app.limiter.as_ref() else {
            return;
        };
        if !self.needed(actual_input, actual_output) {
            return;
        }
        let metrics = &self.app.metrics;
        for (dimension, reserved, actual) in [
            ("input", self.reserved_input, actual_input),
            ("output", self.reserved_output, actual_output),
        ] {
            if actual < reserved {
                metrics
                    .tokens_settled
                    .with_label_values(&[dimension, "refund"])
                    .inc_by(reserved - actual);
            } else if actual > reserved {
                metrics
                    .tokens_settled
                    .with_label_values(&[dimension, "charge"])
                    .inc_by(actual - reserved);
            }
        }
        if let Err(error) = limiter
            .settle(
                &self.redis_key,
                self.ticket,
                (self.reserved_input, actual_input),
                (self.reserved_output, actual_output),
            )
            .await
        {
            metrics.redis_errors.with_label_values(&["settle"]).inc();
            tracing::warn!(%error, "LLMRL.SETTLE failed; the reservation stays charged");
        }
    }

    /// Settle in the background, without holding up the response.
    pub fn spawn(self, actual_input: u64, actual_output: u64) {
        if !self.needed(actual_input, actual_output) {
            return;
        }
        let app = Arc::clone(&self.app);
        app.pending_settles.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            self.settle(actual_input, actual_output).await;
            app.pending_settles.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn content_type_is_json(request: &Request<Incoming>) -> bool {
    match request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(value) => {
            let essence = value.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json") || essence.is_empty()
        }
    }
}

async fn completion(
    app: &Arc<App>,
    request: Request<Incoming>,
    endpoint: Endpoint,
    request_id: &str,
) -> Routed {
    let route = route_name(endpoint);
    let key = match authenticate(app, &request) {
        Ok(key) => key,
        Err(error) => return (error_response(&error), route, "auth"),
    };
    if !content_type_is_json(&request) {
        let mut error = ApiError::invalid(
            "Unsupported content type: the request body must be JSON (Content-Type: application/json).",
            None,
        );
        error.status = 415;
        return (error_response(&error), route, "bad_request");
    }
    let bytes = match read_body(app, request).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            let mut error = ApiError::invalid(
                format!(
                    "Request body too large: the limit is {} bytes.",
                    app.cli.body_limit
                ),
                None,
            );
            error.status = 413;
            return (error_response(&error), route, "too_large_body");
        }
        Err(BodyError::Timeout) => {
            let mut error = ApiError::invalid("Timed out reading the request body.", None);
            error.status = 408;
            return (error_response(&error), route, "bad_request");
        }
        Err(BodyError::Broken) => {
            let error = ApiError::invalid("The request body could not be read completely.", None);
            return (error_response(&error), route, "bad_request");
        }
    };
    let parsed = match openai::parse_request(endpoint, &bytes) {
        Ok(parsed) => parsed,
        Err(error) => return (error_response(&error), route, "bad_request"),
    };
    let input_tokens = match endpoint {
        Endpoint::Chat => {
            let messages = parsed
                .body
                .get("messages")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            app.tokenizer.count_chat(&parsed.model, messages)
        }
        Endpoint::Completions => openai::prompts(&parsed.body)
            .iter()
            .map(|p| app.tokenizer.count_text(&parsed.model, p))
            .sum(),
    };
    let scope = key.scope(&parsed.model);
    let per_choice = parsed
        .max_tokens
        .unwrap_or(scope.default_output_reservation);
    let reserved_output = per_choice.saturating_mul(parsed.n);

    let admission = match admit(app, &key, scope, input_tokens, reserved_output).await {
        Ok(admission) => admission,
        Err(response) => return (response, route, "limiter_unavailable"),
    };
    let mut rate_headers = Vec::new();
    let mut ticket = 0;
    if let Admission::Checked(verdict) = &admission {
        rate_headers = headers::rate_limit_headers(scope.limits, verdict);
        if verdict.allowed {
            ticket = verdict.ticket;
        } else if key.shadow {
            app.metrics.shadow_denied.inc();
            tracing::info!(key = %key.name, reason = %verdict.reason, "shadow key over its limit; served anyway");
        } else {
            let (mut response, reason) =
                rate_limited(&parsed, scope, verdict, input_tokens, reserved_output);
            response.headers_mut().extend(rate_headers);
            return (response, route, reason);
        }
    }
    app.metrics.reserved_input.inc_by(input_tokens);
    app.metrics.reserved_output.inc_by(reserved_output);
    let settlement = Settlement {
        app: Arc::clone(app),
        redis_key: scope.redis_key.clone(),
        ticket,
        reserved_input: input_tokens,
        reserved_output,
    };
    let mut response = match &app.upstream {
        Some(upstream) => upstream.forward(app, &parsed, settlement).await,
        None => mock_answer(
            app,
            &parsed,
            request_id,
            input_tokens,
            per_choice,
            settlement,
        ),
    };
    response.headers_mut().extend(rate_headers);
    let reason = if response.status().is_success() {
        "ok"
    } else {
        "upstream_error"
    };
    (response, route, reason)
}

/// One LLMRL.CHECK, or the failure policy when Redis is unavailable.
async fn admit(
    app: &App,
    key: &ApiKey,
    scope: &Scope,
    input: u64,
    output: u64,
) -> Result<Admission, Response<Body>> {
    let Some(limiter) = &app.limiter else {
        return Ok(Admission::Unchecked);
    };
    let started = Instant::now();
    let result = limiter
        .check(&scope.redis_key, scope.limits, input, output, key.window_ms)
        .await;
    app.metrics
        .limiter_seconds
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(verdict) => Ok(Admission::Checked(verdict)),
        Err(error) => {
            app.metrics.redis_errors.with_label_values(&["check"]).inc();
            match app.cli.on_redis_error {
                FailureMode::Open => {
                    app.metrics.fail_open.inc();
                    tracing::warn!(%error, "limiter unavailable; serving unchecked (--on-redis-error open)");
                    Ok(Admission::Unchecked)
                }
                FailureMode::Closed => {
                    tracing::warn!(%error, "limiter unavailable; answering 503 (--on-redis-error closed)");
                    let error = ApiError {
                        status: 503,
                        message: "The rate limiter is temporarily unavailable, so this request was not served. Please retry shortly.".into(),
                        kind: "server_error",
                        param: None,
                        code: Some("rate_limiter_unavailable"),
                    };
                    let mut response = error_response(&error);
                    set_header(&mut response, "retry-after", "1");
                    Err(response)
                }
            }
        }
    }
}

/// OpenAI's 429: which limit, how much is used, when to retry; or "request too large".
fn rate_limited(
    request: &ApiRequest,
    scope: &Scope,
    verdict: &Verdict,
    input: u64,
    output: u64,
) -> (Response<Body>, &'static str) {
    let index = headers::dimension_index(&verdict.reason).unwrap_or(0);
    let (_, kind, label) = DIMENSIONS[index];
    let limit = headers::limit_array(scope.limits)[index];
    let requested = [1, input, output][index];
    let too_large = verdict.retry_after_ms < 0;
    let message = if too_large {
        format!(
            "Request too large for {} on {label}: Limit {limit}, Requested {requested}. The input or output tokens must be reduced in order to run successfully.",
            request.model
        )
    } else {
        let used = limit.saturating_sub(verdict.remaining[index].max(0) as u64);
        format!(
            "Rate limit reached for {} on {label}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {}.",
            request.model,
            headers::duration(verdict.retry_after_ms as u64),
        )
    };
    let error = ApiError {
        status: 429,
        message,
        kind,
        param: None,
        code: Some("rate_limit_exceeded"),
    };
    let mut response = error_response(&error);
    if too_large {
        set_header(&mut response, "x-should-retry", "false");
        return (response, "too_large");
    }
    let ms = verdict.retry_after_ms as u64;
    set_header(&mut response, "retry-after", &ms.div_ceil(1000).to_string());
    set_header(&mut response, "retry-after-ms", &ms.to_string());
    set_header(&mut response, "x-should-retry", "true");
    (response, ["rpm", "itpm", "otpm"][index])
}

/// The built-in mock upstream: deterministic text as long as max_tokens allows.
fn mock_answer(
    app: &Arc<App>,
    request: &ApiRequest,
    request_id: &str,
    input_tokens: u64,
    per_choice: u64,
    settlement: Settlement,
) -> Response<Body> {
    let target = per_choice.min(app.cli.mock_tokens);
    let finish_reason = if per_choice < app.cli.mock_tokens {
        "length"
    } else {
        "stop"
    };
    let id = match request.endpoint {
        Endpoint::Chat => format!("chatcmpl-{request_id}"),
        Endpoint::Completions => format!("cmpl-{request_id}"),
    };
    let created = unix_seconds();
    if !request.stream {
        let (text, tokens) = app.tokenizer.mock_completion(target);
        let body = openai::mock_response(
            request,
            &id,
            created,
            &text,
            finish_reason,
            input_tokens,
            tokens,
        );
        settlement.spawn(input_tokens, tokens * request.n);
        return json_text_response(StatusCode::OK, body);
    }
    let chunks = app.tokenizer.mock_chunks(target, 4);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let request = request.clone();
    let delay = Duration::from_millis(app.cli.mock_chunk_delay_ms);
    let tokenizer_tokens: Vec<u64> = chunks
        .iter()
        .map(|c| app.tokenizer.count_text("gpt-4o", c))
        .collect();
    tokio::spawn(async move {
        let mut produced = 0u64;
        let mut delivered = true;
        'choices: for index in 0..request.n {
            let role = openai::mock_chunk(
                &request,
                &id,
                created,
                index,
                json!({"role": "assistant", "content": ""}),
                None,
            );
            if tx.send(openai::sse(&role)).await.is_err() {
                delivered = false;
                break;
            }
            for (text, tokens) in chunks.iter().zip(&tokenizer_tokens) {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let chunk = openai::mock_chunk(
                    &request,
                    &id,
                    created,
                    index,
                    json!({"content": text}),
                    None,
                );
                if tx.send(openai::sse(&chunk)).await.is_err() {
                    delivered = false;
                    break 'choices;
                }
                produced += tokens;
            }
            let last = openai::mock_chunk(
                &request,
                &id,
                created,
                index,
                json!({}),
                Some(finish_reason),
            );
            if tx.send(openai::sse(&last)).await.is_err() {
                delivered = false;
                break;
            }
        }
        if delivered {
            if request.include_usage {
                let usage = openai::usage_chunk(
                    &request,
                    &id,
                    created,
                    openai::usage(input_tokens, produced),
                );
                let _ = tx.send(openai::sse(&usage)).await;
            }
            let _ = tx.send(Bytes::from_static(openai::SSE_DONE)).await;
        }
        // Client gone or done: charge exactly what was produced.
        settlement.settle(input_tokens, produced).await;
    });
    sse_response(rx)
}

/// A `text/event-stream` response fed by a channel.
pub fn sse_response(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    });
    let mut response = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(stream)));
    set_header(&mut response, "content-type", "text/event-stream");
    set_header(&mut response, "cache-control", "no-cache");
    response
}

pub fn upstream_error_response(message: &str) -> Response<Body> {
    error_response(&ApiError {
        status: 502,
        message: message.to_string(),
        kind: "server_error",
        param: None,
        code: Some("upstream_unavailable"),
    })
}

pub fn passthrough(
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    response
}
