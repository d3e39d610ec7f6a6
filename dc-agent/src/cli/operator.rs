//! `operator raft list-peers`.

use std::process::ExitCode;

use wire::api::RaftConfiguration;

use super::catalog::table;
use super::{check, client, fail};

/// Prints the Raft peers as Consul does.
pub fn list_peers(addr: &str, stale: bool) -> ExitCode {
    let path = if stale {
        "/v1/operator/raft/configuration?stale"
    } else {
        "/v1/operator/raft/configuration"
    };
    let response = match check(client(addr).get(path), addr) {
        Ok(response) => response,
        Err(e) => return fail(format!("Failed to retrieve raft configuration: {e}")),
    };
    let configuration: RaftConfiguration = match response.json() {
        Ok(configuration) => configuration,
        Err(e) => return fail(e),
    };
    let mut rows = vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
        .map(str::to_owned)
        .to_vec()];
    for server in &configuration.servers {
        let state = if server.leader {
            "leader"
        } else if server.voter {
            "follower"
        } else {
            "non-voter"
        };
        rows.push(vec![
            server.node.clone(),
            server.id.clone(),
            server.address.clone(),
            state.to_owned(),
            server.voter.to_string(),
            server.protocol_version.clone(),
        ]);
    }
    print!("{}", table(&rows));
    ExitCode::SUCCESS
}

