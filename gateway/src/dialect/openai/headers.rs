//! OpenAI's rate-limit headers, dimension names and duration format.

use crate::decision::Decision;
use hyper::header::{HeaderName, HeaderValue};

/// OpenAI's reset format: `12ms` under a second, else Go-style `1s`, `9.816s`, `6m0s`, `1h2m3s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let millis = ms % 60_000;
    let seconds = if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        let text = format!("{}.{:03}", millis / 1000, millis % 1000);
        format!("{}s", text.trim_end_matches('0'))
    };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

/// The three dimensions as OpenAI names them in headers and 429 bodies.
pub const DIMENSIONS: [(&str, &str, &str); 3] = [
    ("requests", "requests", "requests per min (RPM)"),
    (
        "input-tokens",
        "input_tokens",
        "input tokens per min (ITPM)",
    ),
    (
        "output-tokens",
        "output_tokens",
        "output tokens per min (OTPM)",
    ),
];

/// Header names per dimension (requests, input tokens, output tokens, binding tokens):
/// limit, remaining, reset. Static, so building a response parses no names.
const NAMES: [[HeaderName; 3]; 4] = [
    [
        HeaderName::from_static("x-ratelimit-limit-requests"),
        HeaderName::from_static("x-ratelimit-remaining-requests"),
        HeaderName::from_static("x-ratelimit-reset-requests"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-input-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-input-tokens"),
        HeaderName::from_static("x-ratelimit-reset-input-tokens"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-output-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-output-tokens"),
        HeaderName::from_static("x-ratelimit-reset-output-tokens"),
    ],
    [
        HeaderName::from_static("x-ratelimit-limit-tokens"),
        HeaderName::from_static("x-ratelimit-remaining-tokens"),
        HeaderName::from_static("x-ratelimit-reset-tokens"),
    ],
];

/// Every `x-ratelimit-*` header for a decision (unlimited dimensions are left out), and with a
/// multi-scope policy `x-llmrl-binding-scope`: the scope with the smallest share left.
pub fn rate_limit_headers(decision: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::with_capacity(13);
    for (names, figure) in NAMES.iter().zip(&decision.figures) {
        let Some(figure) = figure else {
            continue;
        };
        let reset = HeaderValue::from_str(&duration(figure.reset_ms))
            .unwrap_or(HeaderValue::from_static("0ms"));
        headers.push((names[0].clone(), HeaderValue::from(figure.limit)));
        headers.push((names[1].clone(), HeaderValue::from(figure.remaining)));
        headers.push((names[2].clone(), reset));
    }
    if let Some(binding) = &decision.binding {
        if let Ok(value) = HeaderValue::from_str(binding) {
            headers.push((HeaderName::from_static("x-llmrl-binding-scope"), value));
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmrl_core::protocol::{Limits, Reason, Verdict};

    #[test]
    fn durations_like_openai() {
        assert_eq!(duration(0), "0ms");
        assert_eq!(duration(12), "12ms");
        assert_eq!(duration(1000), "1s");
        assert_eq!(duration(9816), "9.816s");
        assert_eq!(duration(6410), "6.41s");
        assert_eq!(duration(360_000), "6m0s");
        assert_eq!(duration(61_500), "1m1.5s");
        assert_eq!(duration(3_723_000), "1h2m3s");
    }

    #[test]
    fn headers_pick_the_binding_token_limit() {
        let verdict = Verdict {
            allowed: true,
            reason: Reason::Ok,
            retry_after_ms: 0,
            remaining: [9, 900, 100],
            reset_ms: [6000, 6000, 59_000],
            ticket: 1,
        };
        let limits = Limits {
            rpm: 10,
            itpm: 1000,
            otpm: 1000,
        };
        let h = rate_limit_headers(&Decision::single(&verdict, limits, 60_000, "m", [1, 1, 1]));
        let get = |n: &str| {
            h.iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| v.to_str().ok())
        };
        assert_eq!(get("x-ratelimit-limit-requests"), Some("10"));
        assert_eq!(get("x-ratelimit-remaining-input-tokens"), Some("900"));
        assert_eq!(get("x-ratelimit-remaining-tokens"), Some("100"));
        assert_eq!(get("x-ratelimit-reset-tokens"), Some("59s"));
        assert_eq!(get("x-ratelimit-reset-requests"), Some("6s"));
        let limits = Limits {
            rpm: 0,
            itpm: 0,
            otpm: 5,
        };
        let h = rate_limit_headers(&Decision::single(&verdict, limits, 60_000, "m", [1, 1, 1]));
        assert_eq!(h.len(), 6);
    }
}
