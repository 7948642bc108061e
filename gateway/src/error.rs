//! Errors the gateway answers with, independent of the API dialect: each dialect renders a
//! [`GatewayError`] in its own wire format (OpenAI's `{"error": {...}}`, ...).

use hyper::header::{HeaderName, HeaderValue};
use hyper::StatusCode;
use llmrl_core::window::Dimension;

/// What kind of failure, in terms every dialect can map to its own error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (validation, size, content type, route).
    InvalidRequest,
    /// Missing or unknown API key.
    Authentication,
    /// A limit refused the request; retrying later can help.
    RateLimited(Dimension),
    /// The request can never fit a limit (its own cost exceeds it).
    RequestTooLarge(Dimension),
    /// A spend budget is used up (OpenAI's `insufficient_quota`).
    QuotaExceeded,
    /// The gateway or its upstream failed.
    Server,
    /// The gateway is at its connection limit.
    Overloaded,
    /// The limiter (Redis) is unreachable and the gateway fails closed.
    LimiterUnavailable,
}

/// An error answer: status, kind, a message for people, the offending parameter, a code, and
/// any headers the answer must carry (retry-after, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayError {
    pub status: StatusCode,
    pub kind: ErrorKind,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl GatewayError {
    pub fn new(status: StatusCode, kind: ErrorKind, message: impl Into<String>) -> GatewayError {
        GatewayError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            headers: Vec::new(),
        }
    }

    /// A 400 naming the offending parameter, if any.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> GatewayError {
        GatewayError {
            param: param.map(str::to_string),
            ..GatewayError::new(StatusCode::BAD_REQUEST, ErrorKind::InvalidRequest, message)
        }
    }

    /// The same error with another status (413, 415, 404, ...).
    pub fn with_status(mut self, status: StatusCode) -> GatewayError {
        self.status = status;
        self
    }

    pub fn with_code(mut self, code: &'static str) -> GatewayError {
        self.code = Some(code);
        self
    }

    /// The same error, telling the client to close the connection: answered before the request
    /// body was read, the connection cannot carry another request.
    pub fn closing_connection(self) -> GatewayError {
        self.with_header("connection", "close")
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> GatewayError {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((HeaderName::from_static(name), value));
        }
        self
    }
}
