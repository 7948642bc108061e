//! OpenAI's chat and completions answer formats, as the built-in mock produces them: whole completions, stream
//! chunks, the usage chunk, Server-Sent Events framing.

use super::{push_json_str, Endpoint};
use crate::dialect::{ApiRequest, MockAnswer, StreamEvent};
use bytes::Bytes;
use serde_json::{json, Value};

/// OpenAI's ids: `chatcmpl-...` for chat, `cmpl-...` for completions.
fn completion_id_prefix(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Chat => "chatcmpl-",
        _ => "cmpl-",
    }
}

fn completion_id(endpoint: Endpoint, request_id: &str) -> String {
    [completion_id_prefix(endpoint), request_id].concat()
}

pub fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// A whole (non-streamed) mock response with `n` identical choices, serialized. Written piece
/// by piece: serializing it through serde cost some 7 k instructions a request, most of the
/// mock's cost, which a gateway forwarding a real upstream's answer never pays. The test below
/// holds it to serde's serialization of OpenAI's typed answer.
pub fn mock_response(endpoint: Endpoint, request: &ApiRequest, answer: &MockAnswer) -> String {
    whole_completion(endpoint, &request.model, request.n, answer)
}

fn whole_completion(endpoint: Endpoint, model: &str, n: u64, answer: &MockAnswer) -> String {
    let chat = endpoint == Endpoint::Chat;
    let prompt_tokens = answer.input_tokens;
    let completion_tokens = answer.output_tokens_per_choice.saturating_mul(n);
    let mut number = itoa::Buffer::new();
    let per_choice = 96 + answer.text.len();
    let capacity = 320 + model.len() + answer.id.len() + per_choice.saturating_mul(n as usize);
    let mut out = String::with_capacity(capacity.min(1 << 20));
    out.push_str(r#"{"id":"#);
    push_json_str(&mut out, &[completion_id_prefix(endpoint), answer.id]);
    out.push_str(if chat {
        r#","object":"chat.completion","created":"#
    } else {
        r#","object":"text_completion","created":"#
    });
    out.push_str(number.format(answer.created));
    out.push_str(r#","model":"#);
    push_json_str(&mut out, &[model]);
    out.push_str(r#","choices":["#);
    for index in 0..n {
        if index > 0 {
            out.push(',');
        }
        out.push_str(r#"{"index":"#);
        out.push_str(number.format(index));
        if chat {
            out.push_str(r#","message":{"role":"assistant","content":"#);
            push_json_str(&mut out, &[answer.text]);
            out.push_str(r#","refusal":null}"#);
        } else {
            out.push_str(r#","text":"#);
            push_json_str(&mut out, &[answer.text]);
        }
        out.push_str(r#","logprobs":null,"finish_reason":"#);
        push_json_str(&mut out, &[answer.finish_reason]);
        out.push('}');
    }
    out.push_str(r#"],"usage":{"prompt_tokens":"#);
    out.push_str(number.format(prompt_tokens));
    out.push_str(r#","completion_tokens":"#);
    out.push_str(number.format(completion_tokens));
    out.push_str(r#","total_tokens":"#);
    out.push_str(number.format(prompt_tokens.saturating_add(completion_tokens)));
    out.push_str(r#"},"system_fingerprint":"llmrl-mock"}"#);
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    /// OpenAI's whole completion as typed structs: what serde makes of them is what the
    /// hand-written answer must be, byte for byte.
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

    fn typed(endpoint: Endpoint, model: &str, n: u64, answer: &MockAnswer) -> String {
        let chat = endpoint == Endpoint::Chat;
        let completion_tokens = answer.output_tokens_per_choice.saturating_mul(n);
        let completion = Completion {
            id: &completion_id(endpoint, answer.id),
            object: if chat {
                "chat.completion"
            } else {
                "text_completion"
            },
            created: answer.created,
            model,
            choices: (0..n)
                .map(|index| Choice {
                    index,
                    message: chat.then_some(Message {
                        role: "assistant",
                        content: answer.text,
                        refusal: (),
                    }),
                    text: (!chat).then_some(answer.text),
                    logprobs: (),
                    finish_reason: answer.finish_reason,
                })
                .collect(),
            usage: Usage {
                prompt_tokens: answer.input_tokens,
                completion_tokens,
                total_tokens: answer.input_tokens.saturating_add(completion_tokens),
            },
            system_fingerprint: "llmrl-mock",
        };
        serde_json::to_string(&completion).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn whole_completions_are_what_serde_writes(
            chat in proptest::bool::ANY,
            model in "[a-z0-9./\"\\\\\n\u{1}\u{7f}é-]{0,12}",
            id in "[a-z0-9_\"\\\\-]{0,10}",
            text in "[ a-zA-Z.\"\\\\\n\t\u{1f}é😀]{0,40}",
            n in 0u64..4,
            created in proptest::num::u64::ANY,
            input_tokens in proptest::num::u64::ANY,
            per_choice in 0u64..u64::MAX / 3,
            finish_reason in proptest::sample::select(vec!["stop", "length"]),
        ) {
            let endpoint = if chat { Endpoint::Chat } else { Endpoint::Completions };
            let answer = MockAnswer {
                id: &id,
                created,
                text: &text,
                output_tokens_per_choice: per_choice,
                chunks: &[],
                finish_reason,
                input_tokens,
            };
            proptest::prop_assert_eq!(
                whole_completion(endpoint, &model, n, &answer),
                typed(endpoint, &model, n, &answer)
            );
        }
    }
}
