//! llmrl-core: everything about llmrl that does not need Redis.
//!
//! - [`window`]: the sliding-window limiter (the algorithm, with its property tests);
//! - [`encoding`]: the flat number list that persists a window (RDB, AOF rewrite, digest) and
//!   the packed form of the replicated `LLMRL.APPLY`;
//! - [`args`] and [`error`]: the server side of the command contract (parsing arguments, the
//!   errors a command answers with);
//! - [`protocol`]: the client side of the same contract (laying out a command's arguments,
//!   decoding its reply), used by the gateway, the load generator and the tests.
//!
//! The Redis module (`module/`) is the thin glue around this crate.

pub mod args;
pub mod encoding;
pub mod error;
pub mod multi;
pub mod period;
pub mod protocol;
#[cfg(feature = "redis-client")]
pub mod redis_client;
pub mod scope;
pub mod stack_bytes;
pub mod window;

#[cfg(test)]
mod fuzz;
