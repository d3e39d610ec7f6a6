//! The agent configuration file, in Consul's JSON agent-config format.
//!
//! `topology render` writes one of these per agent (`agent.json`); `dc-agent` reads it, and
//! also reads the files a Consul user already has. Keys are Consul's (`datacenter`,
//! `node_name`, `bind_addr`, `ports`, `retry_join`, `encrypt`, `tls.defaults.ca_file`, ...).
//! What Consul has no key for lives under `isthmus`.
//!
//! Relative paths in a file are resolved against the directory holding that file, so a
//! rendered node directory can be copied to a machine as a unit.
//!
//! This type accepts unknown keys on purpose: the reader (`dc-agent`) decides which unknown
//! keys are errors and which known-but-unsupported Consul options only warrant a warning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::GoDuration;

/// Version of the `isthmus` extension block, bumped when its meaning changes.
pub const ISTHMUS_CONFIG_VERSION: u32 = 1;

/// A Consul agent configuration (the subset Isthmus reads), plus Isthmus extensions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Datacenter this agent belongs to (`-datacenter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    /// The authoritative datacenter of the federation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_datacenter: Option<String>,
    /// DNS domain answered by the agent (default `consul`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Upstream DNS servers (`IP` or `IP:port`) asked, in order, for names outside the
    /// domain (`-recursor`). Without any, such names are REFUSED.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recursors: Vec<String>,
    /// Settings of the DNS interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    /// Node name, unique in the datacenter (`-node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Server mode (`-server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<bool>,
    /// Number of servers to wait for before the cluster is bootstrapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_expect: Option<u32>,
    /// Bootstrap alone (`-bootstrap`): `bootstrap_expect = 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<bool>,
    /// File the agent writes its process ID to (its directory is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<String>,
    /// Address for cluster communication (`-bind`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_addr: Option<String>,
    /// Address for the HTTP and DNS listeners (`-client`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// Address advertised to other agents, when not `bind_addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_addr: Option<String>,
    /// Port overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Ports>,
    /// Addresses of servers to join at start, retried until one answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_join: Vec<String>,
    /// Directory for Raft data and other state (`-data-dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
    /// Gossip encryption key, base64 of 16, 24 or 32 bytes (`consul keygen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<String>,
    /// Refuse gossip that is not sealed with an installed key (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_verify_incoming: Option<bool>,
    /// Seal the gossip this agent sends (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_verify_outgoing: Option<bool>,
    /// Log level: `trace`, `debug`, `info`, `warn`, `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Raft log entries between snapshots (Consul's default: 16384).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_snapshot_threshold: Option<u64>,
    /// How long a check's output-only change may wait before it is written to the catalog
    /// (status changes are written at once). Default `5m`; `0s` writes every change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_update_interval: Option<GoDuration>,
    /// Allow `args` (script) health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_script_checks: Option<bool>,
    /// Refuse `exec` jobs (Consul's default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_remote_exec: Option<bool>,
    /// Leave the cluster gracefully on SIGTERM (Consul: false on servers, true on clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leave_on_terminate: Option<bool>,
    /// Stop without leaving on SIGINT (Consul: true on servers, false on clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_leave_on_interrupt: Option<bool>,
    /// Arbitrary node metadata (`-node-meta`), served in the catalog and DNS TXT records.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_meta: BTreeMap<String, String>,
    /// TLS material and verification settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Services this agent registers at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceDefinition>,
    /// Checks this agent runs, of the node or (with `service_id`) of one of its services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDefinition>,
    /// Consul's `ui_config` (`-ui`): the web UI at `/ui/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_config: Option<UiConfig>,
    /// Watches this agent runs (Consul's `watches`: each a map of `type`, its parameters
    /// and a handler), checked and run by the agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watches: Vec<BTreeMap<String, serde_json::Value>>,
    /// Consul's `acl` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<AclConfig>,
    /// Consul's `limits` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Settings Consul has no key for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isthmus: Option<IsthmusExtensions>,
}

/// Consul's `limits` block (the settings Isthmus honours).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Concurrent HTTP(S) connections one client IP address may hold (default 200; 0: no
    /// limit). Past it, a new connection is answered `429 Too Many Requests` and closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_max_conns_per_client: Option<u32>,
}

/// Consul's `acl` block (the settings Isthmus honours).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclConfig {
    /// ACLs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `allow` or `deny`: what a token may do where no rule speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_policy: Option<String>,
    /// What a client agent does when no server answers: `extend-cache`, `async-cache`,
    /// `allow` or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_policy: Option<String>,
    /// How long a client agent keeps a token's resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ttl: Option<crate::GoDuration>,
    /// How long a client agent keeps a policy (resolutions are kept whole, for the shortest
    /// of the three TTLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ttl: Option<crate::GoDuration>,
    /// How long a client agent keeps a role (as `policy_ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_ttl: Option<crate::GoDuration>,
    /// A secondary datacenter copies the primary's global tokens too (else it asks the
    /// primary for each token it does not know).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_token_replication: Option<bool>,
    /// Tokens set with `/v1/agent/token/*` are kept in the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_token_persistence: Option<bool>,
    /// The agent's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<AclTokensConfig>,
}

