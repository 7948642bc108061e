//! What every request shares: the configuration, the keys in force (swapped whole on reload),
//! the limiter, the tokenizer, metrics, the upstream, and the background tasks still running.

use crate::config::Cli;
use crate::dialect::Provider;
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::policy::KeyStore;
use crate::policy_store::{PolicyStore, StoreError};
use crate::tokens::Tokenizer;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// The real upstreams admitted requests go to, per provider (none: the built-in mock answers).
#[derive(Default)]
pub struct Upstreams {
    pub openai: Option<Upstream>,
    pub anthropic: Option<Upstream>,
}

impl Upstreams {
    pub fn for_provider(&self, provider: Provider) -> Option<&Upstream> {
        match provider {
            Provider::OpenAi => self.openai.as_ref(),
            Provider::Anthropic => self.anthropic.as_ref(),
        }
    }
}

pub struct App {
    pub cli: Cli,
    pub node: String,
    /// Read lock-free by every request; SIGHUP swaps in a whole new store.
    pub keys: ArcSwap<KeyStore>,
    pub limiter: Option<Limiter>,
    pub tokenizer: Arc<Tokenizer>,
    /// Counting large prompts runs on the blocking pool one at a time.
    pub heavy_counts: Semaphore,
    pub metrics: Metrics,
    pub upstreams: Upstreams,
    /// Settlements and streams still running; shutdown waits for them.
    pub tasks: TaskTracker,
    /// The policy in Redis (`--policies redis`); `None`: the keys file.
    pub policy_store: Option<Arc<PolicyStore>>,
    next_id: AtomicU64,
}

impl App {
    pub fn new(
        cli: Cli,
        keys: KeyStore,
        limiter: Option<Limiter>,
        upstreams: Upstreams,
        policy_store: Option<Arc<PolicyStore>>,
    ) -> App {
        let node = cli.node_id();
        App {
            metrics: Metrics::new(&node),
            node,
            keys: ArcSwap::from_pointee(keys),
            limiter,
            tokenizer: Arc::new(Tokenizer::new()),
            heavy_counts: Semaphore::new(1),
            upstreams,
            tasks: TaskTracker::new(),
            policy_store,
            next_id: AtomicU64::new(1),
            cli,
        }
    }

    pub fn keys(&self) -> Arc<KeyStore> {
        self.keys.load_full()
    }

    pub fn replace_keys(&self, keys: KeyStore) {
        self.keys.store(Arc::new(keys));
    }

    /// Take the stored policy if its version moved (`--policies redis`): whether it did. Requests
    /// in flight finish under the keys they started with.
    pub async fn refresh_policy(&self) -> Result<bool, StoreError> {
        let Some(store) = &self.policy_store else {
            return Ok(false);
        };
        let version = store.version().await?;
        if version.is_none() {
            return Err(StoreError::Missing(store.key().to_string()));
        }
        if version == self.keys().version {
            return Ok(false);
        }
        let keys = store.load().await?;
        tracing::info!(version = ?keys.version, keys = keys.len(), "policy loaded from Redis");
        self.replace_keys(keys);
        Ok(true)
    }

    /// A new request id, unique on this node.
    pub fn request_id(&self) -> String {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request_id(&self.node, id)
    }
}

/// `req_<node>_<id in hex>`, pushed piece by piece: `format!` cost more than the rest of
/// naming a request.
fn request_id(node: &str, id: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(5 + node.len() + 16);
    out.push_str("req_");
    out.push_str(node);
    out.push('_');
    let digits = (64 - id.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        let nibble = (id >> (shift * 4)) & 0xf;
        out.push(char::from(HEX[nibble as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_the_node_and_the_number_in_hex() {
        for id in [0, 1, 9, 10, 15, 16, 255, 256, 0xdead_beef, u64::MAX] {
            assert_eq!(super::request_id("gw-1", id), format!("req_gw-1_{id:x}"));
        }
    }
}
