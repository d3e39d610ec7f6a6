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

#[cfg(test)]
mod tests {
    use super::*;

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
