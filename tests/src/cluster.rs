//! A Redis Cluster of real servers, and the slot arithmetic the tests check against.

use crate::redis_server::*;
use crate::util::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A Redis Cluster of real servers, the module on every node.
pub struct Cluster {
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    pub fn start(primaries: usize) -> Cluster {
        Self::start_with(primaries, 0, &[])
    }

    /// `primaries` nodes, each with `replicas` replicas, every node started with `extra`.
    pub fn start_with(primaries: usize, replicas: usize, extra: &[&str]) -> Cluster {
        let mut args = vec!["--cluster-enabled", "yes"];
        args.extend_from_slice(extra);
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| RedisServer::start(&args))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
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

    /// The primary holding `key`'s slot (its replicas hold the key too).
    pub fn owner(&self, key: &str) -> usize {
        let mut con = self.nodes[0].client();
        let slot = int(&mut con, &["CLUSTER", "KEYSLOT", key]);
        self.nodes
            .iter()
            .position(|n| {
                let mut con = n.client();
                string(&mut con, &["INFO", "replication"]).contains("role:master")
                    && int(&mut con, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]) > 0
            })
            .unwrap_or_else(|| panic!("no node holds {key} (slot {slot})"))
    }
}

/// The Redis key the gateway uses for an API key's default scope: the policy's own rule
/// (`llmrl_keys::limiter_key`), so each API key has its own slot.
pub fn gateway_redis_key(api_key: &str, window_ms: u64) -> String {
    let digest = llmrl_keys::sha256(api_key.as_bytes());
    llmrl_keys::limiter_key(&digest, window_ms, llmrl_keys::Scope::Default)
}

pub use llmrl_keys::key_slot;
