//! The admin API's routes (see `openapi.json`): the stored policy and each of its entities,
//! usage of any scope, and the dashboard's overview.

use super::{admin_error, dashboard, error, no_route, ops, reply};
use crate::app::App;
use crate::http::body;
use crate::http::response::Body;
use crate::policy_store::PolicyStore;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use llmrl_keys::store::Kind;
use llmrl_keys::KeysFile;
use ops::AdminError;
use serde_json::{json, Value};
use std::time::Duration;

/// `%xx` escapes of a path segment decoded (names may hold characters URLs escape).
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(value) => {
                out.push(value);
                i += 3;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn json_body(app: &App, request: Request<Incoming>) -> Result<Value, Response<Body>> {
    let bytes = body::read(request, app.cli.body_limit, Duration::from_secs(10))
        .await
        .map_err(|e| error(e.status, "invalid_request", e.message))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })
}

fn store(app: &App) -> Result<&PolicyStore, AdminError> {
    app.policy_store.as_deref().ok_or(AdminError::ReadOnly)
}

/// After a change, this node takes it at once (the others within their poll interval).
async fn written(app: &App, status: StatusCode, body: Value) -> Response<Body> {
    if let Err(error) = app.refresh_policy().await {
        tracing::warn!(%error, "reloading the policy just written failed");
    }
    reply(status, &body)
}

fn method_not_allowed(method: &Method, path: &str) -> Response<Body> {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {path}"),
    )
}

type Answer = Result<Response<Body>, Response<Body>>;

pub async fn route(app: &App, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let segments: Vec<String> = path
        .trim_start_matches("/admin/")
        .trim_end_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let outcome = match (segments.as_slice(), &method) {
        (["policy"], _) => policy(app, &method, request).await,
        (["overview"], &Method::GET) => Ok(reply(StatusCode::OK, &dashboard::overview(app).await)),
        (["usage", kind, name], &Method::GET) => usage(app, kind, name).await,
        (["usage", kind, name, "reset"], &Method::POST) => {
            let window = query_value(request.uri().query(), "window");
            reset(app, kind, name, window.as_deref()).await
        }
        (["keys", name, action @ ("disable" | "enable")], &Method::POST) => {
            switch(app, name, *action == "disable").await
        }
        ([kind], _) => match Kind::parse(kind) {
            Some(kind) => collection(app, kind, &method, request).await,
            None => Err(no_route(&path)),
        },
        ([kind, name], _) => match Kind::parse(kind) {
            Some(kind) => entity(app, kind, name, &method, request).await,
            None => Err(no_route(&path)),
        },
        _ => Err(no_route(&path)),
    };
    outcome.unwrap_or_else(|response| response)
}

/// `POST /admin/keys/{name}/disable` or `/enable`.
async fn switch(app: &App, name: &str, disabled: bool) -> Answer {
    let store = store(app).map_err(|e| admin_error(&e))?;
    let key = ops::set_disabled(store, name, disabled)
        .await
        .map_err(|e| admin_error(&e))?;
    Ok(written(app, StatusCode::OK, key).await)
}

/// `GET /admin/policy`: the whole policy (keys as digests); `PUT`: import a whole keys file
/// (JSON), replacing what is stored.
async fn policy(app: &App, method: &Method, request: Request<Incoming>) -> Answer {
    match *method {
        Method::GET => {
            let keys = app.keys();
            let source = if app.policy_store.is_some() {
                "redis"
            } else {
                "file"
            };
            Ok(reply(
                StatusCode::OK,
                &json!({"source": source, "version": keys.version, "policy": *keys.file}),
            ))
        }
        Method::PUT => {
            let store = store(app).map_err(|e| admin_error(&e))?;
            let body = json_body(app, request).await?;
            let file: KeysFile = serde_json::from_value(body)
                .map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy", e))?;
            let version = store
                .import(file)
                .await
                .map_err(|e| admin_error(&e.into()))?;
            Ok(written(app, StatusCode::OK, json!({"version": version})).await)
        }
        _ => Err(method_not_allowed(method, "/admin/policy")),
    }
}

