//! Reading a request body: the content type, a size limit (declared or streamed) and a time
//! limit, each failure a clear error.

use crate::error::GatewayError;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use std::time::Duration;

/// Refuse a body that is not JSON (415) before reading it.
pub fn require_json(request: &Request<Incoming>) -> Result<(), GatewayError> {
    let json = match request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(value) => {
            let essence = value.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json") || essence.is_empty()
        }
    };
    if json {
        return Ok(());
    }
    Err(GatewayError::invalid(
        "Unsupported content type: the request body must be JSON (Content-Type: application/json).",
        None,
    )
    .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE))
}

/// Read the whole body: at most `limit` bytes (413), within `timeout` (408).
pub async fn read(
    request: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, GatewayError> {
    let too_large = || {
        GatewayError::invalid(
            format!("Request body too large: the limit is {limit} bytes."),
            None,
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let body = Limited::new(request.into_body(), limit);
    match tokio::time::timeout(timeout, body.collect()).await {
        Err(_) => Err(
            GatewayError::invalid("Timed out reading the request body.", None)
                .with_status(StatusCode::REQUEST_TIMEOUT),
        ),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(GatewayError::invalid(
            "The request body could not be read completely.",
            None,
        )),
    }
}
