//! The leader turns LAN membership into each node's `serfHealth` check ("Serf Health
//! Status"), as Consul's leader does: alive -> passing, failed -> critical (so the node's
//! services leave DNS and `?passing`), left -> the node is deregistered (and a server that
//! left, or was force-left, is removed from the Raft configuration). Only differences
//! are written; the leader's own state machine is current, so comparing with it is exact.
//!
//! Each alive server of the datacenter also gets the `consul` service on its node (port: its
//! server port), as Consul's leader registers it, so `/v1/catalog/services` lists it and
//! `consul.service.consul` resolves the servers. Agents' anti-entropy leaves it alone.

use std::sync::Arc;
use std::time::Duration;

use wire::records::HealthStatus;

use crate::gossip::pool::{MemberStatus, Pool as LanPool};
use wire::api::{DeregisterRequest, RegisterCheck, RegisterRequest, RegisterService};

use crate::internal::LocalApi;
use crate::server::Server;

/// The check ID Consul uses.
pub const SERF_HEALTH: &str = "serfHealth";

/// The service every server carries, as in Consul.
pub const CONSUL_SERVICE: &str = "consul";

/// The leader's duty: reconciles membership every second.
pub struct SerfReconcile {
    /// The LAN pool.
    pub lan: LanPool,
    /// The local API (the catalog's writes go through it).
    pub api: LocalApi,
    /// This datacenter.
    pub datacenter: String,
    /// Servers being added back.
    pub readding: Readding,
}

#[async_trait::async_trait]
impl super::leader::Duty for SerfReconcile {
    fn name(&self) -> &'static str {
        "serf_health"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn run(&mut self, server: &Arc<Server>) {
        readd_live_servers(server, &self.lan, &self.datacenter, &self.readding).await;
        if let Err(e) = reconcile(server, &self.lan, &self.api, &self.datacenter).await {
            tracing::debug!(error = %e, "serfHealth reconcile failed; retrying");
        }
    }
}

/// Servers being added back, so a slow catch-up is not started twice.
pub type Readding = Arc<parking_lot::Mutex<std::collections::HashSet<u64>>>;

/// The Raft address of a gossip member that is a server (`ip:rpc_port`).
fn raft_addr(member: &crate::gossip::pool::Member) -> Option<String> {
    (member.id.server && member.id.rpc_port != 0)
        .then(|| std::net::SocketAddr::new(member.id.addr.ip(), member.id.rpc_port).to_string())
}

/// A live server of this datacenter that is not in the Raft configuration (removed while it
/// was down: autopilot, `force-leave`, `remove-peer`) is added back, as Consul's leader does
/// on its reconcile pass. Its own log may still name it a voter, so it would never ask.
async fn readd_live_servers(
    server: &Arc<Server>,
    lan: &LanPool,
    datacenter: &str,
    readding: &Readding,
) {
    let in_raft: std::collections::BTreeSet<String> = server
        .members()
        .into_iter()
        .map(|(_, node, _)| node.addr)
        .collect();
    for member in lan.members() {
        if member.status != MemberStatus::Alive || member.id.dc != datacenter {
            continue;
        }
        let Some(addr) = raft_addr(&member) else {
            continue;
        };
        if in_raft.contains(&addr) || addr == server.node.addr {
            continue;
        }
        let Ok(socket) = addr.parse::<std::net::SocketAddr>() else {
            continue;
        };
        let hello = server
            .transport
            .call(
                socket,
                crate::rpc::ALPN_RPC,
                &crate::rpc::messages::RpcRequest::Hello {
                    version: crate::rpc::messages::PROTOCOL_VERSION,
                },
                super::RPC_TIMEOUT,
            )
            .await;
        let Ok(crate::rpc::messages::RpcReply::Hello(hello)) = hello else {
            continue;
        };
        if hello.datacenter != datacenter || !hello.initialized || hello.leaving {
            // An uninitialized server joins (or bootstraps) by itself.
            continue;
        }
        let fresh = readding.lock().insert(hello.id);
        if !fresh {
            continue;
        }
        tracing::info!(node = %hello.node.name, addr = %addr, "adding back a live server missing from the Raft configuration");
        let server = server.clone();
        let readding = readding.clone();
        crate::tasks::spawn(async move {
            if let Err(e) = server.add_server(hello.id, hello.node.clone()).await {
                tracing::warn!(node = %hello.node.name, error = %e, "could not add the server back; retrying");
            }
            readding.lock().remove(&hello.id);
        });
    }
}

/// Autopilot's `CleanupDeadServers`: voters that gossip marks failed leave Raft while fewer
/// than half the voters are failed and at least `MinQuorum` voters remain (Consul's rule), so
/// a dead server stops counting against the quorum.
async fn cleanup_dead_servers(
    server: &Server,
    lan: &LanPool,
    datacenter: &str,
) -> Result<(), String> {
    let config = server
        .state
        .read(|data| data.state.autopilot.clone().unwrap_or_default())
        .map_err(|e| e.to_string())?;
    if !config.cleanup_dead_servers {
        return Ok(());
    }
    // By Raft address, not name: a server restarted on another address leaves a failed
    // member under its old one, and the live server must not be removed for it.
    let members = lan.members();
    let alive: std::collections::BTreeSet<String> = members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .filter_map(raft_addr)
        .collect();
    let failed: std::collections::BTreeSet<String> = members
        .iter()
        .filter(|m| m.id.dc == datacenter && m.status == MemberStatus::Failed)
        .filter_map(raft_addr)
        .filter(|addr| !alive.contains(addr))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let members = server.members();
    let voters = members.iter().filter(|(_, _, voter)| *voter).count();
    let dead: Vec<_> = members
        .iter()
        .filter(|(id, node, _)| *id != server.id && failed.contains(&node.addr))
        .map(|(id, node, _)| (*id, node.name.clone()))
        .collect();
    if dead.is_empty() {
        return Ok(());
    }
    let remaining = voters.saturating_sub(dead.len());
    if dead.len() * 2 >= voters || remaining < config.min_quorum as usize {
        tracing::warn!(
            failed = dead.len(),
            voters,
            min_quorum = config.min_quorum,
            "not removing failed servers: too many have failed to remove them safely"
        );
        return Ok(());
    }
    let names: Vec<&str> = dead.iter().map(|(_, name)| name.as_str()).collect();
    tracing::info!(servers = ?names, "autopilot: removing failed servers from the Raft configuration");
    let ids: Vec<_> = dead.iter().map(|(id, _)| *id).collect();
    server.remove_servers(&ids).await
}

