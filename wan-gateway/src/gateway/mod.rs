//! The running gateway: one QUIC endpoint for dc-links from the servers of its datacenter
//! (ALPN `isthmus/dc-link`, server certificates of this datacenter only) and WAN links with
//! the gateways of other datacenters (ALPN `isthmus/wan`, gateway certificates only), dialled
//! to every configured remote gateway and accepted from any.
//!
//! Every stream starts with a `StreamOpen` frame (`link::read_stream_open`); the gateway
//! reads only that and asks `crate::router::decide` what to do. A request (`Route`) is passed
//! on: a stream on the next hop (a WAN link to the destination datacenter, or a dc-link to
//! one of its own servers), the frame written there, the rest copied both ways unread. A hop
//! that cannot pass it on answers `RouteStatus::NoRoute` at once. Control streams (`Info`,
//! `Gateways`, `Forget`) are answered here (`federation.rs`).
//!
//! Datagrams (WAN gossip, sealed end to end) are routed the same way by their
//! `DatagramHeader`: from a local server onto a WAN link to their datacenter (or straight to
//! a local server when they are for this datacenter), from a WAN link to the named local
//! server. They are best effort, as the UDP they stand in for: one that cannot go on is
//! dropped and counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::{Duration, Instant};

use link::{negotiated_alpn, peer_certificate, MAX_HEADER};
use pki::{NodeTls, PeerPolicy};
use tokio_util::sync::CancellationToken;
use wire::route::{
    GatewayAddress, GatewayInfo, RouteHeader, RouteStatus, StreamKind, StreamOpen, ALPN_DC_LINK,
    ALPN_WAN,
};
use wire::Role;

use crate::metrics::Metrics;
use crate::router::{Decision, Links, Side};

mod federation;

use federation::tell_forget;

/// How long a stream's header may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a gateway tells its WAN peers which gateways it knows.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(15);
/// Most gateways one gateway keeps links to.
const MAX_GATEWAYS: usize = 256;

/// A live connection to a peer, by node name.
#[derive(Clone)]
struct Peer {
    node: String,
    addr: SocketAddr,
    connection: quinn::Connection,
}

impl Peer {
    /// Not closed yet (a dead peer is noticed within QUIC's 5 s idle timeout).
    fn alive(&self) -> bool {
        self.connection.close_reason().is_none()
    }
}

