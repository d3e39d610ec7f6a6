//! The gossip keyring: every gossip packet is sealed with AES-GCM under the primary key and
//! opened with whichever installed key fits, so operators rotate keys without downtime as in
//! Consul (`keyring -install`, then `-use`, then `-remove`).
//!
//! Keys are 16, 24 or 32 bytes (AES-128, -192, -256), in `consul keygen`'s base64. A packet
//! is `[version 1][nonce 12][ciphertext + 16-byte tag]`. Pure: the nonce comes in as an
//! argument, so the shell owns randomness.

use aes_gcm::aead::Aead;
use aes_gcm::aes::Aes192;
use aes_gcm::{AesGcm, KeyInit};

/// Version byte of the packet format.
pub const PACKET_VERSION: u8 = 1;
/// Nonce length.
pub const NONCE_LEN: usize = 12;
/// Bytes a sealed packet adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + 16;

type Aes192Gcm = AesGcm<Aes192, aes_gcm::aead::consts::U12>;

/// One key, ready to seal and open.
#[derive(Clone)]
enum Cipher {
    Aes128(Box<aes_gcm::Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<aes_gcm::Aes256Gcm>),
}

/// An installed key: its base64 text and its cipher.
#[derive(Clone)]
struct InstalledKey {
    text: String,
    cipher: Cipher,
}

impl std::fmt::Debug for InstalledKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("InstalledKey(..)")
    }
}

/// Why a keyring operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// Not a usable key.
    #[error(transparent)]
    BadKey(#[from] wire::gossip_key::GossipKeyError),
    /// `use` or `remove` of a key that is not installed.
    #[error("the key is not installed; install it first with `keyring -install`")]
    NotInstalled,
    /// Removing the key packets are sealed with.
    #[error(
        "the primary key cannot be removed; make another key primary with `keyring -use` first"
    )]
    RemovePrimary,
    /// A keyring without keys.
    #[error("a keyring needs at least one key")]
    Empty,
}

/// Why a packet did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than the packet overhead.
    #[error("packet too short to be sealed")]
    TooShort,
    /// An unknown format version.
    #[error("unknown packet version {0}")]
    BadVersion(u8),
    /// No installed key opens it (a foreign or old key, or tampering).
    #[error("no installed key could decrypt the packet")]
    NoKeyOpens,
}

impl OpenError {
    /// A stable label value for `isthmus_gossip_dropped_packets_total{reason}`.
    pub fn as_label(self) -> &'static str {
        match self {
            OpenError::TooShort => "too_short",
            OpenError::BadVersion(_) => "bad_version",
            OpenError::NoKeyOpens => "no_key",
        }
    }
}

fn cipher_of(text: &str) -> Result<Cipher, KeyringError> {
    let bytes = wire::gossip_key::decode(text)?;
    let invalid = || KeyringError::BadKey(wire::gossip_key::GossipKeyError::BadLength(bytes.len()));
    Ok(match bytes.len() {
        16 => Cipher::Aes128(Box::new(
            aes_gcm::Aes128Gcm::new_from_slice(&bytes).map_err(|_| invalid())?,
        )),
        24 => Cipher::Aes192(Box::new(
            Aes192Gcm::new_from_slice(&bytes).map_err(|_| invalid())?,
        )),
        32 => Cipher::Aes256(Box::new(
            aes_gcm::Aes256Gcm::new_from_slice(&bytes).map_err(|_| invalid())?,
        )),
        _ => return Err(invalid()),
    })
}

/// The installed keys, the primary first.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<InstalledKey>,
}

