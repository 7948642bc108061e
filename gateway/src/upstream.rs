//! The connection to a real upstream API server: its base URL, its API key (from the
//! environment, never logged), an HTTP/1 client over http or https, and the timeout.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// How an upstream takes its API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI and compatible servers).
    Bearer,
    /// `x-api-key: <key>` with `anthropic-version` (Anthropic's API).
    Anthropic,
}

/// The `anthropic-version` sent to an Anthropic upstream.
const ANTHROPIC_VERSION: &str = "2023-06-01";

pub struct Upstream {
    /// scheme://host[:port], without a trailing slash or /v1.
    base: String,
    api_key: Option<String>,
    auth: Auth,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Upstream {
    pub fn new(
        base: &str,
        api_key: Option<String>,
        auth: Auth,
        timeout: Duration,
    ) -> Result<Upstream, String> {
        let base = base
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "an upstream must be an http:// or https:// URL, got {base:?}"
            ));
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Upstream {
            base,
            api_key,
            auth,
            client,
            timeout,
        })
    }

    /// POST `body` to `path`; the upstream's answer, or why there is none.
    pub async fn send(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<hyper::Response<Incoming>, String> {
        let mut builder =
            Request::post(format!("{}{path}", self.base)).header(CONTENT_TYPE, "application/json");
        match (&self.api_key, self.auth) {
            (Some(key), Auth::Bearer) => {
                builder = builder.header(AUTHORIZATION, format!("Bearer {key}"));
            }
            (key, Auth::Anthropic) => {
                builder = builder.header("anthropic-version", ANTHROPIC_VERSION);
                if let Some(key) = key {
                    builder = builder.header("x-api-key", key.as_str());
                }
            }
            (None, Auth::Bearer) => {}
        }
        let request = builder
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Err("the upstream did not answer in time".into()),
            Ok(Err(error)) => Err(format!("the upstream could not be reached: {error}")),
            Ok(Ok(response)) => Ok(response),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
