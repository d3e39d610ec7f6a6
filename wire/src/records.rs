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

/// The longest key name, on every path that names a key (`/v1/kv`, `/v1/txn`, locks): a key
/// that could be written can always be read back through a URL, percent-encoded (three
/// bytes a byte at worst) within the 64 KiB an HTTP request target may take.
pub const MAX_KEY_LEN: usize = 16 * 1024;

/// Why a key name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Longer than [`MAX_KEY_LEN`] bytes.
    TooLong(usize),
    /// It holds a control character.
    Control(char),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::TooLong(len) => write!(
                f,
                "Key of {len} bytes exceeds the {MAX_KEY_LEN}-byte limit on key names"
            ),
            KeyError::Control(c) => {
                write!(f, "Invalid key: it contains the control character {c:?}")
            }
        }
    }
}

/// The checks every key name passes before it is stored or looked up.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.len()));
    }
    match key.chars().find(|c| c.is_control()) {
        Some(c) => Err(KeyError::Control(c)),
        None => Ok(()),
    }
}

/// A node in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node name, unique in the datacenter.
    pub name: String,
    /// The node's ID, a UUID as Consul's (empty when its registration named none).
    pub id: String,
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

/// Dimensions of a coordinate's Euclidean part (Serf's default).
pub const COORDINATE_DIMENSIONS: usize = 8;
/// Largest error a coordinate admits to (a coordinate that knows nothing).
pub const COORDINATE_ERROR_MAX: f64 = 1.5;
/// Smallest coordinate height, seconds.
pub const COORDINATE_HEIGHT_MIN: f64 = 10.0e-6;

/// A node's network coordinate (Serf's Vivaldi, as Consul keeps them), in seconds, with
/// Consul's JSON field names (`Vec`, `Error`, `Adjustment`, `Height`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coordinate {
    /// The Euclidean part.
    pub vec: Vec<f64>,
    /// Confidence: 1.5 knows nothing, near 0 is sure.
    pub error: f64,
    /// A per-node correction learned from the distance's error.
    pub adjustment: f64,
    /// The node's own access-link latency, outside the Euclidean space.
    pub height: f64,
}

/// Only valid (finite) coordinates are stored, and for those `==` is an equivalence.
impl Eq for Coordinate {}

impl Default for Coordinate {
    fn default() -> Coordinate {
        Coordinate {
            vec: vec![0.0; COORDINATE_DIMENSIONS],
            error: COORDINATE_ERROR_MAX,
            adjustment: 0.0,
            height: COORDINATE_HEIGHT_MIN,
        }
    }
}

impl Coordinate {
    /// Usable: the right dimensions and finite numbers (a coordinate that came from the
    /// network or a user is checked before it is used or stored).
    pub fn is_valid(&self) -> bool {
        self.vec.len() == COORDINATE_DIMENSIONS
            && self.vec.iter().all(|v| v.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    /// The distance without the adjustment terms, in seconds.
    pub fn raw_distance(&self, other: &Coordinate) -> f64 {
        let euclid: f64 = self
            .vec
            .iter()
            .zip(&other.vec)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        euclid + self.height + other.height
    }

    /// The estimated round trip to `other`, in seconds (Consul's `DistanceTo`).
    pub fn distance_to(&self, other: &Coordinate) -> f64 {
        let distance = self.raw_distance(other);
        let adjusted = distance + self.adjustment + other.adjustment;
        if adjusted > 0.0 {
            adjusted
        } else {
            distance
        }
    }
}

/// Autopilot's settings, kept in the datacenter's state (Consul's `AutopilotConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    /// Remove failed servers from Raft (when that keeps a quorum).
    pub cleanup_dead_servers: bool,
    /// Longest a healthy server may go without hearing from the leader, in ms.
    pub last_contact_threshold_ms: u64,
    /// Most log entries a healthy server may be behind.
    pub max_trailing_logs: u64,
    /// Fewest voters dead-server cleanup leaves.
    pub min_quorum: u32,
    /// How long a server must be healthy before it counts as stable, in ms.
    pub server_stabilization_time_ms: u64,
    /// Consul Enterprise's redundancy zone tag (kept, not used).
    pub redundancy_zone_tag: String,
    /// Consul Enterprise's upgrade migration switch (kept, not used).
    pub disable_upgrade_migration: bool,
    /// Consul Enterprise's upgrade version tag (kept, not used).
    pub upgrade_version_tag: String,
    /// Raft index that first set it.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

impl Default for AutopilotConfig {
    /// Consul's defaults.
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold_ms: 200,
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time_ms: 10_000,
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// What happens to the keys a session holds when it is invalidated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionBehavior {
    /// The locks are released (the keys stay).
    #[default]
    Release,
    /// The keys are deleted.
    Delete,
}

impl SessionBehavior {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        }
    }
}

