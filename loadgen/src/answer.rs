//! What the load generator reads from an answer: its usage (JSON or the usage chunk of an SSE
//! stream), whether it is a stream, and which stream pieces carry generated text.

use serde_json::Value;

/// What an answer reports it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Whether a piece of an SSE stream carries generated text (a non-empty `content` delta).
pub fn has_content(data: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"content\":\"";
    data.windows(NEEDLE.len())
        .enumerate()
        .any(|(at, window)| window == NEEDLE && data.get(at + NEEDLE.len()) != Some(&b'"'))
}

/// The usage block of a JSON response, or of the usage chunk of an SSE stream.
pub fn usage(bytes: &[u8]) -> Option<Usage> {
    let read = |value: &Value| {
        let usage = &value["usage"];
        Some(Usage {
            prompt: usage["prompt_tokens"].as_u64()?,
            completion: usage["completion_tokens"].as_u64()?,
            cached: usage["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0),
        })
    };
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        return read(&value);
    }
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find_map(|value| read(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_from_json_and_streams() {
        let usage_of = |prompt, completion, cached| {
            Some(Usage {
                prompt,
                completion,
                cached,
            })
        };
        assert_eq!(
            usage(br#"{"usage":{"prompt_tokens":5,"completion_tokens":7}}"#),
            usage_of(5, 7, 0)
        );
        assert_eq!(
            usage(br#"{"usage":{"prompt_tokens":5,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":3}}}"#),
            usage_of(5, 7, 3)
        );
        let stream = b"data: {\"choices\":[{}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        assert_eq!(usage(stream), usage_of(1, 2, 0));
        assert_eq!(usage(b"nope"), None);
    }

    #[test]
    fn sees_content_in_stream_chunks() {
        assert!(has_content(
            br#"data: {"choices":[{"delta":{"content":" the"}}]}"#
        ));
        assert!(!has_content(
            br#"data: {"choices":[{"delta":{"content":""}}]}"#
        ));
        assert!(!has_content(
            br#"data: {"choices":[{"delta":{"role":"assistant"}}]}"#
        ));
        assert!(!has_content(b"data: [DONE]"));
    }
}
