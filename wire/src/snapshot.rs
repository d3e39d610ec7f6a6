//! A datacenter's whole state at one Raft index: what a snapshot file holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{Check, Coordinate, KvEntry, Node, Service};

/// Version of the snapshot format: 2 added network coordinates, 3 autopilot's settings.
pub const SNAPSHOT_VERSION: u32 = 3;

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
    /// Network coordinates by node (version 2).
    pub coordinates: Vec<(String, Coordinate)>,
    /// Index of the last change to the coordinates (version 2).
    pub coordinates_index: u64,
    /// Autopilot's settings, once set (version 3).
    pub autopilot: Option<crate::records::AutopilotConfig>,
}

/// A version 2 snapshot (before autopilot's settings), read as version 3 with none.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateSnapshotV2 {
    version: u32,
    kv: Vec<KvEntry>,
    kv_tombstones: Vec<(String, u64)>,
    kv_floor: u64,
    nodes: Vec<Node>,
    services: Vec<Service>,
    checks: Vec<Check>,
    table_indexes: [u64; 3],
    node_indexes: BTreeMap<String, u64>,
    service_indexes: BTreeMap<String, u64>,
    coordinates: Vec<(String, Coordinate)>,
    coordinates_index: u64,
}

/// A version 1 snapshot (before coordinates), read as version 2 with none.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateSnapshotV1 {
    version: u32,
    kv: Vec<KvEntry>,
    kv_tombstones: Vec<(String, u64)>,
    kv_floor: u64,
    nodes: Vec<Node>,
    services: Vec<Service>,
    checks: Vec<Check>,
    table_indexes: [u64; 3],
    node_indexes: BTreeMap<String, u64>,
    service_indexes: BTreeMap<String, u64>,
}

impl StateSnapshot {
    /// Decodes a snapshot body of any version this build knows.
    pub fn decode(body: &[u8]) -> Result<StateSnapshot, crate::frame::FrameError> {
        match crate::frame::decode::<StateSnapshot>(body) {
            // A later format may add fields this build would silently drop.
            Ok(snapshot) if snapshot.version > SNAPSHOT_VERSION => {
                Err(crate::frame::FrameError::Invalid(format!(
                    "snapshot format {} is newer than this build's {SNAPSHOT_VERSION}: upgrade this server",
                    snapshot.version
                )))
            }
            Ok(snapshot) => Ok(snapshot),
            Err(current) => match crate::frame::decode::<StateSnapshotV2>(body) {
                Ok(v2) if v2.version == 2 => Ok(StateSnapshot {
                    version: v2.version,
                    kv: v2.kv,
                    kv_tombstones: v2.kv_tombstones,
                    kv_floor: v2.kv_floor,
                    nodes: v2.nodes,
                    services: v2.services,
                    checks: v2.checks,
                    table_indexes: v2.table_indexes,
                    node_indexes: v2.node_indexes,
                    service_indexes: v2.service_indexes,
                    coordinates: v2.coordinates,
                    coordinates_index: v2.coordinates_index,
                    autopilot: None,
                }),
                _ => Self::decode_v1(body, current),
            },
        }
    }

    fn decode_v1(
        body: &[u8],
        current: crate::frame::FrameError,
    ) -> Result<StateSnapshot, crate::frame::FrameError> {
        {
            {
                match crate::frame::decode::<StateSnapshotV1>(body) {
                    Ok(v1) if v1.version == 1 => Ok(StateSnapshot {
                        version: v1.version,
                        kv: v1.kv,
                        kv_tombstones: v1.kv_tombstones,
                        kv_floor: v1.kv_floor,
                        nodes: v1.nodes,
                        services: v1.services,
                        checks: v1.checks,
                        table_indexes: v1.table_indexes,
                        node_indexes: v1.node_indexes,
                        service_indexes: v1.service_indexes,
                        coordinates: Vec::new(),
                        coordinates_index: 0,
                        autopilot: None,
                    }),
                    _ => Err(current),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_snapshot_still_reads() {
        let v1 = StateSnapshotV1 {
            version: 1,
            kv: Vec::new(),
            kv_tombstones: vec![("gone".into(), 7)],
            kv_floor: 3,
            nodes: Vec::new(),
            services: Vec::new(),
            checks: Vec::new(),
            table_indexes: [1, 2, 3],
            node_indexes: BTreeMap::new(),
            service_indexes: BTreeMap::new(),
        };
        let bytes = crate::frame::to_bytes(&v1).unwrap_or_default();
        let read = StateSnapshot::decode(&bytes).unwrap_or_default();
        assert_eq!(read.version, 1);
        assert_eq!(read.kv_tombstones, [("gone".to_owned(), 7)]);
        assert_eq!(read.table_indexes, [1, 2, 3]);
        assert!(read.coordinates.is_empty());
        // And the current version round-trips.
        let current = StateSnapshot {
            version: SNAPSHOT_VERSION,
            coordinates: vec![("n1".into(), Coordinate::default())],
            coordinates_index: 9,
            ..read
        };
        let bytes = crate::frame::to_bytes(&current).unwrap_or_default();
        assert_eq!(StateSnapshot::decode(&bytes).ok(), Some(current));
        assert!(StateSnapshot::decode(b"\xff").is_err());
    }

    #[test]
    fn a_version_2_snapshot_still_reads() {
        let v2 = StateSnapshotV2 {
            version: 2,
            kv: Vec::new(),
            kv_tombstones: Vec::new(),
            kv_floor: 5,
            nodes: Vec::new(),
            services: Vec::new(),
            checks: Vec::new(),
            table_indexes: [1, 2, 3],
            node_indexes: BTreeMap::new(),
            service_indexes: BTreeMap::new(),
            coordinates: vec![("n1".into(), Coordinate::default())],
            coordinates_index: 4,
        };
        let bytes = crate::frame::to_bytes(&v2).unwrap_or_default();
        let read = StateSnapshot::decode(&bytes).unwrap_or_default();
        assert_eq!(read.version, 2);
        assert_eq!(read.coordinates_index, 4);
        assert_eq!(read.autopilot, None);
        let current = StateSnapshot {
            version: SNAPSHOT_VERSION,
            autopilot: Some(crate::records::AutopilotConfig::default()),
            ..read
        };
        let bytes = crate::frame::to_bytes(&current).unwrap_or_default();
        assert_eq!(StateSnapshot::decode(&bytes).ok(), Some(current));
    }
}
