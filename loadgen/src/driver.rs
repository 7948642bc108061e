//! Sending requests: closed loop (virtual clients) or open loop (a schedule), bounded in time
//! and count, with every outcome recorded.

use crate::answer::{has_content, is_event_stream, usage};
use crate::pacer::Pacer;
use crate::{Api, Cli, Select};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Requests,
    InputTokens,
    OutputTokens,
    TooLarge,
    Other,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Requests => "requests",
            Reason::InputTokens => "input_tokens",
            Reason::OutputTokens => "output_tokens",
            Reason::TooLarge => "too_large",
            Reason::Other => "other",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Limited(Reason),
    Http(u16),
    Transport,
}

/// One finished request.
#[derive(Clone, Debug)]
pub struct Sample {
    pub node: usize,
    pub key: usize,
    pub status: Status,
    /// From the (intended) send time to the last byte, in µs.
    pub latency_us: u64,
    /// Send and completion times, ms since the run started (the audit's bounds on admission).
    pub sent_ms: f64,
    pub done_ms: f64,
    /// Tokens the gateway charged for an admitted request (usage reported back).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of the prompt tokens, those the upstream served from its prompt cache.
    pub cached_tokens: u64,
    /// A streamed answer's slot, as the client sees it: from its response headers (the
    /// decision was made) to its last content chunk (the upstream was still answering), ms
    /// since the run started.
    pub streaming: Option<(f64, f64)>,
}

pub struct Outcome {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
    /// The wall-clock time the run started, ms since the Unix epoch (calendar periods).
    pub start_unix_ms: f64,
    pub latency_ok: Histogram<u64>,
    pub latency_limited: Histogram<u64>,
    /// Other HTTP answers (5xx, 4xx but 429): how fast errors come back, e.g. in an outage.
    pub latency_other: Histogram<u64>,
}

struct Shared {
    api: Api,
    /// Each node's `host:port`.
    addresses: Vec<String>,
    nodes: Vec<String>,
    keys: Vec<String>,
    bodies: Vec<Bytes>,
    select: Select,
    counter: AtomicU64,
    budget: Option<u64>,
    issued: AtomicU64,
    deadline: Option<Instant>,
    start: Instant,
    timeout: Duration,
    stop: AtomicBool,
    ok: AtomicU64,
    limited: AtomicU64,
    errors: AtomicU64,
    samples: Mutex<Vec<Sample>>,
}

