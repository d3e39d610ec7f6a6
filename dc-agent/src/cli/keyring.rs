//! `keyring`: the gossip keyring of every agent, as `consul keyring` prints it.

use std::process::ExitCode;

use serde_json::Value;

use super::{client, fail};

/// Runs one keyring operation (or lists, by default).
pub fn keyring(
    addr: &str,
    list: bool,
    install: Option<String>,
    use_key: Option<String>,
    remove: Option<String>,
    local_only: bool,
) -> ExitCode {
    let query = if local_only { "?local-only=1" } else { "" };
    let path = format!("/v1/operator/keyring{query}");
    let chosen = [install.is_some(), use_key.is_some(), remove.is_some(), list]
        .iter()
        .filter(|x| **x)
        .count();
    if chosen > 1 {
        return fail("Error: use only one of -list, -install, -use and -remove");
    }
    if local_only && chosen > 0 && !list {
        return fail("Error: -local-only applies to -list only");
    }
    let body = |key: &str| serde_json::json!({ "Key": key }).to_string().into_bytes();
    let api = client(addr);
    let (banner, result) = if let Some(key) = install {
        (
            "==> Installing new gossip encryption key...",
            api.post(&path, &body(&key)),
        )
    } else if let Some(key) = use_key {
        (
            "==> Changing primary gossip encryption key...",
            api.put(&path, &body(&key)),
        )
    } else if let Some(key) = remove {
        (
            "==> Removing gossip encryption key...",
            api.delete_with_body(&path, &body(&key)),
        )
    } else {
        ("==> Gathering installed encryption keys...", api.get(&path))
    };
    println!("{banner}");
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            return fail(format!(
                "Could not reach the agent at {addr}: {e} (set -http-addr or CONSUL_HTTP_ADDR)"
            ))
        }
    };
    if response.status != 200 {
        eprintln!("Error: {}", response.text().trim());
        return ExitCode::FAILURE;
    }
    if response.body.is_empty() {
        return ExitCode::SUCCESS;
    }
    let entries: Vec<Value> = match response.json() {
        Ok(entries) => entries,
        Err(e) => return fail(e),
    };
    for entry in &entries {
        let pool = if entry["WAN"].as_bool().unwrap_or(false) {
            "WAN".to_owned()
        } else {
            format!("{} (LAN)", entry["Datacenter"].as_str().unwrap_or(""))
        };
        let nodes = entry["NumNodes"].as_u64().unwrap_or(0);
        println!();
        println!("{pool}:");
        if let Some(keys) = entry["Keys"].as_object() {
            for (key, count) in keys {
                println!("  {key} [{}/{nodes}]", count.as_u64().unwrap_or(0));
            }
        }
    }
    ExitCode::SUCCESS
}