/// A session (Consul's): who holds locks, tied to a node and checks, with a lock delay and
/// an optional TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// A UUID.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The node it belongs to.
    pub node: String,
    /// Node checks (by check ID) whose going critical invalidates it.
    pub node_checks: Vec<String>,
    /// Service checks (by check ID) whose going critical invalidates it.
    pub service_checks: Vec<String>,
    /// After an invalidation, its keys cannot be acquired for this long (milliseconds).
    pub lock_delay_ms: u64,
    /// What invalidation does to its keys.
    pub behavior: SessionBehavior,
    /// The TTL as given (`"30s"`; empty: none).
    pub ttl: String,
    /// Raft index that created it.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// Consul's bounds on a session's TTL.
pub const SESSION_TTL_MIN: std::time::Duration = std::time::Duration::from_secs(10);
/// Consul's bounds on a session's TTL.
pub const SESSION_TTL_MAX: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The longest lock delay Consul allows.
pub const MAX_LOCK_DELAY: std::time::Duration = std::time::Duration::from_secs(60);

/// An ACL policy (Consul's): named rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicy {
    /// A UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// For people.
    pub description: String,
    /// Consul's rule language, HCL or JSON, as given.
    pub rules: String,
    /// Where it applies (empty: every datacenter).
    pub datacenters: Vec<String>,
    /// Raft index that created it.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A link from a token or role to a policy or role, by ID (the name is looked up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclLink {
    /// The linked policy's or role's ID.
    pub id: String,
}

/// A service identity: the rules Consul's template gives a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclServiceIdentity {
    /// The service.
    pub service_name: String,
    /// Where it applies (empty: everywhere).
    pub datacenters: Vec<String>,
}

/// A node identity: the rules Consul's template gives an agent's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclNodeIdentity {
    /// The node.
    pub node_name: String,
    /// Its datacenter.
    pub datacenter: String,
}

/// An ACL role: policies and identities a token can take as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRole {
    /// A UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// For people.
    pub description: String,
    /// Its policies.
    pub policies: Vec<AclLink>,
    /// Its service identities.
    pub service_identities: Vec<AclServiceIdentity>,
    /// Its node identities.
    pub node_identities: Vec<AclNodeIdentity>,
    /// Raft index that created it.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// An ACL token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    /// Its public ID (a UUID).
    pub accessor_id: String,
    /// The secret a client presents (a UUID).
    pub secret_id: String,
    /// For people.
    pub description: String,
    /// Its policies.
    pub policies: Vec<AclLink>,
    /// Its roles.
    pub roles: Vec<AclLink>,
    /// Its service identities.
    pub service_identities: Vec<AclServiceIdentity>,
    /// Its node identities.
    pub node_identities: Vec<AclNodeIdentity>,
    /// Valid only in the datacenter that made it (not replicated).
    pub local: bool,
    /// Unix milliseconds after which it is not valid (none: never expires).
    pub expiration_ms: Option<u64>,
    /// Unix milliseconds when it was made.
    pub create_ms: u64,
    /// Raft index that created it.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// What a secondary datacenter copies of the primary's ACL tables. A set left out is not
/// changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclReplica {
    /// Every policy of the primary.
    pub policies: Option<Vec<AclPolicy>>,
    /// Every role of the primary.
    pub roles: Option<Vec<AclRole>>,
    /// Every global (not `Local`) token of the primary.
    pub tokens: Option<Vec<AclToken>>,
}

/// The ID of Consul's built-in `global-management` policy.
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
/// The accessor ID of Consul's anonymous token (requests without a token).
pub const ANONYMOUS_TOKEN_ID: &str = "00000000-0000-0000-0000-000000000002";
