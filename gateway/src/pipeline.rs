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
use crate::dialect::{ApiRequest, Dialect, Usage};
use crate::error::GatewayError;
use crate::http::body;
use crate::http::response::{self, Body};
use crate::policy::ApiKey;
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

/// A request authenticated, read, parsed in its dialect and its input tokens counted.
struct Counted {
    key: Arc<ApiKey>,
    parsed: ApiRequest,
    input_tokens: u64,
}

/// The stages every API route shares: authenticate, read the body, parse it in the route's
/// dialect, count its input tokens (off the async workers when large).
async fn read_and_count(
    app: &Arc<App>,
    dialect: &'static dyn Dialect,
    request: Request<Incoming>,
) -> Result<Counted, Outcome> {
    let key = match auth::authenticate(&app.keys(), request.headers()) {
        Ok(key) => key,
        Err(error) => return Err(refuse_unread(dialect, error, "auth")),
    };
    if let Err(error) = body::require_json(&request) {
        return Err(refuse_unread(dialect, error, "bad_request"));
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
            return Err(refuse_unread(dialect, error, reason));
        }
    };
    let parsed = match dialect.parse(&bytes) {
        Ok(parsed) => parsed,
        Err(error) => return Err((response::error(dialect, &error), "bad_request")),
    };
    let counted = counting::count_off_thread(
        &app.tokenizer,
        &app.heavy_counts,
        dialect,
        parsed,
        bytes.len(),
    )
    .await;
    match counted {
        Ok((parsed, input_tokens)) => Ok(Counted {
            key,
            parsed,
            input_tokens,
        }),
        Err(error) => Err((response::error(dialect, &error), "internal_error")),
    }
}

/// A token-counting route (Anthropic's `count_tokens`): the request's input tokens, as the
/// gateway counts them for its limits; unlimited (nothing is reserved or recorded).
pub async fn count_tokens(
    app: &Arc<App>,
    dialect: &'static dyn Dialect,
    request: Request<Incoming>,
) -> Outcome {
    match read_and_count(app, dialect, request).await {
        Ok(counted) => {
            let body = serde_json::json!({"input_tokens": counted.input_tokens}).to_string();
            (response::json(hyper::StatusCode::OK, body), "ok")
        }
        Err(outcome) => outcome,
    }
}

pub async fn serve(
    app: &Arc<App>,
    dialect: &'static dyn Dialect,
    request: Request<Incoming>,
    request_id: &str,
) -> Outcome {
    let Counted {
        key,
        parsed,
        input_tokens,
    } = match read_and_count(app, dialect, request).await {
        Ok(counted) => counted,
        Err(outcome) => return outcome,
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
    let count_cached_input = plan
        .count_cached_input
        .unwrap_or(dialect.counts_cached_input());
    let settlement = Settlement::new(
        app,
        plan,
        admission.as_ref(),
        reserved,
        reserved_cost,
        count_cached_input,
    );
    let mut response = match app.upstreams.for_provider(dialect.provider()) {
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
