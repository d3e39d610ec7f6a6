//! Finding the other servers and forming (or joining) the Raft cluster.
//!
//! Every half second, until this server is a voter that knows a leader: greet each `retry_join` address and each
//! server of this datacenter that LAN gossip knows (so servers joined afterwards with
//! `dc-agent join`, as Consul's tutorials do, count for `bootstrap_expect`). If a greeted
//! server knows a leader, ask that leader to add this server (as a learner, promoted to voter
//! once caught up). Otherwise, once at least `bootstrap_expect` uninitialized servers of this
//! datacenter with the same expectation know each other, and every one of them names the
//! same set of candidates (so a server gossip has not told everyone about yet cannot lead
//! two servers to bootstrap two clusters), the one with the lowest node ID initializes the
//! cluster with all of them, as Consul bootstraps with every server it knows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Server, RPC_TIMEOUT};
use crate::rpc::messages::{Hello, RpcReply, RpcRequest, PROTOCOL_VERSION};

/// How long a voter waits without a leader (an election under way) before it asks to be
/// added back.
const ELECTION_GRACE: Duration = Duration::from_secs(3);

/// Runs until cancelled.
pub async fn discovery_loop(server: Arc<Server>, cancel: CancellationToken) {
    let mut logged_waiting = false;
    let mut leaderless_since: Option<tokio::time::Instant> = None;
    loop {
        // A server that is leaving stays out, however long it takes to stop. A voter by its
        // own log that has known no leader for longer than an election takes may be one the
        // others removed (it left, then started again from its data): it asks the leader the
        // others know to add it back.
        let leaving = server.leaving.load(std::sync::atomic::Ordering::SeqCst);
        let voter = server
            .members()
            .iter()
            .any(|(id, _, voter)| *id == server.id && *voter);
        let in_election = match (server.leader().is_some(), leaderless_since) {
            (true, _) => {
                leaderless_since = None;
                false
            }
            (false, None) => {
                leaderless_since = Some(tokio::time::Instant::now());
                true
            }
            (false, Some(since)) => since.elapsed() < ELECTION_GRACE,
        };
        let settled = leaving || (voter && (server.leader().is_some() || in_election));
        if !settled {
            match step(&server).await {
                Ok(Some(message)) if !logged_waiting => {
                    tracing::info!(node = %server.node.name, "{message}");
                    logged_waiting = true;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "discovery step failed"),
            }
        } else {
            logged_waiting = false;
        }
        let pause = if settled && !in_election {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(500)
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One round; returns a message worth logging once while waiting.
async fn step(server: &Server) -> anyhow::Result<Option<String>> {
    let initialized = server.raft.is_initialized().await?;
    let peers = greet(server).await;
    // A cluster exists: join it through its leader.
    if let Some((_, leader)) = peers
        .iter()
        .find_map(|p| p.leader.clone())
        .or_else(|| server.leader().filter(|(id, _)| *id != server.id))
    {
        return join(server, &leader).await;
    }
    if initialized || server.bootstrap_expect == 0 {
        return Ok(Some("waiting for a leader".to_owned()));
    }
    // A cluster exists already (its election may be under way): join it, never start another.
    if peers.iter().any(|p| p.initialized) {
        return Ok(Some(
            "a server of this datacenter is already bootstrapped; waiting for its leader"
                .to_owned(),
        ));
    }
    bootstrap(server, &peers).await
}

/// Says hello to every retry_join target and every server of this datacenter LAN gossip
/// knows; returns the answers of this datacenter's other servers.
async fn greet(server: &Server) -> Vec<Hello> {
    let mut targets: Vec<std::net::SocketAddr> = server.retry_join.clone();
    if let Some(lan) = server.lan.get() {
        for member in lan.members() {
            let id = &member.id;
            let alive = member.status == crate::gossip::pool::MemberStatus::Alive;
            if alive && id.server && id.dc == server.datacenter && id.rpc_port != 0 {
                let addr = std::net::SocketAddr::new(id.addr.ip(), id.rpc_port);
                if addr.to_string() != server.node.addr && !targets.contains(&addr) {
                    targets.push(addr);
                }
            }
        }
    }
    let mut peers: Vec<Hello> = Vec::new();
    for addr in &targets {
        let hello = RpcRequest::Hello {
            version: PROTOCOL_VERSION,
        };
        let reply = server
            .transport
            .call(*addr, crate::rpc::ALPN_RPC, &hello, RPC_TIMEOUT)
            .await;
        match reply {
            Ok(RpcReply::Hello(hello)) if hello.id == server.id => {}
            Ok(RpcReply::Hello(hello)) if hello.datacenter != server.datacenter => {
                tracing::warn!(peer = %hello.node.name, peer_dc = %hello.datacenter, dc = %server.datacenter, "a retry_join target belongs to another datacenter; ignoring it");
            }
            Ok(RpcReply::Hello(hello)) => peers.push(hello),
            Ok(_) => {}
            Err(e) => tracing::debug!(peer = %addr, error = %e, "retry_join target did not answer"),
        }
    }
    peers
}

/// Asks the leader to add this server.
async fn join(server: &Server, leader: &wire::raft::RaftNode) -> anyhow::Result<Option<String>> {
    let request = RpcRequest::Join {
        id: server.id,
        node: server.node.clone(),
    };
    match server
        .call(&leader.addr, &request, RPC_TIMEOUT * 15)
        .await?
    {
        RpcReply::Done(Ok(())) => {
            tracing::info!(leader = %leader.name, "joined the cluster");
            Ok(None)
        }
        RpcReply::Done(Err(e)) => Err(anyhow::anyhow!(
            "the leader {} refused the join: {e}",
            leader.name
        )),
        _ => Err(anyhow::anyhow!("the leader answered another kind of RPC")),
    }
}

/// No cluster yet: bootstrap one once `bootstrap_expect` servers agree on who they are,
/// the lowest ID doing it with all of them as voters.
async fn bootstrap(server: &Server, peers: &[Hello]) -> anyhow::Result<Option<String>> {
    let mut candidates: BTreeMap<u64, wire::raft::RaftNode> =
        BTreeMap::from([(server.id, server.node.clone())]);
    for peer in peers {
        if !peer.initialized && peer.bootstrap_expect == server.bootstrap_expect {
            candidates.insert(peer.id, peer.node.clone());
        }
        if peer.bootstrap_expect != server.bootstrap_expect && peer.bootstrap_expect != 0 {
            tracing::warn!(peer = %peer.node.name, theirs = peer.bootstrap_expect, ours = server.bootstrap_expect, "servers disagree on bootstrap_expect");
        }
    }
    let expect = server.bootstrap_expect as usize;
    let ids: Vec<u64> = candidates.keys().copied().collect();
    server.bootstrap_candidates.lock().clone_from(&ids);
    if candidates.len() < expect {
        return Ok(Some(format!(
            "waiting for {expect} servers to bootstrap; {} known",
            candidates.len()
        )));
    }
    // Every candidate must see the same set (their answers are at most one round old).
    let agreed = peers
        .iter()
        .filter(|p| candidates.contains_key(&p.id))
        .all(|p| p.candidates == ids);
    if !agreed {
        return Ok(Some(
            "waiting for the servers to agree on who bootstraps".to_owned(),
        ));
    }
    let chosen = candidates;
    if chosen.keys().next() != Some(&server.id) {
        return Ok(Some("another server bootstraps the cluster".to_owned()));
    }
    let names: Vec<&str> = chosen.values().map(|n| n.name.as_str()).collect();
    tracing::info!(servers = ?names, "bootstrapping the cluster");
    match server.raft.initialize(chosen).await {
        Ok(()) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("bootstrap: {e}")),
    }
}
