//! Running an agent: validate the configuration, start the server, the HTTP API and the
//! metrics, and stop everything on SIGINT/SIGTERM or `/v1/agent/leave`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::agent_config::AgentConfig;
use wire::Role;

use crate::config::{LoadedConfig, ValidatedConfig};
use crate::gossip::keyfile::SharedKeyring;
use crate::gossip::pool::{NodeId, Pool, PoolKind};
use crate::http::{AgentInfo, Api, Backend};
use crate::local::LocalAgent;
use crate::metrics::Metrics;
use crate::server::{Server, ServerSettings};
use crate::wan::DcLinks;

mod dns;
mod parts;

use dns::{dns_acl, start_dns};
use parts::{data_dir_of, dns_source, ephemeral_tls, leader_duties, serve_api, Banner};

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

/// Runs the agent until it is told to stop: works out the settings, starts the role (server
/// or client) and the LAN pool, the local agent, the dc-links and WAN pool, the background
/// duties, DNS and the API, then on a stop shuts them down in order.
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let config = &options.config;
    let signals = crate::shutdown::Signals::install();
    let mut prepared = prepare(&options).await?;
    let cancel = CancellationToken::new();
    let tasks = crate::tasks::tracker();
    let core = start_core(&mut prepared, tasks, &cancel).await?;
    let local = start_local(&prepared, config, core.node_id, &options.origin, &cancel)?;
    let (dc_links, wan) = start_wan(&prepared, &core, &cancel);
    let watches = Arc::new(crate::watch::AgentWatches::new(prepared.http_addr));
    let reloader = reloader(
        local.clone(),
        options.reload.clone(),
        dc_links.clone(),
        watches.clone(),
    );
    spawn_hangups(tasks, reloader.clone(), cancel.clone());
    let coordinate_queue = core
        .server
        .as_ref()
        .map(|_| Arc::new(crate::server::coordinates::CoordinateQueue::default()));
    let acl_tokens =
        crate::http::acl::AgentTokens::of(prepared.validated.acl.as_ref(), &prepared.data_dir)?;
    let events = start_events(
        &prepared,
        config,
        &core,
        &local,
        &acl_tokens,
        tasks,
        &cancel,
    );
    let api = Api::new(crate::http::ApiParts {
        backend: core.backend.clone(),
        agent: Arc::new(agent_info(&prepared, &options, &core)),
        metrics: prepared.metrics.clone(),
        local: local.clone(),
        reload: reloader,
        lan: core.lan.clone(),
        shutdown: cancel.clone(),
        dc_links,
        wan: wan.clone(),
        coordinates: coordinate_queue.clone(),
        events,
        acl: prepared.validated.acl.clone(),
        acl_cache: Arc::default(),
        acl_tokens: acl_tokens.clone(),
        logs: options.logs.clone(),
    });
    let dns_acl = dns_acl(&api, tasks, &cancel);
    let router = crate::http::router(api);
    let handler = || crate::http::internal_handler(router.clone(), acl_tokens.clone());
    if let Some(server) = &core.server {
        let _ = server
            .http_handler
            .set(crate::http::forward_handler(router.clone()));
    }
    spawn_background(
        tasks,
        &prepared,
        &core,
        &local,
        handler,
        coordinate_queue.as_ref(),
        &cancel,
    );
    spawn_acl_replication(
        tasks,
        &prepared,
        &core,
        handler(),
        acl_tokens.clone(),
        &cancel,
    );
    start_dns(&prepared, &core, handler(), dns_acl, &cancel).await?;
    let (http, https) = bind_listeners(&prepared, &cancel).await?;
    print_banner(&prepared, &core, https.is_some());
    watches.replace(&config.watches);
    crate::shutdown::on_signals(
        signals,
        core.server.clone(),
        wan,
        core.lan.clone(),
        (config.leave_on_terminate, config.skip_leave_on_interrupt),
        cancel.clone(),
    );
    let limits = crate::http::serve::ConnLimits {
        per_client: prepared.validated.http_max_conns_per_client,
        header_read_timeout: prepared.validated.http_header_read_timeout,
    };
    serve_api(
        http,
        https,
        router,
        limits,
        prepared.metrics.clone(),
        &cancel,
    )
    .await?;
    cancel.cancel();
    watches.stop_all();
    stop(&core, tasks).await
}

