//! Cross-DC routing: what a server writes at the head of a stream it opens on its dc-link,
//! and what gateways read to pass the stream on. After the header, the stream carries the
//! caller's request and the callee's answer as frames the gateways copy without reading.
//!
//! ```text
//! server (dc1) --dc-link--> gateway (dc1) --WAN link--> gateway (dc2) --dc-link--> server (dc2)
//!   [RouteHeader][request]  -> copied ->                 -> copied ->  reads both
//!   <- [RouteStatus][answer] <- copied <-                 <- copied <-  writes both
//! ```
//!
//! A hop that cannot pass the stream on answers `RouteStatus::NoRoute` itself and finishes
//! the stream, so the caller learns at once which hop failed and why.

use serde::{Deserialize, Serialize};

/// ALPN of a server's link to a gateway of its own datacenter.
pub const ALPN_DC_LINK: &[u8] = b"isthmus/dc-link";
/// ALPN of a link between gateways of different datacenters.
pub const ALPN_WAN: &[u8] = b"isthmus/wan";

/// Which server of the destination datacenter should answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Any server (it forwards to its leader when the request needs one).
    AnyServer,
    /// A server by node name.
    Node(String),
    /// Not a request: a gateway telling the gateway at the other end of a WAN link which
    /// gateways it knows (itself first). The other answers with a `Gateways` frame of its
    /// own, so both can link to the rest of the federation without a restart.
    Gateways(Vec<GatewayAddress>),
}

/// A gateway and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GatewayAddress {
    /// Its datacenter.
    pub datacenter: String,
    /// Its node name.
    pub node: String,
    /// Its QUIC address, `address:port`.
    pub address: String,
}

/// The first frame of a routed stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteHeader {
    /// Destination datacenter.
    pub dst_dc: String,
    /// Datacenter of the caller.
    pub src_dc: String,
    /// The server that should answer.
    pub target: Target,
    /// Milliseconds the caller waits in all; every hop gives up when they run out.
    pub deadline_ms: u64,
}

/// The first frame of a routed stream's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteStatus {
    /// A server of the destination took the request; its answer follows.
    Delivered,
    /// A hop could not pass the request on: which hop, and why.
    NoRoute(String),
}

/// What a gateway tells a local server about itself and the federation (the answer to a
/// stream whose header names no destination datacenter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// The gateway's datacenter.
    pub datacenter: String,
    /// Its node name.
    pub node: String,
    /// Every datacenter it can reach, with the measured round trip in microseconds when
    /// known, its own first with 0.
    pub datacenters: Vec<(String, Option<u64>)>,
}
