//! The admin listener (`--admin-listen`, loopback by default, only with an admin token): the
//! admin API over the stored policy and usage, its OpenAPI document, and the live dashboard.
//! Never served on the public port. `cli` is the same operations from the command line.

mod api;
pub mod cli;
mod dashboard;
pub mod ops;

use crate::app::App;
use crate::http::response::{self, full, set_header, Body};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ops::AdminError;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

const OPENAPI: &str = include_str!("openapi.json");

/// The admin token, kept as its digest (compared in constant time).
pub struct AdminToken([u8; 32]);

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken(llmrl_keys::sha256(token.as_bytes()))
    }

    fn admits(&self, request: &Request<Incoming>) -> bool {
        crate::auth::bearer_token(request.headers())
            .is_some_and(|token| bool::from(llmrl_keys::sha256(token).ct_eq(&self.0)))
    }
}

/// An admin answer: JSON with a status.
fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    response::json(status, body.to_string())
}

fn error(status: StatusCode, kind: &str, message: impl std::fmt::Display) -> Response<Body> {
    reply(
        status,
        &json!({"error": {"type": kind, "message": message.to_string()}}),
    )
}

/// A path the admin API does not serve.
fn no_route(path: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no admin route {path}; see /admin/openapi.json"),
    )
}

fn admin_error(failure: &AdminError) -> Response<Body> {
    let (status, kind) = match failure {
        AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        AdminError::Exists(_) => (StatusCode::CONFLICT, "already_exists"),
        AdminError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy"),
        AdminError::ReadOnly => (StatusCode::CONFLICT, "read_only"),
        AdminError::Conflict => (StatusCode::CONFLICT, "conflict"),
        AdminError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    error(status, kind, failure)
}

fn page(content_type: &str, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    set_header(&mut response, "content-type", content_type);
    set_header(&mut response, "cache-control", "no-store");
    response
}

/// Every admin request.
async fn handle(
    app: Arc<App>,
    token: Arc<AdminToken>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    // The documents anyone on the admin port may read: they hold no data (the page asks for the
    // token and sends it with every call it makes).
    let open = match (&method, path.as_str()) {
        (&Method::GET, "/admin/openapi.json") => Some(page("application/json", OPENAPI)),
        (&Method::GET, "/admin" | "/admin/" | "/admin/dashboard") => {
            Some(page("text/html; charset=utf-8", dashboard::HTML))
        }
        (&Method::GET, "/admin/dashboard.js") => {
            Some(page("text/javascript; charset=utf-8", dashboard::SCRIPT))
        }
        _ => None,
    };
    if let Some(response) = open {
        return Ok(response);
    }
    if !path.starts_with("/admin/") {
        return Ok(no_route(&path));
    }
    if !token.admits(&request) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs Authorization: Bearer <admin token>",
        );
        set_header(&mut response, "www-authenticate", "Bearer");
        return Ok(response);
    }
    let response = api::route(&app, request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), "admin request");
    Ok(response)
}

/// Bind the admin listener (before the public one: once the public port answers, the admin
/// port does too).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address} (admin): {e}"))
}

/// Serve the admin listener until the process ends.
pub fn serve(app: Arc<App>, listener: TcpListener, token: AdminToken) {
    let Ok(address) = listener.local_addr() else {
        return;
    };
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "the admin API listens beyond loopback: keep its token secret and the port firewalled");
    }
    tracing::info!(admin = %address, "admin API and dashboard at http://{address}/admin/");
    let token = Arc::new(token);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let app = Arc::clone(&app);
            let token = Arc::clone(&token);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    handle(Arc::clone(&app), Arc::clone(&token), request)
                });
                let _ = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
