//! A server's links to the gateways of its datacenter (dc-links), its only way to other
//! datacenters. Each server dials every gateway named in `isthmus.gateways` with its server
//! certificate (ALPN `isthmus/dc-link`; the gateway must hold a gateway certificate of this
//! datacenter) and keeps the connection up, redialling with backoff.
//!
//! Both directions ride the same connection: the server opens a stream per cross-DC request
//! (a `wire::route::StreamOpen` routing it, then the request frame); the gateway opens a stream on it
//! to deliver a request from another datacenter, which the server answers through its own
//! API router, as it answers a request forwarded by another server.
//!
//! WAN gossip rides the same connections as QUIC datagrams (`wire::route::DatagramHeader`,
//! then a sealed foca packet): [`DcLinks`] sends them for the WAN pool and hands the ones
//! addressed to this server to it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::{Duration, Instant};

use pki::{NodeTls, PeerPolicy};
use tokio_util::sync::CancellationToken;
use wire::route::{
    GatewayInfo, RouteHeader, RouteStatus, StreamKind, StreamOpen, Target, ALPN_DC_LINK,
};

use crate::rpc::messages::{HttpHandler, HttpRequest, HttpResponse};
use crate::rpc::{read_frame_limited, write_frame};

/// How often a server asks each of its gateways which datacenters it links to.
const LINKED_EVERY: Duration = Duration::from_secs(5);

/// Why a cross-DC request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossDcError {
    /// No route to the datacenter: no gateway link, or every gateway said so. Nothing was
    /// delivered.
    #[error("No path to datacenter \"{dc}\": {why}")]
    NoPath {
        /// The datacenter.
        dc: String,
        /// What the hops said.
        why: String,
    },
    /// The request left but no answer came back: a write may have been applied.
    #[error(
        "rpc error: no answer from datacenter \"{dc}\" ({why}); a write may have been applied"
    )]
    NoAnswer {
        /// The datacenter.
        dc: String,
        /// What went wrong.
        why: String,
    },
}

// The limits every hop applies: the shared QUIC shell's.
pub use link::{MAX_DEADLINE, MAX_HEADER};
/// How long the header and request of a delivered stream may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The dc-links of a server.
pub struct DcLinks {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    server_name: String,
    datacenter: String,
    live: RwLock<Vec<(SocketAddr, quinn::Connection)>>,
    next: AtomicUsize,
    /// Answers requests from other datacenters (through its API router, once set).
    server: Arc<crate::server::Server>,
    /// The last `GatewayInfo` and when it came.
    info: Mutex<Option<(Instant, GatewayInfo)>>,
    /// Where WAN gossip datagrams addressed to this server go (the WAN pool, once started).
    gossip_inbox: std::sync::OnceLock<tokio::sync::mpsc::Sender<Vec<u8>>>,
    /// The datacenters each linked gateway has a WAN link to, as it last said.
    linked: RwLock<std::collections::HashMap<SocketAddr, std::collections::BTreeSet<String>>>,
    /// The gateways dialled, each with the token that stops its dial loop.
    dialled: Mutex<std::collections::BTreeMap<SocketAddr, CancellationToken>>,
    /// Parent of the dial loops' tokens.
    cancel: CancellationToken,
    /// WAN gossip datagrams dropped (too large for the link, no link, inbox full).
    datagrams_dropped: prometheus::IntCounter,
}

/// The QUIC client config of a server's dc-links: its own certificate, only gateways of its
/// datacenter accepted on the other end, and a dead gateway noticed within 1.5 s
/// ([`link::dc_link_transport_config`]).
pub fn client_config(
    tls: &NodeTls,
    datacenter: &str,
    domain: &str,
) -> anyhow::Result<quinn::ClientConfig> {
    let policy = PeerPolicy::new(domain, &[wire::Role::Gateway], Some(datacenter));
    link::client_config_with(
        tls.client_config(policy, &[ALPN_DC_LINK])?,
        link::dc_link_transport_config(),
    )
}

