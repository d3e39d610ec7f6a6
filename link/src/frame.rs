//! One frame ([`wire::frame`]: a length, then a postcard body) across a QUIC stream.

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

/// Reads one frame from a stream (up to [`wire::frame::MAX_FRAME`]).
pub async fn read_frame<T: serde::de::DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<T, FrameIoError> {
    read_frame_limited(recv, usize::MAX).await
}

/// Reads one frame of at most `limit` bytes (a peer announcing more is refused before any
/// buffer is allocated).
pub async fn read_frame_limited<T: serde::de::DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<T, FrameIoError> {
    let body = read_body_limited(recv, limit).await?;
    Ok(wire::frame::decode(&body)?)
}

/// What a frame's buffer starts at, whatever length its header announces: it grows with the
/// bytes that actually arrive, so a peer announcing 64 MiB and sending nothing costs this
/// much, not 64 MiB (QUIC's flow control bounds what it can send ahead).
const FIRST_BUFFER: usize = 16 * 1024;

/// Reads one frame's body, undecoded, of at most `limit` bytes (for formats that check
/// their own version first, as `wire::route::StreamOpen::decode`).
pub async fn read_body_limited(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Vec<u8>, FrameIoError> {
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
    read_body(recv, len).await
}

/// Reads a body of `len` bytes as they arrive.
async fn read_body(recv: &mut quinn::RecvStream, len: usize) -> Result<Vec<u8>, FrameIoError> {
    let mut body = Vec::with_capacity(len.min(FIRST_BUFFER));
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => {
                // Past the first buffer, room for exactly the rest (never twice the frame).
                if body.len() + chunk.bytes.len() > body.capacity() {
                    body.reserve_exact(len - body.len());
                }
                body.extend_from_slice(&chunk.bytes)
            }
            Ok(None) => {
                return Err(FrameIoError::Read(format!(
                    "the stream ended {} bytes into a frame of {len}",
                    body.len()
                )))
            }
            Err(e) => return Err(FrameIoError::Read(e.to_string())),
        }
    }
    Ok(body)
}

/// What one peer's connection may have in frames being read at once: room for one frame of
/// the largest size ([`wire::frame::MAX_FRAME`]) and as much again for everything else.
pub const PEER_BUDGET: usize = 2 * wire::frame::MAX_FRAME;

/// Reads one frame of a peer's within `deadline`, its announced length first taken from
/// the peer's `budget` (shared by all its streams; see [`PEER_BUDGET`]) and given back when
/// the returned permit drops. A peer that announces more than it sends, or sends slowly,
/// holds only its own budget, and only until the deadline.
pub async fn read_frame_budgeted<T: serde::de::DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    budget: &std::sync::Arc<tokio::sync::Semaphore>,
    deadline: std::time::Duration,
) -> Result<(T, tokio::sync::OwnedSemaphorePermit), FrameIoError> {
    let read = async {
        let mut header = [0u8; 4];
        recv.read_exact(&mut header)
            .await
            .map_err(|e| FrameIoError::Read(e.to_string()))?;
        let len = wire::frame::body_len(header)?;
        // `len` is at most MAX_FRAME, which fits a u32 and the budget.
        let permits = u32::try_from(len.max(1)).unwrap_or(u32::MAX);
        let permit = budget
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| FrameIoError::Read("the connection is closing".to_owned()))?;
        let body = read_body(recv, len).await?;
        Ok::<_, FrameIoError>((wire::frame::decode(&body)?, permit))
    };
    tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| FrameIoError::Read(format!("no whole frame within {deadline:?}")))?
}

/// Reads the first frame of a stream: its [`wire::route::StreamOpen`], version checked.
pub async fn read_stream_open(
    recv: &mut quinn::RecvStream,
) -> Result<wire::route::StreamOpen, FrameIoError> {
    let body = read_body_limited(recv, crate::MAX_HEADER).await?;
    Ok(wire::route::StreamOpen::decode(&body)?)
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
