//! The load generator's HTTP/1.1 client: one request at a time on a keep-alive connection,
//! answers framed by `content-length` or chunked. It reads only the status and the few headers
//! the load generator uses, with `httparse`, where hyper's client builds a whole `HeaderMap` of
//! every answer: for the gateway's answers (a dozen `x-ratelimit-*` headers and more) that cost
//! the load generator 11.7 k more instructions a request than for bare hyper's (callgrind), a
//! third of all it spent on a request, on the cores it shares with the server it measures.

use bytes::{Buf, BytesMut};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Headers read from an answer at most (the gateway sends about twenty).
const MAX_HEADERS: usize = 64;

/// What the load generator keeps of an answer.
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    /// `content-type: text/event-stream`.
    pub event_stream: bool,
    pub retry_after_ms: Option<u64>,
    /// `x-should-retry: false`.
    pub no_retry: bool,
    pub body: Vec<u8>,
}

/// When an answer's head arrived, and the last piece of its body `has_content` accepted.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub head_at: Instant,
    pub last_content_at: Instant,
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// One keep-alive connection.
pub struct Connection<S> {
    io: S,
    read: BytesMut,
    write: Vec<u8>,
    /// False once the server said `connection: close` or an answer ended with the connection.
    reusable: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(io: S) -> Connection<S> {
        Connection {
            io,
            read: BytesMut::with_capacity(16 * 1024),
            write: Vec::with_capacity(1024),
            reusable: true,
        }
    }

    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Send `POST path` with these headers (each `name: value`) and a JSON body, and read the
    /// whole answer. `has_content` is asked about each piece of a streamed body as it arrives.
    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        has_content: impl Fn(&[u8]) -> bool,
    ) -> Result<(Answer, Timing), String> {
        self.write.clear();
        self.write.extend_from_slice(b"POST ");
        self.write.extend_from_slice(path.as_bytes());
        self.write.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                self.write.extend_from_slice(part);
            }
        }
        self.write
            .extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
        self.write
            .extend_from_slice(body.len().to_string().as_bytes());
        self.write.extend_from_slice(b"\r\n\r\n");
        self.write.extend_from_slice(body);
        if let Err(error) = self.io.write_all(&self.write).await {
            self.reusable = false;
            return Err(error.to_string());
        }
        let answer = self.read_answer(has_content).await;
        if answer.is_err() {
            self.reusable = false;
        }
        answer
    }

    async fn read_more(&mut self) -> Result<(), String> {
        self.read.reserve(8 * 1024);
        match self.io.read_buf(&mut self.read).await {
            Ok(0) => Err("the connection closed before the answer ended".into()),
            Ok(_) => Ok(()),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn read_answer(
        &mut self,
        has_content: impl Fn(&[u8]) -> bool,
    ) -> Result<(Answer, Timing), String> {
        let (mut answer, framing) = loop {
            if let Some(head) = self.parse_head()? {
                break head;
            }
            self.read_more().await?;
        };
        let head_at = Instant::now();
        let mut timing = Timing {
            head_at,
            last_content_at: head_at,
        };
        let mut piece = |data: &[u8], body: &mut Vec<u8>| {
            if answer.event_stream && has_content(data) {
                timing.last_content_at = Instant::now();
            }
            body.extend_from_slice(data);
        };
        let mut body = Vec::new();
        match framing {
            Framing::Length(length) => {
                while self.read.len() < length {
                    self.read_more().await?;
                }
                piece(&self.read.split_to(length), &mut body);
            }
            Framing::Chunked => loop {
                let size = loop {
                    match httparse::parse_chunk_size(&self.read) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            self.read.advance(used);
                            break usize::try_from(size).map_err(|_| "chunk too large")?;
                        }
                        Ok(httparse::Status::Partial) => self.read_more().await?,
                        Err(_) => return Err("bad chunk size".into()),
                    }
                };
                if size == 0 {
                    self.skip_trailers().await?;
                    break;
                }
                let framed = size.checked_add(2).ok_or("chunk too large")?;
                while self.read.len() < framed {
                    self.read_more().await?;
                }
                let data = self.read.split_to(size);
                if self.read.get(..2) != Some(b"\r\n") {
                    return Err("a chunk not ended by CRLF".into());
                }
                self.read.advance(2);
                piece(&data, &mut body);
            },
            Framing::UntilClose => {
                self.reusable = false;
                loop {
                    self.read.reserve(8 * 1024);
                    match self.io.read_buf(&mut self.read).await {
                        Ok(0) => break,
                        Ok(_) => {
                            let data = self.read.split();
                            piece(&data, &mut body);
                        }
                        Err(error) => return Err(error.to_string()),
                    }
                }
            }
        }
        answer.body = body;
        Ok((answer, timing))
    }

    /// The answer's head, once the buffer holds all of it (consumed from the buffer).
    fn parse_head(&mut self) -> Result<Option<(Answer, Framing)>, String> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let used = match response.parse(&self.read) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(error) => return Err(format!("bad answer head: {error}")),
        };
        let mut answer = Answer {
            status: response.code.unwrap_or(0),
            ..Answer::default()
        };
        let mut length = None;
        let mut chunked = false;
        for header in response.headers.iter() {
            let value = std::str::from_utf8(header.value).unwrap_or("").trim();
            let name = header.name;
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|_| "bad content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().ends_with("chunked");
            } else if name.eq_ignore_ascii_case("content-type") {
                answer.event_stream = value.starts_with("text/event-stream");
            } else if name.eq_ignore_ascii_case("retry-after-ms") {
                answer.retry_after_ms = value.parse().ok();
            } else if name.eq_ignore_ascii_case("x-should-retry") {
                answer.no_retry = value == "false";
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                self.reusable = false;
            }
        }
        let framing = if chunked {
            Framing::Chunked
        } else if let Some(length) = length {
            Framing::Length(length)
        } else if matches!(answer.status, 204 | 304) || (100..200).contains(&answer.status) {
            Framing::Length(0)
        } else {
            Framing::UntilClose
        };
        self.read.advance(used);
        Ok(Some((answer, framing)))
    }

    /// After the last chunk: trailer lines up to an empty one.
    async fn skip_trailers(&mut self) -> Result<(), String> {
        loop {
            match self.read.windows(2).position(|w| w == b"\r\n") {
                Some(at) => {
                    self.read.advance(at + 2);
                    if at == 0 {
                        return Ok(());
                    }
                }
                None => self.read_more().await?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    /// Serve `answer` in pieces of `step` bytes to one request, and return what the client read
    /// and the request it sent.
    async fn exchange(answer: &'static [u8], step: usize) -> (Result<Answer, String>, Vec<u8>) {
        let (client, mut server) = duplex(64 * 1024);
        let serve = tokio::spawn(async move {
            let mut request = vec![0; 4096];
            let n = server.read(&mut request).await.unwrap_or(0);
            request.truncate(n);
            for piece in answer.chunks(step) {
                let _ = server.write_all(piece).await;
                tokio::task::yield_now().await;
            }
            drop(server);
            request
        });
        let mut connection = Connection::new(client);
        let result = connection
            .post(
                "/v1/x",
                &[("host", "h"), ("authorization", "Bearer k")],
                b"{}",
                |d| d.starts_with(b"data"),
            )
            .await
            .map(|(answer, _)| answer);
        (result, serve.await.unwrap_or_default())
    }

    #[tokio::test]
    async fn reads_an_answer_by_length_in_any_pieces() {
        let answer = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nRetry-After-Ms: 1500\r\nx-should-retry: false\r\ncontent-length: 11\r\n\r\n{\"a\":\"bcd\"}";
        for step in [1, 7, 4096] {
            let (result, request) = exchange(answer, step).await;
            let answer = result.expect("an answer");
            assert_eq!(answer.status, 429);
            assert_eq!(answer.retry_after_ms, Some(1500));
            assert!(answer.no_retry);
            assert!(!answer.event_stream);
            assert_eq!(answer.body, b"{\"a\":\"bcd\"}");
            assert_eq!(
                request,
                b"POST /v1/x HTTP/1.1\r\nhost: h\r\nauthorization: Bearer k\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
            );
        }
    }

    #[tokio::test]
    async fn reads_a_chunked_stream_with_trailers() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n8\r\ndata: a\n\r\nB;ext=1\r\ndata: bcd\n\n\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in [1, 5, 4096] {
            let (result, _) = exchange(answer, step).await;
            let answer = result.expect("an answer");
            assert_eq!(answer.status, 200);
            assert!(answer.event_stream);
            assert_eq!(answer.body, b"data: a\ndata: bcd\n\n");
        }
    }

    #[tokio::test]
    async fn an_answer_cut_short_or_malformed_is_an_error() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            b"not http\r\n\r\n",
        ] {
            let (result, _) = exchange(answer, 3).await;
            assert!(result.is_err(), "{}", String::from_utf8_lossy(answer));
        }
    }

    #[tokio::test]
    async fn an_answer_without_length_ends_with_the_connection() {
        let (result, _) = exchange(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", 4).await;
        assert_eq!(result.expect("an answer").body, b"until the end");
    }
}
