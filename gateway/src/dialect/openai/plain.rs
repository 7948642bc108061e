//! The common chat request read straight into what the gateway needs, without a JSON tree:
//! `model`, `messages` whose every field is one of `role`, `content` and `name` as strings, the
//! output and stream options, and any other top-level field read and dropped (nothing else at
//! the top level is counted or checked). Building the tree and dropping it was a tenth of a mock
//! request's instructions.
//!
//! Anything else — another message field, content parts, a null where a string goes, a
//! duplicate key, a value the full parse refuses — is not a plain request: `read` says `None`
//! and the full parse (`request::parse_request`) takes it, with its errors worded as OpenAI's.
//! So this path only ever agrees with that one; a property test holds the two together.

use super::request::{MAX_N, ROLES};
use crate::dialect::{ApiRequest, PlainMessage, RequestBody};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;

/// A plain chat request, validated as the full parse validates it; `None` for any other.
pub fn read(bytes: &[u8]) -> Option<ApiRequest> {
    let chat: PlainChat = serde_json::from_slice(bytes).ok()?;
    let valid_count = |n: Option<u64>| n.is_none_or(|n| n >= 1);
    let valid = !chat.model.is_empty()
        && !chat.messages.is_empty()
        && chat.messages.iter().all(|m| ROLES.contains(&m.role.as_str()))
        && valid_count(chat.max_tokens)
        && valid_count(chat.max_completion_tokens)
        && valid_count(chat.n)
        && chat.n.is_none_or(|n| n <= MAX_N)
        // Stream options only with a stream.
        && (chat.stream_options.is_none() || chat.stream == Some(true));
    valid.then(|| ApiRequest {
        body: RequestBody::unparsed(bytes),
        messages: Some(chat.messages),
        model: chat.model,
        stream: chat.stream.unwrap_or(false),
        include_usage: chat
            .stream_options
            .and_then(|options| options.include_usage)
            .unwrap_or(false),
        max_output_tokens: chat.max_completion_tokens.or(chat.max_tokens),
        n: chat.n.unwrap_or(1),
    })
}

/// The fields read; a null is as if the field were absent, as in the full parse.
struct PlainChat {
    model: String,
    messages: Vec<PlainMessage>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    n: Option<u64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChatField {
    Model,
    Messages,
    MaxTokens,
    MaxCompletionTokens,
    N,
    Stream,
    StreamOptions,
    #[serde(other)]
    Other,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum MessageField {
    Role,
    Content,
    Name,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum OptionsField {
    IncludeUsage,
    #[serde(other)]
    Other,
}

/// A value nothing reads, read as the full parse reads it: serde's `IgnoredAny` skips a number
/// without converting it, so it would take `1e999`, which the full parse refuses.
type Unread = serde_json::Value;

/// Fills `slot` once: a key given twice is not plain (the full parse keeps the last).
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
    match slot.replace(value) {
        None => Ok(()),
        Some(_) => Err(E::custom("a field given twice")),
    }
}

/// Reads only from a JSON object (a struct also reads from an array).
struct ObjectVisitor<T>(std::marker::PhantomData<T>);

/// How a type reads its object's entries.
trait FromEntries<'de>: Sized {
    fn from_entries<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

impl<'de, T: FromEntries<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_entries(map)
    }
}

fn object<'de, D: Deserializer<'de>, T: FromEntries<'de>>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
}

impl<'de> Deserialize<'de> for PlainChat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer)
    }
}

impl<'de> FromEntries<'de> for PlainChat {
    fn from_entries<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let (mut model, mut messages) = (None, None);
        let (mut max_tokens, mut max_completion_tokens, mut n) = (None, None, None);
        let (mut stream, mut stream_options) = (None, None);
        while let Some(field) = map.next_key::<ChatField>()? {
            match field {
                ChatField::Model => once(&mut model, map.next_value::<String>()?)?,
                ChatField::Messages => once(&mut messages, map.next_value::<Vec<PlainMessage>>()?)?,
                ChatField::MaxTokens => once(&mut max_tokens, map.next_value::<Option<u64>>()?)?,
                ChatField::MaxCompletionTokens => {
                    once(&mut max_completion_tokens, map.next_value::<Option<u64>>()?)?
                }
                ChatField::N => once(&mut n, map.next_value::<Option<u64>>()?)?,
                ChatField::Stream => once(&mut stream, map.next_value::<Option<bool>>()?)?,
                ChatField::StreamOptions => once(
                    &mut stream_options,
                    map.next_value::<Option<StreamOptions>>()?,
                )?,
                ChatField::Other => {
                    map.next_value::<Unread>()?;
                }
            }
        }
        Ok(PlainChat {
            model: model.ok_or_else(|| de::Error::missing_field("model"))?,
            messages: messages.ok_or_else(|| de::Error::missing_field("messages"))?,
            max_tokens: max_tokens.flatten(),
            max_completion_tokens: max_completion_tokens.flatten(),
            n: n.flatten(),
            stream: stream.flatten(),
            stream_options: stream_options.flatten(),
        })
    }
}

