//! Server-to-server and agent-to-server traffic over QUIC: Raft (ALPN `isthmus/raft`) and
//! RPC (ALPN `isthmus/rpc`: discovery, joins, and HTTP requests forwarded to the leader).
//!
//! One bidirectional stream per request: the caller writes one frame and finishes its side;
//! the callee answers with one frame.

pub mod messages;
pub mod raft_network;
pub mod transport;

/// ALPN of Raft traffic: only servers of the same datacenter.
pub const ALPN_RAFT: &[u8] = b"isthmus/raft";
/// ALPN of RPC traffic: servers and client agents of the same datacenter.
pub const ALPN_RPC: &[u8] = b"isthmus/rpc";

// One frame across a stream: the shared QUIC shell's (`link`).
pub use link::{read_frame, read_frame_limited, write_frame, FrameIoError};
