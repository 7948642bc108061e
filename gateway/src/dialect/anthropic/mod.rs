//! Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`). Errors as
//! `{"type": "error", "error": {"type", "message"}, "request_id"}`, the
//! `anthropic-ratelimit-*` headers, usage as `input_tokens` / `output_tokens` with the cache's
//! `cache_read_input_tokens` and `cache_creation_input_tokens`, streams of typed events.
//!
//! Claude's tokenizer is not public: input tokens are estimated with `cl100k_base` over every
//! text of the request, plus a few per message, and settled to the upstream's `usage`.

mod headers;
mod request;
mod wire;

use crate::decision::Decision;
use crate::dialect::{ApiRequest, Dialect, MockAnswer, Provider, StreamEvent, StreamUsage, Usage};
use crate::error::{ErrorKind, GatewayError};
use crate::tokens::Tokenizer;
use hyper::header::{HeaderName, HeaderValue};
use hyper::StatusCode;
use serde_json::{json, Value};

/// Tokens counted per message for its role and framing.
const PER_MESSAGE_TOKENS: u64 = 3;
/// Tokens counted for a block that is not text (an image, a document, a tool result without
/// text): Anthropic's largest image costs about 1,600; the settlement corrects the estimate.
const OTHER_BLOCK_TOKENS: u64 = 1_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Messages,
    CountTokens,
}

pub struct Anthropic(pub Endpoint);

pub static MESSAGES: Anthropic = Anthropic(Endpoint::Messages);
pub static COUNT_TOKENS: Anthropic = Anthropic(Endpoint::CountTokens);

/// Anthropic's status 529: its API is overloaded (the SDKs retry it).
const OVERLOADED: u16 = 529;

/// Anthropic's `error.type` for an error.
fn error_type(error: &GatewayError) -> &'static str {
    match error.kind {
        ErrorKind::InvalidRequest => match error.status {
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            _ => "invalid_request_error",
        },
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::RateLimited(_) | ErrorKind::RequestTooLarge(_) | ErrorKind::QuotaExceeded => {
            "rate_limit_error"
        }
        ErrorKind::Overloaded | ErrorKind::LimiterUnavailable => "overloaded_error",
        ErrorKind::Server => "api_error",
    }
}