impl Keyring {
    /// A keyring of `keys` (base64), the first one primary.
    pub fn new(keys: &[String]) -> Result<Keyring, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        let mut keyring = Keyring { keys: Vec::new() };
        for key in keys {
            keyring.install(key)?;
        }
        Ok(keyring)
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.text == key.trim())
    }

    /// Installs a key for opening packets (the primary is unchanged). Installing an
    /// installed key is a no-op.
    pub fn install(&mut self, key: &str) -> Result<(), KeyringError> {
        if self.position(key).is_none() {
            let cipher = cipher_of(key)?;
            self.keys.push(InstalledKey {
                text: key.trim().to_owned(),
                cipher,
            });
        }
        Ok(())
    }

    /// Makes an installed key the primary: packets are sealed with it from now on.
    pub fn use_key(&mut self, key: &str) -> Result<(), KeyringError> {
        let at = self.position(key).ok_or(KeyringError::NotInstalled)?;
        let chosen = self.keys.remove(at);
        self.keys.insert(0, chosen);
        Ok(())
    }

    /// Removes an installed key other than the primary.
    pub fn remove(&mut self, key: &str) -> Result<(), KeyringError> {
        match self.position(key) {
            None => Err(KeyringError::NotInstalled),
            Some(0) => Err(KeyringError::RemovePrimary),
            Some(at) => {
                self.keys.remove(at);
                Ok(())
            }
        }
    }

    /// The installed keys (base64), the primary first.
    pub fn list(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.text.clone()).collect()
    }

    /// The primary key (base64).
    pub fn primary(&self) -> &str {
        self.keys.first().map_or("", |k| k.text.as_str())
    }

    /// Seals `plaintext` with the primary key and `nonce` (never reuse one with a key).
    pub fn seal(&self, nonce: [u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
        let Some(primary) = self.keys.first() else {
            return Vec::new();
        };
        let nonce_array = nonce.into();
        let sealed = match &primary.cipher {
            Cipher::Aes128(c) => c.encrypt(&nonce_array, plaintext),
            Cipher::Aes192(c) => c.encrypt(&nonce_array, plaintext),
            Cipher::Aes256(c) => c.encrypt(&nonce_array, plaintext),
        };
        // AES-GCM encryption fails only for messages beyond 64 GiB, never for a packet.
        let Ok(sealed) = sealed else {
            return Vec::new();
        };
        let mut packet = Vec::with_capacity(OVERHEAD + plaintext.len());
        packet.push(PACKET_VERSION);
        packet.extend_from_slice(&nonce);
        packet.extend_from_slice(&sealed);
        packet
    }

    /// Opens a packet with whichever installed key fits (the primary first).
    pub fn open(&self, packet: &[u8]) -> Result<Vec<u8>, OpenError> {
        if packet.len() < OVERHEAD {
            return Err(OpenError::TooShort);
        }
        if packet[0] != PACKET_VERSION {
            return Err(OpenError::BadVersion(packet[0]));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&packet[1..1 + NONCE_LEN]);
        let nonce = nonce.into();
        let sealed = &packet[1 + NONCE_LEN..];
        for key in &self.keys {
            let opened = match &key.cipher {
                Cipher::Aes128(c) => c.decrypt(&nonce, sealed),
                Cipher::Aes192(c) => c.decrypt(&nonce, sealed),
                Cipher::Aes256(c) => c.decrypt(&nonce, sealed),
            };
            if let Ok(plaintext) = opened {
                return Ok(plaintext);
            }
        }
        Err(OpenError::NoKeyOpens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: u8, len: usize) -> String {
        wire::gossip_key::encode(&vec![fill; len])
    }

    fn nonce(n: u8) -> [u8; NONCE_LEN] {
        [n; NONCE_LEN]
    }

    #[test]
    fn every_consul_key_size_seals_and_opens() {
        for len in [16, 24, 32] {
            let keyring = Keyring::new(&[key(1, len)]).expect("valid key");
            let packet = keyring.seal(nonce(7), b"alive s1 incarnation 3");
            assert_eq!(packet.len(), OVERHEAD + 22);
            assert_eq!(
                keyring.open(&packet).as_deref(),
                Ok(&b"alive s1 incarnation 3"[..])
            );
        }
    }

    #[test]
    fn a_foreign_key_a_tampered_packet_and_garbage_are_refused() {
        let ours = Keyring::new(&[key(1, 32)]).expect("valid key");
        let theirs = Keyring::new(&[key(2, 32)]).expect("valid key");
        let packet = theirs.seal(nonce(1), b"hello");
        assert_eq!(ours.open(&packet), Err(OpenError::NoKeyOpens));
        let mut tampered = ours.seal(nonce(1), b"hello");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(ours.open(&tampered), Err(OpenError::NoKeyOpens));
        assert_eq!(ours.open(b"short"), Err(OpenError::TooShort));
        let mut wrong_version = ours.seal(nonce(1), b"hello");
        wrong_version[0] = 9;
        assert_eq!(ours.open(&wrong_version), Err(OpenError::BadVersion(9)));
        assert_eq!(OpenError::NoKeyOpens.as_label(), "no_key");
    }

    #[test]
    fn rotation_install_use_remove_keeps_every_node_talking() {
        let old = key(1, 32);
        let new = key(2, 16);
        // Two nodes share the old key.
        let mut a = Keyring::new(std::slice::from_ref(&old)).expect("valid");
        let mut b = a.clone();
        // install everywhere: both still seal with old, both open new.
        a.install(&new).expect("install");
        b.install(&new).expect("install");
        assert_eq!(a.list(), [old.clone(), new.clone()]);
        // use on a first: a seals with new, b (not switched yet) still opens it.
        a.use_key(&new).expect("use");
        assert_eq!(a.primary(), new);
        assert_eq!(b.open(&a.seal(nonce(3), b"x")).as_deref(), Ok(&b"x"[..]));
        assert_eq!(a.open(&b.seal(nonce(4), b"y")).as_deref(), Ok(&b"y"[..]));
        b.use_key(&new).expect("use");
        // remove the old key: packets sealed with it are refused from then on.
        let sealed_with_old = Keyring::new(std::slice::from_ref(&old))
            .expect("valid")
            .seal(nonce(5), b"z");
        a.remove(&old).expect("remove");
        assert_eq!(a.open(&sealed_with_old), Err(OpenError::NoKeyOpens));
        assert_eq!(a.remove(&new), Err(KeyringError::RemovePrimary));
        assert_eq!(a.remove(&old), Err(KeyringError::NotInstalled));
        assert_eq!(a.use_key(&old), Err(KeyringError::NotInstalled));
        assert!(matches!(
            a.install("not a key"),
            Err(KeyringError::BadKey(_))
        ));
        assert_eq!(Keyring::new(&[]).err(), Some(KeyringError::Empty));
        assert!(!format!("{a:?}").contains(&new), "Debug never prints keys");
    }
}
