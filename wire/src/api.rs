//! The JSON of Consul's `/v1` HTTP API: field names, nesting and base64 exactly as Consul's,
//! so existing clients (consul-template, the Go API client, py-consul) work unchanged.
//! Request bodies accept unknown fields, as Consul's decoder does.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::records;

/// Base64 in JSON, `null` for an empty value (as Consul writes `[]byte`).
pub mod base64_bytes {
    use super::*;

    /// Serializes bytes as base64 (`null` when empty).
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if bytes.is_empty() {
            serializer.serialize_none()
        } else {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }

    /// Reads base64 (or `null`).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        match text {
            None => Ok(Vec::new()),
            Some(text) => base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| serde::de::Error::custom(format!("Value is not valid base64: {e}"))),
        }
    }
}

/// A KV entry (`GET /v1/kv/<key>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvPair {
    /// Lock count.
    pub lock_index: u64,
    /// Key.
    pub key: String,
    /// Flags.
    pub flags: u64,
    /// Value, base64.
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
    /// Creating index.
    pub create_index: u64,
    /// Last modifying index.
    pub modify_index: u64,
    /// Lock holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl From<&records::KvEntry> for KvPair {
    fn from(entry: &records::KvEntry) -> KvPair {
        KvPair {
            lock_index: entry.lock_index,
            key: entry.key.clone(),
            flags: entry.flags,
            value: entry.value.clone(),
            create_index: entry.create_index,
            modify_index: entry.modify_index,
            session: entry.session.clone(),
        }
    }
}

/// A node (`/v1/catalog/nodes`, and inside health entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogNode {
    /// Node ID, a UUID (empty when its registration named none).
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub node: String,
    /// Address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Creating index.
    pub create_index: u64,
    /// Last modifying index.
    pub modify_index: u64,
}

impl From<&records::Node> for CatalogNode {
    fn from(node: &records::Node) -> CatalogNode {
        CatalogNode {
            id: node.id.clone(),
            node: node.name.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            meta: node.meta.clone(),
            create_index: node.create_index,
            modify_index: node.modify_index,
        }
    }
}

/// One instance in `/v1/catalog/service/<name>`: node and service fields flattened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogServiceEntry {
    /// Node ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Node's tagged addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Instance ID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// Tags.
    pub service_tags: Vec<String>,
    /// Instance address.
    pub service_address: String,
    /// Port.
    pub service_port: u16,
    /// Instance metadata.
    pub service_meta: BTreeMap<String, String>,
    /// Always false.
    pub service_enable_tag_override: bool,
    /// Creating index.
    pub create_index: u64,
    /// Last modifying index.
    pub modify_index: u64,
}

impl CatalogServiceEntry {
    /// Flattens a node and one of its instances.
    pub fn new(node: &records::Node, service: &records::Service) -> CatalogServiceEntry {
        CatalogServiceEntry {
            id: node.id.clone(),
            node: node.name.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            node_meta: node.meta.clone(),
            service_id: service.id.clone(),
            service_name: service.name.clone(),
            service_tags: service.tags.clone(),
            service_address: service.address.clone(),
            service_port: service.port,
            service_meta: service.meta.clone(),
            service_enable_tag_override: false,
            create_index: service.create_index,
            modify_index: service.modify_index,
        }
    }
}

/// A service instance as nested in node and health answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address.
    pub address: String,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Port.
    pub port: u16,
    /// Creating index.
    pub create_index: u64,
    /// Last modifying index.
    pub modify_index: u64,
}

impl From<&records::Service> for AgentService {
    fn from(service: &records::Service) -> AgentService {
        AgentService {
            id: service.id.clone(),
            service: service.name.clone(),
            tags: service.tags.clone(),
            address: service.address.clone(),
            meta: service.meta.clone(),
            port: service.port,
            create_index: service.create_index,
            modify_index: service.modify_index,
        }
    }
}

/// `/v1/catalog/node/<node>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServices {
    /// The node.
    pub node: CatalogNode,
    /// Its services by instance ID.
    pub services: BTreeMap<String, AgentService>,
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    /// Node.
    pub node: String,
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Name.
    pub name: String,
    /// `passing`, `warning`, `critical` or `maintenance`.
    pub status: String,
    /// Notes.
    pub notes: String,
    /// Output.
    pub output: String,
    /// Service instance ID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Service name.
    pub service_name: String,
    /// Service tags.
    pub service_tags: Vec<String>,
    /// Kind.
    #[serde(rename = "Type")]
    pub check_type: String,
    /// Creating index.
    pub create_index: u64,
    /// Last modifying index.
    pub modify_index: u64,
}

impl From<&records::Check> for HealthCheck {
    fn from(check: &records::Check) -> HealthCheck {
        HealthCheck {
            node: check.node.clone(),
            check_id: check.check_id.clone(),
            name: check.name.clone(),
            status: check.status.as_str().to_owned(),
            notes: check.notes.clone(),
            output: check.output.clone(),
            service_id: check.service_id.clone(),
            service_name: check.service_name.clone(),
            service_tags: check.service_tags.clone(),
            check_type: check.check_type.clone(),
            create_index: check.create_index,
            modify_index: check.modify_index,
        }
    }
}

/// One entry of `/v1/health/service/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    /// The node.
    pub node: CatalogNode,
    /// The instance.
    pub service: AgentService,
    /// Node and instance checks.
    pub checks: Vec<HealthCheck>,
}

