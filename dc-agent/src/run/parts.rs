//! The pieces `run` wires together: the listeners, the banner, the leader's duties, the
//! data directory, made-up TLS and the DNS source.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use wire::Role;

use crate::metrics::Metrics;
use crate::server::Server;

use super::HTTP_DRAIN;

/// Serves the API on the HTTP and HTTPS listeners (either may be off) until `cancel`, then
/// lets requests in flight finish for at most [`HTTP_DRAIN`]: a blocking query
/// (consul-template holds one for minutes) or a monitor must not hold the agent up. Both
/// listeners count a client's connections against one `limits.http_max_conns_per_client`.
pub(super) async fn serve_api(
    http: Option<tokio::net::TcpListener>,
    https: Option<crate::http::tls_listener::TlsListener>,
    router: axum::Router,
    limits: crate::http::serve::ConnLimits,
    metrics: Arc<Metrics>,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let served = crate::http::serve::Served {
        router,
        limits,
        counts: crate::http::serve::ConnCounts::default(),
        metrics,
        cancel: cancel.clone(),
    };
    // Answers go out as written (the loop writes a head with its body, or a stream's parts
    // as they come): Nagle's algorithm would hold a second write for the client's ACK.
    use axum::serve::ListenerExt;
    let http = http.map(|listener| {
        listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        })
    });
    let http = served.clone().on(http);
    let https = served.on(https);
    let stopping = cancel.clone();
    tokio::select! {
        _ = async { tokio::join!(http, https) } => {}
        () = async move {
            stopping.cancelled().await;
            tokio::time::sleep(HTTP_DRAIN).await;
        } => {
            tracing::info!("requests still in flight (blocking queries) were cut short");
        }
    }
    Ok(())
}

/// What the agent prints at start, in Consul's layout.
pub(super) struct Banner<'a> {
    pub(super) node_id: u64,
    pub(super) node_name: &'a str,
    pub(super) datacenter: &'a str,
    pub(super) client_addr: std::net::IpAddr,
    pub(super) bind_addr: std::net::IpAddr,
    /// `Some` on a server.
    pub(super) bootstrap_expect: Option<u32>,
    pub(super) http_port: Option<u16>,
    pub(super) https_port: Option<u16>,
    pub(super) dns_port: Option<u16>,
    pub(super) serf_lan_port: u16,
    pub(super) server_port: u16,
    pub(super) data_dir: &'a std::path::Path,
    pub(super) authenticated: bool,
}

impl Banner<'_> {
    pub(super) fn text(&self) -> String {
        let shown = |port: Option<u16>| port.map_or("disabled".to_owned(), |p| p.to_string());
        let mut out = String::from("==> Starting Isthmus agent...\n");
        out.push_str(&format!(
            "               Version: '{}'\n",
            env!("CARGO_PKG_VERSION")
        ));
        out.push_str(&format!(
            "               Node ID: '{}'\n",
            wire::names::node_uuid(self.node_id)
        ));
        out.push_str(&format!("             Node name: '{}'\n", self.node_name));
        out.push_str(&format!("            Datacenter: '{}'\n", self.datacenter));
        match self.bootstrap_expect {
            Some(expect) => out.push_str(&format!(
                "                Server: true (Bootstrap expect: {expect})\n"
            )),
            None => out.push_str("                Server: false\n"),
        }
        out.push_str(&format!(
            "           Client Addr: [{}] (HTTP: {}, HTTPS: {}, DNS: {})\n",
            self.client_addr,
            shown(self.http_port),
            shown(self.https_port),
            shown(self.dns_port)
        ));
        let lan = self.serf_lan_port;
        if self.bootstrap_expect.is_some() {
            out.push_str(&format!(
                "          Cluster Addr: {} (LAN: {lan}, Server: {}/quic)\n",
                self.bind_addr, self.server_port
            ));
        } else {
            out.push_str(&format!(
                "          Cluster Addr: {} (LAN: {lan})\n",
                self.bind_addr
            ));
        }
        out.push_str(&format!(
            "              Data dir: {}\n",
            self.data_dir.display()
        ));
        if self.authenticated {
            out.push_str("                   TLS: mutual TLS, peers verified against the CA\n");
        } else {
            out.push_str("                   TLS: ENCRYPTED BUT PEERS ARE NOT AUTHENTICATED (no TLS material configured;\n");
            out.push_str("                        any host that reaches the server port can join). Render TLS with `topology`.\n");
        }
        out.push_str("\n==> Log data will now stream in as it occurs:\n");
        out
    }
}

