//! The Isthmus agent: loads Consul-format agent configuration, and (as later issues land)
//! runs servers and client agents.
#![warn(missing_docs)]

pub mod assemble;
pub mod checks;
pub mod cli;
pub mod client;
pub mod config;
pub mod dns;
pub mod gossip;
pub mod http;
pub mod keygen;
pub mod local;
pub mod metrics;
pub mod monitor;
pub mod persist;
pub mod raft;
pub mod rpc;
pub mod run;
pub mod server;
pub mod servers;
pub mod state;
pub mod wan;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
