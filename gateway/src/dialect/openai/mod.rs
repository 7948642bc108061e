//! OpenAI's API: Chat Completions, (legacy) Completions, Responses and Embeddings. Errors as
//! `{"error": {"message", "type", "param", "code"}}`, `x-ratelimit-*` headers, 429s worded as
//! OpenAI words them, usage as `prompt_tokens` / `completion_tokens`.

mod embeddings;
mod headers;
mod plain;
mod request;
mod responses;
mod wire;

use crate::decision::Decision;
use crate::dialect::{ApiRequest, Dialect, MockAnswer, StreamEvent, StreamUsage, Usage};
use crate::error::{ErrorKind, GatewayError};
use crate::tokens::Tokenizer;
use hyper::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Responses,
    Embeddings,
}

/// One OpenAI endpoint.
pub struct OpenAi(pub Endpoint);

pub static CHAT: OpenAi = OpenAi(Endpoint::Chat);
pub static COMPLETIONS: OpenAi = OpenAi(Endpoint::Completions);
pub static RESPONSES: OpenAi = OpenAi(Endpoint::Responses);
pub static EMBEDDINGS: OpenAi = OpenAi(Endpoint::Embeddings);

/// OpenAI's `type` for an error kind.
fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::Authentication => "invalid_request_error",
        // OpenAI names the exhausted dimension: "requests", "input_tokens", "output_tokens".
        ErrorKind::RateLimited(dimension) | ErrorKind::RequestTooLarge(dimension) => {
            headers::DIMENSIONS
                .get(dimension as usize)
                .map_or("tokens", |names| names.1)
        }
        ErrorKind::QuotaExceeded => "insufficient_quota",
        ErrorKind::Server | ErrorKind::Overloaded | ErrorKind::LimiterUnavailable => "server_error",
    }
}

/// The error body every OpenAI route answers with.
pub fn error_body(error: &GatewayError) -> String {
    json!({"error": {
        "message": error.message,
        "type": error_type(error.kind),
        "param": error.param,
        "code": error.code,
    }})
    .to_string()
}

