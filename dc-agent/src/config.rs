//! Agent configuration: Consul's JSON agent-config format, read from a file, checked once
//! at the edge into a [`ValidatedConfig`] the rest of the agent can trust.
//!
//! Relative paths in a file are resolved against that file's directory (Consul resolves them
//! against the working directory, which breaks as soon as a unit file changes directory).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use wire::agent_config::AgentConfig;
use wire::config_file::ConfigError;
use wire::Role;

/// A config file as read, with the directory its relative paths start from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The file.
    pub path: PathBuf,
    /// Its directory.
    pub base_dir: PathBuf,
    /// Its contents.
    pub config: AgentConfig,
}

/// Reads an agent's configuration from its sources (files, directories, flags, `-hcl`) as
/// the agent does; returns it with the warnings met (unsupported Consul keys).
pub fn load_sources(
    sources: &crate::assemble::Sources,
) -> Result<(LoadedConfig, Vec<String>), ConfigError> {
    let assembled = crate::assemble::load(sources)?;
    let mut origins: Vec<String> = sources
        .dirs
        .iter()
        .chain(&sources.files)
        .map(|p| p.display().to_string())
        .collect();
    if !sources.flags.is_empty() || origins.is_empty() {
        origins.push("command-line flags".to_owned());
    }
    let mut config = assembled.config;
    if config.node_name.is_none() {
        config.node_name = host_name();
    }
    Ok((
        LoadedConfig {
            path: PathBuf::from(origins.join(", ")),
            // Paths were resolved against their files' directories as each was read.
            base_dir: PathBuf::new(),
            config,
        },
        assembled.warnings,
    ))
}

/// This machine's host name, Consul's default node name.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// What the agent runs with, once checked.
#[derive(Debug)]
pub struct ValidatedConfig {
    /// Server or client.
    pub role: Role,
    /// Datacenter.
    pub datacenter: String,
    /// Node name.
    pub node_name: String,
    /// Address for cluster traffic.
    pub bind_addr: IpAddr,
    /// Address of the HTTP and DNS listeners.
    pub client_addr: IpAddr,
    /// DNS domain.
    pub domain: String,
    /// Data directory, resolved.
    pub data_dir: Option<PathBuf>,
    /// Gossip key bytes, when gossip is encrypted.
    pub gossip_key: Option<Vec<u8>>,
    /// `encrypt_verify_incoming` and `encrypt_verify_outgoing`.
    pub gossip_verify: gossip::keyfile::Verify,
    /// TLS material, when configured.
    pub tls: Option<pki::NodeTls>,
    /// The DNS interface.
    pub dns: DnsOptions,
    /// This datacenter's gateways (`isthmus.gateways`), which servers link to.
    pub gateways: Vec<SocketAddr>,
    /// The ports, `None` where a listener is turned off (`-1`).
    pub ports: ListenPorts,
    /// The HTTPS API's TLS config, when `ports.https` is set.
    pub https: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// ACLs, when `acl.enabled`.
    pub acl: Option<crate::http::acl::AclSettings>,
    /// `limits.http_max_conns_per_client` (`None`: no limit).
    pub http_max_conns_per_client: Option<usize>,
    /// `isthmus.http_header_read_timeout`.
    pub http_header_read_timeout: Duration,
    /// `ui_config.enabled` (`-ui`): serve the web UI at `/ui/`.
    pub ui: bool,
    /// Things worth a warning that do not stop the agent (a node name that is not a DNS
    /// label, as Consul warns).
    pub warnings: Vec<String>,
}

/// Consul's default `limits.http_max_conns_per_client`.
pub const DEFAULT_HTTP_MAX_CONNS_PER_CLIENT: u32 = 200;

/// The agent's ports once checked: Consul's `-1` turns the HTTP or DNS listener off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenPorts {
    /// HTTP API.
    pub http: Option<u16>,
    /// HTTPS API (off unless set, as Consul's).
    pub https: Option<u16>,
    /// DNS (UDP and TCP).
    pub dns: Option<u16>,
    /// LAN gossip.
    pub serf_lan: u16,
    /// Raft and RPC (servers).
    pub server: u16,
}

