//! What `topology render` writes, decided without touching the disk: the caller reads the
//! files that already exist (so keys are kept, never silently replaced) and writes the plan.
//!
//! Layout of the output directory:
//!
//! ```text
//! OUT/ca/ca.pem, ca-key.pem          the CA (generated once, then kept)
//! OUT/gossip.key                     the gossip key (generated once, then kept)
//! OUT/acl/tokens.json, management.token   with `[acl]`: the federation's first tokens
//! OUT/prometheus.yml                 scrapes every agent and gateway
//! OUT/<dc>/<node>/agent.json         dc-agent config (Consul's format); gateway.toml for gateways
//! OUT/<dc>/<node>/tls/ca.pem, cert.pem, key.pem
//! OUT/<dc>/<node>/isthmus-<dc>-<node>.service   systemd unit for a real machine
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pki::{CertRequest, CertificateAuthority, Validity};
use time::OffsetDateTime;
use wire::agent_config::{
    AgentConfig, IsthmusExtensions, Ports, TlsConfig, TlsDefaults, TlsInternalRpc,
    ISTHMUS_CONFIG_VERSION,
};
use wire::gateway_config::{GatewayConfig, GatewayTls, RemoteGateway, GATEWAY_CONFIG_VERSION};
use wire::Role;

use crate::model::{Datacenter, Node, Topology};

/// One file to write, relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Path under the output directory.
    pub path: PathBuf,
    /// Contents.
    pub contents: String,
    /// Unix mode (0600 for keys and for configs holding the gossip key).
    pub mode: u32,
}

/// Everything a render writes, and what it decided about keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderPlan {
    /// Files to write.
    pub files: Vec<PlannedFile>,
    /// What happened to the CA and the gossip key, for the user.
    pub notes: Vec<String>,
}

impl RenderPlan {
    /// Writes every file under `out` (directories made as needed); a file whose contents
    /// are already in place is left untouched.
    pub fn write_to(&self, out: &Path) -> anyhow::Result<()> {
        for planned in &self.files {
            write_file(&out.join(&planned.path), &planned.contents, planned.mode)?;
        }
        Ok(())
    }
}

/// Writes through a temporary file and a rename, so a key is never half-written, with the
/// mode set before any content lands.
fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::fs;
    use std::io::Write as _;
    if fs::read_to_string(path).is_ok_and(|current| current == contents) {
        return Ok(());
    }
    let dir = path.parent().context("output path has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = dir.join(format!(".{file_name}.tmp"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut handle = options
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        handle
            .set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", temporary.display()))?;
    }
    handle
        .write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", temporary.display()))?;
    handle
        .sync_all()
        .with_context(|| format!("syncing {}", temporary.display()))?;
    fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))?;
    Ok(())
}

/// Key material named by the topology file, read by the caller.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `ca.pem` and `ca-key.pem` from `tls.ca_dir`, when the file names one.
    pub ca: Option<(String, String)>,
    /// The key from `gossip.key_file`, when the file names one.
    pub gossip_key_file: Option<String>,
}

/// Why rendering is refused.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The output holds a CA other than the one the topology names.
    #[error("{path} holds a different CA than {source_dir}; refusing to replace it\n  = help: remove {path} to switch CAs (every node certificate will be reissued)")]
    CaMismatch {
        /// The CA file in the output.
        path: String,
        /// The CA directory the topology names.
        source_dir: String,
    },
    /// The output holds a gossip key other than the one the topology names.
    #[error("{path} holds a different gossip key than the topology file; refusing to replace it\n  = help: rotate keys on a running federation with `dc-agent keyring`, or remove {path} if nothing runs yet")]
    GossipKeyMismatch {
        /// The key file in the output.
        path: String,
    },
    /// The output holds a CA certificate without its key (it came from a `tls.ca_dir`).
    #[error("{0} holds a CA whose key is not in the output (was it named by tls.ca_dir?); refusing to replace it\n  = help: name that CA again with `ca_dir`, or remove the output's ca/ directory to generate a new CA (every node certificate will be reissued)")]
    CaWithoutKey(String),
    /// The output holds a CA key without its certificate.
    #[error("{0} exists without ca/ca.pem; restore ca/ca.pem, or remove ca/ to generate a new CA")]
    KeyWithoutCa(String),
    /// An existing file does not parse.
    #[error("{path}: {message}")]
    BadExisting {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Certificate generation failed.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
}

