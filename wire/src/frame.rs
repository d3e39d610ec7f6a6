//! Frames on a QUIC stream: a 4-byte big-endian length, then a postcard-encoded message.
//! Decoding tells a frame too large apart from one that does not decode, and never panics.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest frame accepted: 64 MiB (a Raft batch of 64 entries of 512 KiB values fits).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Why a frame cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Announced or encoded length above [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    /// The bytes are not a valid message.
    #[error("undecodable frame: {0}")]
    Invalid(String),
}

/// Encodes a message with its length prefix.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    let body = postcard::to_stdvec(message).map_err(|e| FrameError::Invalid(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The body length announced by a 4-byte header.
pub fn body_len(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a frame body (without its header).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    postcard::from_bytes(body).map_err(|e| FrameError::Invalid(e.to_string()))
}

/// Encodes a value without a length prefix (log entries, snapshots).
pub fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    postcard::to_stdvec(value).map_err(|e| FrameError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let frame = encode(&("hello", 7u64)).expect("encodes");
        let len = body_len(frame[..4].try_into().expect("4 bytes")).expect("small");
        assert_eq!(len, frame.len() - 4);
        let back: (String, u64) = decode(&frame[4..]).expect("decodes");
        assert_eq!(back, ("hello".to_owned(), 7));
        assert!(matches!(
            body_len([0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge(_))
        ));
        assert!(matches!(
            decode::<(String, u64)>(&[0xff, 0xff]),
            Err(FrameError::Invalid(_))
        ));
    }
}
