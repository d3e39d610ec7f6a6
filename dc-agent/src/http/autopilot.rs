//! Autopilot, as Consul's operator API shows it: `/v1/operator/autopilot/configuration`
//! (GET, PUT with `?cas`), `/health` and `/state`, answered by the leader.
//!
//! The configuration lives in the datacenter's state (`Command::AutopilotSetConfig`).
//! `CleanupDeadServers` is carried out by the leader's membership loop
//! (`server::serf_health`): a server gossip marks failed leaves Raft while fewer than half
//! the voters are failed and at least `MinQuorum` voters remain. Health is the leader's
//! view: a server is healthy while gossip sees it alive, its log trails the leader's by at
//! most `MaxTrailingLogs`, and it answered the leader's replication or heartbeats within
//! `LastContactThreshold` (`LastContact`); `StableSince` is when it entered that health.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use serde_json::json;
use wire::command::{Command, CommandResult};
use wire::records::AutopilotConfig;
use wire::GoDuration;

use super::kv::json as respond;
use super::{params, Api, ApiError, Consistency};
use crate::gossip::pool::MemberStatus;

fn duration_text(ms: u64) -> String {
    GoDuration(std::time::Duration::from_millis(ms)).to_string()
}

fn config_json(config: &AutopilotConfig) -> serde_json::Value {
    json!({
        "CleanupDeadServers": config.cleanup_dead_servers,
        "LastContactThreshold": duration_text(config.last_contact_threshold_ms),
        "MaxTrailingLogs": config.max_trailing_logs,
        "MinQuorum": config.min_quorum,
        "ServerStabilizationTime": duration_text(config.server_stabilization_time_ms),
        "RedundancyZoneTag": config.redundancy_zone_tag,
        "DisableUpgradeMigration": config.disable_upgrade_migration,
        "UpgradeVersionTag": config.upgrade_version_tag,
        "CreateIndex": config.create_index,
        "ModifyIndex": config.modify_index,
    })
}

/// The configuration in force: the stored one, or Consul's defaults.
pub fn current(api: &Api) -> Result<AutopilotConfig, ApiError> {
    api.server()?
        .state
        .read(|data| data.state.autopilot.clone().unwrap_or_default())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `GET /v1/operator/autopilot/configuration`.
pub async fn get_config(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let consistency = Consistency::from_params(&params(uri.query())?)?;
    let config = current(&api)?;
    Ok(respond(
        &api,
        config.modify_index,
        consistency,
        &config_json(&config),
    ))
}

/// The body of a PUT, as Consul's `AutopilotConfiguration` (durations as Go strings).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConfigBody {
    cleanup_dead_servers: bool,
    last_contact_threshold: Option<String>,
    max_trailing_logs: u64,
    min_quorum: u32,
    server_stabilization_time: Option<String>,
    redundancy_zone_tag: String,
    disable_upgrade_migration: bool,
    upgrade_version_tag: String,
}

fn duration_ms(field: &str, text: Option<&str>) -> Result<u64, ApiError> {
    match text {
        None | Some("") => Ok(0),
        Some(text) => text
            .parse::<GoDuration>()
            .map(|d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
            .map_err(|e| ApiError::BadRequest(format!("Invalid {field}: {e}"))),
    }
}

/// `PUT /v1/operator/autopilot/configuration[?cas=N]`: the whole configuration (fields left
/// out take their zero values, as Go decodes them); `true`, or `false` when `cas` missed.
pub async fn set_config(
    State(api): State<Api>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let cas =
        match params.get("cas") {
            None => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("Invalid cas: {text:?} is not a number"))
            })?),
        };
    let body: ConfigBody = wire::gojson::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    let config = AutopilotConfig {
        cleanup_dead_servers: body.cleanup_dead_servers,
        last_contact_threshold_ms: duration_ms(
            "LastContactThreshold",
            body.last_contact_threshold.as_deref(),
        )?,
        max_trailing_logs: body.max_trailing_logs,
        min_quorum: body.min_quorum,
        server_stabilization_time_ms: duration_ms(
            "ServerStabilizationTime",
            body.server_stabilization_time.as_deref(),
        )?,
        redundancy_zone_tag: body.redundancy_zone_tag,
        disable_upgrade_migration: body.disable_upgrade_migration,
        upgrade_version_tag: body.upgrade_version_tag,
        create_index: 0,
        modify_index: 0,
    };
    let (_index, result) = api
        .server()?
        .proposer
        .propose(Command::AutopilotSetConfig { config, cas })
        .await
        .map_err(super::error::from_propose_error)?;
    let done = matches!(result, CommandResult::Applied(true));
    Ok(axum::response::IntoResponse::into_response((
        [("content-type", "application/json")],
        if done { "true" } else { "false" },
    )))
}

/// One server as the leader sees it.
struct ServerHealth {
    id: String,
    name: String,
    address: String,
    serf: &'static str,
    version: String,
    leader: bool,
    voter: bool,
    last_index: u64,
    last_term: u64,
    healthy: bool,
    /// Since the leader last heard from it (`None`: never, in this leader's time).
    last_contact: Option<std::time::Duration>,
    /// When it entered its current health, RFC 3339.
    stable_since: String,
}

impl ServerHealth {
    /// Consul's `LastContact`: a Go duration, `0s` on the leader.
    fn last_contact_text(&self) -> String {
        match (self.leader, self.last_contact) {
            (true, _) => "0s".to_owned(),
            (false, Some(since)) => GoDuration(since).to_string(),
            (false, None) => String::new(),
        }
    }
}