/// The directory of one node under the output directory.
pub fn node_dir(dc: &str, node: &str) -> PathBuf {
    Path::new(dc).join(node)
}

/// The config file of a node, relative to the output directory.
pub fn config_path(dc: &str, node: &Node) -> PathBuf {
    let file = if node.role == Role::Gateway {
        "gateway.toml"
    } else {
        "agent.json"
    };
    node_dir(dc, &node.name).join(file)
}

/// Plans the render.
///
/// `existing` reads a file under the output directory (`None` when absent); `fresh_gossip_key`
/// is used only when a key must be generated; `now` dates certificates.
pub fn plan(
    topology: &Topology,
    sources: &Sources,
    existing: &dyn Fn(&Path) -> Option<String>,
    fresh_gossip_key: &str,
    now: OffsetDateTime,
) -> Result<RenderPlan, RenderError> {
    let mut plan = RenderPlan {
        files: Vec::new(),
        notes: Vec::new(),
    };
    let ca = plan.ca(topology, sources, existing, now)?;
    let ca_subject = pki::inspect_pem(ca.cert_pem().as_bytes())?.subject;
    let gossip_key = plan.gossip_key(topology, sources, existing, fresh_gossip_key)?;
    // The fresh key's bytes seed any ACL secret not made yet.
    let acl = crate::acl::secrets(topology, existing, fresh_gossip_key.as_bytes())?;
    if let Some(secrets) = &acl {
        let text = serde_json::to_string_pretty(secrets).unwrap_or_default();
        plan.file(crate::acl::TOKENS_FILE, format!("{text}\n"), 0o600);
        plan.file(
            crate::acl::MANAGEMENT_FILE,
            format!("{}\n", secrets.management.secret_id),
            0o600,
        );
    }
    let validity = Validity::days_from(now, topology.cert_days)?;
    let (mut reissued, mut kept) = (0usize, 0usize);
    for dc in &topology.datacenters {
        for node in &dc.nodes {
            let issued = NodeIssue {
                ca: &ca,
                ca_subject: &ca_subject,
                validity,
                now,
                gossip_key: &gossip_key,
                acl: acl.as_ref(),
            };
            if plan.node(topology, dc, node, existing, &issued)? {
                kept += 1;
            } else {
                reissued += 1;
            }
        }
    }
    plan.notes
        .push(format!("node certificates: {reissued} issued, {kept} kept"));
    plan.file("prometheus.yml", prometheus_config(topology), 0o644);
    plan.file("isthmus-alerts.yml", ALERT_RULES.to_owned(), 0o644);
    Ok(plan)
}

/// What every node's render shares: what its certificate is checked against or issued
/// with, the gossip key and the ACL secrets.
struct NodeIssue<'a> {
    ca: &'a CertificateAuthority,
    ca_subject: &'a str,
    validity: Validity,
    now: OffsetDateTime,
    gossip_key: &'a str,
    acl: Option<&'a crate::acl::AclSecrets>,
}

impl RenderPlan {
    fn file(&mut self, path: impl Into<PathBuf>, contents: String, mode: u32) {
        self.files.push(PlannedFile {
            path: path.into(),
            contents,
            mode,
        });
    }