async fn reconcile(
    server: &Server,
    lan: &LanPool,
    api: &LocalApi,
    datacenter: &str,
) -> Result<(), String> {
    cleanup_dead_servers(server, lan, datacenter).await?;
    for member in lan.members() {
        let name = member.id.name.clone();
        let held = server
            .state
            .read(|data| {
                let catalog = &data.state.catalog;
                let node = catalog.node(&name).map(|n| n.address.clone());
                let check = catalog
                    .node_checks(&name)
                    .find(|c| c.check_id == SERF_HEALTH)
                    .map(|c| c.status);
                let consul_port = catalog
                    .node_services(&name)
                    .find(|s| s.id == CONSUL_SERVICE)
                    .map(|s| s.port);
                (node, check, consul_port)
            })
            .map_err(|e| e.to_string())?;
        match member.status {
            MemberStatus::Left => member_left(server, lan, api, datacenter, &member, held).await?,
            status => member_here(api, datacenter, &member, status, held).await?,
        }
    }
    Ok(())
}

/// What the catalog holds of a member: its address, its serfHealth status, the port of
/// its `consul` service.
type HeldMember = (Option<String>, Option<HealthStatus>, Option<u16>);

/// A member that left: out of Raft if it was a server of this datacenter (as Consul's
/// leader removes it, so it no longer counts for the quorum), and out of the catalog.
async fn member_left(
    server: &Server,
    lan: &LanPool,
    api: &LocalApi,
    datacenter: &str,
    member: &crate::gossip::pool::Member,
    held: HeldMember,
) -> Result<(), String> {
    let name = member.id.name.clone();
    // A server that left (or was force-left: it is dead) leaves Raft too, as
    // Consul's leader removes it, so it no longer counts for the quorum.
    let left_addr = raft_addr(member);
    let still_alive = lan
        .members()
        .iter()
        .any(|m| m.status == MemberStatus::Alive && raft_addr(m) == left_addr);
    if member.id.dc == datacenter && left_addr.is_some() && !still_alive {
        let stale: Vec<_> = server
            .members()
            .into_iter()
            .filter(|(id, node, _)| Some(&node.addr) == left_addr.as_ref() && *id != server.id)
            .map(|(id, _, _)| id)
            .collect();
        if !stale.is_empty() {
            tracing::info!(node = %name, "removing a server that left from the Raft configuration");
            server.remove_servers(&stale).await?;
        }
    }
    if held.0.is_none() {
        return Ok(());
    }
    tracing::info!(node = %name, "deregistering a node that left");
    api.catalog_deregister(&DeregisterRequest {
        node: name,
        ..DeregisterRequest::default()
    })
    .await?;
    Ok(())
}

/// A member alive or failed: its serfHealth check (and a server's `consul` service) as
/// gossip sees it; a node the catalog does not know yet is registered with its gossip
/// address.
async fn member_here(
    api: &LocalApi,
    datacenter: &str,
    member: &crate::gossip::pool::Member,
    status: MemberStatus,
    held: HeldMember,
) -> Result<(), String> {
    let name = member.id.name.clone();
    let address = member.id.addr.ip().to_string();
    let (wanted, output) = if status == MemberStatus::Alive {
        (HealthStatus::Passing, "Agent alive and reachable")
    } else {
        (HealthStatus::Critical, "Agent not live or unreachable")
    };
    // A server of this datacenter carries the `consul` service.
    let consul_service = (status == MemberStatus::Alive
        && member.id.server
        && member.id.dc == datacenter
        && member.id.rpc_port != 0
        && held.2 != Some(member.id.rpc_port))
    .then(|| RegisterService {
        id: CONSUL_SERVICE.to_owned(),
        service: CONSUL_SERVICE.to_owned(),
        port: member.id.rpc_port,
        meta: [
            ("raft_version", "3"),
            ("serf_protocol_current", "2"),
            ("serf_protocol_min", "1"),
            ("serf_protocol_max", "5"),
            ("version", member.id.build.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..RegisterService::default()
    });
    if held.1 == Some(wanted) && held.0.is_some() && consul_service.is_none() {
        return Ok(());
    }
    let check = RegisterCheck {
        check_id: SERF_HEALTH.to_owned(),
        name: "Serf Health Status".to_owned(),
        status: wanted.as_str().to_owned(),
        output: output.to_owned(),
        ..RegisterCheck::default()
    };
    // A node the catalog does not know yet is registered with its gossip address.
    let request = match held.0 {
        Some(_) => RegisterRequest {
            node: name,
            skip_node_update: true,
            checks: vec![check],
            service: consul_service,
            ..RegisterRequest::default()
        },
        None => RegisterRequest {
            node: name,
            address,
            datacenter: datacenter.to_owned(),
            checks: vec![check],
            service: consul_service,
            ..RegisterRequest::default()
        },
    };
    api.catalog_register(&request).await?;
    Ok(())
}