/// The gateway's shared state.
pub struct Gateway {
    datacenter: String,
    node: String,
    domain: String,
    tls: NodeTls,
    endpoint: quinn::Endpoint,
    /// Datacenters of the configured remote gateways (metric labels stay bounded to these,
    /// this one and linked ones).
    configured: Vec<String>,
    /// Where other gateways dial this one, as it tells them.
    advertise: SocketAddr,
    /// Every remote gateway this one dials: configured, or learned from the federation.
    known: Mutex<BTreeMap<(String, String), (SocketAddr, CancellationToken)>>,
    cancel: CancellationToken,
    /// WAN links by datacenter.
    links: RwLock<BTreeMap<String, Vec<Peer>>>,
    /// Datacenters removed from the federation: not learned again from other gateways
    /// (a gateway of one that links to this one itself brings it back).
    forgotten: Mutex<std::collections::BTreeSet<String>>,
    /// Datacenters whose WAN links were refused (each logged once).
    refused_logged: Mutex<std::collections::BTreeSet<String>>,
    /// dc-links from this datacenter's servers.
    servers: RwLock<Vec<Peer>>,
    next: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Gateway {
    /// Binds the endpoint and starts accepting and dialling.
    pub fn start(
        config: crate::config::ValidatedConfig,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Arc<Gateway>> {
        let domain = config.config.domain.clone();
        let datacenter = config.config.datacenter.clone();
        let tls = config.tls;
        // The TLS layer admits servers and gateways; each protocol then checks the role
        // and datacenter it needs.
        let rustls_server = tls.server_config(
            PeerPolicy::new(&domain, &[Role::Server, Role::Gateway], None),
            &[ALPN_DC_LINK, ALPN_WAN],
        )?;
        let endpoint = link::server_endpoint(config.listen, rustls_server, &tls)?;
        let configured = config
            .remote_gateways
            .iter()
            .map(|(dc, _, _)| dc.clone())
            .collect();
        let gateway = Arc::new(Gateway {
            datacenter,
            node: config.config.node_name.clone(),
            domain,
            tls,
            endpoint,
            configured,
            advertise: config.advertise,
            known: Mutex::new(BTreeMap::new()),
            cancel: cancel.clone(),
            links: RwLock::new(BTreeMap::new()),
            forgotten: Mutex::new(std::collections::BTreeSet::new()),
            refused_logged: Mutex::new(std::collections::BTreeSet::new()),
            servers: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            metrics,
        });
        crate::tasks::spawn(gateway.clone().accept_loop(cancel.clone()));
        for (dc, node, addr) in &config.remote_gateways {
            gateway.dial(dc, node, *addr)?;
        }
        crate::tasks::spawn(gateway.clone().announce_loop());
        Ok(gateway)
    }

    /// Starts keeping a WAN link to a gateway not dialled yet. The gateway answering must
    /// hold a gateway certificate of `dc`.
    fn dial(self: &Arc<Self>, dc: &str, node: &str, addr: SocketAddr) -> anyhow::Result<()> {
        if dc == self.datacenter {
            return Ok(());
        }
        let stop = self.cancel.child_token();
        {
            let mut known = self.known.lock();
            let key = (dc.to_owned(), node.to_owned());
            match known.get(&key) {
                Some((known_addr, _)) if *known_addr == addr => return Ok(()),
                None if known.len() >= MAX_GATEWAYS => return Ok(()),
                _ => {}
            }
            // A gateway found again on a new address: stop dialling the old one.
            if let Some((_, old)) = known.insert(key, (addr, stop.clone())) {
                old.cancel();
            }
        }
        // Down until the link comes up: a gateway that never reached its peer shows (and
        // alerts) as such.
        if !self
            .links
            .read()
            .get(dc)
            .is_some_and(|peers| peers.iter().any(|p| p.node == node))
        {
            self.metrics.link_up.with_label_values(&[dc, node]).set(0);
        }
        let policy = PeerPolicy::new(&self.domain, &[Role::Gateway], Some(dc));
        let client = link::client_config_with(
            self.tls.client_config(policy, &[ALPN_WAN])?,
            link::wan_link_transport_config(),
        )?;
        crate::tasks::spawn(self.clone().keep_wan_link(
            dc.to_owned(),
            node.to_owned(),
            addr,
            client,
            stop,
        ));
        Ok(())
    }

    /// Datacenters with a live WAN link now.
    pub fn linked_datacenters(&self) -> Vec<String> {
        self.links
            .read()
            .iter()
            .filter(|(_, peers)| !peers.is_empty())
            .map(|(dc, _)| dc.clone())
            .collect()
    }

    /// Closes every link.
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    async fn accept_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let incoming = tokio::select! {
                _ = cancel.cancelled() => return,
                incoming = self.endpoint.accept() => incoming,
            };
            let Some(incoming) = incoming else { return };
            crate::tasks::spawn(self.clone().accepted(incoming, cancel.child_token()));
        }
    }

