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
    /// Not a request: forget a datacenter removed from the federation for good (stop
    /// dialling its gateways, close the links to them, and do not learn them again from
    /// others). From a server to its gateway, which passes it to every gateway it links to;
    /// answered with a `RouteStatus`.
    Forget(String),
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

/// First byte of a routed datagram (its format's version).
pub const DATAGRAM_V1: u8 = 1;

/// Where a routed datagram goes: a datacenter and a server of it by name (any server when
/// empty). A datagram on a dc-link or a WAN link is this header, then a payload the
/// gateways pass on without reading (WAN gossip, sealed end to end with the keyring):
/// `[1][dc length][dc][node length][node][payload]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramHeader<'a> {
    /// Destination datacenter.
    pub dst_dc: &'a str,
    /// Destination server's node name; empty for any server.
    pub dst_node: &'a str,
}

impl<'a> DatagramHeader<'a> {
    /// The datagram: this header, then `payload`. None when a name is longer than 255 bytes.
    pub fn encode(&self, payload: &[u8]) -> Option<Vec<u8>> {
        let dc = u8::try_from(self.dst_dc.len()).ok()?;
        let node = u8::try_from(self.dst_node.len()).ok()?;
        let mut datagram =
            Vec::with_capacity(3 + self.dst_dc.len() + self.dst_node.len() + payload.len());
        datagram.push(DATAGRAM_V1);
        datagram.push(dc);
        datagram.extend_from_slice(self.dst_dc.as_bytes());
        datagram.push(node);
        datagram.extend_from_slice(self.dst_node.as_bytes());
        datagram.extend_from_slice(payload);
        Some(datagram)
    }

    /// The header and payload of a datagram; None when it is not one of ours.
    pub fn decode(datagram: &'a [u8]) -> Option<(DatagramHeader<'a>, &'a [u8])> {
        let (&version, rest) = datagram.split_first()?;
        if version != DATAGRAM_V1 {
            return None;
        }
        let (dst_dc, rest) = take_name(rest)?;
        let (dst_node, payload) = take_name(rest)?;
        Some((DatagramHeader { dst_dc, dst_node }, payload))
    }
}

fn take_name(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (&len, rest) = bytes.split_first()?;
    let len = usize::from(len);
    let name = rest.get(..len)?;
    Some((std::str::from_utf8(name).ok()?, rest.get(len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagram_headers_round_trip_and_garbage_is_refused() {
        let header = DatagramHeader {
            dst_dc: "dc2",
            dst_node: "s1",
        };
        let datagram = header.encode(b"sealed").unwrap_or_default();
        assert_eq!(
            DatagramHeader::decode(&datagram),
            Some((header, &b"sealed"[..]))
        );
        let any = DatagramHeader {
            dst_dc: "dc2",
            dst_node: "",
        };
        let datagram = any.encode(b"").unwrap_or_default();
        assert_eq!(DatagramHeader::decode(&datagram), Some((any, &b""[..])));
        // Truncated, a wrong version, names that are not UTF-8, a name too long to encode.
        for garbage in [
            &b""[..],
            &[1][..],
            &[1, 5, b'd'][..],
            &[2, 0, 0][..],
            &[1, 1, 0xff, 0][..],
        ] {
            assert_eq!(DatagramHeader::decode(garbage), None, "{garbage:?}");
        }
        let long = "x".repeat(256);
        let too_long = DatagramHeader {
            dst_dc: &long,
            dst_node: "",
        };
        assert_eq!(too_long.encode(b""), None);
    }
}
