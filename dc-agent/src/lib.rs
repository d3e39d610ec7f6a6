//! The Isthmus agent, server or client, and its operator CLI: Consul's configuration and
//! flags (`assemble`, `config`), the `/v1` HTTP API (`http`), DNS (`dns`), LAN and WAN gossip
//! (`gossip`), the agent's own services and checks (`local`, `checks`), and on servers Raft
//! (`raft`, `server`, `state`) with its links to the gateways (`wan`). `run` wires them;
//! `internal` is the typed client of the agent's own API for what it does by itself.
#![warn(missing_docs)]

pub mod assemble;
pub mod checks;
pub mod cli;
pub mod client;
pub mod coalesce;
pub mod config;
pub mod dns;
pub mod events;
pub mod exec;
pub mod fuzzing;
pub mod gossip;
pub mod http;
pub mod internal;
pub mod keygen;
pub mod local;
pub mod metrics;
pub mod monitor;
pub mod persist;
pub mod rpc;
pub mod run;
pub mod server;
pub mod servers;
pub mod shutdown;
pub mod tasks;
pub mod wan;
pub mod watch;

// The replicated state lives in its own crate (`store`); its modules keep their paths here.
pub use store::{raft, state};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