    async fn accepted(self: Arc<Self>, incoming: quinn::Incoming, cancel: CancellationToken) {
        let addr = incoming.remote_address();
        let connection = match incoming.await {
            Ok(connection) => connection,
            Err(e) => {
                tracing::debug!(peer = %addr, error = %e, "handshake failed");
                return;
            }
        };
        let alpn = negotiated_alpn(&connection).unwrap_or_default();
        let identity = peer_certificate(&connection).and_then(|cert| {
            let policy = if alpn == ALPN_DC_LINK {
                PeerPolicy::servers_of(&self.domain, &self.datacenter)
            } else {
                PeerPolicy::gateways(&self.domain)
            };
            self.tls.peer_identity(&cert, &policy).ok()
        });
        let Some(identity) = identity else {
            tracing::warn!(peer = %addr, "refused a link: its certificate is not a server of this datacenter (dc-link) or a gateway (WAN)");
            self.metrics.refused.inc();
            connection.close(1u32.into(), b"certificate not accepted for this protocol");
            return;
        };
        let node = identity
            .node
            .clone()
            .unwrap_or_else(|| format!("{}-{}", identity.role, identity.datacenter));
        let peer = Peer {
            node: node.clone(),
            addr,
            connection: connection.clone(),
        };
        if alpn == ALPN_DC_LINK && identity.role == Role::Server {
            tracing::info!(server = %node, peer = %addr, "dc-link from a server");
            self.set_server(peer.clone(), true);
            crate::tasks::spawn(self.clone().route_datagrams(
                connection.clone(),
                Side::Server,
                cancel.child_token(),
            ));
            self.serve(&connection, Side::Server, None, &cancel).await;
            self.set_server(peer, false);
            tracing::info!(server = %node, "dc-link closed");
        } else if alpn == ALPN_WAN && identity.role == Role::Gateway {
            let dc = identity.datacenter.clone();
            let admitted = {
                let known = self.known.lock();
                crate::router::admits_wan(
                    &dc,
                    &self.datacenter,
                    &self.configured,
                    known.keys().map(|(dc, _)| dc.as_str()),
                )
            };
            if let Err(why) = admitted {
                self.metrics.refused.inc();
                if self.note_refusal(&dc) {
                    tracing::warn!(dc = %dc, gateway = %node, peer = %addr, reason = %why, "refused a WAN link (logged once per datacenter)");
                }
                // Strangers are told no more than that.
                connection.close(1u32.into(), b"not a datacenter of this federation");
                return;
            }
            if self.forgotten.lock().remove(&dc) {
                tracing::info!(dc = %dc, "a gateway of a removed datacenter linked again; it is part of the federation again");
            }
            tracing::info!(dc = %dc, gateway = %node, peer = %addr, "WAN link accepted");
            self.set_link(&dc, peer.clone(), true);
            crate::tasks::spawn(self.clone().announce(dc.clone(), connection.clone()));
            crate::tasks::spawn(self.clone().route_datagrams(
                connection.clone(),
                Side::Wan,
                cancel.child_token(),
            ));
            self.serve(&connection, Side::Wan, Some(dc.clone()), &cancel)
                .await;
            self.set_link(&dc, peer, false);
            tracing::info!(dc = %dc, gateway = %node, "WAN link closed");
        } else {
            connection.close(1u32.into(), b"unexpected protocol for this certificate");
        }
    }

    /// Whether a refusal of `dc` is the first (to be logged); the set stays bounded.
    fn note_refusal(&self, dc: &str) -> bool {
        let mut logged = self.refused_logged.lock();
        if logged.contains(dc) || logged.len() >= MAX_GATEWAYS {
            return false;
        }
        logged.insert(dc.to_owned())
    }

    async fn keep_wan_link(
        self: Arc<Self>,
        dc: String,
        node: String,
        addr: SocketAddr,
        client: quinn::ClientConfig,
        cancel: CancellationToken,
    ) {
        let server_name = format!("gateway.{dc}.{}", self.domain);
        let what = format!("WAN link to {node} of {dc}");
        let this = self.clone();
        link::keep_dialled(
            &self.endpoint,
            &client,
            addr,
            &server_name,
            &what,
            &cancel,
            |connection| {
                let (this, dc, node, cancel) =
                    (this.clone(), dc.clone(), node.clone(), cancel.clone());
                async move {
                    tracing::info!(dc = %dc, gateway = %node, peer = %addr, "WAN link up");
                    let peer = Peer {
                        node: node.clone(),
                        addr,
                        connection: connection.clone(),
                    };
                    this.set_link(&dc, peer.clone(), true);
                    crate::tasks::spawn(this.clone().announce(dc.clone(), connection.clone()));
                    let datagrams = cancel.child_token();
                    crate::tasks::spawn(this.clone().route_datagrams(
                        connection.clone(),
                        Side::Wan,
                        datagrams.clone(),
                    ));
                    this.serve(&connection, Side::Wan, Some(dc.clone()), &cancel)
                        .await;
                    datagrams.cancel();
                    this.set_link(&dc, peer, false);
                    if !cancel.is_cancelled() {
                        tracing::warn!(dc = %dc, gateway = %node, reason = ?connection.close_reason(), "WAN link down; redialling");
                    }
                }
            },
        )
        .await;
    }

