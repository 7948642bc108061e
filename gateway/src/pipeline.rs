//! The stages of a limited request, in order: authenticate, read and parse the body in the
//! route's dialect, count input tokens, pick the scope and reserve output tokens, one atomic
//! check, then answer (mock or upstream) and settle. Each stage lives in its own room; this file
//! only sequences them.

use crate::admission::{self, Admission, Settlement};
use crate::answer::{mock, proxy};
use crate::app::App;
use crate::auth;
use crate::counting;
use crate::dialect::{Dialect, Usage};
use crate::error::GatewayError;
use crate::http::body;
use crate::http::response::{self, Body};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::sync::Arc;
use std::time::Duration;

/// The answer and the reason it is counted under in metrics.
pub type Outcome = (Response<Body>, &'static str);

/// An error answered before the request body was read (the unread body is still on the
/// connection).
fn refuse_unread(dialect: &dyn Dialect, error: GatewayError, reason: &'static str) -> Outcome {
    (
        response::error(dialect, &error.closing_connection()),
        reason,
    )
}

pub async fn serve(
    app: &Arc<App>,
    dialect: &'static dyn Dialect,
    request: Request<Incoming>,
    request_id: &str,
) -> Outcome {
    let key = match auth::authenticate(&app.keys(), request.headers()) {
        Ok(key) => key,
        Err(error) => return refuse_unread(dialect, error, "auth"),
    };
    if let Err(error) = body::require_json(&request) {
        return refuse_unread(dialect, error, "bad_request");
    }
    let timeout = Duration::from_millis(app.cli.read_timeout_ms);
    let bytes = match body::read(request, app.cli.body_limit, timeout).await {
        Ok(bytes) => bytes,
        Err(error) => {
            let reason = if error.status == hyper::StatusCode::PAYLOAD_TOO_LARGE {
                "too_large_body"
            } else {
                "bad_request"
            };
            return refuse_unread(dialect, error, reason);
        }
    };
    let parsed = match dialect.parse(&bytes) {
        Ok(parsed) => parsed,
        Err(error) => return (response::error(dialect, &error), "bad_request"),
    };
    let counted = counting::count_off_thread(
        &app.tokenizer,
        &app.heavy_counts,
        dialect,
        parsed,
        bytes.len(),
    )
    .await;
    let (parsed, input_tokens) = match counted {
        Ok(counted) => counted,
        Err(error) => return (response::error(dialect, &error), "internal_error"),
    };
    let scope = key.scope(&parsed.model);
    let per_choice = scope.output_reservation_per_choice(parsed.max_output_tokens, parsed.n);
    let reserved_output = per_choice.saturating_mul(parsed.n);

    let admission = match admission::admit(app, &key, scope, input_tokens, reserved_output).await {
        Ok(admission) => admission,
        Err(error) => return (response::error(dialect, &error), "limiter_unavailable"),
    };
    let mut rate_headers = Vec::new();
    let mut ticket = 0;
    if let Admission::Checked(verdict) = &admission {
        rate_headers = dialect.rate_limit_headers(scope.limits, verdict);
        if verdict.allowed {
            ticket = verdict.ticket;
        } else if key.shadow {
            app.metrics.shadow_denied.inc();
            tracing::info!(key = %key.name, reason = %verdict.reason, "shadow key over its limit; served anyway");
        } else {
            let cost = [1, input_tokens, reserved_output];
            let error = dialect.rate_limited(&parsed, scope.limits, verdict, cost);
            let reason = if verdict.too_large() {
                "too_large"
            } else {
                verdict.reason.as_str()
            };
            let mut response = response::error(dialect, &error);
            response.headers_mut().extend(rate_headers);
            return (response, reason);
        }
    }
    app.metrics.reserved_input.inc_by(input_tokens);
    app.metrics.reserved_output.inc_by(reserved_output);
    let reserved = Usage {
        input_tokens,
        output_tokens: reserved_output,
    };
    let settlement = Settlement::new(app, scope, ticket, reserved);
    let mut response = match &app.upstream {
        Some(upstream) => proxy::forward(upstream, app, dialect, &parsed, settlement).await,
        None => mock::answer(
            app,
            dialect,
            &parsed,
            request_id,
            input_tokens,
            per_choice,
            settlement,
        ),
    };
    response.headers_mut().extend(rate_headers);
    let reason = if response.status().is_success() {
        "ok"
    } else {
        "upstream_error"
    };
    (response, reason)
}
