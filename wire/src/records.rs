//! What the servers store: KV entries, nodes, services and checks. These records travel in
//! Raft log entries, snapshots and RPC replies, so they live here with a stable encoding.
//! Every record carries the Raft index that created it and the one that last changed it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A KV entry, as Consul keeps one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key (no leading `/`).
    pub key: String,
    /// The value, at most [`MAX_KV_VALUE`] bytes.
    pub value: Vec<u8>,
    /// Opaque client flags.
    pub flags: u64,
    /// Raft index that created the key.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
    /// Times the key was acquired by a lock.
    pub lock_index: u64,
    /// The session holding the lock, if any.
    pub session: Option<String>,
}

/// Consul's value size limit: 512 KiB.
pub const MAX_KV_VALUE: usize = 512 * 1024;

/// A node in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node name, unique in the datacenter.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its datacenter.
    pub datacenter: String,
    /// Other addresses (`lan`, `wan`, ...).
    pub tagged_addresses: BTreeMap<String, String>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// Raft index that created it.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A service instance on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The node it runs on.
    pub node: String,
    /// Instance ID, unique on the node.
    pub id: String,
    /// Service name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address, when not the node's (empty otherwise).
    pub address: String,
    /// Port.
    pub port: u16,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// Raft index that created it.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// The state of a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    /// Healthy.
    Passing,
    /// Degraded but serving.
    Warning,
    /// Failing: excluded from DNS and `?passing`.
    Critical,
    /// In maintenance mode: treated as critical.
    Maintenance,
}

impl HealthStatus {
    /// Consul's spelling: `passing`, `warning`, `critical`, `maintenance`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
            HealthStatus::Maintenance => "maintenance",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HealthStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "passing" => Ok(HealthStatus::Passing),
            "warning" => Ok(HealthStatus::Warning),
            "critical" => Ok(HealthStatus::Critical),
            "maintenance" => Ok(HealthStatus::Maintenance),
            other => Err(format!("unknown health status {other:?}: expected passing, warning, critical or maintenance")),
        }
    }
}

/// A health check of a node or of one service instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// The node it belongs to.
    pub node: String,
    /// Check ID, unique on the node.
    pub check_id: String,
    /// Human-readable name.
    pub name: String,
    /// Current status.
    pub status: HealthStatus,
    /// Free-form notes.
    pub notes: String,
    /// Output of the last run.
    pub output: String,
    /// The service instance it checks; empty for a node-level check.
    pub service_id: String,
    /// That service's name (denormalized, as Consul does).
    pub service_name: String,
    /// That service's tags.
    pub service_tags: Vec<String>,
    /// Kind: `http`, `tcp`, `script`, `ttl`, `serf`, or empty.
    pub check_type: String,
    /// Raft index that created it.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}
