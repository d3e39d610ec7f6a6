//! The commands the servers agree on through Raft, and what applying one returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::records::{HealthStatus, KvEntry};

/// One change to a datacenter's state: the payload of a Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set a key; with `cas`, only if its modify index is `cas` (0: only if absent).
    KvSet {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Client flags.
        flags: u64,
        /// Compare-and-set index.
        cas: Option<u64>,
    },
    /// Delete a key; with `cas`, only if its modify index is `cas`.
    KvDelete {
        /// The key.
        key: String,
        /// Compare-and-delete index.
        cas: Option<u64>,
    },
    /// Delete every key under a prefix.
    KvDeleteTree {
        /// The prefix (empty: everything).
        prefix: String,
    },
    /// KV operations applied all or nothing.
    Txn(Vec<TxnOp>),
    /// Independent `KvSet`/`KvDelete` commands on distinct keys, proposed together to save
    /// Raft round trips; each is applied (and answered) as if proposed alone.
    KvBatch(Vec<Command>),
    /// Register a node, and optionally a service and checks on it.
    Register(Box<Registration>),
    /// Remove a node (with its services and checks), one service (with its checks) or one check.
    Deregister {
        /// The node.
        node: String,
        /// Only this service.
        service_id: Option<String>,
        /// Only this check.
        check_id: Option<String>,
    },
    /// Forget KV tombstones of deletes at or below `up_to` (the leader's tombstone GC).
    KvReapTombstones {
        /// The highest delete index to forget.
        up_to: u64,
    },
    /// Network coordinates of nodes, as their agents last sent them (the leader batches
    /// them). Coordinates of nodes not in the catalog are ignored.
    CoordinateBatchUpdate(Vec<(String, crate::records::Coordinate)>),
    /// Replace the whole state with a snapshot (`PUT /v1/snapshot`, `snapshot restore`):
    /// the encoded [`crate::snapshot::StateSnapshot`] (its own versioned format, so a later
    /// change to it never makes this log entry unreadable). Every table index moves to the
    /// restore's index, so blocking queries see the change.
    Restore(Vec<u8>),
    /// Set autopilot's configuration; with `cas`, only if its modify index is `cas`.
    AutopilotSetConfig {
        /// The settings (their indexes are set when applied).
        config: crate::records::AutopilotConfig,
        /// Check-and-set index.
        cas: Option<u64>,
    },
    /// `Register` with the node's ID (Consul's `ID`, a UUID). Log entries are never
    /// re-encoded, so `Register` keeps its layout; it leaves a node's ID as it is.
    RegisterWithId {
        /// The node's ID.
        id: String,
        /// The registration.
        registration: Box<Registration>,
    },
    /// Create a session (its ID chosen by the proposer). Refused when its node or one of
    /// its checks is missing, or a check is critical.
    SessionCreate(Box<crate::records::Session>),
    /// Invalidate a session (destroyed, or its TTL ran out): its keys are released or
    /// deleted as its behavior says, and their lock delay starts. An unknown ID changes
    /// nothing.
    SessionDestroy {
        /// The session.
        id: String,
    },
    /// `PUT ?acquire=SESSION`: set the key and take its lock, unless another session holds
    /// it (or `cas` does not hold). The session must exist.
    KvLock {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Client flags.
        flags: u64,
        /// The session taking the lock.
        session: String,
        /// Compare-and-set index.
        cas: Option<u64>,
    },
    /// `PUT ?release=SESSION`: set the key and release its lock, if that session holds it.
    KvUnlock {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Client flags.
        flags: u64,
        /// The session releasing the lock.
        session: String,
        /// Compare-and-set index.
        cas: Option<u64>,
    },
    /// `/v1/acl/bootstrap`: the first management token and the `global-management`
    /// policy; refused once done (Consul's `ACL bootstrap no longer allowed`).
    AclBootstrap(Box<crate::records::AclToken>),
    /// Create or replace a policy (by ID); refused when another policy has its name.
    AclPolicySet(Box<crate::records::AclPolicy>),
    /// Delete a policy (not `global-management`).
    AclPolicyDelete {
        /// The policy.
        id: String,
    },
    /// Create or replace a token (by accessor ID); refused when a linked policy or role
    /// does not exist, or its secret is another token's.
    AclTokenSet(Box<crate::records::AclToken>),
    /// Delete a token.
    AclTokenDelete {
        /// Its accessor ID.
        accessor_id: String,
    },
    /// Create or replace a role (by ID); refused when another role has its name.
    AclRoleSet(Box<crate::records::AclRole>),
    /// Delete a role.
    AclRoleDelete {
        /// The role.
        id: String,
    },
    /// A secondary datacenter's copy of the primary's ACL tables (Consul's ACL
    /// replication): each set given replaces what the datacenter holds of it (tokens: its
    /// global ones; local tokens stay).
    AclReplicate(Box<crate::records::AclReplica>),
}

