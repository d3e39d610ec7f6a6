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

/// One keyring operation over HTTP, tried up to 5 times a second apart (gossip is
/// datagrams: a member may miss one; every operation can be run again); the pools' entries.
fn operation(addr: &str, method: &str, key: Option<&str>) -> Result<Vec<Value>, String> {
    let body = key.map(|k| serde_json::json!({ "Key": k }).to_string().into_bytes());
    let path = "/v1/operator/keyring";
    let mut last = String::new();
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        let api = client(addr);
        let result = match (method, &body) {
            ("POST", Some(body)) => api.post(path, body),
            ("PUT", Some(body)) => api.put(path, body),
            ("DELETE", Some(body)) => api.delete_with_body(path, body),
            _ => api.get(path),
        };
        match result {
            Ok(r) if r.status == 200 && r.body.is_empty() => return Ok(Vec::new()),
            Ok(r) if r.status == 200 => return r.json::<Vec<Value>>(),
            Ok(r) => last = r.text().trim().to_owned(),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Pools where `check` does not hold for `key` (`Keys` or `PrimaryKeys` short of every
/// node), as `dc1 (LAN) 2/3`.
fn short(entries: &[Value], field: &str, key: &str) -> Vec<String> {
    entries
        .iter()
        .filter_map(|entry| {
            let nodes = entry["NumNodes"].as_u64().unwrap_or(0);
            let have = entry[field][key].as_u64().unwrap_or(0);
            (have != nodes).then(|| {
                let pool = if entry["WAN"].as_bool().unwrap_or(false) {
                    "WAN".to_owned()
                } else {
                    format!("{} (LAN)", entry["Datacenter"].as_str().unwrap_or(""))
                };
                format!("{pool} {have}/{nodes}")
            })
        })
        .collect()
}

/// `keyring -rotate`: a new key installed everywhere, checked, made primary, checked, and
/// the old one removed; each step checked on every member of every pool before the next.
/// A step that fails stops there, with nothing lost, and says how to go on.
pub fn rotate(addr: &str) -> ExitCode {
    println!("==> Rotating the gossip encryption key...");
    let entries = match operation(addr, "GET", None) {
        Ok(entries) => entries,
        Err(e) => return fail(format!("Error: listing the keyring: {e}")),
    };
    let old: std::collections::BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e["PrimaryKeys"].as_object())
        .flat_map(|p| p.keys().cloned())
        .collect();
    if old.is_empty() {
        return fail("Error: no primary key found: is gossip encryption on?");
    }
    let Ok(new) = crate::keygen::new_gossip_key() else {
        return fail("Error: the system random number generator failed");
    };
    let stop = |step: &str, why: String, resume: String| {
        fail(format!(
            "Error: stopped at \"{step}\": {why}\nNothing is lost: every agent still opens packets sealed with the old key.\nTo go on: {resume}"
        ))
    };
    let old_list: Vec<&str> = old.iter().map(String::as_str).collect();
    let removals = old_list
        .iter()
        .map(|k| format!("dc-agent keyring -remove {k}"))
        .collect::<Vec<_>>()
        .join(", then ");
    // 1. Install, then check every member holds it.
    if let Err(e) = operation(addr, "POST", Some(&new)) {
        return stop(
            "install",
            e,
            format!("dc-agent keyring -install {new}, then -use {new}, then {removals}"),
        );
    }
    let entries = operation(addr, "GET", None).unwrap_or_default();
    let missing = short(&entries, "Keys", &new);
    if !missing.is_empty() {
        return stop(
            "install",
            format!("the new key is not on every member yet ({})", missing.join(", ")),
            format!("dc-agent keyring -install {new} until -list shows it everywhere, then -use {new}, then {removals}"),
        );
    }
    println!("    installed on every member of every pool");
    // 2. Make it primary, then check.
    if let Err(e) = operation(addr, "PUT", Some(&new)) {
        return stop(
            "use",
            e,
            format!("dc-agent keyring -use {new}, then {removals}"),
        );
    }
    let entries = operation(addr, "GET", None).unwrap_or_default();
    let behind = short(&entries, "PrimaryKeys", &new);
    if !behind.is_empty() {
        return stop(
            "use",
            format!("the new key is not primary everywhere yet ({})", behind.join(", ")),
            format!("dc-agent keyring -use {new} until -list shows it primary everywhere, then {removals}"),
        );
    }
    println!("    primary on every member of every pool");
    // 3. Remove the old key(s).
    for key in &old_list {
        if let Err(e) = operation(addr, "DELETE", Some(key)) {
            return stop("remove", e, removals.clone());
        }
    }
    println!("    old key removed");
    println!("==> Done. Every agent seals and opens with the new key:");
    println!("{new}");
    ExitCode::SUCCESS
}
