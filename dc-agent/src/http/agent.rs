//! Agent-local and status endpoints: `/v1/status/*`, `/v1/operator/raft/configuration`,
//! `/v1/agent/self`, `/v1/agent/metrics`, `/v1/agent/leave`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wire::api::{RaftConfiguration, RaftServer};

use super::kv::json;
use super::{params, Api, ApiError, Consistency};

/// `GET /v1/status/leader`: the leader's Raft address, or `""`.
pub async fn status_leader(State(api): State<Api>) -> Result<Response, ApiError> {
    let leader = api
        .server()?
        .leader()
        .map(|(_, node)| node.addr)
        .unwrap_or_default();
    Ok(json(&api, 1, Consistency::Stale, &leader))
}

/// `GET /v1/status/peers`: the voters' Raft addresses.
pub async fn status_peers(State(api): State<Api>) -> Result<Response, ApiError> {
    let peers: Vec<String> = api
        .server()?
        .members()
        .into_iter()
        .filter(|(_, _, voter)| *voter)
        .map(|(_, node, _)| node.addr)
        .collect();
    Ok(json(&api, 1, Consistency::Stale, &peers))
}

/// `GET /v1/operator/raft/configuration`.
pub async fn raft_configuration(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let consistency = Consistency::from_params(&params)?;
    let server = api.server()?;
    if consistency != Consistency::Stale && server.leader().is_none() {
        return Err(ApiError::NoLeader);
    }
    let leader = server.leader().map(|(id, _)| id);
    let metrics = server.raft.metrics().borrow().clone();
    let index = metrics.membership_config.log_id().map_or(0, |id| id.index);
    let servers = server
        .members()
        .into_iter()
        .map(|(id, node, voter)| RaftServer {
            id: wire::names::node_uuid(id),
            node: node.name,
            address: node.addr,
            leader: Some(id) == leader,
            protocol_version: "3".to_owned(),
            voter,
        })
        .collect();
    Ok(json(
        &api,
        index,
        consistency,
        &RaftConfiguration { servers, index },
    ))
}

/// `DELETE /v1/operator/raft/peer?id=ID` (or `?address=IP:port`): removes a server from the
/// Raft configuration, as Consul's (on the leader; followers forward it there).
pub async fn remove_raft_peer(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let server = api.server()?;
    if !server.is_leader() {
        return Err(ApiError::NoLeader);
    }
    let (wanted, by_id) = match (params.get("id"), params.get("address")) {
        (Some(id), None) if !id.is_empty() => (id.clone(), true),
        (None, Some(address)) if !address.is_empty() => (address.clone(), false),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove, not both".to_owned(),
            ))
        }
        _ => {
            return Err(ApiError::BadRequest(
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove".to_owned(),
            ))
        }
    };
    let found = server.members().into_iter().find(|(id, node, _)| {
        if by_id {
            id_matches(*id, &wanted)
        } else {
            node.addr == wanted
        }
    });
    let Some((id, node, _)) = found else {
        return Err(ApiError::BadRequest(if by_id {
            format!("id {wanted:?} was not found in the Raft configuration")
        } else {
            format!("address {wanted:?} was not found in the Raft configuration")
        }));
    };
    tracing::warn!(peer = %node.name, addr = %node.addr, "removing a server from the Raft configuration (operator raft remove-peer)");
    server
        .remove_servers(&[id])
        .await
        .map_err(|e| ApiError::Internal(format!("removing {}: {e}", node.name)))?;
    Ok(([("content-type", "application/json")], "").into_response())
}

/// Whether `wanted` names the server `id`: its UUID (as `list-peers` shows it) or number.
fn id_matches(id: u64, wanted: &str) -> bool {
    wire::names::node_uuid(id) == wanted.to_ascii_lowercase() || id.to_string() == wanted
}

