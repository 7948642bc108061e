//! OpenAI request validation: errors that name the field, as OpenAI's own do.

use super::Endpoint;
use crate::dialect::ApiRequest;
use crate::error::GatewayError;
use serde_json::{Map, Value};

/// The roles a message may have.
pub(super) const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// The most choices a request may ask for.
pub(super) const MAX_N: u64 = 128;

pub(super) fn optional_u64(
    body: &Map<String, Value>,
    field: &str,
    min: u64,
) -> Result<Option<u64>, GatewayError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if n >= min => Ok(Some(n)),
            Some(_) => Err(GatewayError::invalid(
                format!(
                    "{n} is less than the minimum of {min} - '{field}'",
                    n = value
                ),
                Some(field),
            )),
            None => Err(GatewayError::invalid(
                format!(
                    "Invalid type for '{field}': expected a non-negative integer, but got {}.",
                    describe(value)
                ),
                Some(field),
            )),
        },
    }
}

pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) if n.is_i64() && n.as_i64().is_some_and(|i| i < 0) => {
            format!("a negative integer ({n})")
        }
        Value::Number(n) if n.is_f64() => format!("a decimal number ({n})"),
        Value::Number(n) => format!("a number too large ({n})"),
        Value::String(text) if text.is_empty() => "an empty string".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Parse and validate a request body for `endpoint`: a plain chat request without a tree
/// (`plain`), any other through one.
pub fn parse_request(endpoint: Endpoint, bytes: &[u8]) -> Result<ApiRequest, GatewayError> {
    if endpoint == Endpoint::Chat {
        if let Some(request) = super::plain::read(bytes) {
            return Ok(request);
        }
    }
    parse_tree(endpoint, bytes)
}

/// Parse a request body into a JSON tree and validate it, with errors worded as OpenAI's.
pub(super) fn parse_tree(endpoint: Endpoint, bytes: &[u8]) -> Result<ApiRequest, GatewayError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        GatewayError::invalid(
            format!("We could not parse the JSON body of your request ({e}). (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"),
            None,
        )
    })?;
    let Value::Object(body) = value else {
        return Err(GatewayError::invalid(
            format!(
                "The request body must be a JSON object, but got {}.",
                describe(&value)
            ),
            None,
        ));
    };
    let model = match body.get("model") {
        None => {
            return Err(GatewayError::invalid(
                "you must provide a model parameter",
                Some("model"),
            ))
        }
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(other) => {
            return Err(GatewayError::invalid(
                format!(
                    "Invalid type for 'model': expected a non-empty string, but got {}.",
                    describe(other)
                ),
                Some("model"),
            ))
        }
    };
    match endpoint {
        Endpoint::Chat => validate_messages(&body)?,
        Endpoint::Completions => validate_prompt(&body)?,
        Endpoint::Responses => return super::responses::parse(body, model),
        Endpoint::Embeddings => return super::embeddings::parse(body, model),
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(GatewayError::invalid(
                format!(
                    "Invalid type for 'stream': expected a boolean, but got {}.",
                    describe(other)
                ),
                Some("stream"),
            ))
        }
    };
    let include_usage = match body.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(options)) => {
            if !stream {
                return Err(GatewayError::invalid(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    Some("stream_options"),
                ));
            }
            match options.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(GatewayError::invalid(
                        format!("Invalid type for 'stream_options.include_usage': expected a boolean, but got {}.", describe(other)),
                        Some("stream_options.include_usage"),
                    ))
                }
            }
        }
        Some(other) => {
            return Err(GatewayError::invalid(
                format!(
                    "Invalid type for 'stream_options': expected an object, but got {}.",
                    describe(other)
                ),
                Some("stream_options"),
            ))
        }
    };
    let max_completion = optional_u64(&body, "max_completion_tokens", 1)?;
    let max_tokens = optional_u64(&body, "max_tokens", 1)?;
    let n = optional_u64(&body, "n", 1)?.unwrap_or(1);
    if n > MAX_N {
        return Err(GatewayError::invalid(
            format!("{n} is greater than the maximum of {MAX_N} - 'n'"),
            Some("n"),
        ));
    }
    Ok(ApiRequest {
        model,
        stream,
        include_usage,
        max_output_tokens: max_completion.or(max_tokens),
        n,
        body: body.into(),
        messages: None,
    })
}

