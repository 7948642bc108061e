//! Building responses: bodies, JSON, errors in a dialect's format, Server-Sent Events.

use crate::dialect::Dialect;
use crate::error::GatewayError;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Frame;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use std::convert::Infallible;
use tokio::sync::mpsc;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON response from an already serialized body.
pub fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    // Room for every header an answer gets (rate limits, costs, ids): none is rehashed in.
    response.headers_mut().reserve(ANSWER_HEADERS);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The most headers a JSON answer carries: content type, twelve rate-limit headers, the
/// binding scope, two costs, two request ids, retry hints, CORS.
const ANSWER_HEADERS: usize = 24;

/// An error in `dialect`'s format, with the error's own headers.
pub fn error(dialect: &dyn Dialect, error: &GatewayError) -> Response<Body> {
    let mut response = json(dialect.error_status(error), dialect.error_body(error));
    response.headers_mut().extend(error.headers.iter().cloned());
    response
}

pub fn set_header(response: &mut Response<Body>, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        response.headers_mut().insert(name, value);
    }
}

/// A `text/event-stream` response fed by a channel.
pub fn sse(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    });
    let mut response = Response::new(BodyExt::boxed(http_body_util::StreamBody::new(stream)));
    set_header(&mut response, "content-type", "text/event-stream");
    set_header(&mut response, "cache-control", "no-cache");
    response
}

/// An upstream's answer passed on as it came.
pub fn passthrough(
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    response
}
