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

/// Reads one frame from a stream.
pub async fn read_frame<T: serde::de::DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<T, FrameIoError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| FrameIoError::Read(e.to_string()))?;
    let len = wire::frame::body_len(header)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| FrameIoError::Read(e.to_string()))?;
    Ok(wire::frame::decode(&body)?)
}

/// Reads one frame of at most `limit` bytes (a peer announcing more is refused before any
/// buffer is allocated).
pub async fn read_frame_limited<T: serde::de::DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<T, FrameIoError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| FrameIoError::Read(e.to_string()))?;
    let len = wire::frame::body_len(header)?;
    if len > limit {
        return Err(FrameIoError::Read(format!(
            "a frame of {len} bytes where at most {limit} are expected"
        )));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| FrameIoError::Read(e.to_string()))?;
    Ok(wire::frame::decode(&body)?)
}

/// Writes one frame and finishes the stream.
pub async fn write_frame<T: serde::Serialize>(
    send: &mut quinn::SendStream,
    message: &T,
) -> Result<(), FrameIoError> {
    let frame = wire::frame::encode(message)?;
    send.write_all(&frame)
        .await
        .map_err(|e| FrameIoError::Write(e.to_string()))?;
    send.finish()
        .map_err(|e| FrameIoError::Write(e.to_string()))?;
    Ok(())
}

/// Why a frame could not cross a stream.
#[derive(Debug, thiserror::Error)]
pub enum FrameIoError {
    /// Reading failed (peer gone, stream reset).
    #[error("reading a frame: {0}")]
    Read(String),
    /// Writing failed.
    #[error("writing a frame: {0}")]
    Write(String),
    /// The frame is too large or does not decode.
    #[error(transparent)]
    Frame(#[from] wire::frame::FrameError),
}