fn listen_ports(c: &AgentConfig, problems: &mut Vec<String>) -> ListenPorts {
    let ports = c.ports.clone().unwrap_or_default();
    let port = |name: &str,
                value: Option<i32>,
                default: u16,
                may_disable: bool,
                problems: &mut Vec<String>|
     -> Option<u16> {
        match value {
            None => Some(default),
            Some(-1) if may_disable => None,
            Some(n) => match u16::try_from(n) {
                Ok(port) => Some(port),
                Err(_) => {
                    problems.push(if may_disable {
                        format!("ports.{name} is {n}; give a port from 0 to 65535, or -1 to turn it off")
                    } else {
                        format!("ports.{name} is {n}; give a port from 0 to 65535 (this one cannot be turned off)")
                    });
                    Some(default)
                }
            },
        }
    };
    ListenPorts {
        http: port("http", ports.http, wire::ports::HTTP, true, problems),
        https: ports
            .https
            .and_then(|n| port("https", Some(n), 0, true, problems)),
        dns: port("dns", ports.dns, wire::ports::DNS, true, problems),
        serf_lan: port(
            "serf_lan",
            ports.serf_lan,
            wire::ports::SERF_LAN,
            false,
            problems,
        )
        .unwrap_or(wire::ports::SERF_LAN),
        server: port("server", ports.server, wire::ports::SERVER, false, problems)
            .unwrap_or(wire::ports::SERVER),
    }
}

/// The DNS interface's settings, once checked (`recursors` and `dns_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOptions {
    /// Upstream servers for names outside the domain, in the order they are tried.
    pub recursors: Vec<SocketAddr>,
    /// How long to wait for each recursor.
    pub recursor_timeout: Duration,
    /// TTL of node answers, in seconds.
    pub node_ttl: u32,
    /// TTL of service answers by name (`web`, or a prefix `web*`, or `*`), in seconds.
    pub service_ttl: BTreeMap<String, u32>,
    /// Leave out instances with warnings.
    pub only_passing: bool,
    /// Most address records per answer.
    pub a_record_limit: Option<usize>,
    /// Whether any server may answer a client agent's DNS view (else the leader).
    pub allow_stale: bool,
    /// How old a client agent's answer may be.
    pub max_stale: Duration,
}

/// Consul's default `dns_config.max_stale`: ten years.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(87_600 * 3600);

/// This datacenter's gateways (`isthmus.gateways`), or what is wrong with the list.
pub fn parse_gateways(c: &AgentConfig) -> Result<Vec<SocketAddr>, Vec<String>> {
    let mut gateways = Vec::new();
    let mut problems = Vec::new();
    for entry in c.isthmus.iter().flat_map(|x| x.gateways.iter()) {
        match entry.parse::<SocketAddr>() {
            Ok(addr) => gateways.push(addr),
            Err(_) => problems.push(format!(
                "isthmus.gateways: {entry:?} is not an address:port such as \"10.0.1.100:8443\""
            )),
        }
    }
    if problems.is_empty() {
        Ok(gateways)
    } else {
        Err(problems)
    }
}

/// Reads a recursor as Consul does: `IP` (port 53) or `IP:port` (`[IPv6]:port`).
pub fn parse_recursor(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!("recursor {text:?} is not an IP address or IP:port (such as \"1.1.1.1\" or \"10.0.0.53:5353\")")
        })
}

fn seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs()).unwrap_or(u32::MAX)
}