impl DcLinks {
    /// Starts a dial loop per gateway on `endpoint` (the server's QUIC endpoint). Requests
    /// from other datacenters are answered by `handler` once it is set.
    pub fn start(
        server: Arc<crate::server::Server>,
        client: quinn::ClientConfig,
        domain: &str,
        gateways: Vec<SocketAddr>,
        datagrams_dropped: prometheus::IntCounter,
        cancel: CancellationToken,
    ) -> Arc<DcLinks> {
        let datacenter = server.datacenter.clone();
        let links = Arc::new(DcLinks {
            endpoint: server.transport.endpoint().clone(),
            client,
            server_name: format!("gateway.{datacenter}.{domain}"),
            datacenter,
            live: RwLock::new(Vec::new()),
            next: AtomicUsize::new(0),
            server,
            info: Mutex::new(None),
            gossip_inbox: std::sync::OnceLock::new(),
            datagrams_dropped,
            dialled: Mutex::new(std::collections::BTreeMap::new()),
            linked: RwLock::new(std::collections::HashMap::new()),
            cancel,
        });
        links.set_gateways(&gateways);
        links
    }

    /// Links to exactly these gateways from now on: dials the new ones, drops the others
    /// (`reload` after `isthmus.gateways` changed). Returns how many were added and removed.
    pub fn set_gateways(self: &Arc<Self>, gateways: &[SocketAddr]) -> (usize, usize) {
        let mut dialled = self.dialled.lock();
        let before = dialled.len();
        dialled.retain(|addr, stop| {
            let keep = gateways.contains(addr);
            if !keep {
                tracing::info!(gateway = %addr, "no longer a gateway of this datacenter; closing its dc-link");
                stop.cancel();
            }
            keep
        });
        let removed = before - dialled.len();
        let mut added = 0;
        for gateway in gateways {
            if !dialled.contains_key(gateway) {
                let stop = self.cancel.child_token();
                dialled.insert(*gateway, stop.clone());
                crate::tasks::spawn(self.clone().keep_link(*gateway, stop));
                added += 1;
            }
        }
        (added, removed)
    }

    /// How many gateways this server is linked to now.
    pub fn live(&self) -> usize {
        self.live.read().len()
    }

    async fn keep_link(self: Arc<Self>, gateway: SocketAddr, cancel: CancellationToken) {
        let this = self.clone();
        link::keep_dialled(
            &self.endpoint,
            &self.client,
            gateway,
            &self.server_name,
            "dc-link",
            &cancel,
            |connection| {
                let this = this.clone();
                let cancel = cancel.clone();
                async move {
                    tracing::info!(gateway = %gateway, "dc-link up");
                    this.set_live(gateway, Some(connection.clone()));
                    let datagrams = cancel.child_token();
                    crate::tasks::spawn(
                        this.clone()
                            .receive_datagrams(connection.clone(), datagrams.clone()),
                    );
                    crate::tasks::spawn(this.clone().watch_links(
                        gateway,
                        connection.clone(),
                        datagrams.clone(),
                    ));
                    this.serve(&connection, &cancel).await;
                    datagrams.cancel();
                    this.set_live(gateway, None);
                    if cancel.is_cancelled() {
                        connection.close(0u32.into(), b"gateway removed from isthmus.gateways");
                        return;
                    }
                    tracing::warn!(gateway = %gateway, reason = ?connection.close_reason(), "dc-link down; redialling");
                }
            },
        )
        .await;
    }

    fn set_live(&self, gateway: SocketAddr, connection: Option<quinn::Connection>) {
        let mut live = self.live.write();
        live.retain(|(addr, _)| *addr != gateway);
        if let Some(connection) = connection {
            live.push((gateway, connection));
        }
    }

    /// Where WAN gossip datagrams for this server go from now on.
    pub fn set_gossip_inbox(&self, inbox: tokio::sync::mpsc::Sender<Vec<u8>>) {
        let _ = self.gossip_inbox.set(inbox);
    }

    /// Hands the datagrams a gateway delivers to the WAN pool until the connection ends.
    /// Only those addressed to this server (or to any server of its datacenter) are taken.
    async fn receive_datagrams(
        self: Arc<Self>,
        connection: quinn::Connection,
        cancel: CancellationToken,
    ) {
        let own_name = self.server.node.name.clone();
        loop {
            let datagram = tokio::select! {
                _ = cancel.cancelled() => return,
                datagram = connection.read_datagram() => datagram,
            };
            let Ok(datagram) = datagram else { return };
            let Some((header, payload)) = wire::route::DatagramHeader::decode(&datagram) else {
                continue;
            };
            if header.dst_dc != self.datacenter
                || !(header.dst_node.is_empty() || header.dst_node == own_name)
            {
                continue;
            }
            let Some(inbox) = self.gossip_inbox.get() else {
                continue;
            };
            if inbox.try_send(payload.to_vec()).is_err() {
                self.datagrams_dropped.inc();
            }
        }
    }