/// `GET /admin/{kind}`: every entity; `POST /admin/keys`: a new key (its secret shown once).
async fn collection(app: &App, kind: Kind, method: &Method, request: Request<Incoming>) -> Answer {
    match (*method).clone() {
        Method::GET => {
            let list = ops::list(&app.keys().file, kind);
            Ok(reply(
                StatusCode::OK,
                &json!({"object": "list", "data": list}),
            ))
        }
        Method::POST if kind == Kind::Key => {
            let store = store(app).map_err(|e| admin_error(&e))?;
            let mut body = json_body(app, request).await?;
            let name = body
                .as_object_mut()
                .and_then(|o| o.remove("name"))
                .and_then(|n| n.as_str().map(str::to_string))
                .ok_or_else(|| {
                    error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_policy",
                        "a new key needs a \"name\"",
                    )
                })?;
            let (secret, key) = ops::create_key(store, &name, body)
                .await
                .map_err(|e| admin_error(&e))?;
            let shown = json!({"name": name, "key": secret, "entity": key,
                "note": "the key is shown only now; the gateway keeps its SHA-256"});
            Ok(written(app, StatusCode::CREATED, shown).await)
        }
        _ => Err(method_not_allowed(
            method,
            &format!("/admin/{}", kind.plural()),
        )),
    }
}

/// `GET`, `PUT` (create or replace), `PATCH` (merge), `DELETE` one entity.
async fn entity(
    app: &App,
    kind: Kind,
    name: &str,
    method: &Method,
    request: Request<Incoming>,
) -> Answer {
    if *method == Method::GET {
        let value = llmrl_keys::store::entity(&app.keys().file, kind, name)
            .ok_or_else(|| admin_error(&ops::not_found(kind, name)))?;
        return Ok(reply(StatusCode::OK, &value));
    }
    let store = store(app).map_err(|e| admin_error(&e))?;
    let result = match (*method).clone() {
        Method::PUT => {
            let body = json_body(app, request).await?;
            ops::put(store, kind, name, body).await
        }
        Method::PATCH => {
            let body = json_body(app, request).await?;
            ops::patch(store, kind, name, body).await
        }
        Method::DELETE => ops::delete(store, kind, name)
            .await
            .map(|()| json!({"deleted": kind.field(name)})),
        _ => {
            let path = format!("/admin/{}/{name}", kind.plural());
            return Err(method_not_allowed(method, &path));
        }
    };
    let value = result.map_err(|e| admin_error(&e))?;
    Ok(written(app, StatusCode::OK, value).await)
}

fn limiter(app: &App) -> Result<&crate::limiter::Limiter, AdminError> {
    app.limiter.as_ref().ok_or_else(|| {
        AdminError::Unavailable("this node runs without a limiter (--no-limiter)".into())
    })
}

/// `GET /admin/usage/{kind}/{name}`.
async fn usage(app: &App, kind: &str, name: &str) -> Answer {
    let limiter = limiter(app).map_err(|e| admin_error(&e))?;
    let keys = app.keys();
    let target = ops::target(&keys, kind, name).map_err(|e| admin_error(&e))?;
    let scopes = ops::usage(limiter, &keys, &target)
        .await
        .map_err(|e| admin_error(&e))?;
    Ok(reply(
        StatusCode::OK,
        &json!({"kind": kind, "name": name, "scopes": scopes}),
    ))
}

/// A query parameter's value, decoded.
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| decode(&value.replace('+', " ")))
}

/// `POST /admin/usage/{kind}/{name}/reset[?window=...]`.
async fn reset(app: &App, kind: &str, name: &str, window: Option<&str>) -> Answer {
    let limiter = limiter(app).map_err(|e| admin_error(&e))?;
    let keys = app.keys();
    let target = ops::target(&keys, kind, name).map_err(|e| admin_error(&e))?;
    let removed = ops::reset(limiter, &keys, &target, window)
        .await
        .map_err(|e| admin_error(&e))?;
    tracing::info!(kind, name, removed, "usage reset");
    Ok(reply(
        StatusCode::OK,
        &json!({"kind": kind, "name": name, "scopes_reset": removed}),
    ))
}
