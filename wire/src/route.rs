//! Cross-DC routing: what a server writes at the head of a stream it opens on its dc-link,
//! and what gateways read to pass the stream on. After the header, the stream carries the
//! caller's request and the callee's answer as frames the gateways copy without reading.
//!
//! ```text
//! server (dc1) --dc-link--> gateway (dc1) --WAN link--> gateway (dc2) --dc-link--> server (dc2)
//!   [StreamOpen][request]   -> copied ->                 -> copied ->  reads both
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
}

/// Version of [`StreamOpen`]: the first field of the first frame of every stream on a
/// dc-link or a WAN link.
pub const STREAM_OPEN_VERSION: u32 = 1;

/// The first frame of every stream on a dc-link or a WAN link: a version, then what the
/// stream is for. A hop that reads a version it does not know refuses the stream, naming
/// the version (`StreamOpen::decode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOpen {
    /// [`STREAM_OPEN_VERSION`].
    pub version: u32,
    /// What the stream is for.
    pub kind: StreamKind,
}

/// What a stream is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamKind {
    /// A request for a server of another datacenter: its frames follow, the answer comes
    /// back after a [`RouteStatus`].
    Route(RouteHeader),
    /// A local server asks its gateway about itself and the federation; answered with a
    /// [`GatewayInfo`] frame.
    Info,
    /// A gateway tells the gateway at the other end of a WAN link which gateways it knows
    /// (itself first); the other answers with a `Vec<GatewayAddress>` of its own, so both
    /// can link to the rest of the federation without a restart.
    Gateways(Vec<GatewayAddress>),
    /// Forget a datacenter removed from the federation for good (stop dialling its
    /// gateways, close the links to them, and do not learn them again from others). From a
    /// server to its gateway, which passes it to every gateway it links to; answered with a
    /// [`RouteStatus`].
    Forget(String),
}

impl StreamOpen {
    /// A stream for `kind`, at this build's version.
    pub fn new(kind: StreamKind) -> StreamOpen {
        StreamOpen {
            version: STREAM_OPEN_VERSION,
            kind,
        }
    }

    /// Decodes a frame body; a version this build does not know is refused by name before
    /// the rest is read (a later version may lay the rest out differently).
    pub fn decode(body: &[u8]) -> Result<StreamOpen, crate::frame::FrameError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } = crate::frame::decode(body)?;
        if version != STREAM_OPEN_VERSION {
            return Err(crate::frame::FrameError::Invalid(format!(
                "stream format {version}; this build speaks {STREAM_OPEN_VERSION}: upgrade it"
            )));
        }
        crate::frame::decode(body)
    }
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

/// Where a routed request goes ([`StreamKind::Route`]).
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
/// [`StreamKind::Info`] stream).
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
    fn stream_opens_round_trip_and_other_versions_are_named() {
        let open = StreamOpen::new(StreamKind::Route(RouteHeader {
            dst_dc: "dc2".into(),
            src_dc: "dc1".into(),
            target: Target::Node("s1".into()),
            deadline_ms: 500,
        }));
        let body = crate::frame::to_bytes(&open).unwrap_or_default();
        assert_eq!(StreamOpen::decode(&body).ok(), Some(open));
        let later = StreamOpen {
            version: STREAM_OPEN_VERSION + 1,
            kind: StreamKind::Info,
        };
        let body = crate::frame::to_bytes(&later).unwrap_or_default();
        let refused = StreamOpen::decode(&body).err().map(|e| e.to_string());
        assert!(refused.is_some_and(|e| e.contains("stream format 2")));
        assert!(StreamOpen::decode(b"").is_err());
    }

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
