//! HTTP plumbing every room uses: request bodies, responses, CORS. It knows nothing of routes
//! or limits (see `router` and `pipeline`).

pub mod body;
pub mod cors;
pub mod response;