    /// The CA: the named one, else the one already in the output, else a new one. A named
    /// CA's key stays where it is, so the output then holds only ca.pem.
    fn ca(
        &mut self,
        topology: &Topology,
        sources: &Sources,
        existing: &dyn Fn(&Path) -> Option<String>,
        now: OffsetDateTime,
    ) -> Result<CertificateAuthority, RenderError> {
        let out_cert = existing(Path::new("ca/ca.pem"));
        let out_key = existing(Path::new("ca/ca-key.pem"));
        match (&sources.ca, out_cert, out_key) {
            (Some((cert, key)), out_cert, _) => {
                if out_cert.is_some_and(|out_cert| out_cert.trim() != cert.trim()) {
                    let source_dir = match &topology.ca {
                        crate::model::CaSource::Dir(dir) => dir.display().to_string(),
                        crate::model::CaSource::Generate => "the topology's CA".to_owned(),
                    };
                    return Err(RenderError::CaMismatch {
                        path: "ca/ca.pem".to_owned(),
                        source_dir,
                    });
                }
                self.notes
                    .push("CA: using the CA named by tls.ca_dir".to_owned());
                self.file("ca/ca.pem", cert.clone(), 0o644);
                Ok(CertificateAuthority::from_pem(cert, key)?)
            }
            (None, Some(cert), Some(key)) => {
                self.notes
                    .push("CA: kept the existing ca/ca.pem".to_owned());
                let ca = CertificateAuthority::from_pem(&cert, &key).map_err(|e| {
                    RenderError::BadExisting {
                        path: "ca/ca.pem".to_owned(),
                        message: e.to_string(),
                    }
                })?;
                self.file("ca/ca.pem", cert, 0o644);
                self.file("ca/ca-key.pem", key, 0o600);
                Ok(ca)
            }
            (None, Some(_), None) => Err(RenderError::CaWithoutKey("ca/ca.pem".to_owned())),
            (None, None, Some(_)) => Err(RenderError::KeyWithoutCa("ca/ca-key.pem".to_owned())),
            (None, None, None) => {
                self.notes.push("CA: generated a new CA in ca/".to_owned());
                let ca = CertificateAuthority::create(
                    &topology.domain,
                    Validity::days_from(now, topology.ca_days)?,
                )?;
                self.file("ca/ca.pem", ca.cert_pem().to_owned(), 0o644);
                self.file("ca/ca-key.pem", ca.key_pem().to_owned(), 0o600);
                Ok(ca)
            }
        }
    }

    /// The gossip key: the named one, else the one already in the output, else a new one.
    fn gossip_key(
        &mut self,
        topology: &Topology,
        sources: &Sources,
        existing: &dyn Fn(&Path) -> Option<String>,
        fresh_gossip_key: &str,
    ) -> Result<String, RenderError> {
        let named_key = match &topology.gossip_key {
            crate::model::GossipKeySource::Inline(key) => Some(key.trim().to_owned()),
            crate::model::GossipKeySource::File(_) => sources
                .gossip_key_file
                .as_ref()
                .map(|k| k.trim().to_owned()),
            crate::model::GossipKeySource::Generate => None,
        };
        let out_key = existing(Path::new("gossip.key")).map(|k| k.trim().to_owned());
        let bad = |path: &str| {
            let path = path.to_owned();
            move |message| RenderError::BadExisting { path, message }
        };
        let gossip_key = match (named_key, out_key) {
            (Some(named), Some(out)) if named != out => {
                return Err(RenderError::GossipKeyMismatch {
                    path: "gossip.key".to_owned(),
                })
            }
            (Some(named), _) => {
                crate::model::check_gossip_key(&named).map_err(bad("gossip key"))?;
                self.notes
                    .push("gossip key: using the key named by the topology".to_owned());
                named
            }
            (None, Some(out)) => {
                crate::model::check_gossip_key(&out).map_err(bad("gossip.key"))?;
                self.notes
                    .push("gossip key: kept the existing gossip.key".to_owned());
                out
            }
            (None, None) => {
                self.notes
                    .push("gossip key: generated a new key in gossip.key".to_owned());
                fresh_gossip_key.to_owned()
            }
        };
        self.file("gossip.key", format!("{gossip_key}\n"), 0o600);
        Ok(gossip_key)
    }