/// One operation of a transaction (Consul's KV verbs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// `set`.
    Set {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
    },
    /// `cas`: set only if the modify index is `index` (0: absent).
    Cas {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
        /// Expected modify index.
        index: u64,
    },
    /// `get`: fails the transaction if the key is absent.
    Get {
        /// Key.
        key: String,
    },
    /// `get-tree`.
    GetTree {
        /// Prefix.
        prefix: String,
    },
    /// `check-index`: fails unless the modify index is `index`.
    CheckIndex {
        /// Key.
        key: String,
        /// Expected modify index.
        index: u64,
    },
    /// `check-not-exists`.
    CheckNotExists {
        /// Key.
        key: String,
    },
    /// `delete`.
    Delete {
        /// Key.
        key: String,
    },
    /// `delete-tree`.
    DeleteTree {
        /// Prefix.
        prefix: String,
    },
    /// `delete-cas`: delete only if the modify index is `index`.
    DeleteCas {
        /// Key.
        key: String,
        /// Expected modify index.
        index: u64,
    },
    /// `lock`: set the key and take its lock for `session`.
    Lock {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
        /// The session.
        session: String,
    },
    /// `unlock`: set the key and release its lock, held by `session`.
    Unlock {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
        /// The session.
        session: String,
    },
    /// `check-session`: fails unless `session` holds the key's lock.
    CheckSession {
        /// Key.
        key: String,
        /// The session.
        session: String,
    },
    /// The session verb `delete`: invalidate a session with the transaction.
    SessionDelete {
        /// The session.
        id: String,
    },
}

/// A catalog registration (Consul's `/v1/catalog/register` body, parsed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Node name.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Node's datacenter.
    pub datacenter: String,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Leave the node's own fields as they are (only add the service and checks).
    pub skip_node_update: bool,
    /// A service instance to register on the node.
    pub service: Option<ServiceRegistration>,
    /// Checks to register on the node.
    pub checks: Vec<CheckRegistration>,
}

/// A service instance in a registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRegistration {
    /// Instance ID (defaults to the name).
    pub id: String,
    /// Name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
}

/// A check in a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRegistration {
    /// Check ID (defaults to the name).
    pub check_id: String,
    /// Name.
    pub name: String,
    /// Status.
    pub status: HealthStatus,
    /// Notes.
    pub notes: String,
    /// Output.
    pub output: String,
    /// The service instance it checks; empty for a node check.
    pub service_id: String,
    /// Kind.
    pub check_type: String,
}

/// What applying a command returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// KV set/delete: whether it happened (false: a CAS mismatch).
    Applied(bool),
    /// A transaction: the entries its operations return, or why it was rolled back.
    Txn(Result<Vec<KvEntry>, Vec<TxnError>>),
    /// A catalog change went in.
    Done,
    /// The command was refused as a whole (the message says why).
    Refused(String),
    /// A Raft membership or blank entry (no state change).
    Nothing,
    /// The results of a [`Command::KvBatch`], in order.
    Batch(Vec<CommandResult>),
}

/// Why one operation of a transaction failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    /// Position of the operation in the transaction.
    pub op_index: usize,
    /// What went wrong.
    pub what: String,
}
