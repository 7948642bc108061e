//! HTTP: routing, request bodies, responses and CORS. The stages of a limited request live
//! outside (see `pipeline`); this room knows nothing of limits.

pub mod body;
pub mod cors;
pub mod response;
pub mod router;
