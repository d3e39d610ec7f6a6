//! `maint`: node and service maintenance mode, as `consul maint`.

use std::process::ExitCode;

use super::{check, client, fail};
use crate::client::encode_key;

/// What `maint` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct MaintOptions {
    /// `-enable`.
    pub enable: bool,
    /// `-disable`.
    pub disable: bool,
    /// `-service=ID`: the service instance, not the node.
    pub service: Option<String>,
    /// `-reason`.
    pub reason: Option<String>,
}

/// `maint [-enable|-disable] [-service=ID] [-reason=TEXT]`.
pub fn maint(addr: &str, options: &MaintOptions) -> ExitCode {
    if options.enable && options.disable {
        return fail("Only one of -enable or -disable may be provided");
    }
    if !options.enable && !options.disable {
        if options.reason.is_some() {
            return fail("Reason may only be provided with -enable");
        }
        if options.service.is_some() {
            return fail("Service requires either -enable or -disable");
        }
        return list(addr);
    }
    if options.disable && options.reason.is_some() {
        return fail("Reason may only be provided with -enable");
    }
    let reason = options
        .reason
        .as_deref()
        .map(|r| format!("&reason={}", encode_key(r)))
        .unwrap_or_default();
    let path = match &options.service {
        Some(id) => format!(
            "/v1/agent/service/maintenance/{}?enable={}{reason}",
            encode_key(id),
            options.enable
        ),
        None => format!("/v1/agent/maintenance?enable={}{reason}", options.enable),
    };
    match check(client(addr).put(&path, b""), addr) {
        Ok(response) if response.status == 404 => fail(format!(
            "Error {} service maintenance: {}",
            if options.enable {
                "enabling"
            } else {
                "disabling"
            },
            response.text().trim()
        )),
        Ok(_) => {
            let state = if options.enable {
                "enabled"
            } else {
                "disabled"
            };
            match &options.service {
                Some(id) => println!("Service maintenance is now {state} for \"{id}\""),
                None => println!("Node maintenance is now {state}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn list(addr: &str) -> ExitCode {
    let me = match check(client(addr).get("/v1/agent/self"), addr)
        .and_then(|r| r.json::<serde_json::Value>())
    {
        Ok(me) => me,
        Err(e) => return fail(e),
    };
    let checks = match check(client(addr).get("/v1/agent/checks"), addr)
        .and_then(|r| r.json::<serde_json::Map<String, serde_json::Value>>())
    {
        Ok(checks) => checks,
        Err(e) => return fail(e),
    };
    for (id, check) in &checks {
        let reason = check["Notes"].as_str().unwrap_or_default();
        if id == "_node_maintenance" {
            println!("Node:");
            println!(
                "  Name:   {}",
                me["Config"]["NodeName"].as_str().unwrap_or_default()
            );
            println!("  Reason: {reason}");
            println!();
        } else if let Some(service) = id.strip_prefix("_service_maintenance:") {
            println!("Service:");
            println!("  ID:     {service}");
            println!("  Reason: {reason}");
            println!();
        }
    }
    ExitCode::SUCCESS
}
