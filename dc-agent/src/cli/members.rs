//! `members` and `join`.

use std::process::ExitCode;

use serde_json::Value;

use super::catalog::table;
use super::{check, client, fail};

fn status_name(code: u64) -> &'static str {
    match code {
        1 => "alive",
        2 => "leaving",
        3 => "left",
        4 => "failed",
        _ => "none",
    }
}

/// Prints the LAN pool (or the WAN pool) as Consul does; `status` keeps only members whose
/// status is one of the `|`-separated names.
pub fn members(addr: &str, detailed: bool, wan: bool, status: Option<&str>) -> ExitCode {
    let path = if wan {
        "/v1/agent/members?wan=1"
    } else {
        "/v1/agent/members"
    };
    let response = match check(client(addr).get(path), addr) {
        Ok(response) => response,
        Err(e) => return fail(e),
    };
    let members: Vec<Value> = match response.json() {
        Ok(members) => members,
        Err(e) => return fail(e),
    };
    let wanted: Option<Vec<&str>> = status.map(|s| s.split('|').collect());
    let mut rows = if detailed {
        vec![["Node", "Address", "Status", "Tags"]
            .map(str::to_owned)
            .to_vec()]
    } else {
        vec![[
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Partition",
            "Segment",
        ]
        .map(str::to_owned)
        .to_vec()]
    };
    for member in &members {
        let state = status_name(member["Status"].as_u64().unwrap_or(0));
        if wanted.as_ref().is_some_and(|w| !w.contains(&state)) {
            continue;
        }
        let name = member["Name"].as_str().unwrap_or("").to_owned();
        let address = format!(
            "{}:{}",
            member["Addr"].as_str().unwrap_or(""),
            member["Port"]
        );
        let tags = &member["Tags"];
        let server = tags["role"].as_str() == Some("consul");
        if detailed {
            let shown: Vec<String> = tags
                .as_object()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            rows.push(vec![name, address, state.to_owned(), shown.join(",")]);
        } else {
            rows.push(vec![
                name,
                address,
                state.to_owned(),
                if server { "server" } else { "client" }.to_owned(),
                tags["build"].as_str().unwrap_or("").to_owned(),
                member["ProtocolCur"].to_string(),
                tags["dc"].as_str().unwrap_or("").to_owned(),
                "default".to_owned(),
                if server { "<all>" } else { "<default>" }.to_owned(),
            ]);
        }
    }
    print!("{}", table(&rows));
    ExitCode::SUCCESS
}

/// Announces the agent to each address.
pub fn join(addr: &str, targets: &[String]) -> ExitCode {
    let mut joined = 0;
    for target in targets {
        match client(addr).put(&format!("/v1/agent/join/{target}"), b"") {
            Ok(response) if response.status == 200 => joined += 1,
            Ok(response) => eprintln!(
                "Error joining address '{target}': Unexpected response code: {} ({})",
                response.status,
                response.text().trim()
            ),
            Err(e) => eprintln!("Error joining address '{target}': {e}"),
        }
    }
    if joined == 0 {
        eprintln!("Failed to join any nodes.");
        return ExitCode::FAILURE;
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    ExitCode::SUCCESS
}

/// Marks a failed node as left.
pub fn force_leave(addr: &str, node: &str, wan: bool, prune: bool) -> ExitCode {
    let query = match (wan, prune) {
        (true, true) => "?wan=1&prune=1",
        (true, false) => "?wan=1",
        (false, true) => "?prune=1",
        (false, false) => "",
    };
    match check(
        client(addr).put(&format!("/v1/agent/force-leave/{node}{query}"), b""),
        addr,
    ) {
        Ok(response) if response.status == 200 => ExitCode::SUCCESS,
        Ok(response) => fail(format!("Error force leaving: {}", response.text().trim())),
        Err(e) => fail(format!("Error force leaving: {e}")),
    }
}
