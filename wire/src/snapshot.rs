//! A datacenter's whole state at one Raft index: what a snapshot file holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{Check, Coordinate, KvEntry, Node, Service};

/// Version of the snapshot format: 2 added network coordinates, 3 autopilot's settings,
/// 4 nodes' IDs, 5 sessions, 6 ACL tables.
pub const SNAPSHOT_VERSION: u32 = 6;

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
    /// Sessions (version 5).
    pub sessions: Vec<crate::records::Session>,
    /// Index of the last change to the sessions (version 5).
    pub sessions_index: u64,
    /// ACL policies, roles and tokens (version 6).
    pub acl: AclTables,
}

/// The ACL tables of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTables {
    /// Policies.
    pub policies: Vec<crate::records::AclPolicy>,
    /// Roles.
    pub roles: Vec<crate::records::AclRole>,
    /// Tokens.
    pub tokens: Vec<crate::records::AclToken>,
    /// The bootstrap's index, once done.
    pub bootstrapped: Option<u64>,
    /// Index of the last change.
    pub index: u64,
}

/// A version 5 snapshot (sessions; no ACL tables yet).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateSnapshotV5 {
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
    autopilot: Option<crate::records::AutopilotConfig>,
    sessions: Vec<crate::records::Session>,
    sessions_index: u64,
}

impl From<StateSnapshotV5> for StateSnapshot {
    fn from(v5: StateSnapshotV5) -> StateSnapshot {
        StateSnapshot {
            version: v5.version,
            kv: v5.kv,
            kv_tombstones: v5.kv_tombstones,
            kv_floor: v5.kv_floor,
            nodes: v5.nodes,
            services: v5.services,
            checks: v5.checks,
            table_indexes: v5.table_indexes,
            node_indexes: v5.node_indexes,
            service_indexes: v5.service_indexes,
            coordinates: v5.coordinates,
            coordinates_index: v5.coordinates_index,
            autopilot: v5.autopilot,
            sessions: v5.sessions,
            sessions_index: v5.sessions_index,
            acl: AclTables::default(),
        }
    }
}

/// A version 4 snapshot (nodes' IDs; no sessions yet).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateSnapshotV4 {
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
    autopilot: Option<crate::records::AutopilotConfig>,
}

impl From<StateSnapshotV4> for StateSnapshot {
    fn from(v4: StateSnapshotV4) -> StateSnapshot {
        StateSnapshot {
            version: v4.version,
            kv: v4.kv,
            kv_tombstones: v4.kv_tombstones,
            kv_floor: v4.kv_floor,
            nodes: v4.nodes,
            services: v4.services,
            checks: v4.checks,
            table_indexes: v4.table_indexes,
            node_indexes: v4.node_indexes,
            service_indexes: v4.service_indexes,
            coordinates: v4.coordinates,
            coordinates_index: v4.coordinates_index,
            autopilot: v4.autopilot,
            sessions: Vec::new(),
            sessions_index: 0,
            acl: AclTables::default(),
        }
    }
}

/// A node as versions 1 to 3 stored it (without its ID).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct NodeV3 {
    name: String,
    address: String,
    datacenter: String,
    tagged_addresses: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
    create_index: u64,
    modify_index: u64,
}

impl From<NodeV3> for Node {
    fn from(node: NodeV3) -> Node {
        Node {
            name: node.name,
            id: String::new(),
            address: node.address,
            datacenter: node.datacenter,
            tagged_addresses: node.tagged_addresses,
            meta: node.meta,
            create_index: node.create_index,
            modify_index: node.modify_index,
        }
    }
}

/// What every version holds: the KV store and the catalog (version 1).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct Tables {
    kv: Vec<KvEntry>,
    kv_tombstones: Vec<(String, u64)>,
    kv_floor: u64,
    nodes: Vec<NodeV3>,
    services: Vec<Service>,
    checks: Vec<Check>,
    table_indexes: [u64; 3],
    node_indexes: BTreeMap<String, u64>,
    service_indexes: BTreeMap<String, u64>,
}

