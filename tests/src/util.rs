//! Small helpers every test uses: binaries under test, free ports, waiting.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A program under test: the path in `env_var`, or the release build `file` in this workspace.
pub fn built(env_var: &str, file: &str) -> PathBuf {
    if let Ok(path) = std::env::var(env_var) {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run `make test` (or `cargo build --release --workspace`) first",
        path.display()
    );
    path
}

/// The module under test: `LLMRL_MODULE`, or the release build in this workspace.
pub fn module_path() -> PathBuf {
    built("LLMRL_MODULE", "libllmrl.so")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
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
