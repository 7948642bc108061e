//! OpenAI's Embeddings API (`POST /v1/embeddings`): input tokens only (a string, strings, or
//! token arrays), nothing generated, so nothing reserved for output. The mock answers with
//! deterministic unit vectors of the requested `dimensions`, as floats or base64 (the `openai`
//! SDKs ask for base64 by default).

use super::push_json_str;
use super::request::{describe, optional_u64};
use crate::dialect::{ApiRequest, Usage};
use crate::error::GatewayError;
use crate::tokens::Tokenizer;
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Inputs in one request, at most (OpenAI's limit).
const MAX_INPUTS: usize = 2048;
/// The largest `dimensions` accepted.
const MAX_DIMENSIONS: u64 = 8192;

fn invalid(message: String, param: &str) -> GatewayError {
    GatewayError::invalid(message, Some(param))
}

/// Whether a value is an array of token ids.
fn is_token_array(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|ids| !ids.is_empty() && ids.iter().all(Value::is_u64))
}

pub fn parse(body: Map<String, Value>, model: String) -> Result<ApiRequest, GatewayError> {
    let valid = match body.get("input") {
        None => return Err(invalid("Missing required parameter: 'input'.".into(), "input")),
        Some(Value::String(text)) => !text.is_empty(),
        Some(input @ Value::Array(items)) => {
            if items.len() > MAX_INPUTS {
                return Err(invalid(
                    format!("'input' has {} items; the maximum is {MAX_INPUTS}.", items.len()),
                    "input",
                ));
            }
            !items.is_empty()
                && (is_token_array(input)
                    || items
                        .iter()
                        .all(|item| item.as_str().is_some_and(|s| !s.is_empty()) || is_token_array(item)))
        }
        Some(other) => {
            return Err(invalid(
                format!("Invalid type for 'input': expected a string, an array of strings or token arrays, but got {}.", describe(other)),
                "input",
            ))
        }
    };
    if !valid {
        return Err(invalid(
            "'input' must be a non-empty string, an array of non-empty strings, or arrays of token ids.".into(),
            "input",
        ));
    }
    if let Some(dimensions) = optional_u64(&body, "dimensions", 1)? {
        if dimensions > MAX_DIMENSIONS {
            return Err(invalid(
                format!(
                    "{dimensions} is greater than the maximum of {MAX_DIMENSIONS} - 'dimensions'"
                ),
                "dimensions",
            ));
        }
    }
    match body.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(format)) if format == "float" || format == "base64" => {}
        Some(_) => {
            return Err(invalid(
                "'encoding_format' must be 'float' or 'base64'.".into(),
                "encoding_format",
            ))
        }
    }
    Ok(ApiRequest {
        body: body.into(),
        messages: None,
        model,
        stream: false,
        include_usage: false,
        // Nothing is generated: no output reservation.
        max_output_tokens: Some(0),
        n: 1,
    })
}

/// The inputs, each as its text or its token ids.
fn inputs(body: &Map<String, Value>) -> Vec<&Value> {
    match body.get("input") {
        Some(input @ Value::String(_)) => vec![input],
        Some(input @ Value::Array(_)) if is_token_array(input) => vec![input],
        Some(Value::Array(items)) => items.iter().collect(),
        _ => Vec::new(),
    }
}

pub fn count_input(tokenizer: &Tokenizer, request: &ApiRequest) -> u64 {
    inputs(&request.body)
        .into_iter()
        .map(|input| match input {
            Value::String(text) => tokenizer.count_text(&request.model, text),
            Value::Array(ids) => ids.len() as u64,
            _ => 0,
        })
        .sum()
}

pub fn reported_usage(value: &Value) -> Option<Usage> {
    Some(Usage {
        input_tokens: value.pointer("/usage/prompt_tokens")?.as_u64()?,
        output_tokens: 0,
        cached_input_tokens: 0,
    })
}

/// A model's vector length unless `dimensions` says.
fn default_dimensions(model: &str) -> usize {
    if model.contains("3-large") {
        3072
    } else {
        1536
    }
}

/// A unit vector of `dimensions` numbers from an xorshift generator seeded with `seed`.
fn unit_vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut state = seed | 1;
    let mut values: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    let norm = values
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    for value in &mut values {
        *value /= norm;
    }
    values
}