    /// A node's certificate (kept when still good: returns true), its config and its
    /// systemd unit.
    fn node(
        &mut self,
        topology: &Topology,
        dc: &crate::model::Datacenter,
        node: &Node,
        existing: &dyn Fn(&Path) -> Option<String>,
        issue: &NodeIssue<'_>,
    ) -> Result<bool, RenderError> {
        let dir = node_dir(&dc.name, &node.name);
        let request = CertRequest {
            role: node.role,
            datacenter: dc.name.clone(),
            domain: topology.domain.clone(),
            node: Some(node.name.clone()),
            ips: vec![node.address],
            dns_names: vec![],
        };
        let cert_path = dir.join("tls/cert.pem");
        let key_path = dir.join("tls/key.pem");
        let reusable = match (existing(&cert_path), existing(&key_path)) {
            (Some(cert), Some(key)) if still_good(&cert, &request, issue.ca_subject, issue.now) => {
                Some((cert, key))
            }
            _ => None,
        };
        let kept = reusable.is_some();
        let (cert_pem, key_pem) = match reusable {
            Some(pair) => pair,
            None => {
                let issued = issue.ca.issue(&request, issue.validity)?;
                (issued.cert_pem, issued.key_pem)
            }
        };
        self.file(
            dir.join("tls/ca.pem"),
            issue.ca.cert_pem().to_owned(),
            0o644,
        );
        self.file(cert_path, cert_pem, 0o644);
        self.file(key_path, key_pem, 0o600);
        let config = match node.role {
            Role::Gateway => gateway_config(topology, dc, node),
            Role::Server | Role::Client => {
                agent_config(topology, dc, node, issue.gossip_key, issue.acl)
            }
        };
        self.file(config_path(&dc.name, node), config, 0o600);
        self.file(
            dir.join(format!("isthmus-{}-{}.service", dc.name, node.name)),
            systemd_unit(dc, node),
            0o644,
        );
        Ok(kept)
    }
}

/// An existing node certificate is kept when the CA signed it, its SANs are the ones wanted
/// and it has more than 30 days left.
fn still_good(
    cert_pem: &str,
    request: &CertRequest,
    ca_subject: &str,
    now: OffsetDateTime,
) -> bool {
    let Ok(info) = pki::inspect_pem(cert_pem.as_bytes()) else {
        return false;
    };
    info.issuer == ca_subject
        && info.sans == request.subject_alt_names()
        && info.not_after - now > time::Duration::days(30)
}

fn host_port(address: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(address, port).to_string()
}

