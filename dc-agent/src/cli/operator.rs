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
