//! How servers of a datacenter know each other in Raft.

use serde::{Deserialize, Serialize};

/// A Raft member: what the membership config stores for each server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RaftNode {
    /// Node name.
    pub name: String,
    /// Raft/RPC address, `ip:port`.
    pub addr: String,
}

impl std::fmt::Display for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}
