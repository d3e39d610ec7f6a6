//! The validated federation: what `topology` renders and runs. Built from the file in one
//! step ([`parse`]), which reports every problem it finds, each with its place in the file.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use wire::agent_config::CheckDefinition;
use wire::{ports, validate_dns_label, Role};

use crate::diagnostic::{nearest, Diagnostic, Severity};
use crate::schema::{RawDatacenter, RawNodeSettings, RawNodes, RawPorts, RawService, RawTopology};

mod check;

use check::Checker;

/// Where the gossip key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipKeySource {
    /// Generated at the first render, then kept in the output directory.
    Generate,
    /// Given in the file (base64).
    Inline(String),
    /// Read from a file (relative paths: from the topology file's directory).
    File(PathBuf),
}

/// Where the CA comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// Generated at the first render, then kept in the output directory.
    Generate,
    /// A directory holding `ca.pem` and `ca-key.pem` (relative: from the file's directory).
    Dir(PathBuf),
}

/// Ports a node listens on (the ones of its role are used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    /// Raft and RPC (servers), UDP/QUIC.
    pub server: u16,
    /// LAN gossip, UDP.
    pub serf_lan: u16,
    /// HTTP API, TCP.
    pub http: u16,
    /// HTTPS API, TCP (with `[tls] https = true`).
    pub https: u16,
    /// DNS, UDP and TCP.
    pub dns: u16,
    /// Gateway QUIC, UDP.
    pub gateway: u16,
    /// Gateway metrics, TCP.
    pub metrics: u16,
}

impl Default for NodePorts {
    fn default() -> Self {
        NodePorts {
            server: ports::SERVER,
            serf_lan: ports::SERF_LAN,
            http: ports::HTTP,
            https: ports::HTTPS,
            dns: ports::DNS,
            gateway: ports::GATEWAY,
            metrics: ports::GATEWAY_METRICS,
        }
    }
}

impl NodePorts {
    fn apply(&mut self, raw: &RawPorts) {
        let fields = [
            (&mut self.server, raw.server),
            (&mut self.serf_lan, raw.serf_lan),
            (&mut self.http, raw.http),
            (&mut self.https, raw.https),
            (&mut self.dns, raw.dns),
            (&mut self.gateway, raw.gateway),
            (&mut self.metrics, raw.metrics),
        ];
        for (field, value) in fields {
            if let Some(value) = value {
                *field = value;
            }
        }
    }
}

/// A transport protocol, for telling listeners apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP (QUIC included).
    Udp,
}

/// One agent or gateway of the federation.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Node name, unique in its datacenter.
    pub name: String,
    /// Server, client or gateway.
    pub role: Role,
    /// The address it binds to.
    pub address: IpAddr,
    /// Its ports.
    pub ports: NodePorts,
    /// Log level.
    pub log_level: String,
    /// Extra keys merged into its Consul-format agent config.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Where the file declares it (its name, or the count that placed it).
    pub declared_at: Range<usize>,
}

impl Node {
    /// What the node listens on: (protocol, port, purpose); `https`: agents serve HTTPS.
    pub fn listeners(&self, https: bool) -> Vec<(Proto, u16, &'static str)> {
        let p = self.ports;
        let mut listeners = self.plain_listeners();
        if https && self.role != Role::Gateway {
            listeners.push((Proto::Tcp, p.https, "https"));
        }
        listeners
    }

    fn plain_listeners(&self) -> Vec<(Proto, u16, &'static str)> {
        let p = self.ports;
        match self.role {
            Role::Server => vec![
                (Proto::Udp, p.server, "server"),
                (Proto::Udp, p.serf_lan, "serf_lan"),
                (Proto::Tcp, p.http, "http"),
                (Proto::Udp, p.dns, "dns"),
                (Proto::Tcp, p.dns, "dns"),
            ],
            Role::Client => vec![
                (Proto::Udp, p.serf_lan, "serf_lan"),
                (Proto::Tcp, p.http, "http"),
                (Proto::Udp, p.dns, "dns"),
                (Proto::Tcp, p.dns, "dns"),
            ],
            Role::Gateway => vec![
                (Proto::Udp, p.gateway, "gateway"),
                (Proto::Tcp, p.metrics, "metrics"),
            ],
        }
    }
}