    /// Answers the streams a gateway opens until the connection ends.
    async fn serve(&self, connection: &quinn::Connection, cancel: &CancellationToken) {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => return,
                stream = connection.accept_bi() => stream,
            };
            let Ok((send, recv)) = stream else { return };
            let handler = self.server.http_handler.get().cloned();
            crate::tasks::spawn(answer(handler, self.datacenter.clone(), send, recv));
        }
    }

    fn connections(&self) -> Vec<(SocketAddr, quinn::Connection)> {
        let live = self.live.read().clone();
        if live.is_empty() {
            return live;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % live.len();
        let mut ordered = live;
        ordered.rotate_left(start);
        ordered
    }

    /// Sends `request` to a server of `dc` through a gateway and returns its answer. A
    /// gateway that cannot be reached or has no route is passed over for the next one.
    pub async fn call(
        &self,
        dc: &str,
        request: &HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, CrossDcError> {
        let no_path = |why: String| CrossDcError::NoPath {
            dc: dc.to_owned(),
            why,
        };
        let connections = self.connections();
        if connections.is_empty() {
            return Err(no_path(format!(
                "no gateway of {} is linked to this server",
                self.datacenter
            )));
        }
        let timeout = timeout.min(MAX_DEADLINE);
        let deadline = Instant::now() + timeout;
        let no_answer = |why: String| CrossDcError::NoAnswer {
            dc: dc.to_owned(),
            why,
        };
        let mut failures = Vec::new();
        // A read goes round the gateways up to three times: a gateway may have routed it to
        // a server that just died (noticed only at QUIC's idle timeout), and its next
        // attempt goes to another. A write goes once round, and only to gateways that
        // certainly did not deliver it.
        let rounds = if request.method == "GET" { 3 } else { 1 };
        let attempts: Vec<(SocketAddr, quinn::Connection)> = connections
            .iter()
            .cycle()
            .take(connections.len() * rounds)
            .cloned()
            .collect();
        for (gateway, connection) in attempts {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Each attempt claims only the time that is left.
            let header = RouteHeader {
                dst_dc: dc.to_owned(),
                src_dc: self.datacenter.clone(),
                target: Target::AnyServer,
                deadline_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            };
            let attempt = routed_call(&connection, &header, request);
            match tokio::time::timeout(left, attempt).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(Failure::NotSent(why))) => {
                    failures.push(format!("gateway {gateway}: {why}"))
                }
                Ok(Err(Failure::NoRoute(why))) => failures.push(why),
                Ok(Err(Failure::Broken(why))) => {
                    // The request may have been delivered: a write must not go twice.
                    if request.method != "GET" {
                        return Err(no_answer(why));
                    }
                    failures.push(why);
                }
                Err(_) => return Err(no_answer(format!("no answer within {timeout:?}"))),
            }
            tracing::debug!(gateway = %gateway, dc = %dc, error = ?failures.last(), "cross-DC attempt failed");
        }
        Err(no_path(failures.join("; ")))
    }

    /// What a gateway knows of the federation, asked at most once a second.
    pub async fn gateway_info(&self) -> Option<GatewayInfo> {
        {
            let cached = self.info.lock();
            if let Some((at, info)) = cached.as_ref() {
                if at.elapsed() < Duration::from_secs(1) {
                    return Some(info.clone());
                }
            }
        }
        let info = self.ask_gateway_info().await;
        if let Some(info) = &info {
            *self.info.lock() = Some((Instant::now(), info.clone()));
        }
        info
    }

    async fn ask_gateway_info(&self) -> Option<GatewayInfo> {
        for (gateway, connection) in self.connections() {
            if let Some(info) = ask_info(&connection).await {
                self.note_linked(gateway, &info);
                return Some(info);
            }
        }
        None
    }

    /// Tells every gateway of this datacenter to forget `dc` (removed from the federation);
    /// each passes it on to the gateways it links to. Returns how many took it.
    pub async fn forget_datacenter(&self, dc: &str) -> usize {
        let mut told = 0;
        for (gateway, connection) in self.connections() {
            let tell = async {
                let (mut send, mut recv) = connection.open_bi().await.ok()?;
                let open = StreamOpen::new(StreamKind::Forget(dc.to_owned()));
                write_frame(&mut send, &open).await.ok()?;
                read_frame_limited::<RouteStatus>(&mut recv, MAX_HEADER)
                    .await
                    .ok()
            };
            match tokio::time::timeout(Duration::from_secs(2), tell).await {
                Ok(Some(RouteStatus::Delivered)) => told += 1,
                outcome => {
                    tracing::warn!(gateway = %gateway, dc = %dc, outcome = ?outcome, "a gateway did not take the removal of a datacenter")
                }
            }
        }
        *self.info.lock() = None;
        told
    }

    /// Remembers which datacenters `gateway` has a WAN link to now.
    fn note_linked(&self, gateway: SocketAddr, info: &GatewayInfo) {
        let linked = info
            .datacenters
            .iter()
            .filter(|(_, rtt)| rtt.is_some())
            .map(|(dc, _)| dc.clone())
            .collect();
        {
            let mut all = self.linked.write();
            all.insert(gateway, linked);
        }
    }

    /// Keeps [`DcLinks::linked`] current for one gateway while its dc-link is up.
    async fn watch_links(
        self: Arc<Self>,
        gateway: SocketAddr,
        connection: quinn::Connection,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(LINKED_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Some(info) = ask_info(&connection).await {
                self.note_linked(gateway, &info);
            }
        }
        {
            let mut all = self.linked.write();
            all.remove(&gateway);
        }
    }
}