/// A version 1 snapshot.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateSnapshotV1 {
    _version: u32,
    tables: Tables,
}

/// A version 2 snapshot (coordinates added).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateSnapshotV2 {
    _version: u32,
    tables: Tables,
    coordinates: Vec<(String, Coordinate)>,
    coordinates_index: u64,
}

/// A version 3 snapshot (autopilot's settings added).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateSnapshotV3 {
    _version: u32,
    tables: Tables,
    coordinates: Vec<(String, Coordinate)>,
    coordinates_index: u64,
    autopilot: Option<crate::records::AutopilotConfig>,
}

/// The version, the first field of every format.
#[derive(Deserialize)]
struct Version {
    version: u32,
}

impl StateSnapshot {
    /// Decodes a snapshot body of any version this build knows. Postcard is not
    /// self-describing, so the version (always the first field) picks the layout.
    pub fn decode(body: &[u8]) -> Result<StateSnapshot, crate::frame::FrameError> {
        use crate::frame::{decode, FrameError};
        let Version { version } = decode(body)?;
        let (tables, coordinates, coordinates_index, autopilot) = match version {
            SNAPSHOT_VERSION => return decode(body),
            4 => return decode::<StateSnapshotV4>(body).map(StateSnapshot::from),
            5 => return decode::<StateSnapshotV5>(body).map(StateSnapshot::from),
            1 => {
                let v1: StateSnapshotV1 = decode(body)?;
                (v1.tables, Vec::new(), 0, None)
            }
            2 => {
                let v2: StateSnapshotV2 = decode(body)?;
                (v2.tables, v2.coordinates, v2.coordinates_index, None)
            }
            3 => {
                let v3: StateSnapshotV3 = decode(body)?;
                (v3.tables, v3.coordinates, v3.coordinates_index, v3.autopilot)
            }
            // A later format may add fields this build would silently drop.
            newer if newer > SNAPSHOT_VERSION => {
                return Err(FrameError::Invalid(format!(
                    "snapshot format {newer} is newer than this build's {SNAPSHOT_VERSION}: upgrade this server"
                )))
            }
            unknown => {
                return Err(FrameError::Invalid(format!(
                    "unknown snapshot format {unknown}"
                )))
            }
        };
        Ok(StateSnapshot {
            version,
            kv: tables.kv,
            kv_tombstones: tables.kv_tombstones,
            kv_floor: tables.kv_floor,
            nodes: tables.nodes.into_iter().map(Node::from).collect(),
            services: tables.services,
            checks: tables.checks,
            table_indexes: tables.table_indexes,
            node_indexes: tables.node_indexes,
            service_indexes: tables.service_indexes,
            coordinates,
            coordinates_index,
            autopilot,
            sessions: Vec::new(),
            sessions_index: 0,
            acl: AclTables::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        Tables {
            kv: Vec::new(),
            kv_tombstones: vec![("gone".into(), 7)],
            kv_floor: 3,
            nodes: vec![NodeV3 {
                name: "n1".into(),
                address: "10.0.0.1".into(),
                datacenter: "dc1".into(),
                tagged_addresses: BTreeMap::new(),
                meta: BTreeMap::new(),
                create_index: 2,
                modify_index: 2,
            }],
            services: Vec::new(),
            checks: Vec::new(),
            table_indexes: [1, 2, 3],
            node_indexes: BTreeMap::new(),
            service_indexes: BTreeMap::new(),
        }
    }

    fn check_tables(read: &StateSnapshot) {
        assert_eq!(read.kv_tombstones, [("gone".to_owned(), 7)]);
        assert_eq!(read.table_indexes, [1, 2, 3]);
        assert_eq!(read.nodes.len(), 1);
        assert_eq!(read.nodes[0].name, "n1");
        assert_eq!(read.nodes[0].address, "10.0.0.1");
        assert_eq!(read.nodes[0].id, "");
    }

    #[test]
    fn a_version_1_snapshot_still_reads() {
        let v1 = StateSnapshotV1 {
            _version: 1,
            tables: tables(),
        };
        let bytes = crate::frame::to_bytes(&v1).unwrap_or_default();
        let read = StateSnapshot::decode(&bytes).unwrap_or_default();
        assert_eq!(read.version, 1);
        check_tables(&read);
        assert!(read.coordinates.is_empty());
        assert!(StateSnapshot::decode(b"\xff").is_err());
    }

    #[test]
    fn a_version_2_snapshot_still_reads() {
        let v2 = StateSnapshotV2 {
            _version: 2,
            tables: tables(),
            coordinates: vec![("n1".into(), Coordinate::default())],
            coordinates_index: 4,
        };
        let bytes = crate::frame::to_bytes(&v2).unwrap_or_default();
        let read = StateSnapshot::decode(&bytes).unwrap_or_default();
        assert_eq!(read.version, 2);
        check_tables(&read);
        assert_eq!(read.coordinates_index, 4);
        assert_eq!(read.autopilot, None);
    }

    #[test]
    fn a_version_3_snapshot_still_reads_and_the_current_one_round_trips() {
        let v3 = StateSnapshotV3 {
            _version: 3,
            tables: tables(),
            coordinates: Vec::new(),
            coordinates_index: 0,
            autopilot: Some(crate::records::AutopilotConfig::default()),
        };
        let bytes = crate::frame::to_bytes(&v3).unwrap_or_default();
        let read = StateSnapshot::decode(&bytes).unwrap_or_default();
        assert_eq!(read.version, 3);
        check_tables(&read);
        assert!(read.autopilot.is_some());
        let mut current = StateSnapshot {
            version: SNAPSHOT_VERSION,
            ..read
        };
        current.nodes[0].id = "adf4238a-882b-9ddc-4a9d-5b6758e4159e".into();
        let bytes = crate::frame::to_bytes(&current).unwrap_or_default();
        assert_eq!(StateSnapshot::decode(&bytes).ok(), Some(current.clone()));
        // A newer format is refused rather than half read.
        let newer = StateSnapshot {
            version: SNAPSHOT_VERSION + 1,
            ..current
        };
        let bytes = crate::frame::to_bytes(&newer).unwrap_or_default();
        let refused = StateSnapshot::decode(&bytes).err().map(|e| e.to_string());
        assert!(refused.is_some_and(|e| e.contains("newer than this build")));
    }

    #[test]
    fn a_version_4_snapshot_reads_without_sessions() {
        let v4 = StateSnapshotV4 {
            version: 4,
            kv: Vec::new(),
            kv_tombstones: vec![("gone".into(), 7)],
            kv_floor: 3,
            nodes: Vec::new(),
            services: Vec::new(),
            checks: Vec::new(),
            table_indexes: [1, 2, 3],
            node_indexes: BTreeMap::new(),
            service_indexes: BTreeMap::new(),
            coordinates: Vec::new(),
            coordinates_index: 9,
            autopilot: None,
        };
        let bytes = crate::frame::to_bytes(&v4).unwrap_or_default();
        let read = StateSnapshot::decode(&bytes).unwrap_or_default();
        assert_eq!(
            (read.version, read.coordinates_index, read.kv_floor),
            (4, 9, 3)
        );
        assert!(read.sessions.is_empty());
    }

    #[test]
    fn a_version_5_snapshot_reads_without_acl_tables() {
        let v5 = StateSnapshotV5 {
            version: 5,
            kv: Vec::new(),
            kv_tombstones: Vec::new(),
            kv_floor: 0,
            nodes: Vec::new(),
            services: Vec::new(),
            checks: Vec::new(),
            table_indexes: [1, 2, 3],
            node_indexes: BTreeMap::new(),
            service_indexes: BTreeMap::new(),
            coordinates: Vec::new(),
            coordinates_index: 0,
            autopilot: None,
            sessions: Vec::new(),
            sessions_index: 12,
        };
        let bytes = crate::frame::to_bytes(&v5).unwrap_or_default();
        let read = StateSnapshot::decode(&bytes).unwrap_or_default();
        assert_eq!((read.version, read.sessions_index), (5, 12));
        assert_eq!(read.acl, AclTables::default());
    }
}
