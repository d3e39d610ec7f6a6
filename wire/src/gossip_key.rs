//! The gossip encryption key, in `consul keygen`'s format: base64 of 16, 24 or 32 bytes,
//! selecting AES-128, -192 or -256 GCM.

use base64::Engine as _;

/// Why a gossip key is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipKeyError {
    /// Not base64.
    #[error("the gossip key is not valid base64: {0}")]
    NotBase64(String),
    /// The wrong length for AES.
    #[error("the gossip key decodes to {0} bytes; it must be 16, 24 or 32")]
    BadLength(usize),
}

/// Decodes a gossip key (surrounding whitespace ignored).
pub fn decode(key: &str) -> Result<Vec<u8>, GossipKeyError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|e| GossipKeyError::NotBase64(e.to_string()))?;
    if matches!(bytes.len(), 16 | 24 | 32) {
        Ok(bytes)
    } else {
        Err(GossipKeyError::BadLength(bytes.len()))
    }
}

/// Encodes key bytes as `consul keygen` prints them.
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_aes_key_sizes_only() {
        for size in [16, 24, 32] {
            assert_eq!(decode(&encode(&vec![7u8; size])).map(|k| k.len()), Ok(size));
        }
        assert_eq!(
            decode(&encode(&[1u8; 20])),
            Err(GossipKeyError::BadLength(20))
        );
        assert!(matches!(
            decode("not base64!"),
            Err(GossipKeyError::NotBase64(_))
        ));
    }
}