/// The leader's duties on a server: membership into the catalog, tombstone GC, and the
/// agents' coordinates (when they are collected).
pub(super) fn leader_duties(
    lan: &crate::gossip::pool::Pool,
    handler: crate::rpc::messages::HttpHandler,
    datacenter: &str,
    metrics: &Arc<Metrics>,
    tombstone_ttl: Duration,
    coordinates: Option<&Arc<crate::server::coordinates::CoordinateQueue>>,
    initial_management: Option<String>,
) -> Vec<Box<dyn crate::server::leader::Duty>> {
    let mut duties: Vec<Box<dyn crate::server::leader::Duty>> = vec![
        Box::new(crate::server::serf_health::SerfReconcile {
            lan: lan.clone(),
            api: crate::internal::LocalApi::new(handler),
            datacenter: datacenter.to_owned(),
            readding: Default::default(),
        }),
        Box::new(crate::server::tombstone_gc::TombstoneGc::new(
            metrics.clone(),
            tombstone_ttl,
        )),
        Box::new(crate::server::sessions::SessionReaper {
            metrics: metrics.clone(),
        }),
    ];
    if let Some(secret) = initial_management {
        duties.push(Box::new(crate::server::acl_init::InitialManagement {
            secret,
            done: false,
        }));
    }
    if let Some(queue) = coordinates {
        duties.push(Box::new(crate::server::coordinates::CoordinateFlush {
            queue: queue.clone(),
        }));
    }
    duties
}

/// The data directory: the configured one, or with `-dev` a temporary one (kept as long as
/// the returned guard lives).
pub(super) fn data_dir_of(
    configured: Option<&std::path::PathBuf>,
    dev: bool,
) -> anyhow::Result<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    let (dir, temporary) = match (configured, dev) {
        (Some(dir), _) => (dir.clone(), None),
        (None, true) => {
            let temporary = tempfile::tempdir().context("creating a temporary data directory")?;
            (temporary.path().to_owned(), Some(temporary))
        }
        (None, false) => {
            bail!("an agent needs a data directory: pass -data-dir=DIR or set data_dir")
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The data directory holds the Raft log, snapshots, the keyring and registrations:
    // this user's only, as Consul's.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (mode 0700)", dir.display()))?;
    }
    Ok((dir, temporary))
}

/// TLS material made up at start for an agent configured without any: encrypted, peers not
/// authenticated (the banner and the log say so).
pub(super) fn ephemeral_tls(
    role: Role,
    datacenter: &str,
    domain: &str,
    node_name: &str,
    bind_addr: std::net::IpAddr,
) -> anyhow::Result<pki::NodeTls> {
    let request = pki::CertRequest {
        role,
        datacenter: datacenter.to_owned(),
        domain: domain.to_owned(),
        // A node name that is no DNS label (Consul allows `server_01`) stays out of the
        // certificate's names.
        node: wire::validate_dns_label(node_name)
            .is_ok()
            .then(|| node_name.to_owned()),
        ips: vec![bind_addr],
        dns_names: vec![],
    };
    Ok(pki::NodeTls::ephemeral(&request)?)
}

/// Where DNS answers come from: a server's own state (and views of other datacenters
/// through the gateways), or a client agent's view of the catalog.
pub(super) fn dns_source(
    server: Option<&Arc<Server>>,
    validated: &crate::config::ValidatedConfig,
    handler: crate::rpc::messages::HttpHandler,
    metrics: &Metrics,
    cancel: &CancellationToken,
) -> crate::dns::server::Source {
    match server {
        Some(server) => {
            if !validated.dns.allow_stale {
                tracing::warn!("dns_config.allow_stale = false applies to client agents; a server answers DNS from its own state (bounded by max_stale)");
            }
            let lagging = Arc::clone(server);
            crate::dns::server::Source::Local {
                state: server.state.clone(),
                // Not caught up since it started: as far behind as can be (see `read_gate`).
                lag: Arc::new(move || {
                    if lagging.caught_up() {
                        Duration::from_millis(lagging.last_contact_ms())
                    } else {
                        Duration::MAX
                    }
                }),
                max_stale: validated.dns.max_stale,
                remote: (!validated.gateways.is_empty()).then(|| {
                    crate::dns::view::RemoteView::new(
                        handler.clone(),
                        crate::dns::view::ViewSettings {
                            datacenter: validated.datacenter.clone(),
                            allow_stale: validated.dns.allow_stale,
                            max_stale: validated.dns.max_stale,
                        },
                        metrics,
                        cancel.child_token(),
                    )
                }),
            }
        }
        None => crate::dns::server::Source::Remote(crate::dns::view::RemoteView::new(
            handler.clone(),
            crate::dns::view::ViewSettings {
                datacenter: validated.datacenter.clone(),
                allow_stale: validated.dns.allow_stale,
                max_stale: validated.dns.max_stale,
            },
            metrics,
            cancel.child_token(),
        )),
    }
}
