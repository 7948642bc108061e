//! Proxying admitted requests to a real upstream speaking the request's dialect, streaming or
//! not, and settling the reservation with the usage the upstream reports.

use crate::admission::Settlement;
use crate::app::App;
use crate::dialect::{ApiRequest, Dialect, StreamUsage, Usage};
use crate::error::{ErrorKind, GatewayError};
use crate::http::response::{self, Body};
use crate::upstream::Upstream;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;

/// 502: the upstream could not be reached or broke off.
fn unavailable(dialect: &dyn Dialect, message: &str) -> Response<Body> {
    let error = GatewayError::new(StatusCode::BAD_GATEWAY, ErrorKind::Server, message)
        .with_code("upstream_unavailable");
    response::error(dialect, &error)
}

/// Forward an admitted request; settle once the upstream says what it really used.
pub async fn forward(
    upstream: &Upstream,
    app: &Arc<App>,
    dialect: &'static dyn Dialect,
    request: &ApiRequest,
    settlement: Settlement,
) -> Response<Body> {
    let body = dialect.upstream_body(request);
    let estimate = settlement.reserved.input_tokens;
    // Nothing was generated: give the output reservation back.
    let nothing_generated = Usage {
        input_tokens: estimate,
        output_tokens: 0,
        cached_input_tokens: 0,
    };
    let response = match upstream.send(dialect.upstream_path(), &body).await {
        Ok(response) => response,
        Err(message) => {
            crate::throttle::warn_throttled!(%message, "upstream request failed");
            settlement.complete(nothing_generated).await;
            return unavailable(dialect, &message);
        }
    };
    let status = response.status();
    let content_type = response.headers().get(CONTENT_TYPE).cloned();
    if !request.stream || !status.is_success() {
        let bytes =
            match tokio::time::timeout(upstream.timeout(), response.into_body().collect()).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                _ => {
                    settlement.complete(nothing_generated).await;
                    return unavailable(dialect, "the upstream response broke off");
                }
            };
        let usage = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|value| dialect.reported_usage(&value));
        let mut cost = None;
        match (status.is_success(), usage) {
            (true, Some(usage)) => {
                app.metrics
                    .input_estimate_error
                    .observe(usage.input_tokens.abs_diff(estimate) as f64);
                cost = settlement.cost_header(usage);
                settlement.complete(usage).await;
            }
            // A success without usage: keep the reservation, it is the safe side (the slots
            // come back).
            (true, None) => {
                let reserved = settlement.reserved;
                settlement.complete(reserved).await;
            }
            (false, _) => settlement.complete(nothing_generated).await,
        }
        let mut response = response::passthrough(status, content_type, bytes);
        response.headers_mut().extend(cost);
        return response;
    }
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let include_usage = request.include_usage;
    app.tasks.spawn(relay_stream(
        Arc::clone(app),
        dialect,
        response.into_body(),
        tx,
        include_usage,
        settlement,
    ));
    let mut response = response::sse(rx);
    *response.status_mut() = status;
    response
}

/// Copy SSE events from the upstream to the client, taking the usage chunk for settlement and
/// passing it on only if the client asked for it.
async fn relay_stream(
    app: Arc<App>,
    dialect: &'static dyn Dialect,
    mut body: Incoming,
    tx: mpsc::Sender<Bytes>,
    include_usage: bool,
    settlement: Settlement,
) {
    let mut buffer = BytesMut::new();
    let mut usage = StreamUsage::default();
    let mut settlement = Some(settlement);
    let mut client_gone = false;
    let mut upstream_failed = false;
    'read: loop {
        let frame = match body.frame().await {
            None => break,
            Some(Err(error)) => {
                crate::throttle::warn_throttled!(%error, "upstream stream broke off");
                upstream_failed = true;
                break;
            }
            Some(Ok(frame)) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.extend_from_slice(&data);
        while let Some(end) = find_event_end(&buffer) {
            let event = buffer.split_to(end);
            let mut forward = true;
            if let Some(json) = event_data(&event) {
                if let Ok(value) = serde_json::from_str::<Value>(json) {
                    if dialect.reported_usage(&value).is_some() {
                        forward = include_usage || !dialect.is_usage_only_event(&value);
                    }
                    usage = dialect.fold_stream_usage(usage, &value);
                }
            }
            // The stream's end: settled before it goes out, so a client that has seen the end
            // of its answer finds its concurrency slot free.
            if usage.complete && dialect.is_final_event(&event) {
                if let Some(settlement) = settlement.take() {
                    settle(&app, settlement, usage.usage).await;
                }
            }
            if forward && tx.send(event.freeze()).await.is_err() {
                client_gone = true;
                break 'read;
            }
        }
    }
    if !buffer.is_empty() && !client_gone {
        let _ = tx.send(buffer.freeze()).await;
    }
    let Some(settlement) = settlement else {
        return;
    };
    match usage.complete {
        true => settle(&app, settlement, usage.usage).await,
        // No usage seen (client left early or the upstream failed): the reservation stands,
        // the slots come back.
        false => {
            tracing::debug!(
                client_gone,
                upstream_failed,
                "stream ended without usage; reservation kept"
            );
            settlement.keep().await;
        }
    }
}

/// Settle a stream with the usage its upstream reported.
async fn settle(app: &App, settlement: Settlement, usage: Usage) {
    app.metrics.input_estimate_error.observe(
        usage
            .input_tokens
            .abs_diff(settlement.reserved.input_tokens) as f64,
    );
    settlement.settle(usage).await;
}

/// The length of the first complete SSE event (through its blank line), if any.
fn find_event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `data:` payload of an event, unless it is `[DONE]`.
fn event_data(event: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(event).ok()?;
    let data = text
        .lines()
        .find_map(|line| line.strip_prefix("data:"))?
        .trim();
    (data != "[DONE]").then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sse_events() {
        let buffer = b"data: {\"a\":1}\n\ndata: [DONE]\n\n";
        let end = find_event_end(buffer).unwrap();
        assert_eq!(event_data(&buffer[..end]), Some("{\"a\":1}"));
        assert_eq!(event_data(&buffer[end..]), None);
        assert_eq!(find_event_end(b"data: partial"), None);
        assert_eq!(find_event_end(b"data: x\r\n\r\nmore"), Some(11));
    }
}