impl crate::gossip::pool::RoutedOut for DcLinks {
    fn send(&self, dc: &str, node: &str, payload: Vec<u8>) {
        let header = wire::route::DatagramHeader {
            dst_dc: dc,
            dst_node: node,
        };
        let Some(datagram) = header.encode(&payload) else {
            self.datagrams_dropped.inc();
            return;
        };
        // Gateways share the gossip as they share requests; a datagram a link cannot take
        // (too large, link closing) goes to the next one. Gateways known to have a WAN link
        // to the destination come first: a datagram has no `NoRoute` answer to fall back on.
        let mut connections = self.connections();
        if dc != self.datacenter {
            {
                let linked = self.linked.read();
                connections.sort_by_key(|(gateway, _)| {
                    !linked.get(gateway).is_some_and(|dcs| dcs.contains(dc))
                });
            }
        }
        for (_, connection) in connections {
            if connection
                .max_datagram_size()
                .is_some_and(|max| datagram.len() <= max)
                && connection
                    .send_datagram(bytes::Bytes::from(datagram.clone()))
                    .is_ok()
            {
                return;
            }
        }
        self.datagrams_dropped.inc();
    }
}

/// One gateway this server dials, as `/v1/isthmus/gateways` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GatewayState {
    /// The gateway's node name, when its dc-link is up.
    pub name: Option<String>,
    /// Where this server dials it.
    pub address: String,
    /// Whether the dc-link is up.
    pub linked: bool,
    /// The dc-link's round trip (QUIC's smoothed estimate), in microseconds.
    #[serde(rename = "RTTMicros")]
    pub rtt_micros: Option<u64>,
    /// The gateway's WAN links: each other datacenter with its round trip (`None`: down).
    pub links: Vec<GatewayLink>,
}

/// One WAN link of a gateway.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GatewayLink {
    /// The datacenter at the other end.
    pub datacenter: String,
    /// Its round trip in microseconds (`None`: no link now).
    #[serde(rename = "RTTMicros")]
    pub rtt_micros: Option<u64>,
}

impl DcLinks {
    /// Every gateway this server dials: its dc-link, and what it says of its WAN links.
    pub async fn gateway_states(&self) -> Vec<GatewayState> {
        let live: std::collections::HashMap<SocketAddr, quinn::Connection> =
            self.live.read().iter().cloned().collect();
        let dialled: Vec<SocketAddr> = self.dialled.lock().keys().copied().collect();
        // Every gateway asked at once (each answer within 500 ms).
        let infos = futures_util::future::join_all(dialled.iter().map(|address| {
            let connection = live.get(address).cloned();
            async move {
                match connection {
                    Some(connection) => ask_info(&connection).await,
                    None => None,
                }
            }
        }))
        .await;
        let mut states = Vec::new();
        for (address, info) in dialled.into_iter().zip(infos) {
            let connection = live.get(&address);
            let links = info
                .as_ref()
                .map(|info| {
                    info.datacenters
                        .iter()
                        .filter(|(dc, _)| *dc != self.datacenter)
                        .map(|(dc, rtt)| GatewayLink {
                            datacenter: dc.clone(),
                            rtt_micros: *rtt,
                        })
                        .collect()
                })
                .unwrap_or_default();
            states.push(GatewayState {
                name: info.map(|i| i.node),
                address: address.to_string(),
                linked: connection.is_some(),
                rtt_micros: connection
                    .map(|c| u64::try_from(c.rtt().as_micros()).unwrap_or(u64::MAX)),
                links,
            });
        }
        states
    }
}