/// `POST /v1/operator/raft/transfer-leader[?id=ID]`: hands leadership to the server `ID`
/// (the most up-to-date voter without one) and answers `{"Success": true}` once it leads.
pub async fn transfer_leader(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let server = api.server()?;
    if !server.is_leader() {
        return Err(ApiError::NoLeader);
    }
    let target = match params.get("id").filter(|id| !id.is_empty()) {
        None => None,
        Some(wanted) => Some(
            server
                .members()
                .into_iter()
                .find(|(id, _, _)| id_matches(*id, wanted))
                .map(|(id, _, _)| id)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "cannot find peer {wanted:?} in the Raft configuration"
                    ))
                })?,
        ),
    };
    server
        .transfer_leadership(target)
        .await
        .map_err(|e| ApiError::Internal(format!("Failed to transfer leadership: {e}")))?;
    Ok(json_value(&json!({ "Success": true })))
}

/// `GET /v1/agent/self`: configuration, membership and Raft statistics (what `info` prints).
pub async fn agent_self(State(api): State<Api>) -> Response {
    let agent = &api.agent;
    let (raft, consul) = match &api.backend {
        super::Backend::Server(server) => {
            let (raft, mut consul) = server_stats(server);
            // Consul's `known_datacenters`: this one and those of the WAN pool.
            let mut known: std::collections::BTreeSet<String> =
                std::collections::BTreeSet::from([agent.datacenter.clone()]);
            if let Some(wan) = &api.wan {
                known.extend(
                    wan.members()
                        .into_iter()
                        .filter(|m| m.status != crate::gossip::pool::MemberStatus::Left)
                        .map(|m| m.id.dc),
                );
            }
            consul.insert("known_datacenters", known.len().to_string());
            (raft, consul)
        }
        super::Backend::Client(link) => {
            let consul = BTreeMap::from([
                ("server", "false".to_owned()),
                ("known_servers", link.known_servers().len().to_string()),
            ]);
            (BTreeMap::new(), consul)
        }
    };
    let local = crate::gossip::pool::Member {
        id: api.lan.local().clone(),
        status: crate::gossip::pool::MemberStatus::Alive,
    };
    let coordinate = api
        .lan
        .coordinates()
        .into_iter()
        .find(|c| c.node == agent.node_name && c.dc == agent.datacenter)
        .map(|c| c.coordinate)
        .unwrap_or_default();
    // The node's metadata, as Consul's `Meta`.
    let mut meta = agent.debug_config["NodeMeta"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    meta.insert("consul-network-segment".to_owned(), json!(""));
    let body = json!({
        "Config": {
            "Datacenter": agent.datacenter,
            "PrimaryDatacenter": agent.primary_datacenter,
            "NodeName": agent.node_name,
            "NodeID": agent.node_id,
            "Revision": "",
            "Server": agent.server,
            "Version": env!("CARGO_PKG_VERSION"),
            "BuildDate": "",
        },
        "DebugConfig": agent.debug_config,
        "Coord": coordinate,
        "Member": member_json(&local),
        "Stats": { "raft": raft, "consul": consul, "build": { "version": env!("CARGO_PKG_VERSION"), "prerelease": "", "revision": "" } },
        "Meta": meta,
        "xDS": { "SupportedProxies": {}, "Port": -1, "Ports": { "Plaintext": -1, "TLS": -1 } },
    });
    json(&api, 1, Consistency::Stale, &body)
}

/// A gossip member in Consul's `/v1/agent/members` shape (serf's `Member`).
fn member_json(member: &crate::gossip::pool::Member) -> serde_json::Value {
    let mut tags = json!({
        "role": if member.id.server { "consul" } else { "node" },
        "dc": member.id.dc,
        "build": member.id.build,
        "segment": "",
        "vsn": "2",
        "vsn_min": "2",
        "vsn_max": "3",
    });
    if member.id.server {
        tags["port"] = json!(member.id.rpc_port.to_string());
        tags["raft_vsn"] = json!("3");
        tags["expect"] = json!("0");
    }
    json!({
        "Name": member.id.display_name(),
        "Addr": member.id.addr.ip().to_string(),
        "Port": member.id.addr.port(),
        "Tags": tags,
        "Status": member.status.code(),
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

type Stats = BTreeMap<&'static str, String>;

/// A server's `raft` and `consul` sections of `/v1/agent/self`.
fn server_stats(server: &crate::server::Server) -> (Stats, Stats) {
    let metrics = server.raft.metrics().borrow().clone();
    // A leader restored at its old term that has not confirmed it is no leader to name.
    let leader = server.leader().filter(|_| server.known_leader());
    let voters = server
        .members()
        .iter()
        .filter(|(_, _, voter)| *voter)
        .count();
    let raft = BTreeMap::from([
        ("state", format!("{:?}", metrics.state)),
        ("term", metrics.current_term.to_string()),
        (
            "last_log_index",
            metrics.last_log_index.unwrap_or(0).to_string(),
        ),
        (
            "applied_index",
            metrics.last_applied.map_or(0, |id| id.index).to_string(),
        ),
        (
            "last_snapshot_index",
            metrics.snapshot.map_or(0, |id| id.index).to_string(),
        ),
        ("num_peers", voters.saturating_sub(1).to_string()),
        (
            "last_contact",
            match server.last_contact_ms() {
                crate::server::read_gate::NEVER_CONTACTED_MS => "never".to_owned(),
                ms => format!("{ms}ms"),
            },
        ),
    ]);
    let consul = BTreeMap::from([
        ("server", "true".to_owned()),
        ("leader", server.is_leader().to_string()),
        (
            "leader_addr",
            leader.map(|(_, node)| node.addr).unwrap_or_default(),
        ),
        ("known_datacenters", "1".to_owned()),
        ("bootstrap", (server.bootstrap_expect == 1).to_string()),
    ]);
    (raft, consul)
}

/// `GET /v1/agent/metrics?format=prometheus` (JSON is not offered).
pub async fn metrics(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    match params.get("format").map(String::as_str) {
        Some("prometheus") => {}
        None | Some("") => {
            let now = time::OffsetDateTime::now_utc();
            let stamp = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second()
            );
            return Ok(json(
                &api,
                1,
                Consistency::Stale,
                &api.metrics.render_json(&stamp),
            ));
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "Invalid format {other:?}: leave it out for JSON, or use ?format=prometheus"
            )))
        }
    }
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        api.metrics.render(),
    )
        .into_response())
}

