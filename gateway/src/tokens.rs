//! Input token counting with OpenAI's own encodings (`o200k_base`, `cl100k_base`), built once
//! and shared by every request.
//!
//! The counting is `llmrl-tokens` (`bpe-openai`'s linear-time BPE behind our own
//! pre-tokenizer): exactly as OpenAI's tiktoken counts, never quadratic on a long piece without
//! whitespace — a 1 MiB one-"word" prompt takes ~10 ms instead of ~0.5 s. Which model uses which
//! encoding comes from tiktoken-rs's table, which follows OpenAI's own. Large inputs are counted
//! off the async workers (see `counting`).

use crate::dialect::PlainMessage;
use llmrl_tokens::Encoding;
use serde_json::Value;
use tiktoken_rs::tokenizer::{get_tokenizer, Tokenizer as Family};

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
    o200k: &'static Encoding,
    cl100k: &'static Encoding,
    mock_tokens: Vec<u32>,
    /// The mock tokens decoded once, and where each token's text ends in it: an answer of n
    /// tokens is a slice, not a decode per request (the text is ASCII, so every prefix of
    /// tokens is a prefix of the text).
    mock_text: String,
    mock_ends: Vec<usize>,
}

impl Tokenizer {
    pub fn new() -> Tokenizer {
        let o200k = llmrl_tokens::o200k_base();
        let cl100k = llmrl_tokens::cl100k_base();
        let mock_tokens = o200k.tokenizer().encode(MOCK_TEXT.repeat(64).as_str());
        let mut mock_text = String::new();
        let mut mock_ends = vec![0];
        for token in &mock_tokens {
            let piece = o200k.tokenizer().decode(&[*token]).unwrap_or_default();
            mock_text.push_str(&piece);
            mock_ends.push(mock_text.len());
        }
        Tokenizer {
            o200k,
            cl100k,
            mock_tokens,
            mock_text,
            mock_ends,
        }
    }

    /// The encoding of a model, by OpenAI's table (as tiktoken-rs keeps it), after any
    /// `provider/` prefix: o200k_base for the GPT-4o generation and later, cl100k_base for
    /// older models and for models the table does not know.
    fn encoding(&self, model: &str) -> &Encoding {
        let model = model.rsplit('/').next().unwrap_or(model);
        match get_tokenizer(model) {
            Some(Family::O200kBase | Family::O200kHarmony) => self.o200k,
            _ => self.cl100k,
        }
    }

    pub fn count_text(&self, model: &str, text: &str) -> u64 {
        self.encoding(model).count(text) as u64
    }

    /// Tokens of a chat request's messages (already validated to be an array of objects).
    pub fn count_chat(&self, model: &str, messages: &[Value]) -> u64 {
        // The model's encoding looked up once, not per field.
        let encoding = self.encoding(model);
        let mut total = REPLY_PRIMING;
        for message in messages {
            total += TOKENS_PER_MESSAGE;
            let Some(fields) = message.as_object() else {
                continue;
            };
            for (field, value) in fields {
                total += count_value(encoding, value);
                if field == "name" {
                    total += TOKENS_PER_NAME;
                }
            }
        }
        total
    }

    /// [`Tokenizer::count_chat`] of messages read as three strings each (the same count: the
    /// tests hold the two together).
    pub fn count_plain_chat(&self, model: &str, messages: &[PlainMessage]) -> u64 {
        let encoding = self.encoding(model);
        let count = |text: &str| encoding.count(text) as u64;
        let mut total = REPLY_PRIMING;
        for message in messages {
            total += TOKENS_PER_MESSAGE + count(&message.role) + count(&message.content);
            if let Some(name) = &message.name {
                total += count(name) + TOKENS_PER_NAME;
            }
        }
        total
    }

    /// The mock answer: exactly `tokens` tokens of text (o200k), and how many that is.
    pub fn mock_completion(&self, tokens: u64) -> (&str, u64) {
        let n = usize::try_from(tokens)
            .unwrap_or(usize::MAX)
            .min(self.mock_tokens.len());
        let end = self.mock_ends.get(n).copied().unwrap_or(0);
        (self.mock_text.get(..end).unwrap_or_default(), n as u64)
    }

    /// The mock answer split into pieces of about `per_chunk` tokens, for streaming, each with
    /// its token count.
    pub fn mock_chunks(&self, tokens: u64, per_chunk: usize) -> Vec<(String, u64)> {
        let n = usize::try_from(tokens)
            .unwrap_or(usize::MAX)
            .min(self.mock_tokens.len());
        let per_chunk = per_chunk.max(1);
        // Slices of the text decoded once, as `mock_completion`'s are.
        (0..n)
            .step_by(per_chunk)
            .map(|first| {
                let (start, end) = (first, (first + per_chunk).min(n));
                let text = match (self.mock_ends.get(start), self.mock_ends.get(end)) {
                    (Some(&from), Some(&to)) => self.mock_text.get(from..to).unwrap_or_default(),
                    _ => "",
                };
                (text.to_string(), self.count_text("gpt-4o", text))
            })
            .collect()
    }
}

fn count_value(encoding: &Encoding, value: &Value) -> u64 {
    let count_text = |text: &str| encoding.count(text) as u64;
    match value {
        Value::String(text) => count_text(text),
        // Content parts: text counts, images cost a fixed amount.
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => part
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, count_text),
                Some("image_url") | Some("input_image") => TOKENS_PER_IMAGE,
                _ => count_value(encoding, part),
            })
            .sum(),
        // Tool calls and the like: their JSON text.
        Value::Object(_) => count_text(&value.to_string()),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
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
    fn models_map_to_openais_encodings() {
        let t = Tokenizer::new();
        let o200k: *const Encoding = t.o200k;
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1-nano",
            "o3-mini",
            "gpt-5",
            "openai/gpt-4o",
            "ft:gpt-4o-mini:org::id",
        ] {
            assert!(std::ptr::eq(t.encoding(model), o200k), "{model}");
        }
        for model in [
            "gpt-4",
            "gpt-3.5-turbo",
            "gpt-4-turbo",
            "text-embedding-3-small",
            "llama-3",
            "m",
        ] {
            assert!(!std::ptr::eq(t.encoding(model), o200k), "{model}");
        }
    }

    #[test]
    fn mock_completion_has_the_asked_length() {
        let t = Tokenizer::new();
        let (text, n) = t.mock_completion(17);
        assert_eq!(n, 17);
        // The slice is the decode of the first 17 tokens.
        let decoded = t.o200k.tokenizer().decode(&t.mock_tokens[..17]).unwrap();
        assert_eq!(text, decoded);
        let all = t.mock_tokens.len() as u64;
        assert_eq!(t.mock_completion(all + 5).1, all, "no more than there is");
        assert_eq!(
            t.mock_completion(all).0,
            t.o200k.tokenizer().decode(&t.mock_tokens).unwrap()
        );
        assert_eq!(t.count_text("gpt-4o", text), 17);
        let chunks = t.mock_chunks(17, 4);
        assert_eq!(chunks.len(), 5);
        let joined: String = chunks.iter().map(|(text, _)| text.as_str()).collect();
        assert_eq!(joined, text);
        assert_eq!(chunks.iter().map(|(_, n)| n).sum::<u64>(), 17);
        assert_eq!(t.mock_completion(0).1, 0);
    }
}
