//! Running an agent: validate the configuration, start the server, the HTTP API and the
//! metrics, and stop everything on SIGINT/SIGTERM or `/v1/agent/leave`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::agent_config::AgentConfig;
use wire::Role;

use crate::config::LoadedConfig;
use crate::http::{AgentInfo, Api, Backend};
use crate::metrics::Metrics;
use crate::server::{Server, ServerSettings};

/// An agent to run.
pub struct RunOptions {
    /// The merged configuration.
    pub config: AgentConfig,
    /// `-dev`: one server, temporary data, ephemeral TLS.
    pub dev: bool,
    /// Where the configuration came from, for messages.
    pub origin: String,
    /// Reads the configuration again (`reload`, SIGHUP).
    pub reload: ConfigSource,
    /// The log lines `/v1/agent/monitor` streams (fed by the log subscriber).
    pub logs: crate::monitor::LogStream,
}

/// Reads the agent's configuration from its files and flags.
pub type ConfigSource = Arc<dyn Fn() -> Result<AgentConfig, String> + Send + Sync>;

/// Re-reads the configuration and applies its services and checks; returns how many changed.
pub type Reloader = Arc<dyn Fn() -> Result<usize, String> + Send + Sync>;

/// Fills in what `-dev` implies, leaving anything set explicitly alone.
pub fn apply_dev_defaults(config: &mut AgentConfig) {
    config.server = Some(true);
    config.bootstrap_expect.get_or_insert(1);
    config
        .bind_addr
        .get_or_insert_with(|| "127.0.0.1".to_owned());
    config
        .client_addr
        .get_or_insert_with(|| "127.0.0.1".to_owned());
    // Consul's default node name is the host name, whatever its characters (a name that is
    // not a DNS label is only warned about).
    config
        .node_name
        .get_or_insert_with(|| crate::config::host_name().unwrap_or_else(|| "dev".to_owned()));
}

async fn resolve_join(entry: &str, server_port: u16) -> anyhow::Result<Vec<SocketAddr>> {
    // Consul's retry_join names gossip addresses: the host is used both for gossip (on the
    // serf_lan port) and, until servers are found through gossip, for Raft discovery (on
    // the server port).
    let host = match entry.parse::<SocketAddr>() {
        Ok(addr) => return Ok(vec![SocketAddr::new(addr.ip(), server_port)]),
        Err(_) => entry
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map_or(entry, |(host, _)| host),
    };
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(vec![SocketAddr::new(ip, server_port)]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, server_port))
        .await
        .with_context(|| format!("resolving retry_join address {entry:?}"))?
        .collect();
    Ok(found)
}

