//! The QUIC shell both binaries stand on: how an Isthmus endpoint is built and tuned, how a
//! link to a peer is kept up (dial, run, redial with backoff), how one frame crosses a
//! stream, and who the peer of a connection is.
//!
//! It owns the transport settings (keep-alives, idle timeout, stream limits), stateless
//! resets that survive restarts, the dial timeout and backoff, and the limits every hop
//! applies to stream headers ([`MAX_HEADER`]) and deadlines ([`MAX_DEADLINE`]). It does not
//! know what flows over a link (Raft, RPC, routed streams, gossip datagrams: `dc-agent` and
//! `wan-gateway` decide), nor which certificates to accept (`pki` policies, passed in).
#![warn(missing_docs)]

mod dial;
mod endpoint;
mod frame;

use std::time::Duration;

pub use dial::{keep_dialled, Backoff, DIAL_TIMEOUT};
pub use endpoint::{
    client_config, client_config_with, dc_link_transport_config, negotiated_alpn, peer_certificate,
    server_endpoint, transport_config, wan_link_transport_config,
};
pub use frame::{
    read_body_limited, read_frame, read_frame_budgeted, read_frame_limited, read_stream_open,
    write_frame, FrameIoError, PEER_BUDGET,
};

/// Largest header frame a hop reads before it knows where a stream goes (a route header, a
/// status, a gateway list).
pub const MAX_HEADER: usize = 64 * 1024;

/// Longest deadline a routed stream may claim: a blocking query's longest wait (10 min) and
/// room to answer.
pub const MAX_DEADLINE: Duration = Duration::from_secs(11 * 60);
