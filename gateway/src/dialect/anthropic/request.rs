//! Validating an Anthropic Messages request (`POST /v1/messages`, and the same body for
//! `/v1/messages/count_tokens`, where `max_tokens` is not needed), and the text its input
//! tokens are estimated from.

use super::Endpoint;
use crate::dialect::ApiRequest;
use crate::error::GatewayError;
use serde_json::{Map, Value};

/// The largest `max_tokens` accepted (Anthropic's models allow at most 128 k).
const MAX_OUTPUT_TOKENS: u64 = 1 << 20;

fn invalid(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::invalid(message, Some(param))
}

/// A content value: a string, or an array of blocks each with a `type`.
fn check_content(content: &Value, at: &str) -> Result<(), GatewayError> {
    match content {
        Value::String(_) => Ok(()),
        Value::Array(blocks) => {
            for (i, block) in blocks.iter().enumerate() {
                if block.get("type").and_then(Value::as_str).is_none() {
                    return Err(invalid(
                        format!("{at}.{i}.type: Field required"),
                        &format!("{at}.{i}.type"),
                    ));
                }
            }
            Ok(())
        }
        _ => Err(invalid(
            format!("{at}: Input should be a valid string or a list of content blocks"),
            at,
        )),
    }
}

pub fn parse_request(endpoint: Endpoint, body: &[u8]) -> Result<ApiRequest, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(format!("The request body is not valid JSON: {e}"), None)
    })?;
    let Value::Object(body) = value else {
        return Err(GatewayError::invalid(
            "The request body must be a JSON object.",
            None,
        ));
    };
    let model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        Some(Value::String(_)) => {
            return Err(invalid(
                "model: String should have at least 1 character",
                "model",
            ))
        }
        Some(_) => return Err(invalid("model: Input should be a valid string", "model")),
        None => return Err(invalid("model: Field required", "model")),
    };
    let messages = match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(Value::Array(_)) => {
            return Err(invalid(
                "messages: at least one message is required",
                "messages",
            ))
        }
        Some(_) => {
            return Err(invalid(
                "messages: Input should be a valid list",
                "messages",
            ))
        }
        None => return Err(invalid("messages: Field required", "messages")),
    };
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(invalid(
                format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
                &format!("messages.{i}.role"),
            ));
        }
        match message.get("content") {
            Some(content) => check_content(content, &format!("messages.{i}.content"))?,
            None => {
                return Err(invalid(
                    format!("messages.{i}.content: Field required"),
                    &format!("messages.{i}.content"),
                ))
            }
        }
    }
    if let Some(system) = body.get("system") {
        check_content(system, "system")?;
    }
    let max_tokens = match (endpoint, body.get("max_tokens")) {
        (_, Some(value)) => match value.as_u64() {
            Some(n) if (1..=MAX_OUTPUT_TOKENS).contains(&n) => Some(n),
            _ => {
                return Err(invalid(
                    format!("max_tokens: Input should be an integer from 1 to {MAX_OUTPUT_TOKENS}"),
                    "max_tokens",
                ))
            }
        },
        (Endpoint::Messages, None) => {
            return Err(invalid("max_tokens: Field required", "max_tokens"))
        }
        (Endpoint::CountTokens, None) => None,
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(invalid("stream: Input should be a valid boolean", "stream")),
    };
    Ok(ApiRequest {
        body: body.into(),
        messages: None,
        model,
        stream,
        // Anthropic's streams always report usage (message_start and message_delta).
        include_usage: stream,
        max_output_tokens: max_tokens,
        n: 1,
    })
}

/// Every piece of text a request sends (the system prompt, each message's text), and how many
/// other blocks it has (images, documents, tool calls and results without text), which
/// `OTHER_BLOCK_TOKENS` estimates.
pub fn texts(body: &Map<String, Value>) -> (Vec<&str>, u64) {
    let mut texts = Vec::new();
    let mut other_blocks = 0u64;
    let system = body.get("system");
    let messages = body.get("messages").and_then(Value::as_array);
    let contents = system.into_iter().chain(
        messages
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("content")),
    );
    for content in contents {
        match content {
            Value::String(text) => texts.push(text.as_str()),
            Value::Array(blocks) => {
                for block in blocks {
                    match block.get("text").and_then(Value::as_str) {
                        Some(text) => texts.push(text),
                        None => other_blocks += 1,
                    }
                }
            }
            _ => {}
        }
    }
    (texts, other_blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ApiRequest, GatewayError> {
        parse_request(Endpoint::Messages, body.as_bytes())
    }

    #[test]
    fn accepts_a_messages_request() {
        let request = parse(r#"{"model":"claude-sonnet-4-5","max_tokens":100,"system":"Be brief.","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":[{"type":"text","text":"Hello"}]}],"stream":true}"#).unwrap();
        assert_eq!(request.model, "claude-sonnet-4-5");
        assert_eq!(request.max_output_tokens, Some(100));
        assert!(request.stream && request.include_usage);
        let (texts, other) = texts(&request.body);
        assert_eq!(texts, ["Be brief.", "Hi", "Hello"]);
        assert_eq!(other, 0);
    }

    #[test]
    fn refuses_what_anthropic_refuses() {
        let cases = [
            (
                r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
                "model",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens",
            ),
            (r#"{"model":"m","max_tokens":1,"messages":[]}"#, "messages"),
            (
                r#"{"model":"","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
                "model",
            ),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#,
                "messages.0.role",
            ),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":3}]}"#,
                "messages.0.content",
            ),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"x"}]}]}"#,
                "messages.0.content.0.type",
            ),
            (
                r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                "stream",
            ),
        ];
        for (body, param) in cases {
            let error = parse(body).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(param), "{body}");
        }
        let empty = parse(r#"{"model":"","max_tokens":1,"messages":[]}"#).unwrap_err();
        assert_eq!(
            empty.message,
            "model: String should have at least 1 character"
        );
        // Counting needs no max_tokens.
        let count = parse_request(
            Endpoint::CountTokens,
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(count.max_output_tokens, None);
    }
}