/// Stops the role (Raft, or the client's server link) and waits up to 5 s for every tracked
/// task; an error if Raft had stopped on a fatal error (the agent then exits non-zero).
async fn stop(core: &Core, tasks: &TaskTracker) -> anyhow::Result<()> {
    match &core.backend {
        Backend::Server(server) => server.shutdown().await,
        Backend::Client(link) => link.close().await,
    }
    let fatal = match &core.backend {
        Backend::Server(server) => server.fatal.get().cloned(),
        Backend::Client(_) => None,
    };
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 5s");
    }
    tracing::info!("agent stopped");
    match fatal {
        Some(why) => anyhow::bail!("Raft stopped on a fatal error: {why}"),
        None => Ok(()),
    }
}

/// User events: the agent's ring (with remote exec when `disable_remote_exec = false`) and
/// the task that takes events from the LAN pool.
fn start_events(
    prepared: &Prepared,
    config: &AgentConfig,
    core: &Core,
    local: &Arc<LocalAgent>,
    acl_tokens: &crate::http::acl::SharedTokens,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Arc<crate::events::UserEvents> {
    let events = Arc::new(crate::events::UserEvents::with_exec(
        prepared
            .http_addr
            .filter(|_| config.disable_remote_exec == Some(false)),
        &prepared.validated.node_name,
        acl_tokens.clone(),
    ));
    tasks.spawn(crate::events::receive(
        events.clone(),
        core.lan.clone(),
        local.clone(),
        prepared.validated.node_name.clone(),
        prepared.metrics.coordination.serf_events.clone(),
        cancel.child_token(),
    ));
    events
}

/// What the agent works out before it starts anything.
struct Prepared {
    validated: ValidatedConfig,
    /// Taken by [`start_core`].
    tls: Option<pki::NodeTls>,
    authenticated: bool,
    metrics: Arc<Metrics>,
    data_dir: std::path::PathBuf,
    /// A `-dev` agent's temporary data directory, removed when the agent stops.
    _temporary_dir: Option<tempfile::TempDir>,
    /// Servers to find Raft peers at (server port).
    retry_join: Vec<SocketAddr>,
    /// The same hosts' gossip addresses.
    gossip_seeds: Vec<SocketAddr>,
    rpc_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    bootstrap_expect: u32,
    is_server: bool,
    snapshot_threshold: u64,
    tombstone_ttl: Duration,
}

/// Validates the configuration and works out the addresses, the data directory, the TLS
/// material and the join targets.
async fn prepare(options: &RunOptions) -> anyhow::Result<Prepared> {
    let config = &options.config;
    let loaded = LoadedConfig {
        path: options.origin.clone().into(),
        base_dir: ".".into(),
        config: config.clone(),
    };
    let mut validated = loaded.validate()?;
    for warning in &validated.warnings {
        tracing::warn!("{warning}");
    }
    let (data_dir, temporary_dir) = data_dir_of(validated.data_dir.as_ref(), options.dev)?;
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
    let server_port = validated.ports.server;
    let mut retry_join = Vec::new();
    let mut gossip_seeds = Vec::new();
    for entry in &config.retry_join {
        for addr in resolve_join(entry, server_port).await? {
            gossip_seeds.push(SocketAddr::new(addr.ip(), validated.ports.serf_lan));
            retry_join.push(addr);
        }
    }
    Ok(Prepared {
        authenticated: tls.authenticates_peers(),
        tls: Some(tls),
        metrics,
        data_dir,
        _temporary_dir: temporary_dir,
        retry_join,
        gossip_seeds,
        rpc_addr: SocketAddr::new(validated.bind_addr, server_port),
        http_addr: validated
            .ports
            .http
            .map(|port| SocketAddr::new(validated.client_addr, port)),
        bootstrap_expect: match config.bootstrap {
            Some(true) => config.bootstrap_expect.unwrap_or(1),
            _ => config.bootstrap_expect.unwrap_or(0),
        },
        is_server: validated.role == Role::Server,
        snapshot_threshold: config.raft_snapshot_threshold.unwrap_or(16_384).max(1),
        tombstone_ttl: config
            .isthmus
            .as_ref()
            .and_then(|x| x.tombstone_ttl)
            .map_or(crate::server::tombstone_gc::DEFAULT_TTL, |d| d.0),
        validated,
    })
}

/// The agent's role and its gossip: a server's Raft (or a client's QUIC endpoint to the
/// servers), the LAN pool, and how the API reaches the catalog.
struct Core {
    server: Option<Arc<Server>>,
    node_id: u64,
    keyring: Option<SharedKeyring>,
    lan: Pool,
    backend: Backend,
    /// How a server with gateways dials them.
    dc_link_client: Option<quinn::ClientConfig>,
}

/// Starts Raft on a server (a client agent only opens a QUIC endpoint, on an ephemeral
/// port, to dial the servers from), then the LAN pool.
async fn start_core(
    prepared: &mut Prepared,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<Core> {
    let tls = prepared
        .tls
        .take()
        .context("the TLS material is used once")?;
    let v = &prepared.validated;
    let dc_link_client = match (&v.gateways[..], prepared.is_server) {
        ([_, ..], true) => Some(crate::wan::client_config(&tls, &v.datacenter, &v.domain)?),
        _ => None,
    };
    let (server, transport) = if prepared.is_server {
        let settings = ServerSettings {
            node_name: v.node_name.clone(),
            datacenter: v.datacenter.clone(),
            domain: v.domain.clone(),
            rpc_addr: prepared.rpc_addr,
            data_dir: prepared.data_dir.clone(),
            bootstrap_expect: prepared.bootstrap_expect,
            retry_join: prepared.retry_join.clone(),
            tls,
            snapshot_threshold: prepared.snapshot_threshold,
        };
        let server = Server::start(settings, tasks, cancel).await?;
        tasks.spawn(crate::metrics::follow_raft(
            server.clone(),
            prepared.metrics.clone(),
            cancel.child_token(),
        ));
        (Some(server), None)
    } else {
        let transport = crate::rpc::transport::Transport::bind(
            SocketAddr::new(v.bind_addr, 0),
            false,
            &tls,
            &v.datacenter,
            &v.domain,
        )
        .context("opening the QUIC endpoint to the servers")?;
        (None, Some(transport))
    };
    let node_id = match &server {
        Some(server) => server.id,
        None => crate::server::node_id(&prepared.data_dir)?,
    };
    let keyring = crate::gossip::keyfile::open(&prepared.data_dir, v.gossip_key.as_deref())?
        .map(|k| k.with_verify(v.gossip_verify));
    let identity = NodeId {
        pool: PoolKind::Lan,
        addr: SocketAddr::new(v.bind_addr, v.ports.serf_lan),
        bump: crate::unix_ms(),
        name: v.node_name.clone(),
        server: prepared.is_server,
        rpc_port: if prepared.is_server {
            v.ports.server
        } else {
            0
        },
        dc: v.datacenter.clone(),
        build: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let lan = crate::gossip::pool::start(
        identity,
        keyring.clone(),
        prepared.gossip_seeds.clone(),
        prepared.metrics.clone(),
        tasks,
        cancel.child_token(),
    )
    .await?;
    let backend = match (&server, transport) {
        (Some(server), _) => {
            let _ = server.lan.set(lan.clone());
            Backend::Server(server.clone())
        }
        (None, transport) => Backend::Client(Arc::new(crate::servers::ServerLink::new(
            transport.context("a client agent without its QUIC endpoint")?,
            lan.clone(),
            v.datacenter.clone(),
            prepared.retry_join.clone(),
            prepared.metrics.clone(),
        ))),
    };
    Ok(Core {
        server,
        node_id,
        keyring,
        lan,
        backend,
        dc_link_client,
    })
}

/// The agent's own services and checks: from the config files now (and those registered
/// through the API before a restart), from `/v1/agent` later.
fn start_local(
    prepared: &Prepared,
    config: &AgentConfig,
    node_id: u64,
    origin: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<Arc<LocalAgent>> {
    let v = &prepared.validated;
    let local = LocalAgent::new(
        crate::local::LocalSettings {
            node: v.node_name.clone(),
            node_id: wire::names::node_uuid(node_id),
            address: v.bind_addr.to_string(),
            datacenter: v.datacenter.clone(),
            node_meta: config.node_meta.clone(),
            script_checks: config.enable_script_checks.unwrap_or(false),
            persist: Some(crate::persist::Persisted::new(&prepared.data_dir)),
            check_update_interval: config
                .check_update_interval
                .map_or(Duration::from_secs(300), |d| d.0),
        },
        cancel.child_token(),
    );
    local
        .load_config_services(&config.services)
        .and_then(|_| local.load_config_checks(&config.checks))
        .map_err(|e| anyhow::anyhow!("{e} (in {origin})"))?;
    let (services, checks) = local.restore();
    if services + checks > 0 {
        tracing::info!(
            services,
            checks,
            "restored the services and checks registered through the API before the restart"
        );
    }
    Ok(local)
}

/// A server with gateways: its dc-links, and the WAN pool that rides them.
fn start_wan(
    prepared: &Prepared,
    core: &Core,
    cancel: &CancellationToken,
) -> (Option<Arc<DcLinks>>, Option<Pool>) {
    let (Some(server), Some(client)) = (&core.server, &core.dc_link_client) else {
        return (None, None);
    };
    let v = &prepared.validated;
    let links = DcLinks::start(
        server.clone(),
        client.clone(),
        &v.domain,
        v.gateways.clone(),
        prepared.metrics.gossip.wan_datagrams_dropped.clone(),
        cancel.child_token(),
    );
    let wan = crate::gossip::wan::start(
        crate::gossip::wan::WanSettings {
            node_name: v.node_name.clone(),
            datacenter: v.datacenter.clone(),
            rpc_addr: prepared.rpc_addr,
        },
        links.clone(),
        core.lan.clone(),
        core.keyring.clone(),
        Arc::new(crate::metrics::WanEvents(prepared.metrics.clone())),
        cancel.child_token(),
    );
    (Some(links), Some(wan))
}

/// `reload` and SIGHUP: the services, checks, watches and gateways of the configuration
/// read again, all checked before anything changes.
fn reloader(
    local: Arc<LocalAgent>,
    source: ConfigSource,
    dc_links: Option<Arc<DcLinks>>,
    watches: Arc<crate::watch::AgentWatches>,
) -> Reloader {
    Arc::new(move || {
        let config = source()?;
        let gateways = crate::config::parse_gateways(&config).map_err(|p| p.join("; "))?;
        let bad_watches = crate::watch::check_config(&config.watches);
        if !bad_watches.is_empty() {
            return Err(bad_watches.join("; "));
        }
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
        let running = watches.replace(&config.watches);
        tracing::info!(
            changed,
            watches = running,
            "configuration reloaded (services, checks, watches and isthmus.gateways; other settings need a restart)"
        );
        Ok(changed)
    })
}

/// Reloads on SIGHUP until the agent stops.
fn spawn_hangups(tasks: &TaskTracker, reloader: Reloader, cancel: CancellationToken) {
    #[cfg(unix)]
    tasks.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
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

/// A secondary datacenter's servers copy the primary's ACLs (while they lead).
fn spawn_acl_replication(
    tasks: &TaskTracker,
    prepared: &Prepared,
    core: &Core,
    handler: crate::rpc::messages::HttpHandler,
    tokens: crate::http::acl::SharedTokens,
    cancel: &CancellationToken,
) {
    let (Some(server), Some(acl)) = (&core.server, prepared.validated.acl.as_ref()) else {
        return;
    };
    let Some(primary) = acl.primary.clone() else {
        return;
    };
    let replicator = crate::server::acl_replication::Replicator {
        server: server.clone(),
        api: crate::internal::LocalApi::new(handler),
        primary,
        tokens,
        with_tokens: acl.token_replication,
        metrics: prepared.metrics.clone(),
    };
    tasks.spawn(replicator.run(cancel.child_token()));
}

/// The work that runs beside the API: the leader's duties on a server, coordinate pushes,
/// and anti-entropy of the local services and checks.
fn spawn_background(
    tasks: &TaskTracker,
    prepared: &Prepared,
    core: &Core,
    local: &Arc<LocalAgent>,
    handler: impl Fn() -> crate::rpc::messages::HttpHandler,
    coordinates: Option<&Arc<crate::server::coordinates::CoordinateQueue>>,
    cancel: &CancellationToken,
) {
    let catalog_source = match &core.server {
        Some(server) => {
            let duties = leader_duties(
                &core.lan,
                handler(),
                &prepared.validated.datacenter,
                &prepared.metrics,
                prepared.tombstone_ttl,
                coordinates,
                // Only the primary's leader bootstraps; a secondary copies the primary.
                prepared
                    .validated
                    .acl
                    .as_ref()
                    .filter(|a| a.primary.is_none())
                    .and_then(|a| a.initial_management.clone()),
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
        core.lan.clone(),
        handler(),
        cancel.child_token(),
    ));
    tasks.spawn(crate::local::anti_entropy(
        local.clone(),
        catalog_source,
        handler(),
        cancel.child_token(),
    ));
}

/// The HTTP and HTTPS listeners (either may be off).
async fn bind_listeners(
    prepared: &Prepared,
    cancel: &CancellationToken,
) -> anyhow::Result<(
    Option<tokio::net::TcpListener>,
    Option<crate::http::tls_listener::TlsListener>,
)> {
    let http = match prepared.http_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP port {addr}"))?,
        ),
        None => None,
    };
    let v = &prepared.validated;
    let https = match (v.ports.https, &v.https) {
        (Some(port), Some(config)) => {
            let addr = SocketAddr::new(v.client_addr, port);
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTPS port {addr}"))?;
            Some(crate::http::tls_listener::TlsListener::new(
                tcp,
                config.clone(),
                prepared.metrics.https_handshake_failures.clone(),
                cancel.child_token(),
            )?)
        }
        _ => None,
    };
    Ok((http, https))
}

/// The banner on stdout, as Consul's (a closed stdout, `| head`, never stops the agent).
fn print_banner(prepared: &Prepared, core: &Core, https: bool) {
    use std::io::Write;
    let v = &prepared.validated;
    if !prepared.authenticated {
        tracing::warn!(
            "no TLS material configured: QUIC is encrypted but peers are not authenticated"
        );
    }
    let banner = Banner {
        node_id: core.node_id,
        node_name: &v.node_name,
        datacenter: &v.datacenter,
        client_addr: v.client_addr,
        bind_addr: v.bind_addr,
        bootstrap_expect: prepared.is_server.then_some(prepared.bootstrap_expect),
        http_port: v.ports.http,
        https_port: v.ports.https.filter(|_| https),
        dns_port: v.ports.dns,
        serf_lan_port: v.ports.serf_lan,
        server_port: v.ports.server,
        data_dir: &prepared.data_dir,
        authenticated: prepared.authenticated,
    }
    .text();
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(banner.as_bytes());
    let _ = stdout.flush();
}

/// What `/v1/agent/self` says of this agent.
fn agent_info(prepared: &Prepared, options: &RunOptions, core: &Core) -> AgentInfo {
    let v = &prepared.validated;
    let config = &options.config;
    let primary = config
        .primary_datacenter
        .clone()
        .unwrap_or_else(|| v.datacenter.clone());
    let node_id = wire::names::node_uuid(core.node_id);
    let debug_config = serde_json::json!({
        "Datacenter": v.datacenter,
        "PrimaryDatacenter": primary,
        "NodeName": v.node_name,
        "NodeID": node_id,
        "NodeMeta": config.node_meta,
        "ServerMode": prepared.is_server,
        "BootstrapExpect": prepared.bootstrap_expect,
        "DevMode": options.dev,
        "BindAddr": v.bind_addr.to_string(),
        "AdvertiseAddrLAN": config.advertise_addr.clone().unwrap_or_else(|| v.bind_addr.to_string()),
        "ClientAddrs": [v.client_addr.to_string()],
        "DNSDomain": v.domain,
        "DNSPort": v.ports.dns.map_or(-1, i32::from),
        "HTTPPort": v.ports.http.map_or(-1, i32::from),
        "HTTPSPort": -1,
        "GRPCPort": -1,
        "GRPCTLSPort": -1,
        "SerfPortLAN": v.ports.serf_lan,
        "SerfPortWAN": -1,
        "ServerPort": v.ports.server,
        "DataDir": prepared.data_dir.display().to_string(),
        "RetryJoinLAN": config.retry_join,
        "DNSRecursors": config.recursors,
        "DNSOnlyPassing": v.dns.only_passing,
        "DNSAllowStale": v.dns.allow_stale,
        "EnableScriptChecks": config.enable_script_checks.unwrap_or(false),
        "EncryptKey": "hidden",
        "LogLevel": config.log_level.clone().unwrap_or_else(|| "info".to_owned()),
        "Services": config.services.len(),
        "Checks": config.checks.len(),
        "Version": env!("CARGO_PKG_VERSION"),
        "UIConfig": {"Enabled": v.ui, "ContentPath": "/ui/"},
    });
    AgentInfo {
        node_name: v.node_name.clone(),
        datacenter: v.datacenter.clone(),
        primary_datacenter: primary,
        domain: v.domain.clone(),
        address: v.bind_addr.to_string(),
        http_addr: prepared
            .http_addr
            .map(|a| a.to_string())
            .unwrap_or_default(),
        server: prepared.is_server,
        dev: options.dev,
        node_id,
        debug_config,
        ui: v.ui,
    }
}