fn validate_messages(body: &Map<String, Value>) -> Result<(), GatewayError> {
    let messages = match body.get("messages") {
        None => {
            return Err(GatewayError::invalid(
                "Missing required parameter: 'messages'.",
                Some("messages"),
            ))
        }
        Some(Value::Array(m)) => m,
        Some(other) => {
            return Err(GatewayError::invalid(
                format!(
                    "Invalid type for 'messages': expected an array of objects, but got {}.",
                    describe(other)
                ),
                Some("messages"),
            ))
        }
    };
    if messages.is_empty() {
        return Err(GatewayError::invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(fields) = message else {
            return Err(GatewayError::invalid(
                format!(
                    "Invalid type for 'messages[{i}]': expected an object, but got {}.",
                    describe(message)
                ),
                Some(&format!("messages[{i}]")),
            ));
        };
        let role = match fields.get("role") {
            Some(Value::String(role))
                if ROLES.contains(&role.as_str()) => role,
            Some(Value::String(role)) => {
                return Err(GatewayError::invalid(
                    format!("Invalid value: '{role}'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool', and 'function'."),
                    Some(&format!("messages[{i}].role")),
                ))
            }
            Some(other) => {
                return Err(GatewayError::invalid(
                    format!("Invalid type for 'messages[{i}].role': expected a string, but got {}.", describe(other)),
                    Some(&format!("messages[{i}].role")),
                ))
            }
            None => {
                return Err(GatewayError::invalid(
                                        format!("Missing required parameter: 'messages[{i}].role'."),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        match fields.get("content") {
            // Only an assistant turn (one that made tool calls) may come without content.
            None | Some(Value::Null) if role != "assistant" => {
                return Err(GatewayError::invalid(
                    format!("Missing required parameter: 'messages[{i}].content'."),
                    Some(&format!("messages[{i}].content")),
                ))
            }
            None | Some(Value::Null) | Some(Value::String(_)) | Some(Value::Array(_)) => {}
            Some(other) => {
                return Err(GatewayError::invalid(
                    format!("Invalid type for 'messages[{i}].content': expected one of a string or array of objects, but got {}.", describe(other)),
                    Some(&format!("messages[{i}].content")),
                ))
            }
        }
    }
    Ok(())
}

fn validate_prompt(body: &Map<String, Value>) -> Result<(), GatewayError> {
    match body.get("prompt") {
        None => Err(GatewayError::invalid(
            "Missing required parameter: 'prompt'.",
            Some("prompt"),
        )),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(other) => Err(GatewayError::invalid(
            format!(
                "Invalid type for 'prompt': expected a string or an array of strings, but got {}.",
                describe(other)
            ),
            Some("prompt"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<ApiRequest, GatewayError> {
        parse_request(Endpoint::Chat, body.as_bytes())
    }

    #[test]
    fn valid_requests() {
        let r = chat(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"n":2}"#).unwrap();
        assert_eq!((r.max_output_tokens, r.n, r.stream), (Some(5), 2, false));
        let r = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"max_completion_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(
            (r.max_output_tokens, r.stream, r.include_usage),
            (Some(7), true, true)
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("{", "could not parse the JSON body"),
            ("[]", "must be a JSON object"),
            (r#"{"messages":[]}"#, "model"),
            (r#"{"model":3,"messages":[]}"#, "'model'"),
            (
                r#"{"model":"","messages":[]}"#,
                "'model': expected a non-empty string, but got an empty string",
            ),
            (r#"{"model":"m"}"#, "'messages'"),
            (r#"{"model":"m","messages":"hi"}"#, "'messages'"),
            (r#"{"model":"m","messages":[]}"#, "empty array"),
            (r#"{"model":"m","messages":[1]}"#, "'messages[0]'"),
            (
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                "'messages[0].role'",
            ),
            (
                r#"{"model":"m","messages":[{"role":"king","content":"x"}]}"#,
                "'king'",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                "'messages[0].content'",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}]}"#,
                "Missing required parameter: 'messages[0].content'",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#,
                "'max_tokens'",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                "'max_tokens'",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1e999}"#,
                "could not parse",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}"#,
                "'n'",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":1000}"#,
                "'n'",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                "'stream'",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
                "only allowed when 'stream'",
            ),
        ];
        for (body, expected) in cases {
            let error = chat(body).unwrap_err();
            assert_eq!(error.status, 400);
            assert!(
                error.message.contains(expected),
                "{body}: {}",
                error.message
            );
        }
        let error =
            parse_request(Endpoint::Completions, br#"{"model":"m","prompt":[1]}"#).unwrap_err();
        assert!(error.message.contains("'prompt'"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(chat(&deep).is_err());
    }
}
