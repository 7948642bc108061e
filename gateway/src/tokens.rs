//! Input token counting with OpenAI's own encodings, built once and shared by every request.

use serde_json::Value;
use tiktoken_rs::{cl100k_base_singleton, o200k_base_singleton, CoreBPE, Rank};

/// Tokens every chat message costs besides its content, and the reply's priming, as OpenAI
/// documents for its chat models.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_NAME: u64 = 1;
const REPLY_PRIMING: u64 = 3;
/// A low-detail image costs a fixed 85 tokens; we do not fetch images to size high-detail ones.
const TOKENS_PER_IMAGE: u64 = 85;

/// The text the mock upstream answers with (a prefix of its tokens, as long as asked).
const MOCK_TEXT: &str = "The quick brown fox jumps over the lazy dog while a rate limiter counts \
    every token that passes through the gateway, so that no key ever uses more than its share of \
    requests, input tokens or output tokens in any minute, across every node at once. ";

pub struct Tokenizer {
    o200k: &'static CoreBPE,
    cl100k: &'static CoreBPE,
    mock_tokens: Vec<Rank>,
}

impl Tokenizer {
    pub fn new() -> Tokenizer {
        let o200k = o200k_base_singleton();
        let cl100k = cl100k_base_singleton();
        let mock_tokens = o200k.encode_ordinary(&MOCK_TEXT.repeat(64));
        Tokenizer {
            o200k,
            cl100k,
            mock_tokens,
        }
    }

    /// o200k_base for the GPT-4o generation and later, cl100k_base for older models.
    fn encoding(&self, model: &str) -> &CoreBPE {
        let model = model.rsplit('/').next().unwrap_or(model);
        const O200K: [&str; 8] = [
            "gpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "o1",
            "o3",
            "o4",
            "chatgpt-4o",
        ];
        if O200K.iter().any(|prefix| model.starts_with(prefix)) || model.starts_with("gpt-oss") {
            self.o200k
        } else {
            self.cl100k
        }
    }

    pub fn count_text(&self, model: &str, text: &str) -> u64 {
        self.encoding(model).encode_ordinary(text).len() as u64
    }

    /// Tokens of a chat request's messages (already validated to be an array of objects).
    pub fn count_chat(&self, model: &str, messages: &[Value]) -> u64 {
        let mut total = REPLY_PRIMING;
        for message in messages {
            total += TOKENS_PER_MESSAGE;
            let Some(fields) = message.as_object() else {
                continue;
            };
            for (field, value) in fields {
                total += self.count_value(model, value);
                if field == "name" {
                    total += TOKENS_PER_NAME;
                }
            }
        }
        total
    }

    fn count_value(&self, model: &str, value: &Value) -> u64 {
        match value {
            Value::String(text) => self.count_text(model, text),
            // Content parts: text counts, images cost a fixed amount.
            Value::Array(parts) => parts
                .iter()
                .map(|part| match part.get("type").and_then(Value::as_str) {
                    Some("text") => part
                        .get("text")
                        .and_then(Value::as_str)
                        .map_or(0, |t| self.count_text(model, t)),
                    Some("image_url") | Some("input_image") => TOKENS_PER_IMAGE,
                    _ => self.count_value(model, part),
                })
                .sum(),
            // Tool calls and the like: their JSON text.
            Value::Object(_) => self.count_text(model, &value.to_string()),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
    }

    /// The mock answer: exactly `tokens` tokens of text (o200k), and how many that is.
    pub fn mock_completion(&self, tokens: u64) -> (String, u64) {
        let n = usize::try_from(tokens)
            .unwrap_or(usize::MAX)
            .min(self.mock_tokens.len());
        let text = self
            .o200k
            .decode(&self.mock_tokens[..n])
            .unwrap_or_default();
        (text, n as u64)
    }

    /// The mock answer split into pieces of about `per_chunk` tokens, for streaming.
    pub fn mock_chunks(&self, tokens: u64, per_chunk: usize) -> Vec<String> {
        let n = usize::try_from(tokens)
            .unwrap_or(usize::MAX)
            .min(self.mock_tokens.len());
        self.mock_tokens[..n]
            .chunks(per_chunk.max(1))
            .map(|chunk| self.o200k.decode(chunk).unwrap_or_default())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_like_openai() {
        let t = Tokenizer::new();
        // "Hello world" is 2 tokens in both encodings.
        assert_eq!(t.count_text("gpt-4o", "Hello world"), 2);
        assert_eq!(t.count_text("gpt-3.5-turbo", "Hello world"), 2);
        let messages = [json!({"role": "user", "content": "Hello world"})];
        // 3 (message) + 1 ("user") + 2 (content) + 3 (priming)
        assert_eq!(t.count_chat("gpt-4o", &messages), 9);
        let named = [json!({"role": "user", "name": "bob", "content": "Hello world"})];
        assert_eq!(
            t.count_chat("gpt-4o", &named),
            9 + 1 + t.count_text("gpt-4o", "bob")
        );
        let parts = [json!({"role": "user", "content": [
            {"type": "text", "text": "Hello world"},
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
        ]})];
        assert_eq!(t.count_chat("gpt-4o", &parts), 9 + 85);
    }

    #[test]
    fn encodings_differ_by_model_family() {
        let t = Tokenizer::new();
        let text = "∮ E⋅da = Q,  n → ∞, ∑ f(i) = ∏ g(i) — 日本語のテキスト";
        assert_ne!(t.count_text("gpt-4o", text), t.count_text("gpt-4", text));
        assert_eq!(
            t.count_text("openai/gpt-4o", text),
            t.count_text("gpt-4o", text)
        );
    }

    #[test]
    fn mock_completion_has_the_asked_length() {
        let t = Tokenizer::new();
        let (text, n) = t.mock_completion(17);
        assert_eq!(n, 17);
        assert_eq!(t.count_text("gpt-4o", &text), 17);
        let chunks = t.mock_chunks(17, 4);
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks.concat(), text);
        assert_eq!(t.mock_completion(0).1, 0);
    }
}