/// The prompt strings of a completions request.
fn prompts(body: &serde_json::Map<String, Value>) -> Vec<&str> {
    match body.get("prompt") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

impl Dialect for OpenAi {
    fn route(&self) -> &'static str {
        match self.0 {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
        }
    }

    fn parse(&self, body: &[u8]) -> Result<ApiRequest, GatewayError> {
        request::parse_request(self.0, body)
    }

    fn count_input(&self, tokenizer: &Tokenizer, request: &ApiRequest) -> u64 {
        match self.0 {
            Endpoint::Chat => match &request.messages {
                Some(plain) => tokenizer.count_plain_chat(&request.model, plain),
                None => {
                    let messages = request
                        .body
                        .get("messages")
                        .and_then(Value::as_array)
                        .map_or(&[][..], Vec::as_slice);
                    tokenizer.count_chat(&request.model, messages)
                }
            },
            Endpoint::Completions => prompts(&request.body)
                .iter()
                .map(|prompt| tokenizer.count_text(&request.model, prompt))
                .sum(),
            Endpoint::Responses => responses::count_input(tokenizer, request),
            Endpoint::Embeddings => embeddings::count_input(tokenizer, request),
        }
    }

    fn error_body(&self, error: &GatewayError) -> String {
        error_body(error)
    }

    fn rate_limit_headers(&self, decision: &Decision) -> Vec<(HeaderName, HeaderValue)> {
        headers::rate_limit_headers(decision)
    }

    /// OpenAI's 429: which limit, how much is used, when to retry; or "request too large", an
    /// exhausted budget, or every concurrency slot taken.
    fn rate_limited(&self, request: &ApiRequest, decision: &Decision) -> GatewayError {
        crate::dialect::refusal::rate_limited(request, decision)
    }

    fn reported_usage(&self, value: &Value) -> Option<Usage> {
        match self.0 {
            Endpoint::Responses => return responses::reported_usage(value),
            Endpoint::Embeddings => return embeddings::reported_usage(value),
            Endpoint::Chat | Endpoint::Completions => {}
        }
        let usage = value.get("usage")?;
        Some(Usage {
            input_tokens: usage.get("prompt_tokens")?.as_u64()?,
            output_tokens: usage.get("completion_tokens")?.as_u64()?,
            cached_input_tokens: usage
                .pointer("/prompt_tokens_details/cached_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        })
    }

    fn is_usage_only_event(&self, value: &Value) -> bool {
        matches!(self.0, Endpoint::Chat | Endpoint::Completions)
            && value
                .get("choices")
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
    }

    fn upstream_path(&self) -> &'static str {
        match self.0 {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }

    fn upstream_body(&self, request: &ApiRequest) -> Value {
        let mut body = Value::Object((*request.body).clone());
        // A Responses stream always ends with its usage; chat and completions ask for it.
        let chat_like = matches!(self.0, Endpoint::Chat | Endpoint::Completions);
        if request.stream && chat_like {
            // Ask for the usage chunk even if the client did not, to settle exactly.
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    fn mock_body(&self, request: &ApiRequest, answer: &MockAnswer) -> String {
        match self.0 {
            Endpoint::Responses => responses::mock_body(request, answer),
            Endpoint::Embeddings => embeddings::mock_body(request, answer.input_tokens),
            Endpoint::Chat | Endpoint::Completions => wire::mock_response(self.0, request, answer),
        }
    }

    fn mock_stream(&self, request: &ApiRequest, answer: &MockAnswer) -> Vec<StreamEvent> {
        match self.0 {
            Endpoint::Responses => responses::mock_stream(request, answer),
            // Embeddings are never streamed (parse refuses nothing, but sets stream false).
            _ => wire::mock_stream(self.0, request, answer),
        }
    }

    fn fold_stream_usage(&self, so_far: StreamUsage, event: &Value) -> StreamUsage {
        match self.0 {
            Endpoint::Responses => responses::fold_stream_usage(so_far, event),
            _ => so_far.or_final(self.reported_usage(event)),
        }
    }

    fn is_final_event(&self, event: &[u8]) -> bool {
        match self.0 {
            Endpoint::Responses => responses::is_final_event(event),
            _ => crate::dialect::is_done_event(event),
        }
    }
}

/// A JSON string, quotes and all, pushed onto `out` from `parts` joined: as they are when
/// nothing in them needs escaping (the mock's text, ids and model names), else by serde_json.
/// serde_json escapes exactly `"`, `\` and control characters below 0x20, so both ways agree.
fn push_json_str(out: &mut String, parts: &[&str]) {
    let plain = |text: &&str| text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if parts.iter().all(plain) {
        out.push('"');
        parts.iter().for_each(|part| out.push_str(part));
        out.push('"');
    } else {
        // Serializing a string cannot fail.
        out.push_str(&serde_json::to_string(&parts.concat()).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_usage_and_usage_only_events() {
        let value = json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4}, "choices": []});
        assert_eq!(
            CHAT.reported_usage(&value),
            Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                cached_input_tokens: 0
            })
        );
        assert!(CHAT.is_usage_only_event(&value));
        assert_eq!(CHAT.reported_usage(&json!({"usage": null})), None);
        assert!(!CHAT.is_usage_only_event(&json!({"choices": [{}]})));
    }

    #[test]
    fn error_bodies_have_openais_shape() {
        let error = GatewayError::invalid("bad n", Some("n"));
        let body: Value = serde_json::from_str(&error_body(&error)).unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "n");
        assert!(body["error"]["code"].is_null());
        let limited = GatewayError::new(
            hyper::StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::RateLimited(llmrl_core::window::Dimension::OutputTokens),
            "x",
        );
        let body: Value = serde_json::from_str(&error_body(&limited)).unwrap();
        assert_eq!(body["error"]["type"], "output_tokens");
    }
}