impl Dialect for Anthropic {
    fn route(&self) -> &'static str {
        match self.0 {
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
        }
    }

    fn parse(&self, body: &[u8]) -> Result<ApiRequest, GatewayError> {
        request::parse_request(self.0, body)
    }

    fn count_input(&self, tokenizer: &Tokenizer, request: &ApiRequest) -> u64 {
        let (texts, other_blocks) = request::texts(&request.body);
        let messages = request
            .body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(0, |m| m.len() as u64);
        texts
            .iter()
            .map(|text| tokenizer.count_text(&request.model, text))
            .sum::<u64>()
            .saturating_add(messages.saturating_mul(PER_MESSAGE_TOKENS))
            .saturating_add(other_blocks.saturating_mul(OTHER_BLOCK_TOKENS))
    }

    fn error_body(&self, error: &GatewayError) -> String {
        json!({
            "type": "error",
            "error": {"type": error_type(error), "message": error.message},
            "request_id": crate::dialect::current_request_id(),
        })
        .to_string()
    }

    /// Anthropic answers an overload with 529 `overloaded_error`, which its SDKs retry: so does
    /// the gateway when the limiter is unavailable and it fails closed.
    fn error_status(&self, error: &GatewayError) -> StatusCode {
        match error.kind {
            ErrorKind::LimiterUnavailable => {
                StatusCode::from_u16(OVERLOADED).unwrap_or(error.status)
            }
            _ => error.status,
        }
    }

    fn rate_limit_headers(&self, decision: &Decision) -> Vec<(HeaderName, HeaderValue)> {
        headers::rate_limit_headers(decision)
    }

    fn rate_limited(&self, request: &ApiRequest, decision: &Decision) -> GatewayError {
        crate::dialect::refusal::rate_limited(request, decision)
    }

    /// A whole message's usage. Anthropic's `input_tokens` leaves out the prompt cache's reads
    /// and writes; the gateway's input tokens are all three, of which the reads are cached.
    fn reported_usage(&self, value: &Value) -> Option<Usage> {
        let usage = value.get("usage")?;
        let field = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
        let output_tokens = usage.get("output_tokens")?.as_u64()?;
        let cache_read = field("cache_read_input_tokens");
        Some(Usage {
            input_tokens: field("input_tokens")
                .saturating_add(cache_read)
                .saturating_add(field("cache_creation_input_tokens")),
            output_tokens,
            cached_input_tokens: cache_read,
        })
    }

    fn is_usage_only_event(&self, _value: &Value) -> bool {
        false
    }

    fn upstream_path(&self) -> &'static str {
        match self.0 {
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
        }
    }

    fn upstream_body(&self, request: &ApiRequest) -> Value {
        Value::Object((*request.body).clone())
    }

    fn mock_body(&self, request: &ApiRequest, answer: &MockAnswer) -> String {
        wire::mock_message(request, answer)
    }

    fn mock_stream(&self, request: &ApiRequest, answer: &MockAnswer) -> Vec<StreamEvent> {
        wire::mock_stream(request, answer)
    }

    fn provider(&self) -> Provider {
        Provider::Anthropic
    }

    /// Anthropic's rule: cache reads do not count toward input-token limits.
    fn counts_cached_input(&self) -> bool {
        false
    }

    /// `message_start` reports the input (and the cache's part), `message_delta` the output so
    /// far — final once seen (newer API versions repeat the input there too).
    fn fold_stream_usage(&self, so_far: StreamUsage, event: &Value) -> StreamUsage {
        match event.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                match event.get("message").and_then(|m| self.reported_usage(m)) {
                    Some(usage) => StreamUsage {
                        usage: Usage {
                            output_tokens: 0,
                            ..usage
                        },
                        complete: false,
                    },
                    None => so_far,
                }
            }
            Some("message_delta") => {
                let Some(output_tokens) = event
                    .pointer("/usage/output_tokens")
                    .and_then(Value::as_u64)
                else {
                    return so_far;
                };
                let repeated = event
                    .pointer("/usage/input_tokens")
                    .and_then(|_| self.reported_usage(event));
                let input = repeated.unwrap_or(so_far.usage);
                StreamUsage {
                    usage: Usage {
                        output_tokens,
                        ..input
                    },
                    complete: true,
                }
            }
            _ => so_far,
        }
    }

    fn is_final_event(&self, event: &[u8]) -> bool {
        crate::dialect::event_name(event) == Some("message_stop")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_the_cache_as_input() {
        let message = json!({"usage": {"input_tokens": 10, "cache_read_input_tokens": 90,
            "cache_creation_input_tokens": 5, "output_tokens": 7}});
        assert_eq!(
            MESSAGES.reported_usage(&message),
            Some(Usage {
                input_tokens: 105,
                output_tokens: 7,
                cached_input_tokens: 90
            })
        );
    }

    #[test]
    fn stream_usage_from_start_and_delta() {
        let start = json!({"type": "message_start", "message": {"usage": {"input_tokens": 12,
            "cache_read_input_tokens": 4, "output_tokens": 1}}});
        let so_far = MESSAGES.fold_stream_usage(StreamUsage::default(), &start);
        assert!(!so_far.complete);
        assert_eq!(so_far.usage.input_tokens, 16);
        let ping = json!({"type": "ping"});
        assert_eq!(MESSAGES.fold_stream_usage(so_far, &ping), so_far);
        let delta = json!({"type": "message_delta", "usage": {"output_tokens": 30}});
        let done = MESSAGES.fold_stream_usage(so_far, &delta);
        assert_eq!(
            done,
            StreamUsage {
                usage: Usage {
                    input_tokens: 16,
                    output_tokens: 30,
                    cached_input_tokens: 4
                },
                complete: true
            }
        );
        assert!(
            MESSAGES.is_final_event(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
        );
        assert!(!MESSAGES.is_final_event(b"data: [DONE]\n\n"));
    }

    #[test]
    fn errors_in_anthropics_shape() {
        let error = GatewayError::invalid("max_tokens: Field required", Some("max_tokens"));
        let body: Value = serde_json::from_str(&MESSAGES.error_body(&error)).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["message"], "max_tokens: Field required");
        let down = GatewayError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::LimiterUnavailable,
            "x",
        );
        assert_eq!(MESSAGES.error_status(&down).as_u16(), 529);
        let body: Value = serde_json::from_str(&MESSAGES.error_body(&down)).unwrap();
        assert_eq!(body["error"]["type"], "overloaded_error");
    }
}