impl Shared {
    /// Claim the right to send one more request (the --requests budget and --duration).
    fn claim(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match self.budget {
            None => {
                self.issued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(budget) => self.issued.fetch_add(1, Ordering::Relaxed) < budget,
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> (usize, usize) {
        match self.select {
            Select::RoundRobin => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed) as usize;
                // Walk keys fastest, nodes once per full cycle of keys, so every pair is used.
                (n / self.keys.len() % self.nodes.len(), n % self.keys.len())
            }
            Select::Random => (
                rng.random_range(0..self.nodes.len()),
                rng.random_range(0..self.keys.len()),
            ),
        }
    }
}

/// One request body in `api`'s format with a prompt of `text`.
fn body(cli: &Cli, text: String) -> Value {
    let mut body = match cli.api {
        Api::Chat => serde_json::json!({
            "model": cli.model,
            "messages": [{"role": "user", "content": text}],
        }),
        Api::Responses => serde_json::json!({"model": cli.model, "input": text}),
        Api::Messages => serde_json::json!({
            "model": cli.model,
            "max_tokens": cli.max_tokens.unwrap_or(16),
            "messages": [{"role": "user", "content": text}],
        }),
        // As the SDKs ask by default: vectors as base64.
        Api::Embeddings => {
            serde_json::json!({"model": cli.model, "input": text, "encoding_format": "base64"})
        }
    };
    if let Some(max_tokens) = cli.max_tokens {
        match cli.api {
            Api::Chat => body["max_tokens"] = max_tokens.into(),
            Api::Responses => body["max_output_tokens"] = max_tokens.into(),
            Api::Messages | Api::Embeddings => {}
        }
    }
    if cli.stream {
        body["stream"] = true.into();
        if cli.api == Api::Chat {
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
    }
    body
}

fn build_bodies(cli: &Cli) -> Result<Vec<Bytes>, String> {
    if cli.stream && cli.api == Api::Embeddings {
        return Err("embeddings are never streamed: drop --stream".into());
    }
    let (min, max) = cli.prompt_range()?;
    // A few dozen prompt sizes spread over the range; " the" is one token in OpenAI's encodings.
    let steps = if min == max { 1 } else { 32 };
    Ok((0..steps)
        .map(|i| {
            let tokens = if steps == 1 {
                min
            } else {
                min + (max - min) * i / (steps - 1)
            };
            Bytes::from(body(cli, " the".repeat(tokens as usize)).to_string())
        })
        .collect())
}

pub async fn drive(cli: &Cli) -> Result<Outcome, String> {
    let concurrency = cli.concurrency();
    let nodes: Vec<String> = cli
        .nodes
        .iter()
        .map(|n| n.trim_end_matches('/').trim_end_matches("/v1").to_string())
        .collect();
    let addresses = nodes
        .iter()
        .map(|node| {
            let uri: hyper::Uri = node
                .parse()
                .map_err(|e| format!("bad --node {node}: {e}"))?;
            if uri.scheme_str() != Some("http") {
                return Err(format!("--node {node}: only http:// is supported"));
            }
            let host = uri
                .host()
                .ok_or_else(|| format!("--node {node}: no host"))?;
            Ok(format!("{host}:{}", uri.port_u16().unwrap_or(80)))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let start = Instant::now();
    let start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let shared = Arc::new(Shared {
        api: cli.api,
        addresses,
        nodes,
        keys: cli.keys.clone(),
        bodies: build_bodies(cli)?,
        select: cli.select,
        counter: AtomicU64::new(0),
        budget: cli.requests,
        issued: AtomicU64::new(0),
        deadline: cli.duration().map(|d| start + d),
        start,
        timeout: Duration::from_millis(cli.timeout_ms),
        stop: AtomicBool::new(false),
        ok: AtomicU64::new(0),
        limited: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
    });
    let progress = (!cli.quiet).then(|| tokio::spawn(progress(Arc::clone(&shared))));
    match cli.rate {
        Some(rate) if rate > 0.0 => open_loop(&shared, rate, concurrency, cli.threads).await?,
        Some(_) => return Err("--rate must be positive".into()),
        None => closed_loop(&shared, concurrency, cli.honor_retry_after).await,
    }
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    let elapsed = start.elapsed();
    let samples = std::mem::take(&mut *shared.samples.lock().map_err(|_| "poisoned")?);
    let mut latency_ok =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut latency_limited = latency_ok.clone();
    let mut latency_other = latency_ok.clone();
    for sample in &samples {
        let value = sample.latency_us.clamp(1, 60_000_000);
        match sample.status {
            Status::Ok => latency_ok.saturating_record(value),
            Status::Limited(_) => latency_limited.saturating_record(value),
            Status::Http(_) => latency_other.saturating_record(value),
            Status::Transport => {}
        }
    }
    Ok(Outcome {
        samples,
        elapsed,
        start_unix_ms,
        latency_ok,
        latency_limited,
        latency_other,
    })
}

async fn progress(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    loop {
        tick.tick().await;
        let (ok, limited, errors) = (
            shared.ok.load(Ordering::Relaxed),
            shared.limited.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
        );
        let done = ok + limited + errors;
        eprint!(
            "\r[{:>5.1}s] sent {:>9}  {:>8} rps  2xx {:>9}  429 {:>9}  errors {:>6}",
            shared.start.elapsed().as_secs_f64(),
            shared.issued.load(Ordering::Relaxed),
            done - last,
            ok,
            limited,
            errors
        );
        last = done;
    }
}

async fn closed_loop(shared: &Arc<Shared>, concurrency: usize, honor_retry_after: bool) {
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(i as u64);
                let mut connections = Connections::default();
                let mut local = Vec::new();
                while shared.claim() {
                    let (sample, retry_after) =
                        send(&shared, &mut connections, &mut rng, Instant::now()).await;
                    local.push(sample);
                    if honor_retry_after {
                        if let Some(ms) = retry_after {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                    }
                }
                if let Ok(mut samples) = shared.samples.lock() {
                    samples.extend(local);
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// The open loop: `lanes` OS threads, each a single-threaded runtime with its share of the
/// connections and every `lanes`-th slot of the schedule. A lane paces, sends and reads on one
/// thread, so no request crosses threads between its intended time and its answer.
async fn open_loop(
    shared: &Arc<Shared>,
    rate: f64,
    connections: usize,
    lanes: usize,
) -> Result<(), String> {
    let interval = Duration::try_from_secs_f64(1.0 / rate).map_err(|e| format!("--rate: {e}"))?;
    let lanes = lanes.clamp(1, connections);
    let shared = Arc::clone(shared);
    let lanes_done = tokio::task::spawn_blocking(move || {
        let all_connected = std::sync::Barrier::new(lanes);
        std::thread::scope(|scope| {
            let running: Vec<_> = (0..lanes)
                .map(|lane| {
                    let lane = Lane {
                        shared: &shared,
                        all_connected: &all_connected,
                        interval,
                        index: lane,
                        lanes,
                        connections: connections / lanes + usize::from(lane < connections % lanes),
                    };
                    scope.spawn(move || lane.run())
                })
                .collect();
            // The scope joins every lane before it returns, even after a failed one.
            running.into_iter().try_for_each(|lane| {
                lane.join()
                    .unwrap_or_else(|_| Err("a lane panicked".into()))
            })
        })
    })
    .await;
    lanes_done.map_err(|e| e.to_string())?
}

/// One lane of the open loop. wrk2's model: a fixed set of keep-alive connections works through
/// the schedule. A request whose time has come waits for a free connection, and that wait
/// counts in its latency (measured from the intended send time: no coordinated omission).
/// Opening connections on demand instead would turn any hiccup into a connect storm that
/// measures the kernel; so they are all open before the schedule starts, as a steady client's
/// would be, and the first requests are not charged for connecting.
struct Lane<'a> {
    shared: &'a Arc<Shared>,
    /// Every lane waits here with its connections open; then all schedules start.
    all_connected: &'a std::sync::Barrier,
    interval: Duration,
    index: usize,
    lanes: usize,
    connections: usize,
}

impl Lane<'_> {
    fn run(&self) -> Result<(), String> {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                self.all_connected.wait();
                return Err(format!("cannot start a load thread: {error}"));
            }
        };
        runtime.block_on(self.paced())
    }

    async fn paced(&self) -> Result<(), String> {
        let (schedule, queue) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        let connected = Arc::new(tokio::sync::Barrier::new(self.connections + 1));
        let workers: Vec<_> = (0..self.connections)
            .map(|i| {
                let shared = Arc::clone(self.shared);
                let queue = Arc::clone(&queue);
                let connected = Arc::clone(&connected);
                let seed = ((self.index as u64) << 32) | i as u64;
                tokio::spawn(async move {
                    let mut rng = SmallRng::seed_from_u64(seed);
                    let mut connections = Connections::default();
                    // A node that cannot be reached now is tried again by each request sent to
                    // it, and shows as their transport errors; it may not hold up the schedule.
                    let patience = shared.timeout.min(Duration::from_secs(1));
                    for node in 0..shared.addresses.len() {
                        let _ =
                            tokio::time::timeout(patience, connections.get(&shared, node)).await;
                    }
                    connected.wait().await;
                    let mut local = Vec::new();
                    loop {
                        let next = queue.lock().await.recv().await;
                        let Some(intended) = next else { break };
                        local.push(send(&shared, &mut connections, &mut rng, intended).await.0);
                    }
                    if let Ok(mut samples) = shared.samples.lock() {
                        samples.extend(local);
                    }
                })
            })
            .collect();
        connected.wait().await;
        // Blocking this thread is harmless here: its connections are open and idle.
        self.all_connected.wait();
        let paced = self.work_through_schedule(schedule).await;
        // The schedule's sender is gone: the connections drain the queue and stop.
        for worker in workers {
            let _ = worker.await;
        }
        paced
    }

    /// Hand this lane's slots of the schedule to its connections, each at its time.
    async fn work_through_schedule(
        &self,
        schedule: tokio::sync::mpsc::UnboundedSender<Instant>,
    ) -> Result<(), String> {
        let pacer = Pacer::new().map_err(|e| format!("cannot make a timer: {e}"))?;
        let origin = Instant::now();
        let mut slot = u32::try_from(self.index).unwrap_or(u32::MAX);
        let step = u32::try_from(self.lanes).unwrap_or(u32::MAX);
        while let Some(intended) = self
            .interval
            .checked_mul(slot)
            .and_then(|offset| origin.checked_add(offset))
        {
            pacer
                .until(intended)
                .await
                .map_err(|e| format!("the schedule's timer failed: {e}"))?;
            if !self.shared.claim() || schedule.send(intended).is_err() {
                break;
            }
            let Some(next) = slot.checked_add(step) else {
                break;
            };
            slot = next;
        }
        Ok(())
    }
}

/// A worker's own keep-alive connection to each node: a virtual client (closed loop) or one of
/// the open loop's connections never shares it and never opens a second one while it works
/// (a pool can open another when a request is sent just before the last one's connection is
/// back in it).
#[derive(Default)]
struct Connections {
    by_node: Vec<Option<SendRequest<Full<Bytes>>>>,
}

impl Connections {
    /// The connection to `node`, opened (again) if there is none or it closed.
    async fn get(
        &mut self,
        shared: &Shared,
        node: usize,
    ) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.by_node.len() <= node {
            self.by_node.resize_with(node + 1, || None);
        }
        let slot = &mut self.by_node[node];
        let usable = match slot.as_mut() {
            Some(sender) => !sender.is_closed() && sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let stream = tokio::net::TcpStream::connect(&shared.addresses[node])
                .await
                .map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            *slot = Some(sender);
        }
        slot.as_mut().ok_or_else(|| "no connection".to_string())
    }
}

/// Send one request; the sample and, for a 429, the retry-after-ms it carried.
async fn send(
    shared: &Shared,
    connections: &mut Connections,
    rng: &mut SmallRng,
    intended: Instant,
) -> (Sample, Option<u64>) {
    let (node, key) = shared.pick(rng);
    let body = shared.bodies[rng.random_range(0..shared.bodies.len())].clone();
    let since_start = |at: Instant| (at - shared.start).as_secs_f64() * 1000.0;
    let sent = Instant::now();
    let builder = Request::post(shared.api.path()).header("host", &shared.addresses[node]);
    // As each API's own clients send the key.
    let builder = match shared.api {
        Api::Messages => builder
            .header("x-api-key", &shared.keys[key])
            .header("anthropic-version", "2023-06-01"),
        _ => builder.header("authorization", format!("Bearer {}", shared.keys[key])),
    };
    let request = builder
        .header("content-type", "application/json")
        .body(Full::new(body));
    let mut sample = Sample {
        node,
        key,
        status: Status::Transport,
        latency_us: 0,
        sent_ms: since_start(sent),
        done_ms: 0.0,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: 0,
        streaming: None,
    };
    let mut retry_after = None;
    let result = match request {
        Ok(request) => tokio::time::timeout(shared.timeout, async {
            let sender = connections.get(shared, node).await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let headers_at = Instant::now();
            let (parts, mut body) = response.into_parts();
            // Frame by frame; a stream's frames are looked into for when its last content came.
            let streamed = is_event_stream(&parts.headers);
            let mut bytes = Vec::new();
            let mut last_content_at = headers_at;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
                    if streamed && has_content(shared.api, &data) {
                        last_content_at = Instant::now();
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            let span = streamed.then_some((headers_at, last_content_at));
            Ok::<_, String>((parts, Bytes::from(bytes), span))
        })
        .await
        .unwrap_or_else(|_| Err("timeout".into())),
        Err(error) => Err(error.to_string()),
    };
    let done = Instant::now();
    sample.latency_us = done.saturating_duration_since(intended).as_micros() as u64;
    sample.done_ms = since_start(done);
    match result {
        Err(_) => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
        }
        Ok((parts, bytes, span)) => match parts.status.as_u16() {
            200 => {
                shared.ok.fetch_add(1, Ordering::Relaxed);
                sample.status = Status::Ok;
                if let Some(usage) = usage(shared.api, &bytes) {
                    sample.prompt_tokens = usage.prompt;
                    sample.completion_tokens = usage.completion;
                    sample.cached_tokens = usage.cached;
                }
                sample.streaming = span.map(|(from, to)| (since_start(from), since_start(to)));
            }
            429 => {
                shared.limited.fetch_add(1, Ordering::Relaxed);
                let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
                retry_after = header("retry-after-ms").and_then(|v| v.parse().ok());
                let reason = if header("x-should-retry") == Some("false") {
                    Reason::TooLarge
                } else {
                    let kind = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v["error"]["type"].as_str().map(str::to_string));
                    match kind.as_deref() {
                        Some("requests") => Reason::Requests,
                        Some("input_tokens") => Reason::InputTokens,
                        Some("output_tokens") => Reason::OutputTokens,
                        _ => Reason::Other,
                    }
                };
                sample.status = Status::Limited(reason);
            }
            code => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                sample.status = Status::Http(code);
            }
        },
    }
    (sample, retry_after)
}
