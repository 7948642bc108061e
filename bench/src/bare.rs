//! llmrl-bare: the baseline for gateway benchmarks. A hyper server that reads each request body
//! and answers with the same chat completion JSON the gateway's mock sends, with no auth, no
//! token counting and no limiter: what hyper itself can do on this machine.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

const BODY: &str = r#"{"choices":[{"finish_reason":"length","index":0,"logprobs":null,"message":{"content":"The quick brown fox jumps over the lazy dog while a rate limiter counts every token that","refusal":null,"role":"assistant"}}],"created":1795337088,"id":"chatcmpl-req_bare_1","model":"gpt-4o-mini","object":"chat.completion","system_fingerprint":"llmrl-mock","usage":{"completion_tokens":16,"prompt_tokens":40,"total_tokens":56}}"#;

async fn answer(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8900)));
    let listener = TcpListener::bind(listen).await?;
    eprintln!("llmrl-bare listening on {listen}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
