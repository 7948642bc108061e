//! OpenAI's rate-limit headers and dimension names.

use crate::decision::Decision;
use crate::dialect::duration;
use hyper::header::{HeaderName, HeaderValue};

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
    crate::dialect::rate_limit_headers(decision, &NAMES, duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmrl_core::protocol::{Limits, Reason, Verdict};

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
