//! A request's input tokens, counted without stalling the async workers.

use crate::dialect::{ApiRequest, Dialect};
use crate::error::{ErrorKind, GatewayError};
use crate::tokens::Tokenizer;
use hyper::StatusCode;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Bodies up to this size are counted on the async worker: at the slowest rate measured
/// (random multi-byte text, ~70 ns a byte) that stays under ~0.6 ms. Larger ones go to the
/// blocking pool.
pub const INLINE_COUNT_BYTES: usize = 8 * 1024;

/// Count a request's input tokens without stalling the async workers: small bodies inline, large
/// ones on the blocking pool, one at a time (`heavy`), so a flood of huge prompts takes at most
/// one core from everything else.
pub async fn count_off_thread(
    tokenizer: &Arc<Tokenizer>,
    heavy: &Semaphore,
    dialect: &'static dyn Dialect,
    request: ApiRequest,
    body_bytes: usize,
) -> Result<(ApiRequest, u64), GatewayError> {
    if body_bytes <= INLINE_COUNT_BYTES {
        let count = dialect.count_input(tokenizer, &request);
        return Ok((request, count));
    }
    // A closed semaphore never happens (it lives as long as the app); count anyway.
    let _permit = heavy.acquire().await.ok();
    let tokenizer = Arc::clone(tokenizer);
    let counted = tokio::task::spawn_blocking(move || {
        let count = dialect.count_input(&tokenizer, &request);
        (request, count)
    })
    .await;
    counted.map_err(|error| {
        // The counting task panicked (a bug) or the runtime is shutting down.
        tracing::error!(%error, "token counting failed");
        GatewayError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Server,
            "The gateway could not count this request's tokens.",
        )
    })
}