/// `PUT /v1/catalog/register`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegisterRequest {
    /// The node's ID (a UUID; empty keeps the node's).
    #[serde(rename = "ID")]
    pub id: String,
    /// Datacenter.
    pub datacenter: String,
    /// Node name.
    pub node: String,
    /// Node address.
    pub address: String,
    /// Tagged addresses.
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// A service.
    pub service: Option<RegisterService>,
    /// One check.
    pub check: Option<RegisterCheck>,
    /// Several checks.
    pub checks: Vec<RegisterCheck>,
    /// Keep the node's fields.
    pub skip_node_update: bool,
}

/// The service of a registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegisterService {
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Address.
    pub address: String,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Port.
    pub port: u16,
}

/// A check of a registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegisterCheck {
    /// Node (must match the registration's, when given).
    pub node: String,
    /// Check ID.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Name.
    pub name: String,
    /// Notes.
    pub notes: String,
    /// Status (default `critical`).
    pub status: String,
    /// Service instance ID.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Output.
    pub output: String,
    /// Kind.
    #[serde(rename = "Type")]
    pub check_type: String,
}

/// `PUT /v1/catalog/deregister`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeregisterRequest {
    /// Datacenter.
    pub datacenter: String,
    /// Node.
    pub node: String,
    /// Only this service.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Only this check.
    #[serde(rename = "CheckID")]
    pub check_id: String,
}

/// One operation of `PUT /v1/txn`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnOpRequest {
    /// A KV operation.
    #[serde(rename = "KV")]
    pub kv: Option<TxnKvOp>,
    /// A session operation (`delete`).
    pub session: Option<TxnSessionOp>,
}

/// A session operation of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnSessionOp {
    /// `delete`.
    pub verb: String,
    /// The session.
    pub session: TxnSessionRef,
}

/// The session a transaction's session operation names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TxnSessionRef {
    /// Its ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its node (not needed).
    #[serde(rename = "Node")]
    pub node: String,
}

/// A KV operation of a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnKvOp {
    /// `set`, `cas`, `get`, `get-tree`, `check-index`, `check-not-exists`, `delete`,
    /// `delete-tree`, `delete-cas`.
    pub verb: String,
    /// Key.
    pub key: String,
    /// Value, base64.
    #[serde(with = "base64_bytes")]
    pub value: Vec<u8>,
    /// Flags.
    pub flags: u64,
    /// Index for `cas`, `check-index`, `delete-cas`.
    pub index: u64,
    /// Session (`lock`, `unlock`, `check-session`).
    pub session: String,
}

/// The answer of `PUT /v1/txn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnResponse {
    /// One result per entry returned.
    pub results: Option<Vec<TxnResult>>,
    /// Why the transaction was rolled back.
    pub errors: Option<Vec<TxnErrorEntry>>,
}

/// A result of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxnResult {
    /// The KV entry.
    #[serde(rename = "KV")]
    pub kv: KvPair,
}

/// An error of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TxnErrorEntry {
    /// Which operation.
    pub op_index: usize,
    /// Why.
    pub what: String,
}

/// One server of `/v1/operator/raft/configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftServer {
    /// Raft ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Raft address.
    pub address: String,
    /// Whether it leads.
    pub leader: bool,
    /// Raft protocol version (Consul prints "3").
    pub protocol_version: String,
    /// Whether it votes.
    pub voter: bool,
}

/// `/v1/operator/raft/configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfiguration {
    /// The servers.
    pub servers: Vec<RaftServer>,
    /// Index of the membership entry.
    pub index: u64,
}

/// A check in an agent registration (`/v1/agent/check/register`, or inside a service).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentCheckRegistration {
    /// Check ID (`ID` or `CheckID`; defaults to the name, or `service:<id>` inside a service).
    #[serde(rename = "ID", alias = "CheckID")]
    pub id: String,
    /// Name.
    pub name: String,
    /// Notes.
    pub notes: String,
    /// Service instance it checks (agent check registration only).
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Initial status (default critical).
    pub status: String,
    /// URL for an HTTP check.
    #[serde(rename = "HTTP")]
    pub http: String,
    /// Method for an HTTP check.
    pub method: String,
    /// Headers for an HTTP check.
    pub header: BTreeMap<String, Vec<String>>,
    /// Skip TLS verification.
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    /// `host:port` for a TCP check.
    #[serde(rename = "TCP")]
    pub tcp: String,
    /// Command of a script check.
    pub args: Vec<String>,
    /// TTL of a TTL check (`"30s"`).
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// How often to run (`"10s"`).
    pub interval: String,
    /// Per-run timeout (`"1s"`).
    pub timeout: String,
    /// Deregister the service after this long critical.
    pub deregister_critical_service_after: String,
    /// Passes before passing.
    pub success_before_passing: u32,
    /// Failures before critical.
    pub failures_before_critical: u32,
}

/// `PUT /v1/agent/service/register`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AgentServiceRegistration {
    /// Instance ID (defaults to the name).
    #[serde(rename = "ID")]
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
    /// One check.
    pub check: Option<AgentCheckRegistration>,
    /// Several checks.
    pub checks: Vec<AgentCheckRegistration>,
}

/// An agent's view of one of its services (`/v1/agent/services`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentLocalService {
    /// Instance ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Name.
    pub service: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Port.
    pub port: u16,
    /// Address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
}
