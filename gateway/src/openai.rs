//! OpenAI's wire formats: request validation with errors that name the problem, error bodies,
//! and the built-in mock's responses and stream chunks.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// A JSON error in OpenAI's format, with its HTTP status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
}

/// A validated request, with what the limiter needs from it.
#[derive(Debug, Clone)]
pub struct Request {
    pub endpoint: Endpoint,
    pub body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk at the end of a stream.
    pub include_usage: bool,
    /// max_completion_tokens or max_tokens, per choice.
    pub max_tokens: Option<u64>,
    pub n: u64,
}

fn optional_u64(body: &Map<String, Value>, field: &str, min: u64) -> Result<Option<u64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if n >= min => Ok(Some(n)),
            Some(_) => Err(ApiError::invalid(
                format!(
                    "{n} is less than the minimum of {min} - '{field}'",
                    n = value
                ),
                Some(field),
            )),
            None => Err(ApiError::invalid(
                format!(
                    "Invalid type for '{field}': expected a non-negative integer, but got {}.",
                    describe(value)
                ),
                Some(field),
            )),
        },
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) if n.is_i64() && n.as_i64().is_some_and(|i| i < 0) => {
            format!("a negative integer ({n})")
        }
        Value::Number(n) if n.is_f64() => format!("a decimal number ({n})"),
        Value::Number(n) => format!("a number too large ({n})"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Parse and validate a request body for `endpoint`.
pub fn parse_request(endpoint: Endpoint, bytes: &[u8]) -> Result<Request, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(
            format!("We could not parse the JSON body of your request ({e}). (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"),
            None,
        )
    })?;
    let Value::Object(body) = value else {
        return Err(ApiError::invalid(
            format!(
                "The request body must be a JSON object, but got {}.",
                describe(&value)
            ),
            None,
        ));
    };
    let model = match body.get("model") {
        None => {
            return Err(ApiError::invalid(
                "you must provide a model parameter",
                Some("model"),
            ))
        }
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(other) => {
            return Err(ApiError::invalid(
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
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::invalid(
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
                return Err(ApiError::invalid(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    Some("stream_options"),
                ));
            }
            match options.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(ApiError::invalid(
                        format!("Invalid type for 'stream_options.include_usage': expected a boolean, but got {}.", describe(other)),
                        Some("stream_options.include_usage"),
                    ))
                }
            }
        }
        Some(other) => {
            return Err(ApiError::invalid(
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
    if n > 128 {
        return Err(ApiError::invalid(
            format!("{n} is greater than the maximum of 128 - 'n'"),
            Some("n"),
        ));
    }
    Ok(Request {
        endpoint,
        model,
        stream,
        include_usage,
        max_tokens: max_completion.or(max_tokens),
        n,
        body,
    })
}

fn validate_messages(body: &Map<String, Value>) -> Result<(), ApiError> {
    let messages = match body.get("messages") {
        None => {
            return Err(ApiError::invalid(
                "Missing required parameter: 'messages'.",
                Some("messages"),
            ))
        }
        Some(Value::Array(m)) => m,
        Some(other) => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid type for 'messages': expected an array of objects, but got {}.",
                    describe(other)
                ),
                Some("messages"),
            ))
        }
    };
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
        ));
    }
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(fields) = message else {
            return Err(ApiError::invalid(
                format!(
                    "Invalid type for 'messages[{i}]': expected an object, but got {}.",
                    describe(message)
                ),
                Some(&format!("messages[{i}]")),
            ));
        };
        let role = match fields.get("role") {
            Some(Value::String(role))
                if ["system", "developer", "user", "assistant", "tool", "function"].contains(&role.as_str()) => role,
            Some(Value::String(role)) => {
                return Err(ApiError::invalid(
                    format!("Invalid value: '{role}'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool', and 'function'."),
                    Some(&format!("messages[{i}].role")),
                ))
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("Invalid type for 'messages[{i}].role': expected a string, but got {}.", describe(other)),
                    Some(&format!("messages[{i}].role")),
                ))
            }
            None => {
                return Err(ApiError::invalid(
                                        format!("Missing required parameter: 'messages[{i}].role'."),
                    Some(&format!("messages[{i}].role")),
                ))
            }
        };
        match fields.get("content") {
            // Only an assistant turn (one that made tool calls) may come without content.
            None | Some(Value::Null) if role != "assistant" => {
                return Err(ApiError::invalid(
                    format!("Missing required parameter: 'messages[{i}].content'."),
                    Some(&format!("messages[{i}].content")),
                ))
            }
            None | Some(Value::Null) | Some(Value::String(_)) | Some(Value::Array(_)) => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("Invalid type for 'messages[{i}].content': expected one of a string or array of objects, but got {}.", describe(other)),
                    Some(&format!("messages[{i}].content")),
                ))
            }
        }
    }
    Ok(())
}

