//! `dc-agent keygen`: a new gossip encryption key, as `consul keygen` prints it.

use ring::rand::{SecureRandom, SystemRandom};

/// 32 random bytes (AES-256-GCM), base64.
pub fn new_gossip_key() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(wire::gossip_key::encode(&bytes))
}