/// When `id` entered the health it has now (noted the first time it is seen so).
fn stable_since(server: &crate::server::Server, id: u64, healthy: bool) -> String {
    let now = std::time::SystemTime::now();
    let since = {
        let mut seen = server.stable_since.lock();
        let entry = seen.entry(id).or_insert((healthy, now));
        if entry.0 != healthy {
            *entry = (healthy, now);
        }
        entry.1
    };
    time::OffsetDateTime::from(since)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn servers(api: &Api) -> Result<(Vec<ServerHealth>, AutopilotConfig), ApiError> {
    let server = api.server()?;
    if !server.is_leader() {
        return Err(ApiError::NoLeader);
    }
    let config = current(api)?;
    let metrics = server.raft.metrics().borrow().clone();
    let leader_index = metrics.last_log_index.unwrap_or(0);
    let term = metrics.current_term;
    let matched: BTreeMap<u64, u64> = metrics
        .replication
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(id, log)| (id, log.map_or(0, |l| l.index)))
        .collect();
    let gossip: BTreeMap<String, (MemberStatus, String)> = api
        .lan
        .members()
        .into_iter()
        .filter(|m| m.id.server)
        .map(|m| (m.id.name.clone(), (m.status, m.id.build.clone())))
        .collect();
    let out = server
        .members()
        .into_iter()
        .map(|(id, node, voter)| {
            let leader = id == server.id;
            let last_index = if leader {
                leader_index
            } else {
                matched.get(&id).copied().unwrap_or(0)
            };
            let (status, version) = gossip
                .get(&node.name)
                .cloned()
                .unwrap_or((MemberStatus::Failed, String::new()));
            let serf = status.as_str();
            let last_contact = if leader {
                Some(std::time::Duration::ZERO)
            } else {
                server.contacts.since(id)
            };
            let threshold = std::time::Duration::from_millis(config.last_contact_threshold_ms);
            let healthy = status == MemberStatus::Alive
                && leader_index.saturating_sub(last_index) <= config.max_trailing_logs
                && last_contact.is_some_and(|since| since <= threshold);
            let stable_since = stable_since(server, id, healthy);
            ServerHealth {
                id: wire::names::node_uuid(id),
                name: node.name,
                address: node.addr,
                serf,
                version,
                leader,
                voter,
                last_index,
                last_term: term,
                healthy,
                last_contact,
                stable_since,
            }
        })
        .collect();
    Ok((out, config))
}

/// How many voters may fail with a quorum left.
fn failure_tolerance(servers: &[ServerHealth]) -> usize {
    let voters = servers.iter().filter(|s| s.voter).count();
    let healthy = servers.iter().filter(|s| s.voter && s.healthy).count();
    healthy.saturating_sub(voters / 2 + 1)
}

/// `GET /v1/operator/autopilot/health`.
pub async fn health(State(api): State<Api>) -> Result<Response, ApiError> {
    let (servers, _) = servers(&api)?;
    let list: Vec<serde_json::Value> = servers
        .iter()
        .map(|s| {
            json!({
                "ID": s.id, "Name": s.name, "Address": s.address, "SerfStatus": s.serf,
                "Version": s.version, "Leader": s.leader,
                "LastContact": s.last_contact_text(),
                "LastTerm": s.last_term, "LastIndex": s.last_index, "Healthy": s.healthy,
                "Voter": s.voter, "StableSince": s.stable_since,
            })
        })
        .collect();
    let healthy = servers.iter().all(|s| s.healthy);
    let body = json!({
        "Healthy": healthy,
        "FailureTolerance": failure_tolerance(&servers),
        "Servers": list,
    });
    let mut response = respond(&api, 1, Consistency::Default, &body);
    // Consul answers 429 while the cluster is not healthy (load balancers look at it).
    if !healthy {
        *response.status_mut() = axum::http::StatusCode::TOO_MANY_REQUESTS;
    }
    Ok(response)
}

/// `GET /v1/operator/autopilot/state`.
pub async fn state(State(api): State<Api>) -> Result<Response, ApiError> {
    let (servers, _) = servers(&api)?;
    let mut by_id = serde_json::Map::new();
    for s in &servers {
        let status = match (s.leader, s.voter) {
            (true, _) => "leader",
            (false, true) => "voter",
            (false, false) => "non-voter",
        };
        by_id.insert(
            s.id.clone(),
            json!({
                "ID": s.id, "Name": s.name, "Address": s.address, "NodeStatus": s.serf,
                "Version": s.version, "LastContact": s.last_contact_text(),
                "LastTerm": s.last_term, "LastIndex": s.last_index, "Healthy": s.healthy,
                "StableSince": s.stable_since, "ReadReplica": false, "Status": status, "Meta": {},
                "NodeType": "voter",
            }),
        );
    }
    let voters: Vec<&str> = servers
        .iter()
        .filter(|s| s.voter)
        .map(|s| s.id.as_str())
        .collect();
    let leader = servers.iter().find(|s| s.leader).map(|s| s.id.clone());
    let body = json!({
        "Healthy": servers.iter().all(|s| s.healthy),
        "FailureTolerance": failure_tolerance(&servers),
        "OptimisticFailureTolerance": failure_tolerance(&servers),
        "Servers": by_id,
        "Leader": leader,
        "Voters": voters,
    });
    Ok(respond(&api, 1, Consistency::Default, &body))
}
