//! The whole (non-streamed) mock Responses answer, written piece by piece: serializing the typed
//! response object through serde cost some 14 k instructions a request, most of the mock's
//! cost, which a gateway forwarding a real upstream's answer never pays. The test holds it to
//! serde's serialization of that object, byte for byte.

use super::{final_status, ITEM_ID, RESPONSE_ID};
use crate::dialect::openai::push_json_str;
use crate::dialect::{ApiRequest, MockAnswer};

pub fn mock_body(request: &ApiRequest, answer: &MockAnswer) -> String {
    let status = final_status(answer);
    let mut number = itoa::Buffer::new();
    let mut out = String::with_capacity(720 + 2 * answer.id.len() + answer.text.len());
    out.push_str(r#"{"id":"#);
    push_json_str(&mut out, &[RESPONSE_ID, answer.id]);
    out.push_str(r#","object":"response","created_at":"#);
    out.push_str(number.format(answer.created));
    out.push_str(r#","status":"#);
    push_json_str(&mut out, &[status]);
    out.push_str(r#","error":null,"incomplete_details":"#);
    out.push_str(if status == "incomplete" {
        r#"{"reason":"max_output_tokens"}"#
    } else {
        "null"
    });
    out.push_str(r#","instructions":"#);
    match request.body.get("instructions") {
        Some(instructions) => out.push_str(&instructions.to_string()),
        None => out.push_str("null"),
    }
    out.push_str(r#","max_output_tokens":"#);
    match request.max_output_tokens {
        Some(tokens) => out.push_str(number.format(tokens)),
        None => out.push_str("null"),
    }
    out.push_str(r#","model":"#);
    push_json_str(&mut out, &[&request.model]);
    out.push_str(r#","output":[{"type":"message","id":"#);
    push_json_str(&mut out, &[ITEM_ID, answer.id]);
    out.push_str(
        r#","status":"completed","role":"assistant","content":[{"type":"output_text","text":"#,
    );
    push_json_str(&mut out, &[answer.text]);
    out.push_str(concat!(
        r#","annotations":[]}]}],"parallel_tool_calls":true,"previous_response_id":null,"#,
        r#""store":false,"temperature":1.0,"text":{"format":{"type":"text"}},"#,
        r#""tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","#,
        r#""usage":{"input_tokens":"#
    ));
    let (input, output) = (answer.input_tokens, answer.output_tokens_per_choice);
    out.push_str(number.format(input));
    out.push_str(r#","input_tokens_details":{"cached_tokens":0},"output_tokens":"#);
    out.push_str(number.format(output));
    out.push_str(r#","output_tokens_details":{"reasoning_tokens":0},"total_tokens":"#);
    out.push_str(number.format(input.saturating_add(output)));
    out.push_str(r#"},"metadata":{}}"#);
    out
}

#[cfg(test)]
mod tests {
    use super::super::{OutputMessage, ResponseObject, ResponseUsage};
    use super::*;
    use serde_json::{Map, Value};

    /// The typed response object as serde writes it: what the mock body must be.
    fn typed(request: &ApiRequest, answer: &MockAnswer) -> String {
        let (id, item_id) = (format!("resp_{}", answer.id), format!("msg_{}", answer.id));
        let output = vec![OutputMessage::new(&item_id, "completed", Some(answer.text))];
        let usage = ResponseUsage::new(answer.input_tokens, answer.output_tokens_per_choice);
        let status = final_status(answer);
        let response =
            ResponseObject::new(request, &id, answer.created, status, output, Some(usage));
        serde_json::to_string(&response).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn whole_responses_are_what_serde_writes(
            model in "[a-z0-9./\"\\\\\n\u{1}\u{7f}é-]{0,12}",
            id in "[a-z0-9_\"\\\\-]{0,10}",
            text in "[ a-zA-Z.\"\\\\\n\t\u{1f}é😀]{0,40}",
            instructions in proptest::option::of("[ a-z\"\\\\\n]{0,12}"),
            max_output_tokens in proptest::option::of(proptest::num::u64::ANY),
            created in proptest::num::u64::ANY,
            input_tokens in proptest::num::u64::ANY,
            output_tokens in proptest::num::u64::ANY,
            finish_reason in proptest::sample::select(vec!["stop", "length"]),
        ) {
            let mut body = Map::new();
            if let Some(instructions) = instructions {
                body.insert("instructions".into(), Value::String(instructions));
            }
            let request = ApiRequest {
                body: body.into(),
                messages: None,
                model,
                stream: false,
                include_usage: false,
                max_output_tokens,
                n: 1,
            };
            let answer = MockAnswer {
                id: &id,
                created,
                text: &text,
                output_tokens_per_choice: output_tokens,
                chunks: &[],
                finish_reason,
                input_tokens,
            };
            proptest::prop_assert_eq!(mock_body(&request, &answer), typed(&request, &answer));
        }
    }
}
