//! Anthropic's rate-limit headers: `anthropic-ratelimit-{requests,tokens,input-tokens,
//! output-tokens}-{limit,remaining,reset}`, each reset an RFC 3339 UTC time.

use crate::decision::Decision;
use hyper::header::{HeaderName, HeaderValue};
use llmrl_core::period::civil_from_days;

/// Header names per decision figure (requests, input tokens, output tokens, tokens): limit,
/// remaining, reset.
const NAMES: [[HeaderName; 3]; 4] = [
    [
        HeaderName::from_static("anthropic-ratelimit-requests-limit"),
        HeaderName::from_static("anthropic-ratelimit-requests-remaining"),
        HeaderName::from_static("anthropic-ratelimit-requests-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-input-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-input-tokens-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-output-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-output-tokens-reset"),
    ],
    [
        HeaderName::from_static("anthropic-ratelimit-tokens-limit"),
        HeaderName::from_static("anthropic-ratelimit-tokens-remaining"),
        HeaderName::from_static("anthropic-ratelimit-tokens-reset"),
    ],
];

/// A Unix time in ms as RFC 3339 UTC, to the second (rounded up: never earlier than the reset).
pub fn rfc3339(unix_ms: u64) -> String {
    let seconds = unix_ms.div_ceil(1000);
    let days = i128::from(seconds / 86_400);
    let (year, month, day) = civil_from_days(days);
    let in_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

pub fn rate_limit_headers(decision: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    let now = crate::metrics::unix_ms();
    crate::dialect::rate_limit_headers(decision, &NAMES, |reset_ms| {
        rfc3339(now.saturating_add(reset_ms))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2024-02-29T23:59:59.001Z rounds up to the next second.
        assert_eq!(rfc3339(1_709_251_199_001), "2024-03-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_633_600_000), "2025-12-02T00:00:00Z");
    }
}
