//! The topology file as written: serde types that keep the spans of what later checks
//! may need to point at. Nothing here decides whether the file makes sense; `model` does.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    pub domain: Option<Spanned<String>>,
    pub primary_datacenter: Option<Spanned<String>>,
    pub state_dir: Option<String>,
    pub gossip: Option<RawGossip>,
    pub tls: Option<RawTls>,
    pub acl: Option<RawAcl>,
    pub defaults: Option<RawNodeSettings>,
    #[serde(default)]
    pub datacenters: Vec<Spanned<RawDatacenter>>,
}

/// `[gossip]`: `key = "generate"`, `key = "<base64>"` or `key_file = "path"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGossip {
    pub key: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

/// `[tls]`: `ca = "generate"` or `ca_dir = "path"`, and validity in days.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca: Option<Spanned<String>>,
    pub ca_dir: Option<Spanned<String>>,
    pub ca_days: Option<Spanned<u32>>,
    pub cert_days: Option<Spanned<u32>>,
    /// Serve the HTTP API over HTTPS too, with each agent's certificate.
    pub https: Option<bool>,
}

/// `[acl]`: `enabled = true` and Consul's `default_policy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcl {
    pub enabled: Option<Spanned<bool>>,
    pub default_policy: Option<Spanned<String>>,
}

/// `[[datacenters]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatacenter {
    pub name: Spanned<String>,
    pub servers: Option<Spanned<RawNodes>>,
    pub clients: Option<Spanned<RawNodes>>,
    pub gateways: Option<Spanned<RawNodes>>,
    #[serde(default)]
    pub services: Vec<Spanned<RawService>>,
    #[serde(default)]
    pub overrides: BTreeMap<Spanned<String>, Spanned<RawNodeSettings>>,
}

/// `servers = 3` (placed on loopback) or `servers = [{ name = "a", address = "10.0.0.1" }]`.
#[derive(Debug)]
pub enum RawNodes {
    Count(i64),
    List(Vec<RawNode>),
}

/// One explicitly placed node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
}

impl<'de> Deserialize<'de> for RawNodes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodesVisitor;
        impl<'de> Visitor<'de> for NodesVisitor {
            type Value = RawNodes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count (`servers = 3`) or a list of nodes (`servers = [{ name = \"s1\", address = \"10.0.0.1\" }]`)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNodes, E> {
                Ok(RawNodes::Count(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNodes, E> {
                Ok(RawNodes::Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNodes, A::Error> {
                let mut nodes = Vec::new();
                while let Some(node) = seq.next_element::<RawNode>()? {
                    nodes.push(node);
                }
                Ok(RawNodes::List(nodes))
            }
            fn visit_map<A: MapAccess<'de>>(self, _map: A) -> Result<RawNodes, A::Error> {
                Err(de::Error::custom(
                    "expected a count or a list of nodes; write `[[datacenters.servers]]` tables or `servers = [{ name = \"s1\", address = \"10.0.0.1\" }]`",
                ))
            }
        }
        deserializer.deserialize_any(NodesVisitor)
    }
}

/// Settings that `[defaults]` gives every node and `[datacenters.overrides.NODE]` one node.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNodeSettings {
    pub log_level: Option<Spanned<String>>,
    pub ports: Option<RawPorts>,
    /// Extra keys of the agent's Consul-format config (`enable_script_checks = true`, ...).
    pub extra: Option<Spanned<toml::Table>>,
}

/// Port overrides.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPorts {
    pub server: Option<u16>,
    pub serf_lan: Option<u16>,
    pub http: Option<u16>,
    pub https: Option<u16>,
    pub dns: Option<u16>,
    pub gateway: Option<u16>,
    pub metrics: Option<u16>,
}

/// `[[datacenters.services]]`: Consul's service definition plus the node it runs on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: Spanned<String>,
    pub id: Option<Spanned<String>>,
    pub node: Spanned<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub address: Option<String>,
    pub port: Option<u16>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    pub check: Option<Spanned<wire::agent_config::CheckDefinition>>,
    #[serde(default)]
    pub checks: Vec<Spanned<wire::agent_config::CheckDefinition>>,
}