fn validate_prompt(body: &Map<String, Value>) -> Result<(), ApiError> {
    match body.get("prompt") {
        None => Err(ApiError::invalid(
            "Missing required parameter: 'prompt'.",
            Some("prompt"),
        )),
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(()),
        Some(other) => Err(ApiError::invalid(
            format!(
                "Invalid type for 'prompt': expected a string or an array of strings, but got {}.",
                describe(other)
            ),
            Some("prompt"),
        )),
    }
}

/// The prompt strings of a completions request.
pub fn prompts(body: &Map<String, Value>) -> Vec<&str> {
    match body.get("prompt") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

pub fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: (),
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Message<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    logprobs: (),
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    usage: Usage,
    system_fingerprint: &'static str,
}

/// A whole (non-streamed) mock response with `n` identical choices, serialized. Typed rather
/// than built as a `Value`: this is on every mock request's path.
pub fn mock_response(
    request: &Request,
    id: &str,
    created: u64,
    text: &str,
    finish_reason: &str,
    prompt_tokens: u64,
    completion_tokens_per_choice: u64,
) -> String {
    let chat = request.endpoint == Endpoint::Chat;
    let choices = (0..request.n)
        .map(|index| Choice {
            index,
            message: chat.then_some(Message {
                role: "assistant",
                content: text,
                refusal: (),
            }),
            text: (!chat).then_some(text),
            logprobs: (),
            finish_reason,
        })
        .collect();
    let completion_tokens = completion_tokens_per_choice.saturating_mul(request.n);
    let completion = Completion {
        id,
        object: if chat {
            "chat.completion"
        } else {
            "text_completion"
        },
        created,
        model: &request.model,
        choices,
        usage: Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        },
        system_fingerprint: "llmrl-mock",
    };
    serde_json::to_string(&completion).unwrap_or_default()
}

/// One Server-Sent Events chunk of a mock stream.
pub fn mock_chunk(
    request: &Request,
    id: &str,
    created: u64,
    index: u64,
    delta: Value,
    finish_reason: Option<&str>,
) -> Value {
    match request.endpoint {
        Endpoint::Chat => json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "system_fingerprint": "llmrl-mock",
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        }),
        Endpoint::Completions => json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": request.model,
            "choices": [{
                "index": index,
                "text": delta.get("content").and_then(Value::as_str).unwrap_or(""),
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        }),
    }
}

/// The final usage chunk (`stream_options.include_usage`): no choices, just usage.
pub fn usage_chunk(request: &Request, id: &str, created: u64, usage: Value) -> Value {
    json!({
        "id": id,
        "object": match request.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completions => "text_completion",
        },
        "created": created,
        "model": request.model,
        "choices": [],
        "usage": usage,
    })
}

pub fn sse(data: &Value) -> bytes::Bytes {
    bytes::Bytes::from(format!("data: {data}\n\n"))
}

pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Request, ApiError> {
        parse_request(Endpoint::Chat, body.as_bytes())
    }

    #[test]
    fn valid_requests() {
        let r = chat(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"n":2}"#).unwrap();
        assert_eq!((r.max_tokens, r.n, r.stream), (Some(5), 2, false));
        let r = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"max_completion_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(
            (r.max_tokens, r.stream, r.include_usage),
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
