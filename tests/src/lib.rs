//! Shared harness for the cross-program integration tests: real `redis-server` processes with the
//! real module loaded, each on its own loopback port and directory, stopped when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The module under test: `LLMRL_MODULE`, or the release build in this workspace.
pub fn module_path() -> PathBuf {
    if let Ok(path) = std::env::var("LLMRL_MODULE") {
        return PathBuf::from(path);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join("target/release/libllmrl.so");
    assert!(
        path.exists(),
        "{} is missing: run `make test` (or `cargo build --release -p llmrl`) first",
        path.display()
    );
    path
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
}

impl RedisServer {
    /// A server with the module and debug commands, no persistence unless `extra` asks for it.
    pub fn start(extra: &[&str]) -> RedisServer {
        Self::start_with_module_args(extra, &[])
    }

    pub fn start_with_module_args(extra: &[&str], module_args: &[&str]) -> RedisServer {
        let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("llmrl-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let module = module_path();
        let mut loadmodule = vec![module.display().to_string()];
        loadmodule.extend(module_args.iter().map(|s| s.to_string()));
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--enable-debug-command".into(),
            "yes".into(),
            "--loadmodule".into(),
        ];
        args.extend(loadmodule);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut server = RedisServer {
            child: None,
            port: 0,
            dir,
            args,
        };
        server.launch(None);
        server
    }

    fn launch(&mut self, port: Option<u16>) {
        for _attempt in 0..5 {
            if self.try_launch(port.unwrap_or_else(free_port)) {
                return;
            }
        }
        panic!("redis-server did not start; log:\n{}", self.log());
    }

    /// One attempt to start on `port`; false if the server exits or never answers.
    fn try_launch(&mut self, port: u16) -> bool {
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(&self.args)
            .args(["--port", &port.to_string()])
            .args(["--dir", &self.dir.display().to_string()])
            .args(["--logfile", &log.display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (make test installs it)");
        self.child = Some(child);
        self.port = port;
        if self.wait_ready(Duration::from_secs(10)) {
            return true;
        }
        self.kill();
        false
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if let Ok(mut con) = self.try_client() {
                let ping: redis::RedisResult<String> = redis::cmd("PING").query(&mut con);
                if ping.is_ok() {
                    return true;
                }
            }
            sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    fn try_client(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?;
        client.get_connection_with_timeout(Duration::from_secs(5))
    }

    pub fn client(&self) -> redis::Connection {
        self.try_client().expect("connect to redis")
    }

    /// A RESP3 connection (`HELLO 3`).
    pub fn client_resp3(&self) -> redis::Connection {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", self.port))
                .expect("client");
        client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect with RESP3")
    }

    /// Stop the process at once (like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Graceful SHUTDOWN (saving if persistence is configured), then wait for the process.
    pub fn shutdown(&mut self, save: bool) {
        if let Ok(mut con) = self.try_client() {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN")
                .arg(if save { "SAVE" } else { "NOSAVE" })
                .query(&mut con);
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port and directory (so the RDB/AOF there is loaded).
    pub fn restart(&mut self, extra: &[&str]) {
        self.args.extend(extra.iter().map(|s| s.to_string()));
        let port = self.port;
        self.launch(Some(port));
    }

    /// Like `restart`, once, reporting whether the server came up (it may refuse its data).
    pub fn try_restart(&mut self) -> bool {
        let port = self.port;
        self.try_launch(port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run a command and return its reply as a value.
pub fn exec(con: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(con)
}

/// The 10-field reply of CHECK / PEEK / SETTLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
    pub retry_after_ms: i64,
    pub remaining: [i64; 3],
    pub reset_ms: [i64; 3],
    pub ticket: i64,
}

impl Decision {
    pub fn from_value(value: &redis::Value) -> Decision {
        let redis::Value::Array(items) = value else {
            panic!("expected an array, got {value:?}");
        };
        assert_eq!(items.len(), 10, "CHECK replies with 10 fields: {items:?}");
        let int = |i: usize| -> i64 {
            match &items[i] {
                redis::Value::Int(n) => *n,
                other => panic!("field {i} is not an integer: {other:?}"),
            }
        };
        let reason = match &items[1] {
            redis::Value::BulkString(bytes) => String::from_utf8(bytes.clone()).expect("utf8"),
            other => panic!("reason is not a bulk string: {other:?}"),
        };
        Decision {
            allowed: match int(0) {
                0 => false,
                1 => true,
                n => panic!("allowed is {n}"),
            },
            reason,
            retry_after_ms: int(2),
            remaining: [int(3), int(4), int(5)],
            reset_ms: [int(6), int(7), int(8)],
            ticket: int(9),
        }
    }
}

/// Run a CHECK/PEEK/SETTLE-shaped command and parse its reply.
pub fn decision(con: &mut redis::Connection, args: &[&str]) -> Decision {
    let value = exec(con, args).unwrap_or_else(|e| panic!("{args:?} failed: {e}"));
    Decision::from_value(&value)
}

/// The error message a command answers with (panics if it succeeds).
pub fn error(con: &mut redis::Connection, args: &[&str]) -> String {
    match exec(con, args) {
        Ok(value) => panic!("{args:?} should fail, got {value:?}"),
        Err(e) => {
            let code = e.code().unwrap_or("").to_string();
            let detail = e.detail().unwrap_or("").to_string();
            format!("{code} {detail}").trim().to_string()
        }
    }
}

pub fn int(con: &mut redis::Connection, args: &[&str]) -> i64 {
    match exec(con, args) {
        Ok(redis::Value::Int(n)) => n,
        other => panic!("{args:?}: expected an integer, got {other:?}"),
    }
}

pub fn string(con: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query(con)
        .unwrap_or_else(|e| panic!("{args:?}: expected a string: {e}"))
}

/// Wait until `f` holds, for at most `timeout`.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

/// The gateway binary: `LLMRL_GATEWAY`, or the release build in this workspace.
pub fn gateway_path() -> PathBuf {
    if let Ok(path) = std::env::var("LLMRL_GATEWAY") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/llmrl-gateway");
    assert!(
        path.exists(),
        "{} is missing: run `make test` (or `cargo build --release -p llmrl-gateway`) first",
        path.display()
    );
    path
}

/// A gateway process on its own loopback port, killed when dropped.
pub struct Gateway {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

impl Gateway {
    /// Start a gateway against `redis_port` with the keys in `keys_file`, plus `extra` flags.
    pub fn start(redis_port: u16, keys_file: &Path, extra: &[&str]) -> Gateway {
        Self::start_with_env(redis_port, keys_file, extra, &[])
    }

    pub fn start_with_env(
        redis_port: u16,
        keys_file: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        for _attempt in 0..5 {
            let port = free_port();
            let log = keys_file.with_file_name(format!("gateway-{port}.log"));
            let log_file = std::fs::File::create(&log).expect("create gateway log");
            let child = Command::new(gateway_path())
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--redis-url", &format!("redis://127.0.0.1:{redis_port}/")])
                .args(["--keys-file", &keys_file.display().to_string()])
                .args(extra)
                .envs(env.iter().copied())
                .env("LLMRL_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file)
                .spawn()
                .expect("start llmrl-gateway");
            let mut gateway = Gateway {
                child: Some(child),
                port,
                log,
            };
            if gateway.wait_ready() {
                return gateway;
            }
            gateway.kill();
        }
        panic!("llmrl-gateway did not start");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Send a signal by name (TERM, HUP, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Wait for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return status.code();
                }
            }
            sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP response as read off the socket.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send raw bytes to a port and read the whole response (the server closes after it).
pub fn raw_http(port: u16, request: &[u8]) -> std::io::Result<HttpResponse> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http(&raw).ok_or_else(|| {
        std::io::Error::other(format!(
            "bad HTTP response: {:?}",
            String::from_utf8_lossy(&raw)
        ))
    })
}

/// Parse a complete HTTP/1.1 response (chunked bodies decoded); `None` if it is not one.
pub fn parse_http(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16)
                    .ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body = decoded;
    }
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A request with `Connection: close`; `body` is sent as JSON when given.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    api_key: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(key) = api_key {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    raw_http(port, request.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `POST /v1/chat/completions` with an API key and a JSON body.
pub fn post_chat(port: u16, api_key: &str, body: &str) -> HttpResponse {
    http(
        port,
        "POST",
        "/v1/chat/completions",
        Some(api_key),
        Some(body),
    )
}

/// A one-message chat request body.
pub fn chat_body(model: &str, content: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"{content}"}}]{extra}}}"#)
}

/// The `data:` payloads of a server-sent event stream, `[DONE]` included.
pub fn sse_events(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

/// A gateway metric from /metrics, summed over the series whose labels contain all of
/// `labels` (e.g. `route="chat"`).
pub fn metric(port: u16, name: &str, labels: &[&str]) -> u64 {
    http(port, "GET", "/metrics", None, None)
        .text()
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Write a keys file into `dir`.
pub fn write_keys(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("keys.toml");
    std::fs::write(&path, toml).expect("write keys file");
    path
}

/// The load generator binary: `LLMRL_LOADGEN`, or the release build in this workspace.
pub fn loadgen_path() -> PathBuf {
    if let Ok(path) = std::env::var("LLMRL_LOADGEN") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/llmrl-loadgen");
    assert!(
        path.exists(),
        "{} is missing: run `make test` first",
        path.display()
    );
    path
}

/// Run the load generator to completion: its exit code and stdout.
pub fn run_loadgen(args: &[&str]) -> (i32, String) {
    let output = Command::new(loadgen_path())
        .args(args)
        .arg("--quiet")
        .stdin(Stdio::null())
        .output()
        .expect("run llmrl-loadgen");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// Run the load generator with `--json json` added: its exit code, output and JSON report.
pub fn run_loadgen_report(args: &[&str], json: &Path) -> (i32, String, serde_json::Value) {
    let json_arg = json.display().to_string();
    let mut args = args.to_vec();
    args.extend(["--json", &json_arg]);
    let (code, output) = run_loadgen(&args);
    let report = std::fs::read_to_string(json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("no report ({code}): {output}"));
    (code, output, report)
}

/// A Redis Cluster of `primaries` nodes (no replicas), the module on every node.
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start(primaries: usize) -> Cluster {
        let nodes: Vec<RedisServer> = (0..primaries)
            .map(|_| RedisServer::start(&["--cluster-enabled", "yes"]))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success(), "redis-cli --cluster create failed");
        for node in &nodes {
            let mut con = node.client();
            assert!(
                eventually(Duration::from_secs(20), || string(
                    &mut con,
                    &["CLUSTER", "INFO"]
                )
                .contains("cluster_state:ok")),
                "the cluster did not become ready"
            );
        }
        Cluster { nodes }
    }

    /// `--redis-cluster` for the gateway: every node as a seed.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node_id(&self, index: usize) -> String {
        string(&mut self.nodes[index].client(), &["CLUSTER", "MYID"])
    }

    /// The node holding `key`'s slot.
    pub fn owner(&self, key: &str) -> usize {
        let mut con = self.nodes[0].client();
        let slot = int(&mut con, &["CLUSTER", "KEYSLOT", key]);
        self.nodes
            .iter()
            .position(|n| {
                int(
                    &mut n.client(),
                    &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()],
                ) > 0
            })
            .unwrap_or_else(|| panic!("no node holds {key} (slot {slot})"))
    }
}

/// The Redis key the gateway uses for an API key's default scope (see gateway/src/config.rs):
/// its hash tag is the first 16 bytes of the key's SHA-256, so each API key has its own slot.
pub fn gateway_redis_key(api_key: &str, window_ms: u64) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(api_key.as_bytes());
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("llmrl:{{{hash}}}:w{window_ms}:default")
}

/// Redis Cluster's slot of a key (CRC16-XMODEM of its hash tag, mod 16384).
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    let mut crc: u16 = 0;
    for &byte in tagged.unwrap_or(bytes) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}