fn agent_config(
    topology: &Topology,
    dc: &Datacenter,
    node: &Node,
    gossip_key: &str,
    acl: Option<&crate::acl::AclSecrets>,
) -> String {
    let is_server = node.role == Role::Server;
    let retry_join = dc
        .nodes_of(Role::Server)
        .filter(|server| server.name != node.name)
        .map(|server| {
            if server.ports.serf_lan == wire::ports::SERF_LAN {
                server.address.to_string()
            } else {
                host_port(server.address, server.ports.serf_lan)
            }
        })
        .collect();
    let services = dc
        .services
        .iter()
        .filter(|service| service.node == node.name)
        .map(|service| service.definition.clone())
        .collect();
    let config = AgentConfig {
        datacenter: Some(dc.name.clone()),
        primary_datacenter: Some(topology.primary_datacenter.clone()),
        domain: Some(topology.domain.clone()),
        // Set through `extra` (`[defaults.extra] recursors = [...]`).
        recursors: Vec::new(),
        dns_config: None,
        node_name: Some(node.name.clone()),
        server: Some(is_server),
        bootstrap_expect: is_server
            .then(|| u32::try_from(dc.nodes_of(Role::Server).count()).unwrap_or(u32::MAX)),
        bind_addr: Some(node.address.to_string()),
        client_addr: Some(node.address.to_string()),
        advertise_addr: None,
        ports: Some(Ports {
            dns: Some(i32::from(node.ports.dns)),
            http: Some(i32::from(node.ports.http)),
            serf_lan: Some(i32::from(node.ports.serf_lan)),
            server: is_server.then_some(i32::from(node.ports.server)),
            https: topology.https.then_some(i32::from(node.ports.https)),
        }),
        retry_join,
        data_dir: Some("data".to_owned()),
        encrypt: Some(gossip_key.to_owned()),
        encrypt_verify_incoming: None,
        encrypt_verify_outgoing: None,
        log_level: Some(node.log_level.clone()),
        enable_script_checks: None,
        disable_remote_exec: None,
        leave_on_terminate: None,
        skip_leave_on_interrupt: None,
        check_update_interval: None,
        raft_snapshot_threshold: None,
        node_meta: Default::default(),
        tls: Some(TlsConfig {
            defaults: Some(TlsDefaults {
                ca_file: Some("tls/ca.pem".to_owned()),
                cert_file: Some("tls/cert.pem".to_owned()),
                key_file: Some("tls/key.pem".to_owned()),
                verify_incoming: Some(true),
                verify_outgoing: Some(true),
            }),
            internal_rpc: Some(TlsInternalRpc {
                verify_server_hostname: Some(true),
            }),
            // The API's HTTPS takes the node certificate from `defaults`; its clients (the
            // CLI, browsers) show no certificate of their own.
            https: topology.https.then(|| TlsDefaults {
                verify_incoming: Some(false),
                ..TlsDefaults::default()
            }),
        }),
        services,
        checks: Vec::new(),
        // Every server serves the web UI (`/ui/` on its HTTP port), as `-ui` does.
        ui_config: is_server.then_some(wire::agent_config::UiConfig {
            enabled: Some(true),
        }),
        watches: Vec::new(),
        bootstrap: None,
        pid_file: None,
        acl: acl.and_then(|secrets| crate::acl::agent_acl(topology, dc, node, secrets)),
        // Set through `extra` (`[defaults.extra.limits]`).
        limits: None,
        isthmus: Some(IsthmusExtensions {
            config_version: ISTHMUS_CONFIG_VERSION,
            gateways: dc
                .nodes_of(Role::Gateway)
                .map(|gw| host_port(gw.address, gw.ports.gateway))
                .collect(),
            tombstone_ttl: None,
            http_header_read_timeout: None,
        }),
    };
    let mut value = serde_json::to_value(&config).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut value {
        for (key, extra) in &node.extra {
            map.insert(key.clone(), extra.clone());
        }
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

fn gateway_config(topology: &Topology, dc: &Datacenter, node: &Node) -> String {
    let config = GatewayConfig {
        config_version: GATEWAY_CONFIG_VERSION,
        datacenter: dc.name.clone(),
        primary_datacenter: topology.primary_datacenter.clone(),
        domain: topology.domain.clone(),
        node_name: node.name.clone(),
        bind_addr: node.address.to_string(),
        port: node.ports.gateway,
        advertise_addr: None,
        metrics_port: node.ports.metrics,
        data_dir: "data".to_owned(),
        log_level: node.log_level.clone(),
        tls: GatewayTls {
            ca_file: "tls/ca.pem".to_owned(),
            cert_file: "tls/cert.pem".to_owned(),
            key_file: "tls/key.pem".to_owned(),
        },
        servers: dc
            .nodes_of(Role::Server)
            .map(|s| host_port(s.address, s.ports.server))
            .collect(),
        remote_gateways: topology
            .datacenters
            .iter()
            .filter(|other| other.name != dc.name)
            .flat_map(|other| {
                other.nodes_of(Role::Gateway).map(|gw| RemoteGateway {
                    datacenter: other.name.clone(),
                    node_name: gw.name.clone(),
                    address: host_port(gw.address, gw.ports.gateway),
                })
            })
            .collect(),
    };
    let body = toml::to_string_pretty(&config).unwrap_or_default();
    format!("# wan-gateway {} of {}; rendered by `topology render`. Relative paths are from this file's directory.\n{body}", node.name, dc.name)
}

fn systemd_unit(dc: &Datacenter, node: &Node) -> String {
    let id = format!("{}-{}", dc.name, node.name);
    let (binary, config) = match node.role {
        Role::Gateway => ("wan-gateway", "gateway.toml"),
        Role::Server | Role::Client => ("dc-agent", "agent.json"),
    };
    let start = match node.role {
        Role::Gateway => format!("/usr/local/bin/wan-gateway run --config /etc/isthmus/{id}/{config} --data-dir /var/lib/isthmus/{id}"),
        Role::Server | Role::Client => format!("/usr/local/bin/dc-agent agent --config /etc/isthmus/{id}/{config} -data-dir=/var/lib/isthmus/{id}"),
    };
    format!(
        "# Isthmus {binary} for node {node} ({role}) of {dc}.\n\
         # Install: copy this node's directory to /etc/isthmus/{id}/ and {binary} to /usr/local/bin/,\n\
         # make the service's user once (useradd --system --home-dir /var/lib/isthmus --shell /usr/sbin/nologin isthmus),\n\
         # let it read its config (chgrp -R isthmus /etc/isthmus/{id} && chmod -R g+rX /etc/isthmus/{id}),\n\
         # then: cp isthmus-{id}.service /etc/systemd/system/ && systemctl enable --now isthmus-{id}\n\
         [Unit]\n\
         Description=Isthmus {binary} {node} ({role}, {dc})\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart={start}\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         KillSignal=SIGTERM\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         LimitNOFILE=65536\n\
         StateDirectory=isthmus/{id}\n\
         StateDirectoryMode=0700\n\
         User=isthmus\n\
         Group=isthmus\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=full\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        node = node.name,
        role = node.role,
        dc = dc.name,
    )
}

/// The alert rules shipped in `grafana/`, written next to `prometheus.yml`.
const ALERT_RULES: &str = include_str!("../../grafana/isthmus-alerts.yml");

fn prometheus_config(topology: &Topology) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Prometheus scrape config for the whole federation; rendered by `topology render`."
    );
    let _ = writeln!(
        out,
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n"
    );
    let _ = writeln!(out, "rule_files:\n  - isthmus-alerts.yml\n");
    let _ = writeln!(out, "scrape_configs:");
    let _ = writeln!(out, "  - job_name: isthmus-agents");
    let _ = writeln!(out, "    metrics_path: /v1/agent/metrics");
    let _ = writeln!(out, "    params:\n      format: [prometheus]");
    let _ = writeln!(out, "    static_configs:");
    for dc in &topology.datacenters {
        for node in dc.nodes.iter().filter(|n| n.role != Role::Gateway) {
            let _ = writeln!(
                out,
                "      - targets: [\"{}\"]",
                host_port(node.address, node.ports.http)
            );
            let _ = writeln!(
                out,
                "        labels: {{dc: \"{}\", node: \"{}\", role: \"{}\"}}",
                dc.name, node.name, node.role
            );
        }
    }
    let _ = writeln!(out, "  - job_name: isthmus-gateways");
    let _ = writeln!(out, "    metrics_path: /metrics");
    let gateways: Vec<(&Datacenter, &Node)> = topology
        .datacenters
        .iter()
        .flat_map(|dc| dc.nodes_of(Role::Gateway).map(move |node| (dc, node)))
        .collect();
    if gateways.is_empty() {
        let _ = writeln!(out, "    static_configs: []");
    } else {
        let _ = writeln!(out, "    static_configs:");
        for (dc, node) in gateways {
            let _ = writeln!(
                out,
                "      - targets: [\"{}\"]",
                host_port(node.address, node.ports.metrics)
            );
            let _ = writeln!(
                out,
                "        labels: {{dc: \"{}\", node: \"{}\", role: \"gateway\"}}",
                dc.name, node.name
            );
        }
    }
    out
}