/// How long requests in flight may still finish once the agent stops.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// Runs the agent until it is told to stop.
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let loaded = LoadedConfig {
        path: options.origin.clone().into(),
        base_dir: ".".into(),
        config: options.config.clone(),
    };
    let mut validated = loaded.validate()?;
    let is_server = validated.role == Role::Server;
    let config = &options.config;
    for warning in &validated.warnings {
        tracing::warn!("{warning}");
    }
    let server_port = validated.ports.server;
    let http_port = validated.ports.http;
    let dns_port = validated.ports.dns;

    // A `-dev` agent without a data directory gets a temporary one, removed when it stops.
    let (data_dir, _temporary_dir) = data_dir_of(validated.data_dir.as_ref(), options.dev)?;

    let metrics = Arc::new(Metrics::new()?);
    let mut tls = match validated.tls.take() {
        Some(tls) => tls,
        None => ephemeral_tls(
            validated.role,
            &validated.datacenter,
            &validated.domain,
            &validated.node_name,
            validated.bind_addr,
        )?,
    };
    tls.set_rejection_observer(crate::metrics::rejection_observer(metrics.clone()));
    let authenticated = tls.authenticates_peers();

    let serf_lan_port = validated.ports.serf_lan;
    let mut retry_join = Vec::new();
    let mut gossip_seeds = Vec::new();
    for entry in &config.retry_join {
        for addr in resolve_join(entry, server_port).await? {
            gossip_seeds.push(SocketAddr::new(addr.ip(), serf_lan_port));
            retry_join.push(addr);
        }
    }
    let rpc_addr = SocketAddr::new(validated.bind_addr, server_port);
    let http_addr = http_port.map(|port| SocketAddr::new(validated.client_addr, port));

    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    let bootstrap_expect = match config.bootstrap {
        Some(true) => config.bootstrap_expect.unwrap_or(1),
        _ => config.bootstrap_expect.unwrap_or(0),
    };
    let dc_link_client = match &validated.gateways[..] {
        [] => None,
        _ if is_server => Some(crate::wan::client_config(
            &tls,
            &validated.datacenter,
            &validated.domain,
        )?),
        _ => None,
    };
    // A server starts Raft; a client agent only opens a QUIC endpoint to dial the servers
    // from (an ephemeral port: it listens for nothing on QUIC).
    let (server, client_transport) = if is_server {
        let settings = ServerSettings {
            node_name: validated.node_name.clone(),
            datacenter: validated.datacenter.clone(),
            domain: validated.domain.clone(),
            rpc_addr,
            data_dir: data_dir.clone(),
            bootstrap_expect,
            retry_join: retry_join.clone(),
            tls,
            snapshot_threshold: config.raft_snapshot_threshold.unwrap_or(16_384).max(1),
        };
        let server = Server::start(settings, &tasks, &cancel).await?;
        tasks.spawn(crate::metrics::follow_raft(
            server.clone(),
            metrics.clone(),
            cancel.child_token(),
        ));
        (Some(server), None)
    } else {
        let transport = crate::rpc::transport::Transport::bind(
            SocketAddr::new(validated.bind_addr, 0),
            false,
            &tls,
            &validated.datacenter,
            &validated.domain,
        )
        .context("opening the QUIC endpoint to the servers")?;
        (None, Some(transport))
    };
    let node_id = match &server {
        Some(server) => server.id,
        None => crate::server::node_id(&data_dir)?,
    };
    let keyring = crate::gossip::keyfile::open(&data_dir, validated.gossip_key.as_deref())?;
    let lan = crate::gossip::pool::start(
        crate::gossip::pool::NodeId {
            pool: crate::gossip::pool::PoolKind::Lan,
            addr: SocketAddr::new(validated.bind_addr, serf_lan_port),
            bump: crate::unix_ms(),
            name: validated.node_name.clone(),
            server: is_server,
            rpc_port: if is_server { server_port } else { 0 },
            dc: validated.datacenter.clone(),
            build: env!("CARGO_PKG_VERSION").to_owned(),
        },
        keyring.clone(),
        gossip_seeds,
        metrics.clone(),
        cancel.child_token(),
    )
    .await?;
    if let Some(server) = &server {
        let _ = server.lan.set(lan.clone());
    }
    let backend = match (&server, client_transport) {
        (Some(server), _) => Backend::Server(server.clone()),
        (None, transport) => Backend::Client(Arc::new(crate::servers::ServerLink::new(
            transport.context("a client agent without its QUIC endpoint")?,
            lan.clone(),
            validated.datacenter.clone(),
            retry_join.clone(),
            metrics.clone(),
        ))),
    };
    let dns_settings = crate::dns::answer::Settings {
        domain: validated.domain.clone(),
        datacenter: validated.datacenter.clone(),
        service_ttl: validated.dns.service_ttl.clone(),
        node_ttl: validated.dns.node_ttl,
        only_passing: validated.dns.only_passing,
        max_records: validated.dns.a_record_limit,
    };

    // The agent's own services and checks: from the config files now, from /v1/agent later.
    let local = crate::local::LocalAgent::new(
        crate::local::LocalSettings {
            node: validated.node_name.clone(),
            node_id: wire::names::node_uuid(node_id),
            address: validated.bind_addr.to_string(),
            datacenter: validated.datacenter.clone(),
            node_meta: config.node_meta.clone(),
            script_checks: config.enable_script_checks.unwrap_or(false),
            persist: Some(crate::persist::Persisted::new(&data_dir)),
            check_update_interval: config
                .check_update_interval
                .map_or(Duration::from_secs(300), |d| d.0),
        },
        cancel.child_token(),
    );
    local
        .load_config_services(&config.services)
        .and_then(|_| local.load_config_checks(&config.checks))
        .map_err(|e| anyhow::anyhow!("{e} (in {})", options.origin))?;
    let (services, checks) = local.restore();
    if services + checks > 0 {
        tracing::info!(
            services,
            checks,
            "restored the services and checks registered through the API before the restart"
        );
    }
    let dc_links = match (&server, dc_link_client) {
        (Some(server), Some(client)) => Some(crate::wan::DcLinks::start(
            server.clone(),
            client,
            &validated.domain,
            validated.gateways.clone(),
            metrics.wan_datagrams_dropped.clone(),
            cancel.child_token(),
        )),
        _ => None,
    };
    let wan = dc_links.as_ref().map(|links| {
        crate::gossip::wan::start(
            crate::gossip::wan::WanSettings {
                node_name: validated.node_name.clone(),
                datacenter: validated.datacenter.clone(),
                rpc_addr,
            },
            links.clone(),
            lan.clone(),
            keyring.clone(),
            Arc::new(crate::metrics::WanEvents(metrics.clone())),
            cancel.child_token(),
        )
    });
    let reloader: Reloader = {
        let local = local.clone();
        let source = options.reload.clone();
        let dc_links = dc_links.clone();
        Arc::new(move || {
            let config = source()?;
            // Check everything before changing anything.
            let gateways = crate::config::parse_gateways(&config).map_err(|p| p.join("; "))?;
            let mut changed = local.load_config_services(&config.services)?;
            changed += local.load_config_checks(&config.checks)?;
            match &dc_links {
                Some(links) => {
                    let (added, removed) = links.set_gateways(&gateways);
                    if added + removed > 0 {
                        tracing::info!(added, removed, "isthmus.gateways reloaded");
                    }
                    changed += added + removed;
                }
                None if !gateways.is_empty() => tracing::warn!(
                    "isthmus.gateways is set now, but this agent started without gateways (or is a client agent): a server needs a restart to start its dc-links"
                ),
                None => {}
            }
            tracing::info!(
                changed,
                "configuration reloaded (services, checks and isthmus.gateways; other settings need a restart)"
            );
            Ok(changed)
        })
    };
    #[cfg(unix)]
    {
        let reloader = reloader.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = hangups.recv() => {
                        if let Err(e) = reloader() {
                            tracing::warn!(error = %e, "reload failed; the running configuration is unchanged");
                        }
                    }
                }
            }
        });
    }
    let coordinate_queue = server
        .as_ref()
        .map(|_| Arc::new(crate::server::coordinates::CoordinateQueue::default()));
    let api = Api {
        backend: backend.clone(),
        agent: Arc::new(AgentInfo {
            node_name: validated.node_name.clone(),
            datacenter: validated.datacenter.clone(),
            primary_datacenter: config
                .primary_datacenter
                .clone()
                .unwrap_or_else(|| validated.datacenter.clone()),
            domain: validated.domain.clone(),
            address: validated.bind_addr.to_string(),
            http_addr: http_addr.map(|a| a.to_string()).unwrap_or_default(),
            server: is_server,
            dev: options.dev,
            node_id: wire::names::node_uuid(node_id),
            debug_config: serde_json::json!({
                "Datacenter": validated.datacenter,
                "PrimaryDatacenter": config.primary_datacenter.clone().unwrap_or_else(|| validated.datacenter.clone()),
                "NodeName": validated.node_name,
                "NodeID": wire::names::node_uuid(node_id),
                "NodeMeta": config.node_meta,
                "ServerMode": is_server,
                "BootstrapExpect": bootstrap_expect,
                "DevMode": options.dev,
                "BindAddr": validated.bind_addr.to_string(),
                "AdvertiseAddrLAN": config.advertise_addr.clone().unwrap_or_else(|| validated.bind_addr.to_string()),
                "ClientAddrs": [validated.client_addr.to_string()],
                "DNSDomain": validated.domain,
                "DNSPort": dns_port.map_or(-1, i32::from),
                "HTTPPort": http_port.map_or(-1, i32::from),
                "HTTPSPort": -1,
                "GRPCPort": -1,
                "GRPCTLSPort": -1,
                "SerfPortLAN": serf_lan_port,
                "SerfPortWAN": -1,
                "ServerPort": server_port,
                "DataDir": data_dir.display().to_string(),
                "RetryJoinLAN": config.retry_join,
                "DNSRecursors": config.recursors,
                "DNSOnlyPassing": validated.dns.only_passing,
                "DNSAllowStale": validated.dns.allow_stale,
                "EnableScriptChecks": config.enable_script_checks.unwrap_or(false),
                "EncryptKey": "hidden",
                "LogLevel": config.log_level.clone().unwrap_or_else(|| "info".to_owned()),
                "Services": config.services.len(),
                "Checks": config.checks.len(),
                "Version": env!("CARGO_PKG_VERSION"),
            }),
        }),
        metrics: metrics.clone(),
        local: local.clone(),
        reload: reloader,
        lan: lan.clone(),
        shutdown: cancel.clone(),
        dc_links,
        wan: wan.clone(),
        coordinates: coordinate_queue.clone(),
        logs: options.logs.clone(),
    };
    let router = crate::http::router(api);
    let catalog_source = match &server {
        Some(server) => {
            let _ = server
                .http_handler
                .set(crate::http::forward_handler(router.clone()));
            let duties = leader_duties(
                &lan,
                crate::http::forward_handler(router.clone()),
                &validated.datacenter,
                &metrics,
                config
                    .isthmus
                    .as_ref()
                    .and_then(|x| x.tombstone_ttl)
                    .map_or(crate::server::tombstone_gc::DEFAULT_TTL, |d| d.0),
                coordinate_queue.as_ref(),
            );
            tasks.spawn(crate::server::leader::run(
                server.clone(),
                duties,
                cancel.child_token(),
            ));
            crate::local::CatalogSource::Local(server.state.clone())
        }
        None => crate::local::CatalogSource::Remote,
    };
    tasks.spawn(crate::server::coordinates::push_loop(
        lan.clone(),
        crate::http::forward_handler(router.clone()),
        cancel.child_token(),
    ));
    tasks.spawn(crate::local::anti_entropy(
        local.clone(),
        catalog_source,
        crate::http::forward_handler(router.clone()),
        cancel.child_token(),
    ));
    let dns_source = dns_source(
        server.as_ref(),
        &validated,
        crate::http::forward_handler(router.clone()),
        &metrics,
        &cancel,
    );
    match dns_port {
        Some(port) => {
            crate::dns::server::serve(
                SocketAddr::new(validated.client_addr, port),
                dns_source,
                dns_settings,
                crate::dns::server::Recursion {
                    recursors: validated.dns.recursors.clone(),
                    timeout: validated.dns.recursor_timeout,
                },
                metrics.dns_queries.clone(),
                cancel.child_token(),
            )
            .await?
        }
        None => drop((dns_source, dns_settings)),
    }
    let listener = match http_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP port {addr}"))?,
        ),
        None => None,
    };
    let https_listener = match (validated.ports.https, &validated.https) {
        (Some(port), Some(config)) => {
            let addr = SocketAddr::new(validated.client_addr, port);
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTPS port {addr}"))?;
            Some(crate::http::tls_listener::TlsListener::new(
                tcp,
                config.clone(),
                metrics.https_handshake_failures.clone(),
                cancel.child_token(),
            )?)
        }
        _ => None,
    };
    if !authenticated {
        tracing::warn!(
            "no TLS material configured: QUIC is encrypted but peers are not authenticated"
        );
    }
    let banner = Banner {
        node_id,
        node_name: &validated.node_name,
        datacenter: &validated.datacenter,
        client_addr: validated.client_addr,
        bind_addr: validated.bind_addr,
        bootstrap_expect: is_server.then_some(bootstrap_expect),
        http_port,
        https_port: https_listener.as_ref().and(validated.ports.https),
        dns_port,
        serf_lan_port,
        server_port,
        data_dir: &data_dir,
        authenticated,
    }
    .text();
    {
        // The banner goes to stdout as Consul's does; a closed stdout (`| head`) must never
        // stop the agent, so write errors are ignored.
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(banner.as_bytes());
        let _ = stdout.flush();
    }

    crate::shutdown::on_signals(
        server.clone(),
        wan.clone(),
        lan.clone(),
        (config.leave_on_terminate, config.skip_leave_on_interrupt),
        cancel.clone(),
    );
    serve_api(listener, https_listener, router, &cancel).await?;
    cancel.cancel();
    match &backend {
        Backend::Server(server) => server.shutdown().await,
        Backend::Client(link) => link.close().await,
    }
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 5s");
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// Serves the API on the HTTP and HTTPS listeners (either may be off) until `cancel`, then
/// lets requests in flight finish for at most [`HTTP_DRAIN`]: a blocking query
/// (consul-template holds one for minutes) or a monitor must not hold the agent up.
async fn serve_api(
    http: Option<tokio::net::TcpListener>,
    https: Option<crate::http::tls_listener::TlsListener>,
    router: axum::Router,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let http = serve_on(http, router.clone(), cancel.clone());
    let https = serve_on(https, router, cancel.clone());
    let stopping = cancel.clone();
    tokio::select! {
        served = async { tokio::try_join!(http, https) } => {
            served.context("serving HTTP")?;
        }
        () = async move {
            stopping.cancelled().await;
            tokio::time::sleep(HTTP_DRAIN).await;
        } => {
            tracing::info!("requests still in flight (blocking queries) were cut short");
        }
    }
    Ok(())
}