fn dns_options(c: &AgentConfig, problems: &mut Vec<String>) -> DnsOptions {
    let mut recursors = Vec::new();
    for text in &c.recursors {
        match parse_recursor(text) {
            Ok(addr) => recursors.push(addr),
            Err(e) => problems.push(e),
        }
    }
    let dns = c.dns_config.clone().unwrap_or_default();
    let recursor_timeout = dns.recursor_timeout.map_or(Duration::from_secs(2), |d| d.0);
    if recursor_timeout.is_zero() {
        problems.push(
            "dns_config.recursor_timeout is 0; give the recursors time to answer, such as \"2s\""
                .to_owned(),
        );
    }
    if dns.a_record_limit == Some(0) {
        problems.push("dns_config.a_record_limit is 0; leave it out for no limit".to_owned());
    }
    DnsOptions {
        recursors,
        recursor_timeout,
        node_ttl: dns.node_ttl.map_or(0, |d| seconds(d.0)),
        service_ttl: dns
            .service_ttl
            .iter()
            .map(|(name, d)| (name.to_ascii_lowercase(), seconds(d.0)))
            .collect(),
        only_passing: dns.only_passing.unwrap_or(false),
        a_record_limit: dns.a_record_limit.map(|n| n as usize),
        allow_stale: dns.allow_stale.unwrap_or(true),
        max_stale: dns.max_stale.map_or(DEFAULT_MAX_STALE, |d| d.0),
    }
}

/// Consul's rules for node names: unusable ones are problems; ones DNS cannot find are
/// only warned about (the node is still found over HTTP).
fn check_node_name(node_name: &str, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
    if node_name.is_empty() {
        problems.push("node_name is not set; name the node, as with `-node=s1`".to_owned());
    } else if node_name.len() > 256 || node_name.chars().any(char::is_control) {
        problems.push(format!(
            "node_name {node_name:?} is not usable: use up to 256 printable characters"
        ));
    } else if let Some(bad) = node_name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
    {
        // Consul only warns (its rule: letters of either case, digits and dashes): the
        // node is still found over HTTP.
        warnings.push(format!(
            "Node name {node_name:?} will not be discoverable via DNS due to invalid characters ({bad:?}). Valid characters include all alpha-numerics and dashes"
        ));
    } else if node_name.len() > 63 {
        warnings.push(format!(
            "Node name {node_name:?} will not be discoverable via DNS due to it being too long. Valid lengths are between 1 and 63 bytes"
        ));
    }
}

/// `bootstrap` and `bootstrap_expect` as Consul allows them together, and only on servers.
fn check_bootstrap(c: &AgentConfig, role: Role, problems: &mut Vec<String>) {
    if role == Role::Server
        && c.bootstrap == Some(true)
        && c.bootstrap_expect.is_some_and(|n| n > 1)
    {
        problems.push(
            "bootstrap and bootstrap_expect are both set; use one (bootstrap alone is bootstrap_expect = 1)"
                .to_owned(),
        );
    }
    if role == Role::Server && c.bootstrap_expect == Some(0) {
        problems.push("bootstrap_expect is 0; set it to the number of servers (3 or 5)".to_owned());
    }
    if role == Role::Client && c.bootstrap_expect.is_some() {
        problems.push(
            "bootstrap_expect is set on a client agent; it only applies with `server: true`"
                .to_owned(),
        );
    }
}

/// An address setting (`bind_addr`, `client_addr`): 127.0.0.1 when unset.
fn address(field: &str, value: Option<&String>, problems: &mut Vec<String>) -> IpAddr {
    match value.map(|v| v.parse::<IpAddr>()) {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(Ok(ip)) => ip,
        Some(Err(_)) => {
            problems.push(format!(
                "{field} {:?} is not an IP address",
                value.map_or("", |v| v.as_str())
            ));
            IpAddr::from([127, 0, 0, 1])
        }
    }
}

/// `primary_datacenter`, lowercased: datacenter names are lowercase DNS labels, as Consul
/// makes them.
fn primary_datacenter(c: &AgentConfig, problems: &mut Vec<String>) -> Option<String> {
    let primary = c
        .primary_datacenter
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(str::to_lowercase)?;
    if let Err(e) = wire::validate_dns_label(&primary) {
        problems.push(format!(
            "primary_datacenter {primary:?} is not a DNS label: it {e}"
        ));
    }
    Some(primary)
}

