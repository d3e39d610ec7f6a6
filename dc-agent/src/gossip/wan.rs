//! A server's place in the WAN gossip pool: the servers of every datacenter, named
//! `node.dc`, whose packets ride the server's dc-links as QUIC datagrams (see
//! [`crate::wan::DcLinks`]) and are routed by the gateways by datacenter and node name.
//!
//! There are no WAN addresses to join: a server announces itself by name to the other
//! servers of its datacenter (it knows them from the LAN pool) and to the servers of every
//! datacenter its gateways know (it asks that datacenter for its Raft configuration, through
//! the gateways, as any cross-DC request). It keeps doing so, with backoff, for every
//! datacenter where it knows no live member, so a new datacenter, or one back after a
//! partition, is joined without a restart. (foca takes an announcement only when it names
//! the receiver, so "any server of dc2" cannot be announced to.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::keyfile::SharedKeyring;
use super::pool::{self, MemberStatus, NodeId, Pool, PoolEvents, PoolKind, Transport};
use crate::wan::DcLinks;

/// How often the pool's reach is checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Longest pause between announcements to a datacenter that does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// WAN gossip datagrams waiting for the pool.
const INBOX: usize = 1024;

/// Who this server is in the WAN pool.
pub struct WanSettings {
    /// Node name.
    pub node_name: String,
    /// Datacenter.
    pub datacenter: String,
    /// The server's RPC address (where its dc-links start), shown by `members -wan`.
    pub rpc_addr: SocketAddr,
}

/// Starts this server's WAN pool over `links`, and keeps it joined to every datacenter.
pub fn start(
    settings: WanSettings,
    links: Arc<DcLinks>,
    lan: Pool,
    keyring: Option<SharedKeyring>,
    events: Arc<dyn PoolEvents>,
    cancel: CancellationToken,
) -> Pool {
    let (inbox_tx, inbox) = mpsc::channel(INBOX);
    links.set_gossip_inbox(inbox_tx);
    let local = NodeId {
        pool: PoolKind::Wan,
        addr: settings.rpc_addr,
        bump: crate::unix_ms(),
        name: settings.node_name,
        server: true,
        rpc_port: settings.rpc_addr.port(),
        dc: settings.datacenter,
        build: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let transport = Transport::Routed {
        out: links.clone(),
        inbox,
    };
    let wan = pool::start_on(
        local,
        transport,
        keyring,
        Vec::new(),
        events,
        crate::tasks::tracker(),
        cancel.child_token(),
    );
    crate::tasks::spawn(keep_joined(wan.clone(), links, lan, cancel));
    wan
}

/// When a target was last announced to, and how long to wait before the next time.
struct Attempt {
    next: Instant,
    backoff: Duration,
}

/// Announces this server to every server of its datacenter and every datacenter it sees no
/// live member of, backing off per target while it stays unanswered.
async fn keep_joined(wan: Pool, links: Arc<DcLinks>, lan: Pool, cancel: CancellationToken) {
    let own_dc = wan.local().dc.clone();
    let own_name = wan.local().name.clone();
    let mut attempts: HashMap<(String, String), Attempt> = HashMap::new();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if links.live() == 0 {
            continue;
        }
        let members = wan.members();
        let alive = |dc: &str, node: Option<&str>| {
            members.iter().any(|m| {
                m.status == MemberStatus::Alive
                    && m.id.dc == dc
                    && !(m.id.dc == own_dc && m.id.name == own_name)
                    && node.is_none_or(|n| m.id.name == n)
            })
        };
        let mut wanted: Vec<(String, String)> = lan
            .members()
            .into_iter()
            .filter(|m| {
                m.id.server
                    && m.status == MemberStatus::Alive
                    && m.id.dc == own_dc
                    && m.id.name != own_name
            })
            .filter(|m| !alive(&own_dc, Some(&m.id.name)))
            .map(|m| (own_dc.clone(), m.id.name))
            .collect();
        if let Some(info) = links.gateway_info().await {
            wanted.extend(
                info.datacenters
                    .into_iter()
                    .filter(|(dc, _)| *dc != own_dc && !alive(dc, None))
                    .map(|(dc, _)| (dc, String::new())),
            );
        }
        // Other datacenters are wanted whole (an empty node name): who their servers are is
        // asked only when an announcement is due. A target forgets its backoff only once it
        // is seen alive (not when this round could not ask the gateways), or when it is no
        // longer a server of this datacenter.
        attempts.retain(|(dc, node), _| {
            if node.is_empty() {
                !alive(dc, None)
            } else {
                wanted.iter().any(|(d, n)| d == dc && n == node)
            }
        });
        let now = Instant::now();
        let mut seeds = Vec::new();
        for target in wanted {
            let attempt = attempts.entry(target.clone()).or_insert(Attempt {
                next: now,
                backoff: CHECK_EVERY,
            });
            if attempt.next > now {
                continue;
            }
            attempt.next = now + attempt.backoff;
            attempt.backoff = (attempt.backoff * 2).min(MAX_BACKOFF);
            if target.1.is_empty() {
                match server_names(&links, &target.0).await {
                    Ok(names) => {
                        tracing::debug!(dc = %target.0, servers = ?names, "announcing this server to another datacenter's servers");
                        seeds.extend(names.iter().map(|n| NodeId::wan_seed(&target.0, n)));
                    }
                    Err(e) => {
                        tracing::debug!(dc = %target.0, error = %e, "could not learn another datacenter's servers")
                    }
                }
            } else {
                tracing::debug!(dc = %target.0, node = %target.1, "announcing this server to the WAN pool");
                seeds.push(NodeId::wan_seed(&target.0, &target.1));
            }
        }
        if !seeds.is_empty() {
            wan.join(seeds).await;
        }
    }
}

/// The node names of `dc`'s servers, from its Raft configuration (any server answers).
async fn server_names(links: &DcLinks, dc: &str) -> Result<Vec<String>, String> {
    let request = crate::rpc::messages::HttpRequest {
        method: "GET".to_owned(),
        uri: format!(
            "/v1/operator/raft/configuration?stale&dc={}",
            wire::percent::segment(dc)
        ),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let response = links
        .call(dc, &request, Duration::from_secs(3))
        .await
        .map_err(|e| e.to_string())?;
    if response.status != 200 {
        return Err(format!(
            "the Raft configuration of {dc} answered {}",
            response.status
        ));
    }
    let configuration: wire::api::RaftConfiguration =
        serde_json::from_slice(&response.body).map_err(|e| e.to_string())?;
    let names: Vec<String> = configuration
        .servers
        .into_iter()
        .map(|s| s.node)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err(format!("{dc} named no servers"));
    }
    Ok(names)
}
