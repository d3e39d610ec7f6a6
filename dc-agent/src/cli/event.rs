//! `event`: fires a user event, as `consul event` (prints `Event ID: ...`).

use std::process::ExitCode;

use super::{client, fail};
use crate::client::encode_key;

/// What `event` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct EventOptions {
    /// `-name`.
    pub name: Option<String>,
    /// `-node`.
    pub node: Option<String>,
    /// `-service`.
    pub service: Option<String>,
    /// `-tag`.
    pub tag: Option<String>,
    /// `-datacenter`.
    pub datacenter: Option<String>,
}

/// `event -name=NAME [-node=RE] [-service=RE] [-tag=RE] [-datacenter=DC] [PAYLOAD]`.
pub fn fire(addr: &str, options: &EventOptions, payload: Option<&str>) -> ExitCode {
    let Some(name) = options.name.as_deref().filter(|n| !n.is_empty()) else {
        return fail("Event name must be specified");
    };
    if options.tag.is_some() && options.service.is_none() {
        return fail("Cannot provide tag filter without service filter");
    }
    let mut query = Vec::new();
    for (key, value) in [
        ("node", &options.node),
        ("service", &options.service),
        ("tag", &options.tag),
        ("dc", &options.datacenter),
    ] {
        if let Some(value) = value {
            query.push(format!("{key}={}", encode_key(value)));
        }
    }
    let mut path = format!("/v1/event/fire/{}", encode_key(name));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let response = match client(addr).put(&path, payload.unwrap_or_default().as_bytes()) {
        Ok(response) => response,
        Err(e) => return fail(format!("Error firing event: {e}")),
    };
    if response.status != 200 {
        return fail(format!("Error firing event: {}", response.text().trim()));
    }
    match response.json::<serde_json::Value>() {
        Ok(event) => {
            println!("Event ID: {}", event["ID"].as_str().unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error firing event: {e}")),
    }
}