/// A service registered on a node at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The node it runs on.
    pub node: String,
    /// Consul's service definition.
    pub definition: wire::agent_config::ServiceDefinition,
}

/// One datacenter.
#[derive(Debug, Clone, PartialEq)]
pub struct Datacenter {
    /// Its name, a DNS label.
    pub name: String,
    /// 1-based position in the file: D in the loopback layout `127.0.D.N`.
    pub index: u8,
    /// Servers, clients, then gateways.
    pub nodes: Vec<Node>,
    /// Services to register.
    pub services: Vec<Service>,
}

impl Datacenter {
    /// The nodes of one role.
    pub fn nodes_of(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |node| node.role == role)
    }
}

/// The validated federation.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// DNS domain (`consul`).
    pub domain: String,
    /// The primary datacenter.
    pub primary_datacenter: String,
    /// State directory as written (relative: from the file's directory).
    pub state_dir: PathBuf,
    /// Gossip key source.
    pub gossip_key: GossipKeySource,
    /// CA source.
    pub ca: CaSource,
    /// Days of validity of a generated CA.
    pub ca_days: u32,
    /// Days of validity of node certificates.
    pub cert_days: u32,
    /// `[tls] https = true`: every agent serves its API over HTTPS too (`ports.https`),
    /// with its node certificate.
    pub https: bool,
    /// `[acl]` when enabled: ACLs on every agent, bootstrapped and provisioned by `up`.
    pub acl: Option<TopologyAcl>,
    /// Datacenters in file order.
    pub datacenters: Vec<Datacenter>,
}

/// `[acl]` when `enabled = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyAcl {
    /// `allow` or `deny` (default `deny`: a federation that asks for ACLs is closed).
    pub default_policy: String,
}

/// A parsed file: the topology and its warnings, or every error (and warning) found.
pub type ParseResult = Result<(Topology, Vec<Diagnostic>), Vec<Diagnostic>>;

/// Parses and validates a topology file. `file_stem` names the default state directory.
pub fn parse(source: &str, file_stem: &str) -> ParseResult {
    let raw: RawTopology = toml::from_str(source).map_err(|e| vec![from_toml_error(&e)])?;
    let mut checker = Checker {
        diagnostics: Vec::new(),
    };
    let topology = checker.topology(raw, file_stem);
    let (errors, warnings): (Vec<_>, Vec<_>) = checker
        .diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    match topology {
        Some(topology) if errors.is_empty() => Ok((topology, warnings)),
        _ => Err(errors.into_iter().chain(warnings).collect()),
    }
}

/// Turns serde/toml's error into a diagnostic, naming the nearest valid key for a typo.
fn from_toml_error(error: &toml::de::Error) -> Diagnostic {
    let message = error.message().trim_end().to_owned();
    let span = error.span();
    let quoted: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let unknown = quoted.first().copied().unwrap_or("");
        let valid: Vec<&str> = quoted.iter().skip(1).copied().collect();
        let help = match nearest(unknown, &valid) {
            Some(near) => format!("did you mean `{near}`?"),
            None if valid.is_empty() => "remove it".to_owned(),
            None => format!("valid keys here: {}", valid.join(", ")),
        };
        let _ = rest;
        return Diagnostic::error(span, format!("unknown key `{unknown}`")).with_help(help);
    }
    if message.starts_with("missing field ") {
        let missing = quoted.first().copied().unwrap_or("");
        return Diagnostic::error(span, format!("missing key `{missing}`"))
            .with_help(format!("add `{missing} = ...` to this table"));
    }
    Diagnostic::error(span, message)
}

/// Checks a gossip key: base64 of 16, 24 or 32 bytes, as `consul keygen` prints.
pub fn check_gossip_key(key: &str) -> Result<(), String> {
    wire::gossip_key::decode(key)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
