//! CORS for browser clients (`--cors-allow-origin`): preflights answered, the allowed origin and
//! the readable headers on every answer to it. Off unless configured.

use super::response::{full, set_header, Body};
use hyper::header::{HeaderMap, HeaderValue, ACCESS_CONTROL_EXPOSE_HEADERS, ORIGIN};
use hyper::{Response, StatusCode};

/// Headers a browser may read from our answers (rate-limit state, retry hints, ids).
pub const EXPOSED_HEADERS: &str = "x-request-id, request-id, retry-after, retry-after-ms, x-should-retry, \
    x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, \
    x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, \
    x-ratelimit-limit-input-tokens, x-ratelimit-remaining-input-tokens, x-ratelimit-reset-input-tokens, \
    x-ratelimit-limit-output-tokens, x-ratelimit-remaining-output-tokens, x-ratelimit-reset-output-tokens, \
    x-llmrl-binding-scope, x-llmrl-reserved-cost-usd, x-llmrl-cost-usd";

/// The origins allowed, as configured.
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    pub fn new(origins: &[String]) -> Cors {
        Cors {
            origins: origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    /// The Access-Control-Allow-Origin value for a request: `*`, or its own Origin if listed;
    /// `None` when CORS is off or the origin is not allowed.
    pub fn allowed_origin(&self, headers: &HeaderMap) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        if self.origins.iter().any(|o| o == "*") {
            return Some("*".into());
        }
        let origin = headers.get(ORIGIN)?.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then(|| origin.to_string())
    }

    /// The answer to a preflight (`OPTIONS` with Access-Control-Request-Method).
    pub fn preflight(&self, headers: &HeaderMap, methods: &str) -> Response<Body> {
        let mut response = Response::new(full(""));
        *response.status_mut() = StatusCode::NO_CONTENT;
        if let Some(origin) = self.allowed_origin(headers) {
            set_header(&mut response, "access-control-allow-origin", &origin);
            set_header(&mut response, "access-control-allow-methods", methods);
            let requested = headers
                .get("access-control-request-headers")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("authorization, content-type");
            set_header(&mut response, "access-control-allow-headers", requested);
            set_header(&mut response, "access-control-max-age", "600");
        }
        set_header(&mut response, "vary", "Origin");
        response
    }

    /// Mark an answer readable by the requesting origin ([`Cors::allowed_origin`]), if allowed,
    /// with the headers its scripts may read. Only then: a browser reads Expose-Headers only
    /// beside Allow-Origin, and every other client would just carry its 600 bytes.
    pub fn decorate(&self, origin: Option<&str>, response: &mut Response<Body>) {
        if let Some(origin) = origin {
            set_header(response, "access-control-allow-origin", origin);
            response.headers_mut().insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
            if origin != "*" {
                set_header(response, "vary", "Origin");
            }
        }
    }
}
