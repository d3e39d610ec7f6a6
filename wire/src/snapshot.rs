//! A datacenter's whole state at one Raft index: what a snapshot file holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{Check, KvEntry, Node, Service};

/// Version of the snapshot format.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything a server's state machine holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    /// [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// KV entries.
    pub kv: Vec<KvEntry>,
    /// KV tombstones: (key, index of the delete).
    pub kv_tombstones: Vec<(String, u64)>,
    /// No KV index is reported below this.
    pub kv_floor: u64,
    /// Catalog nodes.
    pub nodes: Vec<Node>,
    /// Catalog services.
    pub services: Vec<Service>,
    /// Catalog checks.
    pub checks: Vec<Check>,
    /// Catalog table indexes: nodes, services, checks.
    pub table_indexes: [u64; 3],
    /// Per-node indexes.
    pub node_indexes: BTreeMap<String, u64>,
    /// Per-service-name indexes.
    pub service_indexes: BTreeMap<String, u64>,
}
