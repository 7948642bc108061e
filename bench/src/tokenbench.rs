//! llmrl-tokenbench: the gateway's token counter (llmrl-tokens) against the plain bpe-openai
//! tokenizer it is built on and tiktoken-rs (the one the gateway first used), on the same inputs
//! in the same run, as `make bench` reports them: throughput on a mixed corpus, µs per typical
//! chat request on one thread and on two threads at once (as two tokio workers count), and the
//! worst case — 1 MiB of one "word", which tiktoken's BPE merges in quadratic time. Prints one
//! JSON object; `--smoke` runs tiny counts. Counts must agree on every input (checked here too).

use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// A typical chat request's texts: a system prompt, a question, a previous answer.
const CHAT: [&str; 4] = [
    "system",
    "You are a helpful assistant. Answer concisely and cite sources when you can.",
    "user",
    "Can you summarize the main trade-offs of token bucket versus sliding window rate limiting \
     for an API gateway that serves many tenants? Keep it to three bullet points.",
];

fn corpus() -> Vec<String> {
    vec![
        "The quick brown fox jumps over the lazy dog, while a rate limiter counts every token. "
            .repeat(2_000),
        "fn main() {\n    let v: Vec<u64> = (0..10).map(|i| i * i).collect();\n    println!(\"{v:?}\");\n}\n"
            .repeat(1_500),
        "日本語のテキストと中文文本和한국어 텍스트 ".repeat(3_000),
    ]
}

/// A way to count the tokens of a text.
type Counter = fn(&str) -> usize;

const COUNTERS: [(&str, Counter); 3] = [
    ("llmrl_tokens", |text| {
        llmrl_tokens::o200k_base().count(text)
    }),
    ("bpe_openai", |text| bpe_openai::o200k_base().count(text)),
    ("tiktoken_rs", |text| {
        tiktoken_rs::o200k_base_singleton()
            .encode_ordinary(text)
            .len()
    }),
];

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

/// `requests` chat requests counted on each of `threads` threads at once (the caller times
/// it): the tokens one thread counted, after checking every thread counted the same.
fn chat_on_threads(count: Counter, requests: u32, threads: usize) -> usize {
    let one = || -> usize {
        (0..requests)
            .map(|_| CHAT.iter().map(|text| count(text)).sum::<usize>())
            .sum()
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads).map(|_| scope.spawn(one)).collect();
        let counts: Vec<usize> = workers.into_iter().filter_map(|w| w.join().ok()).collect();
        assert!(
            counts.len() == threads && counts.windows(2).all(|w| w[0] == w[1]),
            "threads counted differently"
        );
        counts.first().copied().unwrap_or(0)
    })
}

/// Each counter's figure, after checking that they all counted the same.
fn agreed(what: &str, measured: Vec<(&str, f64, usize)>) -> Map<String, Value> {
    let counts: Vec<usize> = measured.iter().map(|(_, _, count)| *count).collect();
    assert!(
        counts.windows(2).all(|w| w[0] == w[1]),
        "the tokenizers disagree on {what}: {counts:?}"
    );
    measured
        .into_iter()
        .map(|(name, figure, _)| (name.to_string(), json!(figure)))
        .collect()
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let rounds = if smoke { 1 } else { 5 };
    // Build every table before timing.
    for (_, count) in COUNTERS {
        count("warm up");
    }
    let mut report = Map::new();

    let corpus = corpus();
    let bytes: usize = corpus.iter().map(String::len).sum();
    let mut tokens = 0;
    let per_s = COUNTERS
        .iter()
        .map(|(name, count)| {
            let (time, counted) = fastest(rounds, || corpus.iter().map(|t| count(t)).sum());
            tokens = counted;
            (*name, counted as f64 / time.as_secs_f64(), counted)
        })
        .collect();
    report.insert(
        "corpus".into(),
        json!({"bytes": bytes, "tokens": tokens, "tokens_per_s": agreed("the corpus", per_s)}),
    );

    let requests = if smoke { 1_000 } else { 50_000 };
    for (label, threads) in [("typical_chat", 1), ("typical_chat_2_threads", 2)] {
        let us = COUNTERS
            .iter()
            .map(|(name, count)| {
                let (time, counted) =
                    fastest(rounds, || chat_on_threads(*count, requests, threads));
                (
                    *name,
                    time.as_secs_f64() * 1e6 / f64::from(requests),
                    counted,
                )
            })
            .collect();
        report.insert(
            label.into(),
            json!({"threads": threads, "us": agreed("the chat request", us)}),
        );
    }

    let word = "a".repeat(1 << 20);
    let ms = COUNTERS
        .iter()
        .map(|(name, count)| {
            // tiktoken-rs takes ~0.4 s: once is enough.
            let rounds = if *name == "tiktoken_rs" { 1 } else { rounds };
            let (time, counted) = fastest(rounds, || count(&word));
            (*name, time.as_secs_f64() * 1e3, counted)
        })
        .collect();
    report.insert(
        "one_word_1mib".into(),
        json!({"ms": agreed("the long word", ms)}),
    );
    println!("{}", Value::Object(report));
}
