//! OpenAI's Responses API (`POST /v1/responses`): `input` (a string or items), `instructions`,
//! `max_output_tokens`; usage as `input_tokens` / `output_tokens`; streams of typed events
//! ending in `response.completed` (or `.incomplete`, `.failed`), which carries the usage.

mod body;

use super::request::{describe, optional_u64};
use crate::dialect::{
    event_name, named_event, ApiRequest, MockAnswer, StreamEvent, StreamUsage, Usage,
};
use crate::error::GatewayError;
use crate::tokens::Tokenizer;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Tokens counted per input item (its role and framing), and once for the reply.
const PER_ITEM_TOKENS: u64 = 3;
const REPLY_PRIMING: u64 = 3;

/// The events a stream ends with; each carries the whole response with its usage.
const FINAL_EVENTS: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

fn invalid(message: String, param: &str) -> GatewayError {
    GatewayError::invalid(message, Some(param))
}

pub fn parse(body: Map<String, Value>, model: String) -> Result<ApiRequest, GatewayError> {
    match body.get("input") {
        None => return Err(invalid("Missing required parameter: 'input'.".into(), "input")),
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let Some(item) = item.as_object() else {
                    return Err(invalid(
                        format!("Invalid type for 'input[{i}]': expected an object, but got {}.", describe(item)),
                        &format!("input[{i}]"),
                    ));
                };
                if !item.contains_key("role") && !item.contains_key("type") {
                    return Err(invalid(
                        format!("Missing required parameter: 'input[{i}].role'."),
                        &format!("input[{i}].role"),
                    ));
                }
            }
        }
        Some(other) => {
            return Err(invalid(
                format!("Invalid type for 'input': expected a string or an array of input items, but got {}.", describe(other)),
                "input",
            ))
        }
    }
    if let Some(instructions) = body.get("instructions").filter(|v| !v.is_null()) {
        if !instructions.is_string() {
            return Err(invalid(
                format!(
                    "Invalid type for 'instructions': expected a string, but got {}.",
                    describe(instructions)
                ),
                "instructions",
            ));
        }
    }
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(other) => {
            return Err(invalid(
                format!(
                    "Invalid type for 'stream': expected a boolean, but got {}.",
                    describe(other)
                ),
                "stream",
            ))
        }
    };
    let max_output_tokens = optional_u64(&body, "max_output_tokens", 1)?;
    Ok(ApiRequest {
        body: body.into(),
        messages: None,
        model,
        stream,
        // A stream's last event carries the usage, always.
        include_usage: stream,
        max_output_tokens,
        n: 1,
    })
}

/// The text of a content value: a string, or parts with `text` (other parts as their JSON).
fn content_tokens(tokenizer: &Tokenizer, model: &str, content: &Value) -> u64 {
    match content {
        Value::String(text) => tokenizer.count_text(model, text),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("text").and_then(Value::as_str) {
                Some(text) => tokenizer.count_text(model, text),
                None => tokenizer.count_text(model, &part.to_string()),
            })
            .sum(),
        Value::Null => 0,
        other => tokenizer.count_text(model, &other.to_string()),
    }
}

pub fn count_input(tokenizer: &Tokenizer, request: &ApiRequest) -> u64 {
    let model = request.model.as_str();
    let mut total = REPLY_PRIMING;
    if let Some(Value::String(instructions)) = request.body.get("instructions") {
        total += PER_ITEM_TOKENS + tokenizer.count_text(model, instructions);
    }
    match request.body.get("input") {
        Some(Value::String(text)) => total += PER_ITEM_TOKENS + tokenizer.count_text(model, text),
        Some(Value::Array(items)) => {
            for item in items {
                total += PER_ITEM_TOKENS;
                total += match item.get("content") {
                    Some(content) => content_tokens(tokenizer, model, content),
                    // Function calls, their outputs and the like: their JSON.
                    None => tokenizer.count_text(model, &item.to_string()),
                };
            }
        }
        _ => {}
    }
    total
}

