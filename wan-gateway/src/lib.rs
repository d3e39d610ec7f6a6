//! The Isthmus WAN gateway: holds the QUIC links between datacenters and routes cross-DC
//! traffic. This crate starts with its configuration; links and routing follow.
#![warn(missing_docs)]

pub mod config;