    fn set_server(&self, peer: Peer, up: bool) {
        {
            let mut servers = self.servers.write();
            servers.retain(|p| p.connection.stable_id() != peer.connection.stable_id());
            if up {
                servers.push(peer);
            }
            self.metrics.servers.set(servers.len() as i64);
        }
    }

    fn set_link(&self, dc: &str, peer: Peer, up: bool) {
        {
            let mut links = self.links.write();
            let peers = links.entry(dc.to_owned()).or_default();
            peers.retain(|p| p.connection.stable_id() != peer.connection.stable_id());
            if up {
                peers.push(peer.clone());
            }
            let alive = peers.iter().any(|p| p.node == peer.node);
            if self.forgotten.lock().contains(dc) {
                // A removed datacenter's link closing: no series stays behind.
                let _ = self.metrics.link_up.remove_label_values(&[dc, &peer.node]);
            } else {
                self.metrics
                    .link_up
                    .with_label_values(&[dc, &peer.node])
                    .set(i64::from(alive));
            }
            if !alive {
                // No link, no round trip to show.
                let _ =
                    self.metrics
                        .wan_rtt
                        .remove_label_values(&[&self.datacenter, dc, &peer.node]);
            }
        }
    }

    /// Routes the datagrams a peer sends on a connection until it ends.
    async fn route_datagrams(
        self: Arc<Self>,
        connection: quinn::Connection,
        side: Side,
        cancel: CancellationToken,
    ) {
        loop {
            let datagram = tokio::select! {
                _ = cancel.cancelled() => return,
                datagram = connection.read_datagram() => datagram,
            };
            let Ok(datagram) = datagram else { return };
            let outcome = self.route_datagram(side, datagram);
            self.metrics.datagrams.with_label_values(&[outcome]).inc();
        }
    }