/// Asks the gateway at the other end of `connection` what it knows of the federation.
async fn ask_info(connection: &quinn::Connection) -> Option<GatewayInfo> {
    let ask = async {
        let (mut send, mut recv) = connection.open_bi().await.ok()?;
        write_frame(&mut send, &StreamOpen::new(StreamKind::Info))
            .await
            .ok()?;
        read_frame_limited::<GatewayInfo>(&mut recv, MAX_HEADER)
            .await
            .ok()
    };
    tokio::time::timeout(Duration::from_millis(500), ask)
        .await
        .ok()
        .flatten()
}

enum Failure {
    /// Nothing left this server.
    NotSent(String),
    /// A hop answered that it has no route.
    NoRoute(String),
    /// The stream broke after the request was sent.
    Broken(String),
}

async fn routed_call(
    connection: &quinn::Connection,
    header: &RouteHeader,
    request: &HttpRequest,
) -> Result<HttpResponse, Failure> {
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| Failure::NotSent(e.to_string()))?;
    let header = wire::frame::encode(&StreamOpen::new(StreamKind::Route(header.clone())))
        .map_err(|e| Failure::NotSent(e.to_string()))?;
    send.write_all(&header)
        .await
        .map_err(|e| Failure::NotSent(e.to_string()))?;
    let written = write_frame(&mut send, request).await;
    // A hop that has no route answers at once and stops reading: its answer, if any, says
    // more than the failed write.
    let status: RouteStatus = match read_frame_limited(&mut recv, MAX_HEADER).await {
        Ok(status) => status,
        Err(e) => {
            return Err(match written {
                Err(w) => Failure::Broken(format!("{w}; {e}")),
                Ok(()) => Failure::Broken(e.to_string()),
            })
        }
    };
    match status {
        RouteStatus::Delivered => read_frame_limited(
            &mut recv,
            crate::http::forward::MAX_FORWARDED_ANSWER + 1024 * 1024,
        )
        .await
        .map_err(|e| Failure::Broken(e.to_string())),
        RouteStatus::NoRoute(why) => Err(Failure::NoRoute(why)),
    }
}

/// Answers one request a gateway delivered from another datacenter.
async fn answer(
    handler: Option<HttpHandler>,
    datacenter: String,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let read = async {
        let open = link::read_stream_open(&mut recv).await?;
        let StreamKind::Route(header) = open.kind else {
            return Err(crate::rpc::FrameIoError::Read(
                "a delivered stream that is not a request".to_owned(),
            ));
        };
        let request: HttpRequest = read_frame_limited(
            &mut recv,
            crate::http::forward::MAX_FORWARDED_BODY + MAX_HEADER,
        )
        .await?;
        Ok::<_, crate::rpc::FrameIoError>((header, request))
    };
    let (header, request) = match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "bad routed stream");
            return;
        }
        Err(_) => return,
    };
    // Only this datacenter's own, non-agent requests: a delivered request must not travel
    // on to a third datacenter, nor reach an agent endpoint (leave, reload, ...).
    let query_dc = crate::http::params(request.uri.split_once('?').map(|(_, q)| q))
        .ok()
        .and_then(|p| p.get("dc").cloned())
        .filter(|dc| !dc.is_empty());
    let refused = if header.dst_dc != datacenter || query_dc.is_some_and(|dc| dc != datacenter) {
        Some(format!(
            "a server of {datacenter} answers only for {datacenter}"
        ))
    } else if request.uri.starts_with("/v1/agent/") {
        Some("agent endpoints are not answered across datacenters".to_owned())
    } else if header.deadline_ms == 0 {
        Some("the request's deadline had passed".to_owned())
    } else {
        None
    };
    if let Some(why) = refused {
        let _ = write_frame(&mut send, &RouteStatus::NoRoute(why)).await;
        return;
    }
    let Some(handler) = handler else {
        let status = RouteStatus::NoRoute(format!("a server of {datacenter} is still starting"));
        let _ = write_frame(&mut send, &status).await;
        return;
    };
    tracing::debug!(src_dc = %header.src_dc, uri = %request.uri, "answering a request from another datacenter");
    let deadline = Duration::from_millis(header.deadline_ms).min(MAX_DEADLINE);
    let response = match tokio::time::timeout(deadline, handler(request)).await {
        Ok(response) => response,
        Err(_) => return,
    };
    let status = wire::frame::encode(&RouteStatus::Delivered);
    if let Ok(status) = status {
        if send.write_all(&status).await.is_ok() {
            let _ = write_frame(&mut send, &response).await;
        }
    }
}
