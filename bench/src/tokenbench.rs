//! llmrl-tokenbench: the gateway's tokenizer (bpe-openai) against the one it replaced
//! (tiktoken-rs), on the same inputs in the same run, as `make bench` reports them: throughput
//! on a mixed corpus, µs per typical chat request, and the worst case — 1 MiB of one "word",
//! which tiktoken's BPE merges in quadratic time. Prints one JSON object; `--smoke` runs tiny
//! counts. Counts must agree on every input (checked here too).

use serde_json::json;
use std::time::{Duration, Instant};

/// A typical chat request's texts: a system prompt, a question, a previous answer.
const CHAT: [&str; 4] = [
    "system",
    "You are a helpful assistant. Answer concisely and cite sources when you can.",
    "user",
    "Can you summarize the main trade-offs of token bucket versus sliding window rate limiting \
     for an API gateway that serves many tenants? Keep it to three bullet points.",
];

fn corpus() -> Vec<(&'static str, String)> {
    vec![
        (
            "english",
            "The quick brown fox jumps over the lazy dog, while a rate limiter counts every token. "
                .repeat(2_000),
        ),
        (
            "code",
            "fn main() {\n    let v: Vec<u64> = (0..10).map(|i| i * i).collect();\n    println!(\"{v:?}\");\n}\n"
                .repeat(1_500),
        ),
        ("cjk", "日本語のテキストと中文文本和한국어 텍스트 ".repeat(3_000)),
    ]
}

/// Time `f` over `rounds` runs; the fastest (the least disturbed by the shared machine).
fn fastest(rounds: u32, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut count = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        count = std::hint::black_box(f());
        best = best.min(started.elapsed());
    }
    (best, count)
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let rounds = if smoke { 1 } else { 5 };
    let new = bpe_openai::o200k_base();
    let old = tiktoken_rs::o200k_base_singleton();
    let mut report = serde_json::Map::new();

    let corpus = corpus();
    let bytes: usize = corpus.iter().map(|(_, text)| text.len()).sum();
    let (new_time, new_tokens) = fastest(rounds, || {
        corpus.iter().map(|(_, t)| new.count(t.as_str())).sum()
    });
    let (old_time, old_tokens) = fastest(rounds, || {
        corpus
            .iter()
            .map(|(_, t)| old.encode_ordinary(t).len())
            .sum()
    });
    assert_eq!(
        new_tokens, old_tokens,
        "the tokenizers disagree on the corpus"
    );
    report.insert(
        "corpus".into(),
        json!({
            "bytes": bytes,
            "tokens": new_tokens,
            "bpe_openai_tokens_per_s": new_tokens as f64 / new_time.as_secs_f64(),
            "tiktoken_rs_tokens_per_s": old_tokens as f64 / old_time.as_secs_f64(),
        }),
    );

    let requests = if smoke { 1_000 } else { 50_000 };
    let (new_time, new_tokens) = fastest(rounds, || {
        (0..requests)
            .map(|_| CHAT.iter().map(|t| new.count(*t)).sum::<usize>())
            .sum()
    });
    let (old_time, old_tokens) = fastest(rounds, || {
        (0..requests)
            .map(|_| {
                CHAT.iter()
                    .map(|t| old.encode_ordinary(t).len())
                    .sum::<usize>()
            })
            .sum()
    });
    assert_eq!(
        new_tokens, old_tokens,
        "the tokenizers disagree on the chat request"
    );
    report.insert(
        "typical_chat".into(),
        json!({
            "bpe_openai_us": new_time.as_secs_f64() * 1e6 / f64::from(requests),
            "tiktoken_rs_us": old_time.as_secs_f64() * 1e6 / f64::from(requests),
        }),
    );

    let word = "a".repeat(1 << 20);
    let (new_time, new_tokens) = fastest(rounds, || new.count(word.as_str()));
    let (old_time, old_tokens) = fastest(1, || old.encode_ordinary(&word).len());
    assert_eq!(
        new_tokens, old_tokens,
        "the tokenizers disagree on the long word"
    );
    report.insert(
        "one_word_1mib".into(),
        json!({
            "tokens": new_tokens,
            "bpe_openai_ms": new_time.as_secs_f64() * 1e3,
            "tiktoken_rs_ms": old_time.as_secs_f64() * 1e3,
        }),
    );
    println!("{}", serde_json::Value::Object(report));
}
