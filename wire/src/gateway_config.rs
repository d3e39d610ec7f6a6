//! The gateway configuration file (`gateway.toml`) that `topology render` writes and
//! `wan-gateway` reads. Relative paths are resolved against the file's directory.

use serde::{Deserialize, Serialize};

/// Version of this format, bumped when a field changes meaning.
pub const GATEWAY_CONFIG_VERSION: u32 = 1;

/// Everything a `wan-gateway` needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Format version ([`GATEWAY_CONFIG_VERSION`]).
    pub config_version: u32,
    /// Datacenter this gateway serves.
    pub datacenter: String,
    /// The authoritative datacenter of the federation.
    pub primary_datacenter: String,
    /// DNS domain of the federation (default `consul`), used in certificate names.
    pub domain: String,
    /// Node name of the gateway, unique in its datacenter.
    pub node_name: String,
    /// Address the gateway binds to.
    pub bind_addr: String,
    /// QUIC port for dc-links and WAN links (default 8443).
    pub port: u16,
    /// The `address:port` other datacenters' gateways should dial, when it is not the bind
    /// address and port (behind NAT, a load balancer, a relay). Told to the federation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_addr: Option<String>,
    /// Port of the Prometheus `/metrics` endpoint (default 9100).
    pub metrics_port: u16,
    /// Directory for the gateway's state.
    pub data_dir: String,
    /// Log level: `trace`, `debug`, `info`, `warn`, `error`.
    pub log_level: String,
    /// TLS material; the gateway always authenticates its peers.
    pub tls: GatewayTls,
    /// Raft/RPC addresses (`address:port`) of the servers of this datacenter.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Gateways of other datacenters to hold WAN links to.
    #[serde(default)]
    pub remote_gateways: Vec<RemoteGateway>,
}

/// TLS files of a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayTls {
    /// PEM file of the CA.
    pub ca_file: String,
    /// PEM file of the gateway's certificate (`gateway.<dc>.<domain>`).
    pub cert_file: String,
    /// PEM file of the gateway's private key.
    pub key_file: String,
}

/// A gateway of another datacenter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteGateway {
    /// Its datacenter.
    pub datacenter: String,
    /// Its node name.
    pub node_name: String,
    /// Its QUIC address, `address:port`.
    pub address: String,
}
