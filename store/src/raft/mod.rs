//! Raft for a datacenter's servers: openraft with a redb log and vote store, a state
//! machine over [`crate::state::State`] with snapshots on disk.

pub mod log_store;
pub mod state_machine;
#[cfg(test)]
mod suite;

use std::io::Cursor;

use wire::command::{Command, CommandResult};
use wire::raft::RaftNode;

/// Raft node IDs: random at a server's first start, then kept in its data directory.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Isthmus' Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = RaftNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// Membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, RaftNode>;
/// A log ID.
pub type LogId = openraft::LogId<NodeId>;