/// Serves `router` on `listener` until `cancel`; without a listener, only waits.
async fn serve_on<L>(
    listener: Option<L>,
    router: axum::Router,
    cancel: CancellationToken,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    match listener {
        Some(listener) => {
            axum::serve(listener, router)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
        }
        None => {
            cancel.cancelled().await;
            Ok(())
        }
    }
}

/// What the agent prints at start, in Consul's layout.
struct Banner<'a> {
    node_id: u64,
    node_name: &'a str,
    datacenter: &'a str,
    client_addr: std::net::IpAddr,
    bind_addr: std::net::IpAddr,
    /// `Some` on a server.
    bootstrap_expect: Option<u32>,
    http_port: Option<u16>,
    https_port: Option<u16>,
    dns_port: Option<u16>,
    serf_lan_port: u16,
    server_port: u16,
    data_dir: &'a std::path::Path,
    authenticated: bool,
}

impl Banner<'_> {
    fn text(&self) -> String {
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
fn leader_duties(
    lan: &crate::gossip::pool::Pool,
    handler: crate::rpc::messages::HttpHandler,
    datacenter: &str,
    metrics: &Arc<Metrics>,
    tombstone_ttl: Duration,
    coordinates: Option<&Arc<crate::server::coordinates::CoordinateQueue>>,
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
    ];
    if let Some(queue) = coordinates {
        duties.push(Box::new(crate::server::coordinates::CoordinateFlush {
            queue: queue.clone(),
        }));
    }
    duties
}

/// The data directory: the configured one, or with `-dev` a temporary one (kept as long as
/// the returned guard lives).
fn data_dir_of(
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
    Ok((dir, temporary))
}

/// TLS material made up at start for an agent configured without any: encrypted, peers not
/// authenticated (the banner and the log say so).
fn ephemeral_tls(
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
fn dns_source(
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
                lag: Arc::new(move || Duration::from_millis(lagging.last_contact_ms())),
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