/// Consul's `acl.tokens` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclTokensConfig {
    /// The first management token's secret, created by the leader at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_management: Option<String>,
    /// The token the agent uses for its own work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The token of requests that bring none (and of DNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A local secret that manages `/v1/agent/*` when the servers cannot be reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_recovery: Option<String>,
    /// What a secondary datacenter's servers present to the primary to copy its ACLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<String>,
}

/// Consul's `dns_config` block (the settings Isthmus honours).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// TTL of node answers (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ttl: Option<GoDuration>,
    /// TTL of service answers by service name; `*` is every other service (default `0s`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_ttl: BTreeMap<String, GoDuration>,
    /// Answer only instances whose checks all pass (warnings left out too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_passing: Option<bool>,
    /// Most A/AAAA records in one answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a_record_limit: Option<u32>,
    /// How long to wait for each recursor (default `2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursor_timeout: Option<GoDuration>,
    /// Whether any server may answer (default `true`); `false` reads through the leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_stale: Option<bool>,
    /// How old an answer may be (default `87600h`, as Consul).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stale: Option<GoDuration>,
}

/// Consul's `ports` block. Only the ports Isthmus listens on. As in Consul, `-1` turns a
/// listener off (`"dns": -1`: no DNS server).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// DNS (default 8600; -1: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<i32>,
    /// HTTP API (default 8500; -1: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<i32>,
    /// LAN gossip (default 8301).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serf_lan: Option<i32>,
    /// Raft and RPC, servers only (default 8300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<i32>,
    /// HTTPS API (default -1: none); needs a certificate and key in `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<i32>,
}

/// Consul's `tls` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Settings for every listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<TlsDefaults>,
    /// Settings for server RPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_rpc: Option<TlsInternalRpc>,
    /// Settings for the HTTPS API, each over the one in `defaults`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<TlsDefaults>,
}

/// Consul's `tls.defaults` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsDefaults {
    /// PEM file of the CA that signs every agent certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM file of this agent's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM file of this agent's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Require and verify a certificate from every connecting peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_incoming: Option<bool>,
    /// Verify the certificate of every peer this agent connects to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_outgoing: Option<bool>,
}

/// Consul's `tls.internal_rpc` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsInternalRpc {
    /// Require servers to present `server.<dc>.<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_server_hostname: Option<bool>,
}

/// Settings Consul has no key for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsthmusExtensions {
    /// Version of this block ([`ISTHMUS_CONFIG_VERSION`]).
    pub config_version: u32,
    /// Gateways of this agent's datacenter (`address:port`), through which servers reach
    /// other datacenters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// How long a deleted KV key's tombstone is kept (so blocking queries on it see the
    /// delete) before the leader reaps it. Consul's is 15 minutes, not configurable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstone_ttl: Option<crate::GoDuration>,
    /// How long an HTTP connection may take to send a request's head, counted from when it
    /// starts waiting for one: slow clients and idle keep-alive connections are closed then
    /// (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_read_timeout: Option<crate::GoDuration>,
}

/// A service definition as in Consul's config files (`{"service": {...}}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDefinition {
    /// Instance ID, unique on the agent (defaults to the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Service name, as looked up in DNS and the catalog.
    pub name: String,
    /// Tags, usable as `TAG.NAME.service.consul`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Address of the instance, when not the node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port of the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// One health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckDefinition>,
    /// Several health checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDefinition>,
}

/// A health check definition as in Consul's config files.
///
/// Exactly one of `http`, `tcp`, `args` and `ttl` says what kind of check it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDefinition {
    /// Check ID, unique on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The service instance this check belongs to (a top-level check; inside a service it
    /// is that service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// Initial status (`critical` unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// URL to GET (or `method`): 2xx passing, 429 warning, anything else critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// HTTP method for `http` checks (default GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// HTTP headers for `http` checks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    /// Skip TLS verification for `https` URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_skip_verify: Option<bool>,
    /// `host:port` to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// Command and arguments of a script check (needs `enable_script_checks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// TTL of a check updated through `/v1/agent/check/pass|warn|fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<GoDuration>,
    /// How often to run the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    /// How long one run may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<GoDuration>,
    /// Deregister the service once this check has been critical this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_critical_service_after: Option<GoDuration>,
    /// Consecutive successes before the status becomes passing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_before_passing: Option<u32>,
    /// Consecutive failures before the status becomes critical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures_before_critical: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_consul_service_file_shape() {
        let json = r#"{
            "datacenter": "dc1", "node_name": "s1", "server": true, "bootstrap_expect": 3,
            "ports": {"http": 8500, "dns": 8600},
            "services": [{"name": "web", "tags": ["rails"], "port": 80,
                          "check": {"http": "http://localhost:80/", "interval": "10s"}}]
        }"#;
        let config: AgentConfig = serde_json::from_str(json).expect("valid test input");
        assert_eq!(config.bootstrap_expect, Some(3));
        let check = config.services[0].check.as_ref().expect("check given");
        assert_eq!(check.interval.map(|d| d.0.as_secs()), Some(10));
        let round_trip: AgentConfig =
            serde_json::from_str(&serde_json::to_string(&config).expect("serializes"))
                .expect("reads back");
        assert_eq!(round_trip, config);
    }
}

/// Consul's `ui_config` block (the part Isthmus reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the web UI at `/ui/` (`-ui`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}
