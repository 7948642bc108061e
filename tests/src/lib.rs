//! Shared harness for the cross-program integration tests: real `redis-server` (or Valkey)
//! processes with the real module, real gateway and load generator processes, all on loopback,
//! each stopped when dropped.

pub mod cluster;
pub mod gateway;
pub mod http;
pub mod loadgen;
pub mod module_state;
pub mod policy;
pub mod redis_server;
pub mod util;

pub use cluster::*;
pub use gateway::*;
pub use http::*;
pub use loadgen::*;
pub use module_state::*;
pub use policy::*;
pub use redis_server::*;
pub use util::*;
