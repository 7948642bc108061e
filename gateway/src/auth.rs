//! Authentication: the API key a request presents, looked up in the keys in force.

use crate::error::{ErrorKind, GatewayError};
use crate::policy::{ApiKey, KeyStore};
use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::StatusCode;
use std::sync::Arc;

const MISSING: &str = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
const DISABLED: &str = "This API key has been disabled by the gateway's administrator.";
const UNKNOWN: &str = "Incorrect API key provided. Ask the gateway's administrator for a key.";

fn unauthorized(message: &str) -> GatewayError {
    GatewayError::new(StatusCode::UNAUTHORIZED, ErrorKind::Authentication, message)
        .with_code("invalid_api_key")
}

/// The token of `Authorization: Bearer <token>`, if that is how the request authenticates.
pub fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let bytes = headers.get(AUTHORIZATION)?.as_bytes();
    bytes
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .and_then(|_| bytes.get(7..))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// The key presented as `Authorization: Bearer <key>`, or as `x-api-key: <key>` (Anthropic's
/// clients send that).
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if headers.contains_key(AUTHORIZATION) {
        return bearer_token(headers);
    }
    headers
        .get("x-api-key")
        .map(|value| value.as_bytes().trim_ascii())
        .filter(|token| !token.is_empty())
}

/// The API key of a request, or a 401.
pub fn authenticate(keys: &KeyStore, headers: &HeaderMap) -> Result<Arc<ApiKey>, GatewayError> {
    let token = presented(headers).ok_or_else(|| unauthorized(MISSING))?;
    let key = keys
        .authenticate(token)
        .ok_or_else(|| unauthorized(UNKNOWN))?;
    if key.disabled {
        return Err(unauthorized(DISABLED));
    }
    Ok(key)
}