impl<'de> Deserialize<'de> for PlainMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer)
    }
}

impl<'de> FromEntries<'de> for PlainMessage {
    fn from_entries<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let (mut role, mut content, mut name) = (None, None, None);
        // Any other field (tool calls, a refusal...) fails the key: not plain.
        while let Some(field) = map.next_key::<MessageField>()? {
            let value = map.next_value::<String>()?;
            match field {
                MessageField::Role => once(&mut role, value)?,
                MessageField::Content => once(&mut content, value)?,
                MessageField::Name => once(&mut name, value)?,
            }
        }
        Ok(PlainMessage {
            role: role.ok_or_else(|| de::Error::missing_field("role"))?,
            content: content.ok_or_else(|| de::Error::missing_field("content"))?,
            name,
        })
    }
}

impl<'de> Deserialize<'de> for StreamOptions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer)
    }
}

impl<'de> FromEntries<'de> for StreamOptions {
    fn from_entries<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut include_usage = None;
        while let Some(field) = map.next_key::<OptionsField>()? {
            match field {
                OptionsField::IncludeUsage => {
                    once(&mut include_usage, map.next_value::<Option<bool>>()?)?
                }
                OptionsField::Other => {
                    map.next_value::<Unread>()?;
                }
            }
        }
        Ok(StreamOptions {
            include_usage: include_usage.flatten(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::openai::{request::parse_tree, Endpoint, CHAT};
    use crate::dialect::Dialect;
    use crate::tokens::Tokenizer;
    use proptest::prelude::*;
    use std::sync::LazyLock;

    static TOKENIZER: LazyLock<Tokenizer> = LazyLock::new(Tokenizer::new);

    /// A JSON value for a field: one of `choices`.
    fn value(choices: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::sample::select(choices).prop_map(str::to_string)
    }

    /// Mostly one of `right`, now and then one of `wrong`.
    fn mostly(
        right: &'static [&'static str],
        wrong: &'static [&'static str],
    ) -> impl Strategy<Value = String> {
        prop_oneof![24 => value(right), 1 => value(wrong)]
    }

    fn text() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "Hello world",
            "",
            "naïve café, 東京で",
            "line\\nbreak and a \\\"quote\\\"",
            "  spaces   and 123456 digits",
            "\\u00e9t\\u00e9",
        ])
        .prop_map(|t| format!("\"{t}\""))
    }

    /// One message: mostly plain, sometimes not (other fields, parts, nulls, wrong roles, an
    /// array instead of an object).
    fn message() -> impl Strategy<Value = String> {
        let role = mostly(
            &[r#""user""#, r#""system""#, r#""assistant""#, r#""tool""#],
            &[r#""king""#, "null", "3"],
        );
        let content = prop_oneof![
            24 => text(),
            1 => value(&["null", "5", r#"[{"type":"text","text":"hi"}]"#]),
        ];
        let name = prop_oneof![9 => text(), 1 => value(&["null"])];
        let extra = value(&[
            r#""tool_calls":[{"id":"a","type":"function"}]"#,
            r#""role":"user""#,
            r#""refusal":null"#,
        ]);
        (
            prop::option::weighted(0.98, role),
            prop::option::weighted(0.98, content),
            prop::option::weighted(0.2, name),
            prop::option::weighted(0.03, extra),
            any::<bool>(),
            prop::bool::weighted(0.01),
        )
            .prop_map(|(role, content, name, extra, reversed, array)| {
                let mut fields: Vec<String> = [
                    role.map(|r| format!(r#""role":{r}"#)),
                    content.map(|c| format!(r#""content":{c}"#)),
                    name.map(|n| format!(r#""name":{n}"#)),
                    extra,
                ]
                .into_iter()
                .flatten()
                .collect();
                if reversed {
                    fields.reverse();
                }
                if array {
                    format!("[{}]", fields.join(","))
                } else {
                    format!("{{{}}}", fields.join(","))
                }
            })
    }

    /// A chat body: each field present or not, mostly right and now and then wrong, in any
    /// order, now and then twice or with fields nothing reads.
    fn body() -> impl Strategy<Value = String> {
        let model = mostly(
            &[r#""gpt-4o""#, r#""gpt-3.5-turbo""#, r#""llama-3""#],
            &[r#""""#, "null", "7"],
        );
        let messages = prop_oneof![
            24 => prop::collection::vec(message(), 1..4)
                .prop_map(|m| format!("[{}]", m.join(","))),
            1 => value(&["[]", "null", r#""hi""#, "{}"]),
        ];
        let count = || {
            mostly(
                &["1", "16", "128", "null"],
                &[
                    "0",
                    "-1",
                    "1.5",
                    "129",
                    r#""8""#,
                    "1e2",
                    "18446744073709551616",
                ],
            )
        };
        let stream = mostly(&["true", "false", "null"], &[r#""yes""#]);
        let options = mostly(
            &[
                r#"{"include_usage":true}"#,
                r#"{"include_usage":false}"#,
                r#"{"include_usage":null}"#,
                r#"{"other":1}"#,
                "{}",
                "null",
            ],
            &[
                r#"{"include_usage":"x"}"#,
                "[]",
                r#"{"include_usage":true,"include_usage":false}"#,
            ],
        );
        let extra = value(&[
            r#""temperature":0.5"#,
            r#""tools":[{"type":"function","function":{"name":"f"}}]"#,
            r#""user":"u-1""#,
            r#""model":"gpt-4o-mini""#,
            r#""n":2"#,
            r#""temperature":1e999"#,
            r#""metadata":{"deep":[1,2,{"x":-1e400}]}"#,
        ]);
        (
            prop::option::weighted(0.99, model),
            prop::option::weighted(0.99, messages),
            prop::option::of(count()),
            prop::option::of(count()),
            prop::option::of(count()),
            prop::option::of(stream),
            prop::option::weighted(0.3, options),
            prop::collection::vec(extra, 0..2),
            any::<u64>(),
        )
            .prop_map(
                |(
                    model,
                    messages,
                    max_tokens,
                    max_completion,
                    n,
                    stream,
                    options,
                    extra,
                    order,
                )| {
                    let mut fields: Vec<String> = [
                        model.map(|v| format!(r#""model":{v}"#)),
                        messages.map(|v| format!(r#""messages":{v}"#)),
                        max_tokens.map(|v| format!(r#""max_tokens":{v}"#)),
                        max_completion.map(|v| format!(r#""max_completion_tokens":{v}"#)),
                        n.map(|v| format!(r#""n":{v}"#)),
                        stream.map(|v| format!(r#""stream":{v}"#)),
                        options.map(|v| format!(r#""stream_options":{v}"#)),
                    ]
                    .into_iter()
                    .flatten()
                    .chain(extra)
                    .collect();
                    let len = fields.len().max(1);
                    fields.rotate_left(order as usize % len);
                    format!("{{{}}}", fields.join(","))
                },
            )
    }

    /// What a request comes to: everything the limiter and the answer read from it.
    fn outcome(request: &ApiRequest) -> (String, bool, bool, Option<u64>, u64, u64) {
        (
            request.model.clone(),
            request.stream,
            request.include_usage,
            request.max_output_tokens,
            request.n,
            CHAT.count_input(&TOKENIZER, request),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whenever the plain path reads a body, the full parse admits it too and comes to the
        /// same request: model, options, counted tokens and the body's tree.
        #[test]
        fn the_plain_path_agrees_with_the_full_parse(body in body()) {
            let full = parse_tree(Endpoint::Chat, body.as_bytes());
            if let Some(plain) = read(body.as_bytes()) {
                let full = full.map_err(|e| e.message);
                prop_assert!(full.is_ok(), "{body}: plain, but the full parse says {full:?}");
                let full = full.unwrap_or_else(|_| unreachable!());
                prop_assert_eq!(outcome(&plain), outcome(&full), "{}", body);
                prop_assert_eq!(&*plain.body, &*full.body);
                prop_assert!(full.messages.is_none());
            }
        }
    }

    /// The bodies the property test draws are plain often enough to test, and not always.
    #[test]
    fn the_drawn_bodies_are_often_plain() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let bodies: Vec<String> = (0..1000)
            .filter_map(|_| body().new_tree(&mut runner).ok().map(|tree| tree.current()))
            .collect();
        let plain = bodies
            .iter()
            .filter(|b| read(b.as_bytes()).is_some())
            .count();
        let valid = bodies
            .iter()
            .filter(|b| parse_tree(Endpoint::Chat, b.as_bytes()).is_ok())
            .count();
        assert!(
            plain >= 100 && valid > plain,
            "{plain} plain, {valid} valid of 1000"
        );
    }

    #[test]
    fn the_common_request_is_plain_and_others_are_not() {
        let plain = [
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello world"}],"max_tokens":16}"#,
            r#" {"messages":[{"role":"system","content":"Be brief."},{"role":"user","name":"bob","content":"hi"}],"model":"gpt-4o","temperature":0.2,"stream":true,"stream_options":{"include_usage":true}}"#,
        ];
        for body in plain {
            let request = read(body.as_bytes()).expect(body);
            let full = parse_tree(Endpoint::Chat, body.as_bytes()).expect(body);
            assert_eq!(outcome(&request), outcome(&full), "{body}");
        }
        let others = [
            r#"["gpt-4o",[{"role":"user","content":"hi"}]]"#,
            r#"{"model":"m","messages":[["user","hi"]]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
            r#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[]}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi","name":null}]}"#,
            r#"{"model":"m","model":"n","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream_options":{}}"#,
            // Numbers out of f64's range: the full parse refuses them, so the plain path must.
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":1e999}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"x":1e999}}"#,
        ];
        for body in others {
            assert!(read(body.as_bytes()).is_none(), "{body}");
        }
    }
}
