//! Real `redis-server` processes with the real module loaded, each on its own loopback port and
//! directory, stopped when dropped; and typed calls to them.

use crate::util::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The server the tests run: `LLMRL_REDIS_SERVER` (e.g. Valkey's `valkey-server`), or
/// `redis-server` from the PATH.
pub fn server_binary() -> String {
    std::env::var("LLMRL_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
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
        let mut loadmodule = vec![
            "--loadmodule".to_string(),
            module_path().display().to_string(),
        ];
        loadmodule.extend(module_args.iter().map(|s| s.to_string()));
        Self::start_with_args(loadmodule, extra)
    }

    /// A server without the module (what a gateway pointed at the wrong Redis finds).
    pub fn start_without_module() -> RedisServer {
        Self::start_with_args(Vec::new(), &[])
    }

    fn start_with_args(loadmodule: Vec<String>, extra: &[&str]) -> RedisServer {
        let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("llmrl-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let mut args: Vec<String> = vec![
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--enable-debug-command".into(),
            "yes".into(),
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
        let child = Command::new(server_binary())
            .args(&self.args)
            .args(["--port", &port.to_string()])
            .args(["--dir", &self.dir.display().to_string()])
            .args(["--logfile", &log.display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (make test installs it): {e}",
                    server_binary()
                )
            });
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

    /// Start again on the same port and directory (so the RDB/AOF there is loaded). A server
    /// still running is killed first: otherwise it would keep the port, answer in the new one's
    /// place, and outlive the test.
    pub fn restart(&mut self, extra: &[&str]) {
        self.kill();
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

/// Run a CHECK/PEEK/SETTLE-shaped command and parse its reply.
/// The reply of CHECK / PEEK / SETTLE, decoded by the contract (`llmrl-core`).
pub type Decision = llmrl_core::protocol::Verdict;

/// Decode a CHECK / PEEK / SETTLE reply, strictly (ten fields of the right types).
pub fn parse_decision(value: &redis::Value) -> Decision {
    llmrl_core::redis_client::verdict(value)
        .unwrap_or_else(|e| panic!("not a CHECK reply ({e}): {value:?}"))
}

/// The reply of MCHECK / MPEEK, decoded by the contract.
pub type MultiDecision = llmrl_core::protocol::MultiVerdict;

/// Run an MCHECK / MPEEK and decode its reply strictly.
pub fn multi(con: &mut redis::Connection, args: &[&str]) -> MultiDecision {
    let value = exec(con, args).unwrap_or_else(|e| panic!("{args:?} failed: {e}"));
    llmrl_core::redis_client::multi_verdict(&value)
        .unwrap_or_else(|e| panic!("not an MCHECK reply ({e}): {value:?}"))
}

pub fn decision(con: &mut redis::Connection, args: &[&str]) -> Decision {
    let value = exec(con, args).unwrap_or_else(|e| panic!("{args:?} failed: {e}"));
    parse_decision(&value)
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
