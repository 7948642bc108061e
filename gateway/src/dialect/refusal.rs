//! The 429s every dialect words alike: a rate limit (which limit of which scope, how much is
//! used, when to retry), a request too large for a limit, an exhausted spend budget (OpenAI's
//! `insufficient_quota`), and every concurrency slot taken — with `retry-after`,
//! `retry-after-ms` and `x-should-retry`, which the OpenAI and Anthropic SDKs both honour. Each
//! dialect renders the error in its own body format.

use crate::decision::{Decision, RefusalKind};
use crate::dialect::ApiRequest;
use crate::error::{ErrorKind, GatewayError};
use hyper::StatusCode;
use llmrl_core::window::Dimension;

/// A budget that resets later than this is not worth an SDK's automatic retry
/// (`x-should-retry: false`); a rate limit always is (the SDKs wait out `retry-after`).
const RETRY_WORTHWHILE_MS: u64 = 60_000;

/// A concurrency refusal suggests retrying this soon: a slot frees when any request finishes.
const CONCURRENCY_RETRY_MS: u64 = 1_000;

/// OpenAI's reset format: `12ms` under a second, else Go-style `1s`, `9.816s`, `6m0s`, `1h2m3s`.
pub fn duration(ms: u64) -> String {
    // On every answer's headers: one string, numbers written with itoa.
    let mut out = String::with_capacity(16);
    let mut number = itoa::Buffer::new();
    if ms < 1000 {
        out.push_str(number.format(ms));
        out.push_str("ms");
        return out;
    }
    let (hours, minutes, millis) = (ms / 3_600_000, ms / 60_000 % 60, ms % 60_000);
    if hours > 0 {
        out.push_str(number.format(hours));
        out.push('h');
    }
    if hours > 0 || minutes > 0 {
        out.push_str(number.format(minutes));
        out.push('m');
    }
    out.push_str(number.format(millis / 1000));
    let fraction = millis % 1000;
    if fraction > 0 {
        out.push('.');
        let digits = [fraction / 100, fraction / 10 % 10, fraction % 10];
        let shown = if digits[2] > 0 {
            3
        } else if digits[1] > 0 {
            2
        } else {
            1
        };
        for digit in digits.iter().take(shown) {
            out.push(char::from(b'0' + *digit as u8));
        }
    }
    out.push('s');
    out
}

/// Exact to the micro-dollar, at least to the cent: `$50.00`, `$4.995`, `$0.000035` (a
/// cent-rounded `$0.00` would hide a small budget and what a request may cost).
fn dollars(micro_usd: u64) -> String {
    let fraction = format!("{:06}", micro_usd % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    format!("${}.{fraction:0<2}", micro_usd / 1_000_000)
}

fn too_many(kind: ErrorKind, message: String, code: &'static str) -> GatewayError {
    GatewayError::new(StatusCode::TOO_MANY_REQUESTS, kind, message).with_code(code)
}

/// Retry headers for a wait of `wait_ms`; `x-should-retry` as given.
fn retry_after(error: GatewayError, wait_ms: u64, should_retry: bool) -> GatewayError {
    error
        .with_header("retry-after", &wait_ms.div_ceil(1000).to_string())
        .with_header("retry-after-ms", &wait_ms.to_string())
        .with_header(
            "x-should-retry",
            if should_retry { "true" } else { "false" },
        )
}

pub fn rate_limited(request: &ApiRequest, decision: &Decision) -> GatewayError {
    let wait_ms = decision.retry_after_ms.max(0) as u64;
    let Some(refusal) = &decision.refusal else {
        let message = format!(
            "Rate limit reached for {}. Please try again in {}.",
            request.model,
            duration(wait_ms)
        );
        let error = too_many(
            ErrorKind::RateLimited(Dimension::Requests),
            message,
            "rate_limit_exceeded",
        );
        return retry_after(error, wait_ms, true);
    };
    let (scope, what, limit) = (&refusal.scope, &refusal.what, refusal.limit);
    let (used, requested) = (refusal.used, refusal.requested);
    match refusal.kind {
        RefusalKind::TooLarge if refusal.reason == "budget" => {
            let message = format!(
                "Request too large for {scope}'s budget on {what}: Budget {}, this request may cost up to {}. Ask for fewer output tokens (max_tokens) or a shorter prompt.",
                dollars(limit),
                dollars(requested)
            );
            too_many(ErrorKind::QuotaExceeded, message, "insufficient_quota")
                .with_header("x-should-retry", "false")
        }
        RefusalKind::TooLarge => {
            let message = format!(
                "Request too large for {scope} on {what}: Limit {limit}, Requested {requested}. The input or output tokens must be reduced in order to run successfully."
            );
            too_many(
                ErrorKind::RequestTooLarge(refusal.dimension),
                message,
                "rate_limit_exceeded",
            )
            .with_header("x-should-retry", "false")
        }
        RefusalKind::Budget => {
            let message = format!(
                "You exceeded your current quota: the budget of {scope} on {what} is {}, {} is used and this request may cost up to {}. The budget resets in {}.",
                dollars(limit),
                dollars(used),
                dollars(requested),
                duration(refusal.reset_ms.max(wait_ms))
            );
            let error = too_many(ErrorKind::QuotaExceeded, message, "insufficient_quota");
            retry_after(error, wait_ms, wait_ms <= RETRY_WORTHWHILE_MS)
        }
        RefusalKind::Concurrency => {
            let message = format!(
                "Too many concurrent requests for {scope}: Limit {limit} in flight. Please try again when one of them finishes."
            );
            let error = too_many(
                ErrorKind::RateLimited(Dimension::Requests),
                message,
                "rate_limit_exceeded",
            );
            retry_after(error, wait_ms.clamp(1, CONCURRENCY_RETRY_MS), true)
        }
        RefusalKind::Rate => {
            let message = format!(
                "Rate limit reached for {scope} on {what}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {}.",
                duration(wait_ms),
            );
            let error = too_many(
                ErrorKind::RateLimited(refusal.dimension),
                message,
                "rate_limit_exceeded",
            );
            retry_after(error, wait_ms, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn dollars_exact_to_the_micro_dollar() {
        assert_eq!(dollars(0), "$0.00");
        assert_eq!(dollars(50_000_000), "$50.00");
        assert_eq!(dollars(4_995_000), "$4.995");
        assert_eq!(dollars(10), "$0.00001");
        assert_eq!(dollars(35), "$0.000035");
        assert_eq!(dollars(1_500_000), "$1.50");
        assert_eq!(dollars(u64::MAX), "$18446744073709.551615");
    }

    /// What `duration` wrote before it avoided `format!`: the reference it must still match.
    fn formatted(ms: u64) -> String {
        if ms < 1000 {
            return format!("{ms}ms");
        }
        let (hours, minutes, millis) = (ms / 3_600_000, ms / 60_000 % 60, ms % 60_000);
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

    proptest::proptest! {
        #[test]
        fn durations_match_the_reference(ms in proptest::prop_oneof![0u64..200_000_000, proptest::num::u64::ANY]) {
            proptest::prop_assert_eq!(duration(ms), formatted(ms));
        }
    }
}
