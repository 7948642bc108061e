//! The stages of a limited request, in order: authenticate, read and parse the body in the
//! route's dialect, count input tokens, pick the scope and reserve output tokens, one atomic
//! check, then answer (mock or upstream) and settle. Each stage lives in its own room; this file
//! only sequences them.

use crate::admission::{self, Settlement};
use crate::answer::{mock, proxy};
use crate::app::App;
use crate::auth;
use crate::counting;
use crate::decision::RefusalKind;
use crate::dialect::{Dialect, Usage};
use crate::error::GatewayError;
use crate::http::body;
use crate::http::response::{self, Body};
use hyper::body::Incoming;
use hyper::header::HeaderName;
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
    let plan = key.plan(&parsed.model);
    let per_choice = plan.output_reservation_per_choice(parsed.max_output_tokens, parsed.n);
    let reserved = Usage {
        input_tokens,
        output_tokens: per_choice.saturating_mul(parsed.n),
        cached_input_tokens: 0,
    };
    if plan.counts_spend && plan.price.is_none() {
        let error = GatewayError::invalid(
            format!(
                "The model {} has no price in the gateway's keys file, and a spend budget applies to this key.",
                parsed.model
            ),
            Some("model"),
        );
        return (response::error(dialect, &error), "bad_request");
    }
    // Reserved at the full input price: what the cache saves is refunded at settlement.
    let reserved_cost = admission::micro_usd(plan.price, reserved);

    let admission = match admission::admit(app, plan, &parsed.model, reserved, reserved_cost).await
    {
        Ok(admission) => admission,
        Err(error) => return (response::error(dialect, &error), "limiter_unavailable"),
    };
    let mut rate_headers = admission
        .as_ref()
        .map_or_else(Vec::new, |decision| dialect.rate_limit_headers(decision));
    // An admission is settled below under the decision's ticket(s); a refusal ends here.
    if let Some(decision) = admission.as_ref().filter(|decision| !decision.allowed) {
        if key.shadow {
            app.metrics.shadow_denied.inc();
            let reason = decision.refusal.as_ref().map_or("limit", |r| r.reason);
            tracing::info!(key = %key.name, reason, "shadow key over its limit; served anyway");
        } else {
            let error = dialect.rate_limited(&parsed, decision);
            let reason = match &decision.refusal {
                Some(refusal) if refusal.kind == RefusalKind::TooLarge => "too_large",
                Some(refusal) => refusal.reason,
                None => "rate_limited",
            };
            let mut response = response::error(dialect, &error);
            response.headers_mut().extend(rate_headers);
            return (response, reason);
        }
    }
    app.metrics.reserved_input.inc_by(reserved.input_tokens);
    app.metrics.reserved_output.inc_by(reserved.output_tokens);
    if plan.price.is_some() {
        rate_headers.push((
            HeaderName::from_static("x-llmrl-reserved-cost-usd"),
            admission::usd_header(reserved_cost),
        ));
    }
    let settlement = Settlement::new(app, plan, admission.as_ref(), reserved, reserved_cost);
    let mut response = match &app.upstream {
        Some(upstream) => proxy::forward(upstream, app, dialect, &parsed, settlement).await,
        None => {
            mock::answer(
                app,
                dialect,
                &parsed,
                request_id,
                input_tokens,
                per_choice,
                settlement,
            )
            .await
        }
    };
    response.headers_mut().extend(rate_headers);
    let reason = if response.status().is_success() {
        "ok"
    } else {
        "upstream_error"
    };
    (response, reason)
}
