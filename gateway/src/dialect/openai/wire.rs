//! OpenAI's chat and completions answer formats, as the built-in mock produces them: whole completions, stream
//! chunks, the usage chunk, Server-Sent Events framing.

use super::Endpoint;
use crate::dialect::{ApiRequest, MockAnswer, StreamEvent};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

/// OpenAI's ids: `chatcmpl-...` for chat, `cmpl-...` for completions.
fn completion_id(endpoint: Endpoint, request_id: &str) -> String {
    match endpoint {
        Endpoint::Chat => format!("chatcmpl-{request_id}"),
        _ => format!("cmpl-{request_id}"),
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
pub fn mock_response(endpoint: Endpoint, request: &ApiRequest, answer: &MockAnswer) -> String {
    let id = &completion_id(endpoint, answer.id);
    let (created, text, finish_reason) = (answer.created, answer.text, answer.finish_reason);
    let (prompt_tokens, completion_tokens_per_choice) =
        (answer.input_tokens, answer.output_tokens_per_choice);
    let chat = endpoint == Endpoint::Chat;
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
    endpoint: Endpoint,
    request: &ApiRequest,
    id: &str,
    created: u64,
    index: u64,
    delta: Value,
    finish_reason: Option<&str>,
) -> Value {
    match endpoint {
        Endpoint::Chat => json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "system_fingerprint": "llmrl-mock",
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        }),
        _ => json!({
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
pub fn usage_chunk(
    endpoint: Endpoint,
    request: &ApiRequest,
    id: &str,
    created: u64,
    usage: Value,
) -> Value {
    json!({
        "id": id,
        "object": match endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            _ => "text_completion",
        },
        "created": created,
        "model": request.model,
        "choices": [],
        "usage": usage,
    })
}

pub fn sse(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// Every event of a streamed mock answer: per choice a role chunk, the content chunks and a
/// finish chunk; then the usage chunk if asked for, and `[DONE]`.
pub fn mock_stream(
    endpoint: Endpoint,
    request: &ApiRequest,
    answer: &MockAnswer,
) -> Vec<StreamEvent> {
    let (id, created) = (&completion_id(endpoint, answer.id), answer.created);
    let chunk = |index, delta, finish| {
        sse(&mock_chunk(
            endpoint, request, id, created, index, delta, finish,
        ))
    };
    let per_choice = answer.chunks.len() + 2;
    let mut events = Vec::with_capacity(per_choice * request.n as usize + 2);
    let mut produced = 0u64;
    for index in 0..request.n {
        let role = chunk(index, json!({"role": "assistant", "content": ""}), None);
        events.push(StreamEvent {
            bytes: role,
            output_tokens: 0,
        });
        for (text, tokens) in answer.chunks {
            events.push(StreamEvent {
                bytes: chunk(index, json!({"content": text}), None),
                output_tokens: *tokens,
            });
            produced += tokens;
        }
        let last = chunk(index, json!({}), Some(answer.finish_reason));
        events.push(StreamEvent {
            bytes: last,
            output_tokens: 0,
        });
    }
    if request.include_usage {
        let usage = usage_chunk(
            endpoint,
            request,
            id,
            created,
            usage(answer.input_tokens, produced),
        );
        events.push(StreamEvent {
            bytes: sse(&usage),
            output_tokens: 0,
        });
    }
    events.push(StreamEvent {
        bytes: Bytes::from_static(SSE_DONE),
        output_tokens: 0,
    });
    events
}
