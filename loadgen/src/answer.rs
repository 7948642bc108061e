//! What the load generator reads from an answer, per API: its usage (a whole JSON answer, or
//! the events of a stream), whether it is a stream, and which stream pieces carry generated
//! text.

use crate::Api;
use serde_json::Value;

/// What an answer reports it used, as the gateway counts it: all prompt tokens (with those
/// served from a prompt cache among them), completion tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
}

pub fn is_event_stream(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Whether a piece of a stream carries generated text.
pub fn has_content(api: Api, data: &[u8]) -> bool {
    let (needle, non_empty): (&[u8], bool) = match api {
        Api::Chat => (b"\"content\":\"", true),
        Api::Responses => (b"\"type\":\"response.output_text.delta\"", false),
        Api::Messages => (b"\"type\":\"text_delta\"", false),
        Api::Embeddings => return false,
    };
    data.windows(needle.len()).enumerate().any(|(at, window)| {
        window == needle && !(non_empty && data.get(at + needle.len()) == Some(&b'"'))
    })
}

/// The usage of one JSON answer or event, folded into what was seen before (Anthropic's
/// streams report input first, output last).
fn fold(api: Api, so_far: Option<Usage>, value: &Value) -> Option<Usage> {
    let number = |value: &Value, pointer: &str| value.pointer(pointer).and_then(Value::as_u64);
    match api {
        // An event without usage (every chunk but the last) keeps what was seen before.
        Api::Chat | Api::Embeddings => value
            .get("usage")
            .and_then(|usage| {
                Some(Usage {
                    prompt: number(usage, "/prompt_tokens")?,
                    completion: number(usage, "/completion_tokens").unwrap_or(0),
                    cached: number(usage, "/prompt_tokens_details/cached_tokens").unwrap_or(0),
                })
            })
            .or(so_far),
        Api::Responses => {
            // A whole response, or a stream's final event carrying it.
            let response = value.get("response").unwrap_or(value);
            let usage = response.get("usage").filter(|u| u.is_object());
            usage
                .and_then(|usage| {
                    Some(Usage {
                        prompt: number(usage, "/input_tokens")?,
                        completion: number(usage, "/output_tokens")?,
                        cached: number(usage, "/input_tokens_details/cached_tokens").unwrap_or(0),
                    })
                })
                .or(so_far)
        }
        Api::Messages => {
            let message = value.get("message").unwrap_or(value);
            let Some(usage) = message.get("usage") else {
                return so_far;
            };
            let cache_read = number(usage, "/cache_read_input_tokens").unwrap_or(0);
            let input = number(usage, "/input_tokens").map(|input| {
                input + cache_read + number(usage, "/cache_creation_input_tokens").unwrap_or(0)
            });
            let earlier = so_far.unwrap_or_default();
            Some(Usage {
                prompt: input.unwrap_or(earlier.prompt),
                completion: number(usage, "/output_tokens").unwrap_or(earlier.completion),
                cached: if input.is_some() {
                    cache_read
                } else {
                    earlier.cached
                },
            })
        }
    }
}

/// The parts of an answer or event that can hold usage, and nothing else: the load generator
/// shares the machine with the gateway it measures, so it skips the rest of each answer (an
/// embedding, a Responses output tree) without building it.
#[derive(serde::Deserialize)]
struct UsageParts {
    usage: Option<Value>,
    response: Option<Holder>,
    message: Option<Holder>,
}

#[derive(serde::Deserialize)]
struct Holder {
    usage: Option<Value>,
}

/// One JSON answer or event reduced to its usage-bearing parts, shaped as the original.
fn usage_parts(json: &[u8]) -> Option<Value> {
    let parts: UsageParts = serde_json::from_slice(json).ok()?;
    let mut value = serde_json::Map::new();
    let holder = |holder: Holder| {
        let mut object = serde_json::Map::new();
        if let Some(usage) = holder.usage {
            object.insert("usage".into(), usage);
        }
        Value::Object(object)
    };
    if let Some(usage) = parts.usage {
        value.insert("usage".into(), usage);
    }
    if let Some(response) = parts.response {
        value.insert("response".into(), holder(response));
    }
    if let Some(message) = parts.message {
        value.insert("message".into(), holder(message));
    }
    Some(Value::Object(value))
}

/// The usage a whole JSON answer, or the events of an SSE stream, report.
pub fn usage(api: Api, bytes: &[u8]) -> Option<Usage> {
    if let Some(value) = usage_parts(bytes) {
        return fold(api, None, &value);
    }
    // Only events that mention usage can change what is known (the others keep it).
    bytes
        .split(|byte| *byte == b'\n')
        .filter_map(|line| line.strip_prefix(b"data: "))
        .filter(|data| data.windows(7).any(|w| w == b"\"usage\""))
        .filter_map(usage_parts)
        .fold(None, |so_far, value| fold(api, so_far, &value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_of(prompt: u64, completion: u64, cached: u64) -> Option<Usage> {
        Some(Usage {
            prompt,
            completion,
            cached,
        })
    }

    #[test]
    fn reads_chat_and_embeddings_usage() {
        assert_eq!(
            usage(
                Api::Chat,
                br#"{"usage":{"prompt_tokens":5,"completion_tokens":7}}"#
            ),
            usage_of(5, 7, 0)
        );
        assert_eq!(
            usage(Api::Chat, br#"{"usage":{"prompt_tokens":5,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":3}}}"#),
            usage_of(5, 7, 3)
        );
        let stream = b"data: {\"choices\":[{}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        assert_eq!(usage(Api::Chat, stream), usage_of(1, 2, 0));
        let usage_then_more = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: {\"choices\":[{}]}\n\n";
        assert_eq!(usage(Api::Chat, usage_then_more), usage_of(1, 2, 0));
        assert_eq!(usage(Api::Chat, b"nope"), None);
        assert_eq!(
            usage(
                Api::Embeddings,
                br#"{"usage":{"prompt_tokens":4,"total_tokens":4}}"#
            ),
            usage_of(4, 0, 0)
        );
    }

    #[test]
    fn reads_responses_and_messages_usage() {
        let whole = br#"{"object":"response","usage":{"input_tokens":9,"output_tokens":5,"input_tokens_details":{"cached_tokens":2}}}"#;
        assert_eq!(usage(Api::Responses, whole), usage_of(9, 5, 2));
        let stream = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}}\n\n";
        assert_eq!(usage(Api::Responses, stream), usage_of(3, 4, 0));
        let message = br#"{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":6,"output_tokens":2}}"#;
        assert_eq!(usage(Api::Messages, message), usage_of(16, 2, 6));
        let stream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":8,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":12}}\n\n";
        assert_eq!(usage(Api::Messages, stream), usage_of(8, 12, 0));
    }

    #[test]
    fn sees_content_in_stream_chunks() {
        assert!(has_content(
            Api::Chat,
            br#"data: {"choices":[{"delta":{"content":" the"}}]}"#
        ));
        assert!(!has_content(
            Api::Chat,
            br#"data: {"choices":[{"delta":{"content":""}}]}"#
        ));
        assert!(!has_content(Api::Chat, b"data: [DONE]"));
        assert!(has_content(
            Api::Responses,
            br#"data: {"type":"response.output_text.delta","delta":"x"}"#
        ));
        assert!(has_content(
            Api::Messages,
            br#"data: {"delta":{"type":"text_delta","text":"x"}}"#
        ));
        assert!(!has_content(
            Api::Messages,
            br#"data: {"type":"message_stop"}"#
        ));
    }
}