/// The gossip key of `encrypt`, decoded.
fn gossip_key(c: &AgentConfig, problems: &mut Vec<String>) -> Option<Vec<u8>> {
    match wire::gossip_key::decode(c.encrypt.as_ref()?) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            problems.push(format!("encrypt: {e}; generate one with `dc-agent keygen`"));
            None
        }
    }
}

/// Isthmus's own settings (the `isthmus` block) that cannot work.
fn check_isthmus(c: &AgentConfig, problems: &mut Vec<String>) {
    let Some(x) = c.isthmus.as_ref() else {
        return;
    };
    if x.tombstone_ttl
        .is_some_and(|ttl| ttl.0 < std::time::Duration::from_secs(1))
    {
        problems.push(
            "isthmus.tombstone_ttl is under 1s; blocking queries need deletes to stay visible a while (Consul keeps them 15m)"
                .to_owned(),
        );
    }
    if x.http_header_read_timeout
        .is_some_and(|t| t.0 < Duration::from_millis(100))
    {
        problems.push(
            "isthmus.http_header_read_timeout is under 100ms; clients could not send a request"
                .to_owned(),
        );
    }
}

impl LoadedConfig {
    /// A path from the file, resolved against the file's directory.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Checks that the values work together; reports every problem at once.
    pub fn validate(&self) -> Result<ValidatedConfig, ConfigError> {
        let c = &self.config;
        let mut problems = Vec::new();
        let role = if c.server == Some(true) {
            Role::Server
        } else {
            Role::Client
        };
        let datacenter = c.datacenter.clone().unwrap_or_else(|| "dc1".to_owned());
        if let Err(e) = wire::validate_dns_label(&datacenter) {
            problems.push(format!(
                "datacenter {datacenter:?} is not a DNS label: it {e}"
            ));
        }
        let mut warnings = Vec::new();
        let node_name = c.node_name.clone().unwrap_or_default();
        check_node_name(&node_name, &mut problems, &mut warnings);
        let domain = c.domain.clone().unwrap_or_else(|| "consul".to_owned());
        let bind_addr = address("bind_addr", c.bind_addr.as_ref(), &mut problems);
        let client_addr = address("client_addr", c.client_addr.as_ref(), &mut problems);
        check_bootstrap(c, role, &mut problems);
        let primary = primary_datacenter(c, &mut problems);
        let primary = primary.as_deref();
        let acl = crate::http::acl::AclSettings::from_config(
            c.acl.as_ref(),
            primary.filter(|p| *p != datacenter),
            &mut problems,
        );
        problems.extend(crate::watch::check_config(&c.watches));
        let gossip_key = gossip_key(c, &mut problems);
        let tls = self.load_tls(role, &datacenter, &domain, &mut problems);
        let dns = dns_options(c, &mut problems);
        check_isthmus(c, &mut problems);
        let ports = listen_ports(c, &mut problems);
        let https = match ports.https {
            Some(_) => self.load_https(&mut problems),
            None => None,
        };
        let gateways = match parse_gateways(c) {
            Ok(gateways) => gateways,
            Err(mut bad) => {
                problems.append(&mut bad);
                Vec::new()
            }
        };
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: self.path.display().to_string(),
                problems,
            });
        }
        Ok(ValidatedConfig {
            role,
            datacenter,
            node_name,
            bind_addr,
            client_addr,
            domain,
            data_dir: c.data_dir.as_deref().map(|d| self.resolve(d)),
            gossip_key,
            gossip_verify: gossip::keyfile::Verify {
                incoming: c.encrypt_verify_incoming.unwrap_or(true),
                outgoing: c.encrypt_verify_outgoing.unwrap_or(true),
            },
            tls,
            dns,
            gateways,
            ports,
            https,
            acl,
            http_max_conns_per_client: match c
                .limits
                .as_ref()
                .and_then(|l| l.http_max_conns_per_client)
                .unwrap_or(DEFAULT_HTTP_MAX_CONNS_PER_CLIENT)
            {
                0 => None,
                n => Some(n as usize),
            },
            ui: c
                .ui_config
                .as_ref()
                .and_then(|u| u.enabled)
                .unwrap_or(false),
            http_header_read_timeout: c
                .isthmus
                .as_ref()
                .and_then(|x| x.http_header_read_timeout)
                .map_or(crate::http::serve::HEADER_READ_TIMEOUT, |d| d.0),
            warnings,
        })
    }

    /// The HTTPS listener's TLS config: each of `tls.https`'s settings, else
    /// `tls.defaults`'s, as Consul takes them.
    fn load_https(
        &self,
        problems: &mut Vec<String>,
    ) -> Option<std::sync::Arc<rustls::ServerConfig>> {
        let tls = self.config.tls.clone().unwrap_or_default();
        let own = tls.https.unwrap_or_default();
        let defaults = tls.defaults.unwrap_or_default();
        let cert = own.cert_file.or(defaults.cert_file);
        let key = own.key_file.or(defaults.key_file);
        let ca = own.ca_file.or(defaults.ca_file);
        let verify_incoming = own
            .verify_incoming
            .or(defaults.verify_incoming)
            .unwrap_or(false);
        let (Some(cert), Some(key)) = (cert, key) else {
            problems.push(
                "ports.https is set but there is no certificate: give tls.https (or tls.defaults) cert_file and key_file".to_owned(),
            );
            return None;
        };
        if verify_incoming && ca.is_none() {
            problems.push(
                "tls.https.verify_incoming needs a ca_file (in tls.https or tls.defaults) to check client certificates against".to_owned(),
            );
            return None;
        }
        let read = |name: &str, problems: &mut Vec<String>| {
            let path = self.resolve(name);
            std::fs::read(&path)
                .map_err(|e| problems.push(format!("reading {}: {e}", path.display())))
                .ok()
        };
        let cert_pem = read(&cert, problems)?;
        let key_pem = read(&key, problems)?;
        let ca_pem = match (&ca, verify_incoming) {
            (Some(ca), true) => Some(read(ca, problems)?),
            _ => None,
        };
        match pki::https_server_config(&cert_pem, &key_pem, ca_pem.as_deref()) {
            Ok(config) => Some(std::sync::Arc::new(config)),
            Err(e) => {
                problems.push(format!("the HTTPS certificate: {e}"));
                None
            }
        }
    }

    fn load_tls(
        &self,
        role: Role,
        datacenter: &str,
        domain: &str,
        problems: &mut Vec<String>,
    ) -> Option<pki::NodeTls> {
        let defaults = self.config.tls.as_ref()?.defaults.as_ref()?;
        let (Some(ca), Some(cert), Some(key)) =
            (&defaults.ca_file, &defaults.cert_file, &defaults.key_file)
        else {
            problems.push("tls.defaults needs ca_file, cert_file and key_file together".to_owned());
            return None;
        };
        let read = |name: &str, problems: &mut Vec<String>| {
            let path = self.resolve(name);
            std::fs::read(&path)
                .map_err(|e| problems.push(format!("reading {}: {e}", path.display())))
                .ok()
        };
        let (Some(ca_pem), Some(cert_pem), Some(key_pem)) = (
            read(ca, problems),
            read(cert, problems),
            read(key, problems),
        ) else {
            return None;
        };
        let tls = match pki::NodeTls::from_pem(&ca_pem, &cert_pem, &key_pem) {
            Ok(tls) => tls,
            Err(e) => {
                problems.push(format!("loading TLS material: {e}"));
                return None;
            }
        };
        let own = tls.own_certificate();
        let matches = own.identities.iter().any(|identity| {
            identity.role == role && identity.datacenter == datacenter && identity.domain == domain
        });
        if !matches {
            let found: Vec<String> = own.identities.iter().map(ToString::to_string).collect();
            problems.push(format!(
                "{} is not a certificate for a {role} of {datacenter} (domain {domain}); it names {}. Issue one with `pki cert create --{role} --dc {datacenter}`",
                self.resolve(cert).display(),
                if found.is_empty() { "no Isthmus identity".to_owned() } else { found.join(", ") }
            ));
        }
        Some(tls)
    }
}
