//! Real gateway processes, killed when dropped, and what they report.

use crate::http::http;
use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The gateway binary: `LLMRL_GATEWAY`, or the release build in this workspace.
pub fn gateway_path() -> PathBuf {
    built("LLMRL_GATEWAY", "llmrl-gateway")
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

    /// Whether the log shows `text` within `timeout` (the gateway logs some things from
    /// background tasks, after it accepts connections).
    pub fn log_shows(&self, text: &str, timeout: Duration) -> bool {
        crate::eventually(timeout, || self.log_text().contains(text))
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