/// `GET /v1/agent/version`, Consul's shape.
pub async fn version() -> Response {
    let body = json!({
        "SHA": option_env!("ISTHMUS_REVISION").unwrap_or(""),
        "BuildDate": "",
        "HumanVersion": format!("Isthmus v{}", env!("CARGO_PKG_VERSION")),
        "FIPS": "",
    });
    json_value(&body)
}

/// A JSON answer without Consul's index headers.
fn json_value(body: &serde_json::Value) -> Response {
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// `GET /v1/agent/monitor?loglevel=LEVEL`: streams the agent's log lines from now on, at
/// LEVEL (default info) and above, until the client goes away or the agent stops.
pub async fn monitor(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let text = params.get("loglevel").cloned().unwrap_or_default();
    let level = crate::monitor::parse_level(&text)
        .ok_or_else(|| ApiError::BadRequest(format!("Unknown log level: {text}")))?;
    let json_lines = params.contains_key("logjson");
    let receiver = api.logs.subscribe();
    let stop = api.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (receiver, stop),
        move |(mut receiver, stop)| async move {
            loop {
                let line = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return None,
                    line = receiver.recv() => line,
                };
                match line {
                    // Tracing's levels order the other way: TRACE is the greatest.
                    Ok(line) if line.level <= level => {
                        let mut text = if json_lines {
                            json!({"@level": line.level.as_str().to_ascii_lowercase(), "@message": line.text}).to_string()
                        } else {
                            line.text.clone()
                        };
                        text.push('\n');
                        return Some((
                            Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(text)),
                            (receiver, stop),
                        ));
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    );
    Ok((
        [("content-type", "text/plain; charset=utf-8")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /v1/agent/host`: the machine the agent runs on, in Consul's shape (gopsutil's
/// names), read from `/proc` and the data directory's file system.
pub async fn host() -> Response {
    // /proc reads and statvfs block (statvfs can hang on a network file system).
    match tokio::task::spawn_blocking(host_info).await {
        Ok(body) => json_value(&body),
        Err(e) => ApiError::Internal(format!("reading the host: {e}")).into_response(),
    }
}

fn host_info() -> serde_json::Value {
    let started = std::time::Instant::now();
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let meminfo = read("/proc/meminfo");
    let kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = kib("MemTotal");
    let available = kib("MemAvailable");
    let used = total.saturating_sub(available);
    let uptime = read("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0) as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cpus: Vec<serde_json::Value> = read("/proc/cpuinfo")
        .split("\n\n")
        .filter(|block| block.contains("processor"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim() == name).then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            json!({
                "cpu": field("processor").parse::<u32>().unwrap_or(0),
                "vendorId": field("vendor_id"),
                "family": field("cpu family"),
                "model": field("model"),
                "modelName": field("model name"),
                "mhz": field("cpu MHz").parse::<f64>().unwrap_or(0.0),
                "cacheSize": field("cache size").split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
                "cores": 1,
                "flags": field("flags").split_whitespace().collect::<Vec<_>>(),
            })
        })
        .collect();
    let os_release = read("/etc/os-release");
    let os_field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let disk = disk_usage("/");
    let body = json!({
        "Memory": {
            "total": total, "available": available, "used": used,
            "usedPercent": if total == 0 { 0.0 } else { used as f64 * 100.0 / total as f64 },
            "free": kib("MemFree"),
        },
        "CPU": cpus,
        "Host": {
            "hostname": crate::config::host_name().unwrap_or_default(),
            "uptime": uptime,
            "bootTime": now.saturating_sub(uptime),
            "procs": std::fs::read_dir("/proc").map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit())).count()).unwrap_or(0),
            "os": std::env::consts::OS,
            "platform": os_field("ID"),
            "platformFamily": os_field("ID_LIKE"),
            "platformVersion": os_field("VERSION_ID"),
            "kernelVersion": read("/proc/sys/kernel/osrelease").trim(),
            "kernelArch": std::env::consts::ARCH,
            "virtualizationSystem": "",
            "virtualizationRole": "",
            "hostid": read("/proc/sys/kernel/random/boot_id").trim(),
        },
        "Disk": disk,
        "CollectionTime": started.elapsed().as_nanos() as u64,
        "Errors": null,
    });
    body
}

fn disk_usage(path: &str) -> serde_json::Value {
    let Ok(c_path) = std::ffi::CString::new(path) else {
        return json!({});
    };
    // SAFETY: statvfs writes into the zeroed struct it is given; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } == 0;
    if !ok {
        return json!({});
    }
    let block = stat.f_frsize as u64;
    let total = stat.f_blocks as u64 * block;
    let free = stat.f_bavail as u64 * block;
    let used = total.saturating_sub(stat.f_bfree as u64 * block);
    json!({
        "path": path, "fstype": "", "total": total, "free": free, "used": used,
        "usedPercent": if total == 0 { 0.0 } else { used as f64 * 100.0 / total as f64 },
        "inodesTotal": stat.f_files as u64,
        "inodesUsed": (stat.f_files as u64).saturating_sub(stat.f_ffree as u64),
        "inodesFree": stat.f_ffree as u64,
    })
}

/// `PUT /v1/agent/leave`: leave the cluster gracefully and stop the agent.
pub async fn leave(State(api): State<Api>) -> Result<Response, ApiError> {
    tracing::info!(node = %api.agent.node_name, "leaving the cluster");
    let server = match &api.backend {
        super::Backend::Server(server) => Some(server.as_ref()),
        super::Backend::Client(_) => None,
    };
    crate::shutdown::graceful_leave(server, api.wan.as_ref(), &api.lan)
        .await
        .map_err(|e| ApiError::Internal(format!("leaving: {e:#}")))?;
    api.shutdown.cancel();
    Ok(([("content-type", "application/json")], "").into_response())
}

/// `GET /v1/agent/members`: the LAN pool as Consul lists it; with `?wan`, the WAN pool of
/// every datacenter's servers (members named `node.dc`; a client agent is in no WAN pool
/// and lists none, as Consul's do).
pub async fn members(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let wan = params(uri.query())?
        .get("wan")
        .is_some_and(|v| v.is_empty() || v == "1" || v == "true");
    let members = match (wan, &api.wan, &api.backend) {
        (false, _, _) => api.lan.members(),
        (true, Some(pool), _) => pool.members(),
        (true, None, super::Backend::Client(_)) => Vec::new(),
        (true, None, super::Backend::Server(_)) => {
            // Never answer a WAN question with the LAN pool.
            return Err(ApiError::Internal(
                "this server is in no WAN pool: WAN gossip rides the links to its datacenter's gateways, and it has none (isthmus.gateways)".to_owned(),
            ));
        }
    };
    let members: Vec<serde_json::Value> = members.iter().map(member_json).collect();
    Ok(json(&api, 1, Consistency::Stale, &members))
}

/// How long a join waits for the address to answer as a member (Consul's TCP join times out
/// after 10 s).
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `PUT /v1/agent/join/<address>`: announce this agent to another (`host` or `host:port`).
pub async fn join(
    State(api): State<Api>,
    axum::extract::Path(address): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let addr = match address.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => match address.parse::<std::net::IpAddr>() {
            Ok(ip) => std::net::SocketAddr::new(ip, wire::ports::SERF_LAN),
            // A host name (`localhost`, `consul-server-1`), as Consul resolves it.
            Err(_) => {
                let (host, port) = match address.rsplit_once(':') {
                    Some((host, port)) if port.parse::<u16>().is_ok() => (
                        host.to_owned(),
                        port.parse().unwrap_or(wire::ports::SERF_LAN),
                    ),
                    _ => (address.clone(), wire::ports::SERF_LAN),
                };
                tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .ok()
                    .and_then(|mut found| found.find(std::net::SocketAddr::is_ipv4))
                    .ok_or_else(|| {
                        ApiError::Internal(format!(
                            "1 error occurred:\n\t* Failed to resolve {address}: no such host"
                        ))
                    })?
            }
        },
    };
    // Consul's join is a TCP exchange that fails when nobody answers; gossip here is UDP,
    // so the join succeeds only once the address answers as a member of the pool.
    // Success: the address answers as a member, or (it advertises another address: NAT, a
    // port mapping, 127.0.0.1) a member joined the pool since the announce was sent.
    let alive = |lan: &crate::gossip::pool::Pool| -> std::collections::BTreeSet<String> {
        lan.members()
            .iter()
            .filter(|m| m.status == crate::gossip::pool::MemberStatus::Alive)
            .map(|m| m.id.display_name())
            .collect()
    };
    let before = alive(&api.lan);
    let is_member = |lan: &crate::gossip::pool::Pool| {
        lan.members()
            .iter()
            .any(|m| m.id.addr == addr && m.status == crate::gossip::pool::MemberStatus::Alive)
            || alive(lan).difference(&before).next().is_some()
    };
    if is_member(&api.lan) {
        return Ok(([("content-type", "application/json")], "").into_response());
    }
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        api.lan
            .join(vec![crate::gossip::pool::NodeId::lan_seed(addr)])
            .await;
        for _ in 0..10 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if is_member(&api.lan) {
                return Ok(([("content-type", "application/json")], "").into_response());
            }
        }
    }
    Err(ApiError::Internal(format!(
        "1 error occurred:\n\t* Failed to join {addr}: no answer from an agent there within {}s (is it running, with the same gossip key?)",
        JOIN_TIMEOUT.as_secs()
    )))
}

/// `PUT /v1/agent/force-leave/<node>`: a failed member becomes left, and is then removed
/// from the catalog.
pub async fn force_leave(
    State(api): State<Api>,
    axum::extract::Path(node): axum::extract::Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let wan = params(uri.query())?.contains_key("wan");
    let pool = match (&api.wan, wan) {
        (_, false) => &api.lan,
        (Some(pool), true) => pool,
        (None, true) => {
            return Err(ApiError::BadRequest(
                "this agent is in no WAN pool (only servers with gateways are)".to_owned(),
            ))
        }
    };
    if pool.force_leave(&node).await {
        Ok(([("content-type", "application/json")], "").into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "agent: No node found with name '{node}' that has failed"
        )))
    }
}
