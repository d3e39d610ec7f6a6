//! Names shared by every crate: node roles and the DNS-label rule for DC and node names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a node is. A certificate carries its node's role in its SANs
/// (`server.<dc>.<domain>`, `client.<dc>.<domain>`, `gateway.<dc>.<domain>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A Raft server of its datacenter.
    Server,
    /// A client agent: runs checks, forwards RPCs to servers.
    Client,
    /// A WAN gateway: the only node that talks to other datacenters.
    Gateway,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 3] = [Role::Server, Role::Client, Role::Gateway];

    /// The lowercase name used in SANs, configs and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Gateway => "gateway",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`: expected server, client or gateway"))
    }
}

/// Why a name is not a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The name is empty.
    #[error("is empty")]
    Empty,
    /// The name is longer than a DNS label may be.
    #[error("is {0} characters long; a DNS label has at most 63")]
    TooLong(usize),
    /// The name holds a character outside `a-z`, `0-9` and `-`.
    #[error("contains {0:?}; use only lowercase letters, digits and '-'")]
    BadChar(char),
    /// The name starts or ends with a hyphen.
    #[error("starts or ends with '-'")]
    EdgeHyphen,
}

/// Checks that `name` can be one label of a DNS name (`web.service.<dc>.consul`,
/// `<node>.node.<dc>.consul`): 1 to 63 characters of `a-z`, `0-9` and `-`, not starting
/// or ending with `-`. Uppercase is refused rather than folded, so that the name in the
/// file is the name in DNS answers and certificates.
pub fn validate_dns_label(name: &str) -> Result<(), LabelError> {
    if name.is_empty() {
        return Err(LabelError::Empty);
    }
    let n_chars = name.chars().count();
    if n_chars > 63 {
        return Err(LabelError::TooLong(n_chars));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(LabelError::BadChar(bad));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(LabelError::EdgeHyphen);
    }
    Ok(())
}

/// Whether `text` is a UUID as Consul's `uuid.ParseUUID` takes one: 36 characters, hex
/// digits in groups of 8-4-4-4-12, either case.
pub fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A UUID (version 4, as `hashicorp/go-uuid` formats one) of 16 random bytes.
pub fn uuid_of(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The node ID Consul shows for a node (a UUID, as `hashicorp/go-uuid` formats them), made
/// from the 64-bit ID Raft and gossip use: its first 8 bytes are that ID, the last 8 a
/// mix of it, so the ID can be read back from the UUID ([`node_id_of_uuid`]).
pub fn node_uuid(id: u64) -> String {
    // splitmix64: a fixed, well-spread function of the ID.
    let mut z = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let low = z ^ (z >> 31);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        id >> 32,
        (id >> 16) & 0xffff,
        id & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

/// The 64-bit node ID inside a UUID made by [`node_uuid`]; `None` for a string that is not
/// such a UUID.
pub fn node_id_of_uuid(uuid: &str) -> Option<u64> {
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || uuid.len() != 36 {
        return None;
    }
    let id = u64::from_str_radix(hex.get(..16)?, 16).ok()?;
    (node_uuid(id) == uuid.to_ascii_lowercase()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_uuids_carry_the_node_id() {
        for id in [0, 1, 2_375_383_705_298_033_914, u64::MAX >> 1] {
            let uuid = node_uuid(id);
            assert_eq!(uuid.len(), 36, "{uuid}");
            assert_eq!(node_id_of_uuid(&uuid), Some(id), "{uuid}");
            assert!(is_uuid(&uuid), "{uuid}");
        }
        assert!(is_uuid("ADF4238A-882B-9DDC-4A9D-5B6758E4159E"));
        for bad in [
            "",
            "adf4238a882b9ddc4a9d5b6758e4159e",
            "adf4238a-882b-9ddc-4a9d-5b6758e4159",
            "adf4238a-882b-9ddc-4a9d_5b6758e4159e",
            "gdf4238a-882b-9ddc-4a9d-5b6758e4159e",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
        assert_eq!(node_uuid(1), node_uuid(1));
        assert_ne!(node_uuid(1), node_uuid(2));
        assert_eq!(
            node_id_of_uuid("adf4238a-882b-9ddc-4a9d-5b6758e4159e"),
            None
        );
    }

    #[test]
    fn dns_labels() {
        assert_eq!(validate_dns_label("dc1"), Ok(()));
        assert_eq!(validate_dns_label("eu-west-1"), Ok(()));
        assert_eq!(validate_dns_label(""), Err(LabelError::Empty));
        assert_eq!(validate_dns_label("dc_1"), Err(LabelError::BadChar('_')));
        assert_eq!(validate_dns_label("DC1"), Err(LabelError::BadChar('D')));
        assert_eq!(validate_dns_label("-dc"), Err(LabelError::EdgeHyphen));
        assert_eq!(
            validate_dns_label(&"a".repeat(64)),
            Err(LabelError::TooLong(64))
        );
    }

    #[test]
    fn roles_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("leader".parse::<Role>().is_err());
    }
}
