//! The API dialects the gateway speaks. A dialect owns everything about one wire format: parsing
//! and validating a request, what its input tokens are, the usage an upstream reports, error
//! bodies, rate-limit headers and 429s, and the shape of mock answers. The rest of the gateway
//! works with the neutral types here, so a new API is a new file implementing [`Dialect`].

pub mod openai;

use crate::decision::Decision;
use crate::error::GatewayError;
use crate::tokens::Tokenizer;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

/// A validated request, with what the limiter and the answer need from it.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub body: Map<String, Value>,
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
}
