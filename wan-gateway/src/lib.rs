//! The Isthmus WAN gateway: holds the QUIC links between datacenters and routes cross-DC
//! traffic between the servers of its datacenter and the gateways of the others.
#![warn(missing_docs)]

pub mod config;
pub mod gateway;
pub mod metrics;
pub mod router;
pub mod run;
pub mod tasks;