/// `operator raft remove-peer -id=ID | -address=IP:port`.
pub fn remove_peer(addr: &str, id: Option<&str>, address: Option<&str>) -> ExitCode {
    let (query, shown) = match (id, address) {
        (Some(id), None) => (format!("id={id}"), id.to_owned()),
        (None, Some(address)) => (format!("address={address}"), address.to_owned()),
        _ => return fail("Error removing peer: Must specify either -id or -address, but not both"),
    };
    match check(
        client(addr).delete(&format!("/v1/operator/raft/peer?{query}")),
        addr,
    ) {
        Ok(_) => {
            let what = if id.is_some() { "ID" } else { "address" };
            println!("Removed peer with {what} \"{shown}\"");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error removing peer: {e}")),
    }
}

/// `operator raft transfer-leader [-id=ID]`: prints `Success` once the new leader leads.
pub fn transfer_leader(addr: &str, id: Option<&str>) -> ExitCode {
    let path = match id.filter(|id| !id.is_empty()) {
        Some(id) => format!(
            "/v1/operator/raft/transfer-leader?id={}",
            crate::client::encode_key(id)
        ),
        None => "/v1/operator/raft/transfer-leader".to_owned(),
    };
    let answer = check(client(addr).post(&path, b""), addr)
        .and_then(|response| response.json::<serde_json::Value>());
    match answer {
        Ok(answer) if answer["Success"] == serde_json::Value::Bool(true) => {
            println!("Success");
            ExitCode::SUCCESS
        }
        Ok(_) => fail("Error transfering leadership: Failed to transfer leadership"),
        Err(e) => fail(format!(
            "Error transfering leadership: Failed to transfer leadership {e}"
        )),
    }
}

/// Removes a datacenter from the federation for good.
pub fn remove_dc(addr: &str, datacenter: &str) -> ExitCode {
    let path = format!("/v1/isthmus/datacenters/{datacenter}");
    match check(client(addr).delete(&path), addr) {
        Ok(response) if response.status == 200 => {
            let answer = response.json::<serde_json::Value>().unwrap_or_default();
            let left = answer["ServersLeft"].as_u64().unwrap_or(0);
            let told = answer["GatewaysTold"].as_u64().unwrap_or(0);
            println!("Removed datacenter {datacenter} from the federation ({left} servers marked left, {told} gateways told to forget it)");
            ExitCode::SUCCESS
        }
        Ok(response) => fail(format!(
            "Error removing datacenter {datacenter}: {}",
            response.text().trim()
        )),
        Err(e) => fail(format!("Error removing datacenter {datacenter}: {e}")),
    }
}

/// The settings `operator autopilot set-config` may change (unset: kept).
#[derive(Debug, Clone, Default)]
pub struct AutopilotFlags {
    /// `-cleanup-dead-servers`.
    pub cleanup_dead_servers: Option<bool>,
    /// `-max-trailing-logs`.
    pub max_trailing_logs: Option<u64>,
    /// `-min-quorum`.
    pub min_quorum: Option<u32>,
    /// `-last-contact-threshold`.
    pub last_contact_threshold: Option<String>,
    /// `-server-stabilization-time`.
    pub server_stabilization_time: Option<String>,
    /// `-disable-upgrade-migration`.
    pub disable_upgrade_migration: Option<bool>,
    /// `-redundancy-zone-tag`.
    pub redundancy_zone_tag: Option<String>,
    /// `-upgrade-version-tag`.
    pub upgrade_version_tag: Option<String>,
}

/// `operator autopilot get-config`.
pub fn autopilot_get(addr: &str) -> ExitCode {
    let config: serde_json::Value = match check(
        client(addr).get("/v1/operator/autopilot/configuration"),
        addr,
    )
    .and_then(|r| r.json())
    {
        Ok(config) => config,
        Err(e) => return fail(format!("Error querying Autopilot configuration: {e}")),
    };
    for key in [
        "CleanupDeadServers",
        "LastContactThreshold",
        "MaxTrailingLogs",
        "MinQuorum",
        "ServerStabilizationTime",
        "RedundancyZoneTag",
        "DisableUpgradeMigration",
        "UpgradeVersionTag",
    ] {
        let value = &config[key];
        let shown = match value {
            serde_json::Value::String(s) if key.ends_with("Tag") => format!("{s:?}"),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!("{key} = {shown}");
    }
    ExitCode::SUCCESS
}

/// `operator autopilot set-config [flags]`: the current configuration with the flags given
/// changed, written with check-and-set.
pub fn autopilot_set(addr: &str, flags: &AutopilotFlags) -> ExitCode {
    let mut config: serde_json::Value = match check(
        client(addr).get("/v1/operator/autopilot/configuration"),
        addr,
    )
    .and_then(|r| r.json())
    {
        Ok(config) => config,
        Err(e) => return fail(format!("Error querying Autopilot configuration: {e}")),
    };
    let index = config["ModifyIndex"].as_u64().unwrap_or(0);
    let mut set = |key: &str, value: Option<serde_json::Value>| {
        if let Some(value) = value {
            config[key] = value;
        }
    };
    set(
        "CleanupDeadServers",
        flags.cleanup_dead_servers.map(Into::into),
    );
    set("MaxTrailingLogs", flags.max_trailing_logs.map(Into::into));
    set("MinQuorum", flags.min_quorum.map(Into::into));
    set(
        "LastContactThreshold",
        flags.last_contact_threshold.clone().map(Into::into),
    );
    set(
        "ServerStabilizationTime",
        flags.server_stabilization_time.clone().map(Into::into),
    );
    set(
        "DisableUpgradeMigration",
        flags.disable_upgrade_migration.map(Into::into),
    );
    set(
        "RedundancyZoneTag",
        flags.redundancy_zone_tag.clone().map(Into::into),
    );
    set(
        "UpgradeVersionTag",
        flags.upgrade_version_tag.clone().map(Into::into),
    );
    let path = format!("/v1/operator/autopilot/configuration?cas={index}");
    match check(client(addr).put(&path, config.to_string().as_bytes()), addr) {
        Ok(response) if response.text().trim() == "true" => {
            println!("Configuration updated!");
            ExitCode::SUCCESS
        }
        Ok(_) => fail("Configuration could not be atomically updated, please try again"),
        Err(e) => fail(format!("Error setting Autopilot configuration: {e}")),
    }
}

/// `operator autopilot state`.
pub fn autopilot_state(addr: &str) -> ExitCode {
    let state: serde_json::Value = match check(
        client(addr).get("/v1/operator/autopilot/state"),
        addr,
    )
    .and_then(|r| r.json())
    {
        Ok(state) => state,
        Err(e) => return fail(format!("Error querying Autopilot state: {e}")),
    };
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    println!("Healthy:                      {}", state["Healthy"]);
    println!(
        "Failure Tolerance:            {}",
        state["FailureTolerance"]
    );
    println!(
        "Optimistic Failure Tolerance: {}",
        state["OptimisticFailureTolerance"]
    );
    println!("Leader:                       {}", text(&state["Leader"]));
    println!("Voters:");
    for voter in state["Voters"].as_array().into_iter().flatten() {
        println!("   {}", text(voter));
    }
    println!();
    println!("Servers:");
    for (id, server) in state["Servers"].as_object().into_iter().flatten() {
        println!("   {id}");
        for (label, key) in [
            ("Name", "Name"),
            ("Address", "Address"),
            ("Version", "Version"),
            ("Status", "Status"),
            ("Node Type", "NodeType"),
            ("Node Status", "NodeStatus"),
            ("Healthy", "Healthy"),
            ("Last Contact", "LastContact"),
            ("Last Term", "LastTerm"),
            ("Last Index", "LastIndex"),
        ] {
            println!("      {:<16} {}", format!("{label}:"), text(&server[key]));
        }
    }
    ExitCode::SUCCESS
}

/// `operator usage instances`: service instances per datacenter, from `/v1/operator/usage`.
pub fn usage_instances(addr: &str) -> ExitCode {
    let usage: serde_json::Value =
        match check(client(addr).get("/v1/operator/usage"), addr).and_then(|r| r.json()) {
            Ok(usage) => usage,
            Err(e) => return fail(format!("Error fetching usage information: {e}")),
        };
    let by_dc = usage["Usage"].as_object().cloned().unwrap_or_default();
    let total: u64 = by_dc
        .values()
        .map(|u| u["BillableServiceInstances"].as_u64().unwrap_or(0))
        .sum();
    println!("Billable Service Instances Total: {total}");
    for (dc, u) in &by_dc {
        println!(
            "{dc} Billable Service Instances: {}",
            u["BillableServiceInstances"].as_u64().unwrap_or(0)
        );
    }
    println!();
    let mut rows = vec![vec![
        "Datacenter".to_owned(),
        "Services".to_owned(),
        "Service instances".to_owned(),
        "Nodes".to_owned(),
    ]];
    for (dc, u) in &by_dc {
        rows.push(vec![
            dc.clone(),
            u["Services"].to_string(),
            u["ServiceInstances"].to_string(),
            u["Nodes"].to_string(),
        ]);
    }
    print!("{}", super::catalog::table(&rows));
    ExitCode::SUCCESS
}
