//! The API dialects the gateway speaks. A dialect owns everything about one wire format: parsing
//! and validating a request, what its input tokens are, the usage an upstream reports, error
//! bodies, rate-limit headers and 429s, and the shape of mock answers. The rest of the gateway
//! works with the neutral types here, so a new API is a new file implementing [`Dialect`].

pub mod anthropic;
pub mod body;
pub mod openai;
pub mod refusal;

pub use refusal::duration;

pub use body::{PlainMessage, RequestBody};

use crate::decision::Decision;
use crate::error::GatewayError;
use crate::tokens::Tokenizer;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::StatusCode;
use serde_json::Value;
use std::future::Future;

tokio::task_local! {
    /// The id of the request being answered (error bodies that carry it, e.g. Anthropic's).
    static REQUEST_ID: String;
}

/// Run `future` (the answering of one request) with its request id in scope.
pub async fn with_request_id<F: Future>(request_id: String, future: F) -> F::Output {
    REQUEST_ID.scope(request_id, future).await
}

/// The id of the request being answered, when called inside [`with_request_id`].
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A dialect's rate-limit headers: for each figure of the decision (requests, input tokens,
/// output tokens, tokens) that is limited, its `[limit, remaining, reset]` header names with the
/// reset written as `reset` formats ms; then `x-llmrl-binding-scope`.
pub fn rate_limit_headers(
    decision: &Decision,
    names: &[[HeaderName; 3]; 4],
    reset: impl Fn(u64) -> String,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::with_capacity(13);
    for (names, figure) in names.iter().zip(&decision.figures) {
        let Some(figure) = figure else {
            continue;
        };
        let [limit, remaining, reset_name] = names;
        headers.push((limit.clone(), HeaderValue::from(figure.limit)));
        headers.push((remaining.clone(), HeaderValue::from(figure.remaining)));
        if let Ok(value) = HeaderValue::from_str(&reset(figure.reset_ms)) {
            headers.push((reset_name.clone(), value));
        }
    }
    headers.extend(binding_header(decision));
    headers
}

/// `x-llmrl-binding-scope`: the scope with the smallest share left, under a multi-scope policy.
pub fn binding_header(decision: &Decision) -> Option<(HeaderName, HeaderValue)> {
    let value = HeaderValue::from_str(decision.binding.as_deref()?).ok()?;
    Some((HeaderName::from_static("x-llmrl-binding-scope"), value))
}

/// Which kind of upstream account a dialect's requests go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
}

/// The usage a stream has reported so far, and whether it is final (what to settle with).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamUsage {
    pub usage: Usage,
    pub complete: bool,
}

impl StreamUsage {
    /// The usage after an event that reports `found`: final if it reports any, else what was
    /// seen before.
    pub fn or_final(self, found: Option<Usage>) -> StreamUsage {
        found.map_or(self, |usage| StreamUsage {
            usage,
            complete: true,
        })
    }
}

/// A named SSE event (`event: <name>` and its data), as Anthropic's and the Responses API's
/// streams frame theirs.
pub fn named_event(name: &str, data: impl std::fmt::Display, output_tokens: u64) -> StreamEvent {
    StreamEvent {
        bytes: Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
        output_tokens,
    }
}

/// The `event:` name of an SSE event, if it has one.
pub fn event_name(event: &[u8]) -> Option<&str> {
    std::str::from_utf8(event)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("event:"))
        .map(str::trim)
}

/// Whether an SSE event is `data: [DONE]`.
pub fn is_done_event(event: &[u8]) -> bool {
    std::str::from_utf8(event).is_ok_and(|text| {
        text.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .any(|data| data.trim() == "[DONE]")
    })
}

/// A validated request, with what the limiter and the answer need from it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub body: RequestBody,
    /// A plain chat request's messages, read without a tree (then counted from these, not from
    /// `body`); `None` for every other request.
    pub messages: Option<Vec<PlainMessage>>,
    pub model: String,
    pub stream: bool,
    /// The client asked for usage at the end of a stream.
    pub include_usage: bool,
    /// The most output tokens a choice may produce, if the request says.
    pub max_output_tokens: Option<u64>,
    /// Choices asked for (each may produce `max_output_tokens`).
    pub n: u64,
}

/// Tokens an answer used, as reported by the upstream (or produced by the mock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of the input tokens, how many the provider served from its prompt cache.
    pub cached_input_tokens: u64,
}

/// What the mock answers with: the text of each choice and its token count.
pub struct MockAnswer<'a> {
    pub id: &'a str,
    pub created: u64,
    pub text: &'a str,
    pub output_tokens_per_choice: u64,
    /// The text split into stream chunks, with each chunk's tokens.
    pub chunks: &'a [(String, u64)],
    pub finish_reason: &'static str,
    pub input_tokens: u64,
}

/// One event of a mock stream, and the output tokens it delivers.
pub struct StreamEvent {
    pub bytes: Bytes,
    pub output_tokens: u64,
}

pub trait Dialect: Send + Sync + 'static {
    /// The route's name in metrics and logs.
    fn route(&self) -> &'static str;

    /// Parse and validate a request body.
    fn parse(&self, body: &[u8]) -> Result<ApiRequest, GatewayError>;

    /// The request's input tokens, counted as the provider counts them (or estimated).
    fn count_input(&self, tokenizer: &Tokenizer, request: &ApiRequest) -> u64;

    /// The error body in this dialect's format (JSON).
    fn error_body(&self, error: &GatewayError) -> String;

    /// The rate-limit headers of an answer the limiter decided.
    fn rate_limit_headers(&self, decision: &Decision) -> Vec<(HeaderName, HeaderValue)>;

    /// The refusal of a denied request (a 429 with its retry headers).
    fn rate_limited(&self, request: &ApiRequest, decision: &Decision) -> GatewayError;

    /// Usage reported in an upstream's JSON answer or in one stream event's JSON.
    fn reported_usage(&self, value: &Value) -> Option<Usage>;

    /// Whether a stream event carries only usage (no choices): it is passed on only to a client
    /// that asked for usage.
    fn is_usage_only_event(&self, value: &Value) -> bool;

    /// The upstream path of this API, e.g. `/v1/chat/completions`.
    fn upstream_path(&self) -> &'static str;

    /// The body sent upstream (e.g. asking for usage in streams, to settle exactly).
    fn upstream_body(&self, request: &ApiRequest) -> Value;

    /// A whole (non-streamed) mock answer, serialized.
    fn mock_body(&self, request: &ApiRequest, answer: &MockAnswer) -> String;

    /// Every event of a streamed mock answer, in order.
    fn mock_stream(&self, request: &ApiRequest, answer: &MockAnswer) -> Vec<StreamEvent>;

    /// The upstream this dialect's requests are proxied to.
    fn provider(&self) -> Provider {
        Provider::OpenAi
    }

    /// The status an error is answered with (a dialect may have its own, e.g. Anthropic's 529).
    fn error_status(&self, error: &GatewayError) -> StatusCode {
        error.status
    }

    /// Whether cached prompt tokens count toward input-token limits unless the keys file says
    /// (`count_cached_input`): OpenAI counts them, Anthropic does not.
    fn counts_cached_input(&self) -> bool {
        true
    }

    /// The usage of a stream after one more event's JSON: by default an event that reports
    /// usage reports all of it.
    fn fold_stream_usage(&self, so_far: StreamUsage, event: &Value) -> StreamUsage {
        so_far.or_final(self.reported_usage(event))
    }

    /// Whether an SSE event ends the stream (the gateway settles before passing it on).
    fn is_final_event(&self, event: &[u8]) -> bool {
        is_done_event(event)
    }
}
