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
pub mod persist;
pub mod raft;
pub mod rpc;
pub mod run;
pub mod server;
pub mod servers;
pub mod state;
pub mod wan;