pub fn reported_usage(value: &Value) -> Option<Usage> {
    let usage = value.get("usage")?;
    Some(Usage {
        input_tokens: usage.get("input_tokens")?.as_u64()?,
        output_tokens: usage.get("output_tokens")?.as_u64()?,
        cached_input_tokens: usage
            .pointer("/input_tokens_details/cached_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// A stream's usage: only its final event reports it (in its `response`).
pub fn fold_stream_usage(so_far: StreamUsage, event: &Value) -> StreamUsage {
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    if !FINAL_EVENTS.contains(&kind) {
        return so_far;
    }
    so_far.or_final(event.get("response").and_then(reported_usage))
}

pub fn is_final_event(event: &[u8]) -> bool {
    event_name(event).is_some_and(|name| FINAL_EVENTS.contains(&name))
}

#[derive(Serialize)]
struct Cached {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct Reasoning {
    reasoning_tokens: u64,
}

#[derive(Serialize)]
struct ResponseUsage {
    input_tokens: u64,
    input_tokens_details: Cached,
    output_tokens: u64,
    output_tokens_details: Reasoning,
    total_tokens: u64,
}

impl ResponseUsage {
    fn new(input_tokens: u64, output_tokens: u64) -> ResponseUsage {
        ResponseUsage {
            input_tokens,
            input_tokens_details: Cached { cached_tokens: 0 },
            output_tokens,
            output_tokens_details: Reasoning {
                reasoning_tokens: 0,
            },
            total_tokens: input_tokens.saturating_add(output_tokens),
        }
    }
}

#[derive(Serialize)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    annotations: [(); 0],
}

#[derive(Serialize)]
struct OutputMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    status: &'a str,
    role: &'static str,
    content: Vec<OutputText<'a>>,
}

impl<'a> OutputMessage<'a> {
    fn new(id: &'a str, status: &'a str, text: Option<&'a str>) -> OutputMessage<'a> {
        OutputMessage {
            kind: "message",
            id,
            status,
            role: "assistant",
            content: text
                .map(|text| OutputText {
                    kind: "output_text",
                    text,
                    annotations: [],
                })
                .into_iter()
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct Incomplete {
    reason: &'static str,
}

#[derive(Serialize)]
struct Format {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct TextOptions {
    format: Format,
}

/// The response object, typed rather than built as a `Value`: it is on every mock request's
/// path (and three times in a stream).
#[derive(Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'a str,
    error: (),
    incomplete_details: Option<Incomplete>,
    instructions: Option<&'a Value>,
    max_output_tokens: Option<u64>,
    model: &'a str,
    output: Vec<OutputMessage<'a>>,
    parallel_tool_calls: bool,
    previous_response_id: (),
    store: bool,
    temperature: f64,
    text: TextOptions,
    tool_choice: &'static str,
    tools: [(); 0],
    top_p: f64,
    truncation: &'static str,
    usage: Option<ResponseUsage>,
    metadata: Map<String, Value>,
}

impl<'a> ResponseObject<'a> {
    fn new(
        request: &'a ApiRequest,
        id: &'a str,
        created_at: u64,
        status: &'a str,
        output: Vec<OutputMessage<'a>>,
        usage: Option<ResponseUsage>,
    ) -> ResponseObject<'a> {
        ResponseObject {
            id,
            object: "response",
            created_at,
            status,
            error: (),
            incomplete_details: (status == "incomplete").then_some(Incomplete {
                reason: "max_output_tokens",
            }),
            instructions: request.body.get("instructions"),
            max_output_tokens: request.max_output_tokens,
            model: &request.model,
            output,
            parallel_tool_calls: true,
            previous_response_id: (),
            store: false,
            temperature: 1.0,
            text: TextOptions {
                format: Format { kind: "text" },
            },
            tool_choice: "auto",
            tools: [],
            top_p: 1.0,
            truncation: "disabled",
            usage,
            metadata: Map::new(),
        }
    }
}

/// The status of a finished mock response: cut short by `max_output_tokens`, or complete.
fn final_status(answer: &MockAnswer) -> &'static str {
    if answer.finish_reason == "length" {
        "incomplete"
    } else {
        "completed"
    }
}

pub use body::mock_body;

/// The prefixes of a response's id and of its output message's, before the request id.
const RESPONSE_ID: &str = "resp_";
const ITEM_ID: &str = "msg_";

/// An event carrying the whole response (`response.created`, `...in_progress`, the final one).
#[derive(Serialize)]
struct ResponseEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    response: &'a ResponseObject<'a>,
}

pub fn mock_stream(request: &ApiRequest, answer: &MockAnswer) -> Vec<StreamEvent> {
    let (id, item_id) = (
        [RESPONSE_ID, answer.id].concat(),
        [ITEM_ID, answer.id].concat(),
    );
    let mut events = Vec::with_capacity(answer.chunks.len() + 9);
    let mut sequence = 0u64;
    let mut next = || {
        sequence += 1;
        sequence - 1
    };
    let in_progress = ResponseObject::new(
        request,
        &id,
        answer.created,
        "in_progress",
        Vec::new(),
        None,
    );
    for kind in ["response.created", "response.in_progress"] {
        let event = ResponseEvent {
            kind,
            sequence_number: next(),
            response: &in_progress,
        };
        events.push(named_event(
            kind,
            serde_json::to_string(&event).unwrap_or_default(),
            0,
        ));
    }
    let mut small = |kind: &str, mut data: Value, output_tokens| {
        data["type"] = kind.into();
        data["sequence_number"] = next().into();
        events.push(named_event(kind, &data, output_tokens));
    };
    let item = |status, text| {
        serde_json::to_value(OutputMessage::new(&item_id, status, text)).unwrap_or_default()
    };
    small(
        "response.output_item.added",
        json!({"output_index": 0, "item": item("in_progress", None)}),
        0,
    );
    small(
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": []}}),
        0,
    );
    let mut text = String::new();
    let mut produced = 0u64;
    for (delta, tokens) in answer.chunks {
        small(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta}),
            *tokens,
        );
        text.push_str(delta);
        produced += tokens;
    }
    small(
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
        0,
    );
    small(
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": text, "annotations": []}}),
        0,
    );
    small(
        "response.output_item.done",
        json!({"output_index": 0, "item": item("completed", Some(&text))}),
        0,
    );
    let status = final_status(answer);
    let output = vec![OutputMessage::new(&item_id, "completed", Some(&text))];
    let usage = ResponseUsage::new(answer.input_tokens, produced);
    let done = ResponseObject::new(request, &id, answer.created, status, output, Some(usage));
    let kind = format!("response.{status}");
    let event = ResponseEvent {
        kind: &kind,
        sequence_number: next(),
        response: &done,
    };
    events.push(named_event(
        &kind,
        serde_json::to_string(&event).unwrap_or_default(),
        0,
    ));
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_body(body: &str) -> Result<ApiRequest, GatewayError> {
        let Value::Object(body) = serde_json::from_str(body).unwrap() else {
            panic!("not an object")
        };
        parse(body, "gpt-4o".into())
    }

    #[test]
    fn parses_inputs_and_refuses_bad_ones() {
        let request =
            parse_body(r#"{"model":"gpt-4o","input":"Hi","max_output_tokens":20,"stream":true}"#)
                .unwrap();
        assert_eq!(request.max_output_tokens, Some(20));
        assert!(request.stream && request.include_usage);
        let items = parse_body(
            r#"{"input":[{"role":"user","content":[{"type":"input_text","text":"Hi"}]},{"type":"function_call_output","call_id":"c","output":"42"}]}"#,
        );
        assert!(items.is_ok());
        for (body, param) in [
            (r#"{}"#, "input"),
            (r#"{"input":3}"#, "input"),
            (r#"{"input":[3]}"#, "input[0]"),
            (r#"{"input":[{"content":"x"}]}"#, "input[0].role"),
            (r#"{"input":"x","instructions":1}"#, "instructions"),
            (
                r#"{"input":"x","max_output_tokens":0}"#,
                "max_output_tokens",
            ),
        ] {
            assert_eq!(
                parse_body(body).unwrap_err().param.as_deref(),
                Some(param),
                "{body}"
            );
        }
    }

    #[test]
    fn usage_from_the_final_event() {
        let done = json!({"type": "response.completed", "response": {"usage": {
            "input_tokens": 9, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5}}});
        let folded = fold_stream_usage(StreamUsage::default(), &done);
        assert!(folded.complete);
        assert_eq!(
            folded.usage,
            Usage {
                input_tokens: 9,
                output_tokens: 5,
                cached_input_tokens: 4
            }
        );
        let delta = json!({"type": "response.output_text.delta", "delta": "x"});
        assert_eq!(
            fold_stream_usage(StreamUsage::default(), &delta),
            StreamUsage::default()
        );
        assert!(is_final_event(b"event: response.incomplete\ndata: {}\n\n"));
        assert!(!is_final_event(
            b"event: response.output_text.delta\ndata: {}\n\n"
        ));
    }
}
