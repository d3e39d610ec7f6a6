//! The Isthmus agent: loads Consul-format agent configuration, and (as later issues land)
//! runs servers and client agents.
#![warn(missing_docs)]

pub mod config;
pub mod keygen;
pub mod raft;
pub mod state;
