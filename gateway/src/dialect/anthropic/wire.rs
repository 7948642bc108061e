//! Anthropic's answer formats, as the built-in mock produces them: a whole message, and the
//! Server-Sent Events of a stream (`message_start`, `content_block_start`, `ping`,
//! `content_block_delta`, `content_block_stop`, `message_delta` with usage, `message_stop`).

use crate::dialect::{named_event, ApiRequest, MockAnswer, StreamEvent};
use serde_json::{json, Value};

/// Anthropic's `stop_reason` for the mock's finish reason.
fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        _ => "end_turn",
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    })
}

pub fn message_id(request_id: &str) -> String {
    format!("msg_{request_id}")
}

/// A whole (non-streamed) mock message, serialized.
pub fn mock_message(request: &ApiRequest, answer: &MockAnswer) -> String {
    json!({
        "id": message_id(answer.id),
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": [{"type": "text", "text": answer.text}],
        "stop_reason": stop_reason(answer.finish_reason),
        "stop_sequence": null,
        "usage": usage(answer.input_tokens, answer.output_tokens_per_choice),
    })
    .to_string()
}

/// Every event of a streamed mock message, in Anthropic's order.
pub fn mock_stream(request: &ApiRequest, answer: &MockAnswer) -> Vec<StreamEvent> {
    let mut events = Vec::with_capacity(answer.chunks.len() + 6);
    events.push(named_event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": message_id(answer.id),
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            "usage": usage(answer.input_tokens, 1),
        }}),
        0,
    ));
    events.push(named_event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        0,
    ));
    events.push(named_event("ping", json!({"type": "ping"}), 0));
    let mut produced = 0u64;
    for (text, tokens) in answer.chunks {
        events.push(named_event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            *tokens,
        ));
        produced += tokens;
    }
    events.push(named_event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
        0,
    ));
    events.push(named_event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": stop_reason(answer.finish_reason), "stop_sequence": null},
               "usage": {"output_tokens": produced}}),
        0,
    ));
    events.push(named_event(
        "message_stop",
        json!({"type": "message_stop"}),
        0,
    ));
    events
}