/// The FNV-1a hash of an input's JSON: what picks its vector.
fn input_hash(input: &Value) -> u64 {
    input
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// One unit vector per size, made once, and its base64 form.
struct Base {
    values: Vec<f32>,
    base64: String,
}

/// Sizes whose base vector is kept (each costs about 9.3 bytes a dimension).
const CACHED_SIZES: usize = 16;

fn base(dimensions: usize) -> Arc<Base> {
    static CACHE: OnceLock<Mutex<HashMap<usize, Arc<Base>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(base) = cache.get(&dimensions) {
        return Arc::clone(base);
    }
    let values = unit_vector(0x9e37_79b9_7f4a_7c15, dimensions);
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let base = Arc::new(Base {
        base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        values,
    });
    if cache.len() < CACHED_SIZES {
        cache.insert(dimensions, Arc::clone(&base));
    }
    base
}

/// An input's vector: the size's base vector rotated by a number of places its hash picks —
/// deterministic (the same input always embeds the same way), unit length, different for
/// different inputs, and as cheap to answer as passing an upstream's bytes through. Rotations
/// are by whole groups of three numbers (twelve bytes, sixteen base64 characters), so the
/// base64 form rotates with them.
fn rotation(input: &Value, dimensions: usize) -> usize {
    let groups = (dimensions / 3).max(1);
    (input_hash(input) % groups as u64) as usize * 3
}

/// The mock's answer, written straight into one string: an embedding is kilobytes of numbers,
/// and a `Value` tree of them would cost more than everything else the request does.
pub fn mock_body(request: &ApiRequest, input_tokens: u64) -> String {
    use std::fmt::Write;
    let dimensions = request
        .body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(default_dimensions(&request.model), |d| d as usize);
    let base64 = request.body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let inputs = inputs(&request.body);
    let vector = base(dimensions);
    let per_input = if base64 {
        vector.base64.len()
    } else {
        dimensions * 12
    };
    let mut number = itoa::Buffer::new();
    let mut out = String::with_capacity(96 + inputs.len() * (per_input + 48));
    out.push_str(r#"{"object":"list","data":["#);
    for (index, input) in inputs.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(r#"{"object":"embedding","index":"#);
        out.push_str(number.format(index));
        out.push_str(r#","embedding":"#);
        let shift = rotation(input, dimensions);
        if base64 && dimensions.is_multiple_of(3) {
            let (head, tail) = vector.base64.split_at(shift / 3 * 4);
            out.push('"');
            out.push_str(tail);
            out.push_str(head);
            out.push('"');
        } else if base64 {
            let rotated = vector.values[shift..].iter().chain(&vector.values[..shift]);
            let bytes: Vec<u8> = rotated.flat_map(|v| v.to_le_bytes()).collect();
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut out);
            out.push('"');
        } else {
            out.push('[');
            let rotated = vector.values[shift..].iter().chain(&vector.values[..shift]);
            for (i, value) in rotated.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{value}");
            }
            out.push(']');
        }
        out.push('}');
    }
    // Pushed, not `write!`: formatting the model as a JSON value and the rest through `fmt`
    // cost more than the answer's kilobytes of copying.
    out.push_str(r#"],"model":"#);
    push_json_str(&mut out, &[&request.model]);
    out.push_str(r#","usage":{"prompt_tokens":"#);
    out.push_str(number.format(input_tokens));
    out.push_str(r#","total_tokens":"#);
    out.push_str(number.format(input_tokens));
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_body(body: &str) -> Result<ApiRequest, GatewayError> {
        let Value::Object(body) = serde_json::from_str(body).unwrap() else {
            panic!("not an object")
        };
        parse(body, "text-embedding-3-small".into())
    }

    #[test]
    fn inputs_of_every_shape() {
        for body in [
            r#"{"input":"hello"}"#,
            r#"{"input":["a","b"]}"#,
            r#"{"input":[1,2,3]}"#,
            r#"{"input":[[1,2],[3]],"dimensions":8,"encoding_format":"base64"}"#,
        ] {
            let request = parse_body(body).unwrap();
            assert_eq!(request.max_output_tokens, Some(0), "{body}");
        }
        for (body, param) in [
            (r#"{}"#, "input"),
            (r#"{"input":""}"#, "input"),
            (r#"{"input":[]}"#, "input"),
            (r#"{"input":[1,"a"]}"#, "input"),
            (r#"{"input":{"a":1}}"#, "input"),
            (r#"{"input":"x","dimensions":0}"#, "dimensions"),
            (
                r#"{"input":"x","encoding_format":"hex"}"#,
                "encoding_format",
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
    fn vectors_are_deterministic_units_of_the_asked_size() {
        let a = unit_vector(7, 64);
        assert_eq!(a.len(), 64);
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        // Inputs pick different rotations, the same input always the same one.
        let text = |s: &str| Value::String(s.into());
        assert_eq!(
            rotation(&text("hello"), 1536),
            rotation(&text("hello"), 1536)
        );
        let rotations: std::collections::HashSet<usize> = (0..50)
            .map(|i| rotation(&text(&format!("input {i}")), 1536))
            .collect();
        assert!(rotations.len() > 40, "{}", rotations.len());
        assert!(rotations.iter().all(|r| r % 3 == 0 && *r < 1536));
        let request =
            parse_body(r#"{"input":["a","b"],"dimensions":4,"encoding_format":"base64"}"#).unwrap();
        let body: Value = serde_json::from_str(&mock_body(&request, 2)).unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 2);
        let encoded = body["data"][1]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes.len(), 4 * 4);
        assert_eq!(body["usage"]["prompt_tokens"], 2);
        assert_eq!(body["usage"]["total_tokens"], 2);
        assert_eq!(body["model"], "text-embedding-3-small");
        assert_eq!(body["object"], "list");
        for (index, item) in body["data"].as_array().unwrap().iter().enumerate() {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], index);
        }
        // A model name that needs escaping stays one JSON string.
        let mut quoted = request.clone();
        quoted.model = "a\"b\\c\n".into();
        let body: Value = serde_json::from_str(&mock_body(&quoted, 7)).unwrap();
        assert_eq!(body["model"], "a\"b\\c\n");
        assert_eq!(body["usage"]["total_tokens"], 7);
        let floats = parse_body(r#"{"input":"a","dimensions":3}"#).unwrap();
        let body: Value = serde_json::from_str(&mock_body(&floats, 1)).unwrap();
        let values = body["data"][0]["embedding"].as_array().unwrap();
        assert_eq!(values.len(), 3);
        assert!(values
            .iter()
            .all(|v| v.as_f64().is_some_and(|v| v.abs() <= 1.0)));
    }
}
