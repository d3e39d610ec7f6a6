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
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| FrameIoError::Read(e.to_string()))?;
    Ok(body)
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
