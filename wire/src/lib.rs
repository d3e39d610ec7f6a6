//! What crosses a process boundary in Isthmus.
//!
//! `wire` holds the vocabulary every binary shares (roles, names, durations, default ports)
//! and the formats one process writes and another reads: the agent configuration that
//! `topology render` writes for `dc-agent` (Consul's JSON agent format, so an operator who
//! knows Consul can read it) and the gateway configuration for `wan-gateway`.
//!
//! Invariant: no I/O and no tokio here. Types that are serialized live here and nowhere else.
#![warn(missing_docs)]

pub mod agent_config;
pub mod api;
pub mod command;
pub mod config_file;
pub mod duration;
pub mod flags;
pub mod frame;
pub mod gateway_config;
pub mod gojson;
pub mod gossip_key;
pub mod names;
pub mod percent;
pub mod ports;
pub mod raft;
pub mod records;
pub mod route;
pub mod snapshot;

pub use duration::GoDuration;
pub use names::{validate_dns_label, LabelError, Role};