    /// Passes one datagram on; returns the outcome's label.
    fn route_datagram(&self, side: Side, datagram: bytes::Bytes) -> &'static str {
        let Some((header, _)) = wire::route::DatagramHeader::decode(&datagram) else {
            return "malformed";
        };
        let (links, wan, servers) = self.snapshot();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let next = match crate::router::datagram_next(
            side,
            header.dst_dc,
            header.dst_node,
            &links,
            turn,
        ) {
            Some(Decision::ToGateway { dc, index }) => {
                wan.get(&dc).and_then(|peers| peers.get(index)).cloned()
            }
            Some(Decision::ToServer { index }) => servers.get(index).cloned(),
            _ => None,
        };
        let Some(next) = next else {
            return "no_route";
        };
        match next.connection.send_datagram(datagram) {
            Ok(()) => "routed",
            Err(quinn::SendDatagramError::TooLarge) => "too_large",
            Err(_) => "no_route",
        }
    }

    /// Serves the streams a peer opens on a connection until it ends.
    async fn serve(
        self: &Arc<Self>,
        connection: &quinn::Connection,
        side: Side,
        peer_dc: Option<String>,
        cancel: &CancellationToken,
    ) {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => return,
                stream = connection.accept_bi() => stream,
            };
            let Ok((send, recv)) = stream else { return };
            crate::tasks::spawn(self.clone().route(side, peer_dc.clone(), send, recv));
        }
    }

    /// Routes one stream: reads its header and passes it on, or answers why it cannot.
    async fn route(
        self: Arc<Self>,
        side: Side,
        peer_dc: Option<String>,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let started = Instant::now();
        let mut open =
            match tokio::time::timeout(HEADER_TIMEOUT, link::read_stream_open(&mut recv)).await {
                Ok(Ok(open)) => open,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "bad routed stream");
                    let why = format!("gateway {} of {}: {e}", self.node, self.datacenter);
                    let _ = write_status(&mut send, &RouteStatus::NoRoute(why)).await;
                    return;
                }
                Err(_) => return,
            };
        if let StreamKind::Route(header) = &mut open.kind {
            crate::router::normalize(header, side, peer_dc.as_deref(), &self.datacenter);
        }
        let (links, wan, servers) = self.snapshot();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let decision = crate::router::decide(side, &open.kind, &links, turn);
        let StreamKind::Route(header) = open.kind else {
            match decision {
                Decision::ExchangeGateways(gateways) => {
                    self.learn(&gateways);
                    let _ = link::write_frame(&mut send, &self.gateways()).await;
                }
                Decision::Forget { dc, tell_peers } => {
                    let forgotten = self.forget(&dc);
                    if tell_peers && forgotten {
                        for peer in wan.values().flatten() {
                            crate::tasks::spawn(tell_forget(peer.connection.clone(), dc.clone()));
                        }
                    }
                    let status = if forgotten {
                        RouteStatus::Delivered
                    } else {
                        RouteStatus::NoRoute(format!(
                            "{dc} cannot be forgotten by a gateway of {dc}"
                        ))
                    };
                    let _ = write_status(&mut send, &status).await;
                }
                Decision::Info => {
                    let _ = link::write_frame(&mut send, &self.info()).await;
                }
                Decision::NoRoute { reason, outcome } => {
                    if outcome == "refused" {
                        // A control message this gateway may not act on (a Forget of a live
                        // datacenter): counted and logged, never obeyed.
                        self.metrics.refused.inc();
                        tracing::warn!(side = ?side, peer_dc = ?peer_dc, reason = %reason, "refused a control message");
                    }
                    let _ = write_status(&mut send, &RouteStatus::NoRoute(reason)).await;
                }
                Decision::ToGateway { .. } | Decision::ToServer { .. } => {}
            }
            return;
        };
        let dst_dc = header.dst_dc.clone();
        let outcome = match decision {
            Decision::ToGateway { dc, index } => {
                match wan.get(&dc).and_then(|peers| peers.get(index)) {
                    Some(peer) => self.pass_on(peer, &header, started, send, recv).await,
                    None => "no_route",
                }
            }
            Decision::ToServer { index } => match servers.get(index) {
                Some(peer) => self.pass_on(peer, &header, started, send, recv).await,
                None => "no_route",
            },
            Decision::NoRoute { reason, outcome } => {
                let _ = write_status(&mut send, &RouteStatus::NoRoute(reason)).await;
                outcome
            }
            // Control streams were answered above.
            Decision::ExchangeGateways(_) | Decision::Forget { .. } | Decision::Info => "no_route",
        };
        // Label values come only from known datacenters: a header names any string.
        let label = if self.known(&dst_dc) {
            dst_dc.as_str()
        } else {
            "unknown"
        };
        self.metrics
            .requests
            .with_label_values(&[label, outcome])
            .inc();
        if side == Side::Server {
            self.metrics
                .request_seconds
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// Opens a stream on `peer`, writes the header and copies both ways.
    async fn pass_on(
        &self,
        peer: &Peer,
        header: &RouteHeader,
        started: Instant,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> &'static str {
        let budget = Duration::from_millis(header.deadline_ms);
        let deadline = tokio::time::Instant::from_std(started + budget);
        let left = budget.saturating_sub(started.elapsed());
        let mut forwarded = header.clone();
        forwarded.deadline_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        let opened = async {
            let (mut out_send, out_recv) =
                peer.connection.open_bi().await.map_err(|e| e.to_string())?;
            let frame = wire::frame::encode(&StreamOpen::new(StreamKind::Route(forwarded)))
                .map_err(|e| e.to_string())?;
            out_send
                .write_all(&frame)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((out_send, out_recv))
        };
        let (mut out_send, mut out_recv) = match tokio::time::timeout_at(deadline, opened).await {
            Ok(Ok(streams)) => streams,
            Ok(Err(e)) => {
                let why = format!(
                    "gateway {} of {}: {} ({}): {e}",
                    self.node, self.datacenter, peer.node, peer.addr
                );
                let _ = write_status(&mut send, &RouteStatus::NoRoute(why)).await;
                return "no_route";
            }
            Err(_) => return "timeout",
        };
        let upstream = async {
            let copied = tokio::io::copy(&mut recv, &mut out_send).await;
            let _ = out_send.finish();
            copied
        };
        let downstream = async {
            let copied = tokio::io::copy(&mut out_recv, &mut send).await;
            let _ = send.finish();
            copied
        };
        match tokio::time::timeout_at(deadline, async { tokio::join!(upstream, downstream) }).await
        {
            Ok((Ok(_), Ok(_))) => "ok",
            Ok(_) => "broken",
            Err(_) => "timeout",
        }
    }

    /// This datacenter, a configured one, or one linked now.
    fn known(&self, dc: &str) -> bool {
        dc == self.datacenter
            || self.configured.iter().any(|c| c == dc)
            || self.links.read().get(dc).is_some_and(|p| !p.is_empty())
    }

    /// The live links now, as the router sees them and as the shell uses them (same order).
    fn snapshot(&self) -> (Links, BTreeMap<String, Vec<Peer>>, Vec<Peer>) {
        let wan: BTreeMap<String, Vec<Peer>> = self
            .links
            .read()
            .iter()
            .map(|(dc, peers)| {
                let live: Vec<Peer> = peers.iter().filter(|p| p.alive()).cloned().collect();
                (dc.clone(), live)
            })
            .collect();
        let servers: Vec<Peer> = self
            .servers
            .read()
            .iter()
            .filter(|p| p.alive())
            .cloned()
            .collect();
        let links = Links {
            datacenter: self.datacenter.clone(),
            node: self.node.clone(),
            wan: wan
                .iter()
                .map(|(dc, peers)| (dc.clone(), peers.iter().map(|p| p.node.clone()).collect()))
                .collect(),
            servers: servers.iter().map(|p| p.node.clone()).collect(),
        };
        (links, wan, servers)
    }

    /// A live WAN link to `dc`, taking turns.
    fn pick_link(&self, dc: &str) -> Option<Peer> {
        let (_, wan, _) = self.snapshot();
        let peers = wan.get(dc)?;
        if peers.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        peers.get(n % peers.len()).cloned()
    }

    /// Updates the RTT gauges from the WAN links (QUIC's own smoothed RTT).
    pub fn record_rtt(&self) {
        let links = self.links.read();
        for (dc, peers) in links.iter() {
            for peer in peers {
                self.metrics
                    .wan_rtt
                    .with_label_values(&[&self.datacenter, dc, &peer.node])
                    .set(peer.connection.rtt().as_secs_f64());
            }
        }
    }
}

/// Reads one frame of at most [`MAX_HEADER`] bytes (a header, a gateway list).
async fn read_small<T: serde::de::DeserializeOwned>(
    recv: &mut quinn::RecvStream,
) -> Result<T, String> {
    link::read_frame_limited(recv, MAX_HEADER)
        .await
        .map_err(|e| e.to_string())
}

async fn write_status(send: &mut quinn::SendStream, status: &RouteStatus) -> Result<(), String> {
    link::write_frame(send, status)
        .await
        .map_err(|e| e.to_string())
}
