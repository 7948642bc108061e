//! The built-in mock upstream: deterministic text exactly as long as `max_tokens` allows (up
//! to `--mock-tokens`), whole or streamed (paced by `--mock-chunk-delay-ms`), in the dialect's
//! format.

use crate::admission::Settlement;
use crate::app::App;
use crate::dialect::{ApiRequest, Dialect, MockAnswer, Usage};
use crate::http::response::{self, Body};
use bytes::{Bytes, BytesMut};
use hyper::{Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Output tokens per streamed chunk.
const TOKENS_PER_CHUNK: usize = 4;

fn unix_seconds() -> u64 {
    crate::metrics::unix_ms() / 1000
}

pub async fn answer(
    app: &Arc<App>,
    dialect: &'static dyn Dialect,
    request: &ApiRequest,
    request_id: &str,
    input_tokens: u64,
    per_choice: u64,
    settlement: Settlement,
) -> Response<Body> {
    let target = per_choice.min(app.cli.mock_tokens);
    let finish_reason = if per_choice < app.cli.mock_tokens {
        "length"
    } else {
        "stop"
    };
    let id = request_id.to_string();
    let created = unix_seconds();
    if !request.stream {
        let (text, tokens) = app.tokenizer.mock_completion(target);
        let answer = MockAnswer {
            id: &id,
            created,
            text,
            output_tokens_per_choice: tokens,
            chunks: &[],
            finish_reason,
            input_tokens,
        };
        let body = dialect.mock_body(request, &answer);
        let usage = Usage {
            input_tokens,
            output_tokens: tokens.saturating_mul(request.n),
            cached_input_tokens: 0,
        };
        let cost = settlement.cost_header(usage);
        settlement.complete(usage).await;
        let mut response = response::json(StatusCode::OK, body);
        response.headers_mut().extend(cost);
        return response;
    }
    let chunks = app.tokenizer.mock_chunks(target, TOKENS_PER_CHUNK);
    let answer = MockAnswer {
        id: &id,
        created,
        text: "",
        output_tokens_per_choice: chunks.iter().map(|(_, n)| n).sum(),
        chunks: &chunks,
        finish_reason,
        input_tokens,
    };
    let events = dialect.mock_stream(request, &answer);
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let delay = Duration::from_millis(app.cli.mock_chunk_delay_ms);
    app.tasks.spawn(async move {
        let usage = |produced| Usage {
            input_tokens,
            output_tokens: produced,
            cached_input_tokens: 0,
        };
        let mut settlement = Some(settlement);
        let mut produced = 0u64;
        // Events with no pause between them go out together, as an upstream's would over TCP:
        // one write, not one per event.
        let mut pending = BytesMut::new();
        let mut events = events.into_iter().peekable();
        while let Some(event) = events.next() {
            let paced = event.output_tokens > 0 && !delay.is_zero();
            if paced {
                if !pending.is_empty() && tx.send(pending.split().freeze()).await.is_err() {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
            produced += event.output_tokens;
            if events.peek().is_some() {
                pending.extend_from_slice(&event.bytes);
                continue;
            }
            // Settled before the stream's last event goes out: a client that has seen the
            // end of its answer finds its concurrency slot free.
            if !pending.is_empty() && tx.send(pending.split().freeze()).await.is_err() {
                break;
            }
            if let Some(settlement) = settlement.take() {
                settlement.settle(usage(produced)).await;
            }
            let _ = tx.send(event.bytes).await;
        }
        // Client gone: charge what was produced.
        if let Some(settlement) = settlement {
            settlement.settle(usage(produced)).await;
        }
    });
    response::sse(rx)
}
