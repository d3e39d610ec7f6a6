//! `/v1/operator/keyring`: the gossip keyring of every agent of the federation, as Consul's.
//! A server runs the operation on the WAN pool (every datacenter's servers), on its LAN
//! pool, and on each other datacenter's LAN pool through a server there (`local-only`
//! there, so nothing runs twice); GET lists, POST installs, PUT makes primary, DELETE
//! removes (`{"Key": "..."}`).

use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

use super::{params, Api, ApiError, Consistency};
use crate::gossip::keyfile::KeyOp;
use crate::gossip::pool::KeyOutcome;

/// Asks a server of another datacenter for its entries as JSON, whatever the method (a
/// query parameter: it survives the forwarding to that datacenter's leader).
const ENTRIES_PARAM: &str = "isthmus-entries";

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyBody {
    key: String,
}

/// One pool's answer, Consul's `KeyringResponse`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: String,
    segment: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    partition: String,
    messages: BTreeMap<String, String>,
    keys: BTreeMap<String, usize>,
    primary_keys: BTreeMap<String, usize>,
    num_nodes: usize,
}

impl Entry {
    fn new(wan: bool, datacenter: &str, outcome: KeyOutcome) -> Entry {
        let mut entry = Entry {
            wan,
            datacenter: datacenter.to_owned(),
            segment: String::new(),
            partition: String::new(),
            messages: BTreeMap::new(),
            keys: BTreeMap::new(),
            primary_keys: BTreeMap::new(),
            num_nodes: outcome.answers.len() + outcome.silent.len(),
        };
        for answer in outcome.answers {
            if let Some(error) = answer.error {
                entry.messages.insert(answer.node.clone(), error);
            }
            for key in &answer.keys {
                *entry.keys.entry(key.clone()).or_default() += 1;
            }
            if let Some(primary) = answer.keys.first() {
                *entry.primary_keys.entry(primary.clone()).or_default() += 1;
            }
        }
        for node in outcome.silent {
            entry
                .messages
                .insert(node, "no answer within 3s".to_owned());
        }
        entry
    }
}

/// `/v1/operator/keyring`.
pub async fn keyring(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let local_only = params.contains_key("local-only");
    let internal = params.contains_key(ENTRIES_PARAM);
    // The LAN and WAN pools share one keyring: changing it in one datacenter alone would
    // split the WAN pool (Consul refuses this too). Only the fan-out from another
    // datacenter's server, which covers the rest, runs a change locally.
    if local_only && method != Method::GET && !internal {
        return Err(ApiError::BadRequest(
            "local-only applies to listing keys only: a change must reach every datacenter"
                .to_owned(),
        ));
    }
    let key = || -> Result<String, ApiError> {
        let body: KeyBody = wire::gojson::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
        wire::gossip_key::decode(&body.key)
            .map_err(|e| ApiError::BadRequest(format!("Invalid key: {e}")))?;
        Ok(body.key.trim().to_owned())
    };
    let op = match method {
        Method::GET => KeyOp::List,
        Method::POST => KeyOp::Install(key()?),
        Method::PUT => KeyOp::Use(key()?),
        Method::DELETE => KeyOp::Remove(key()?),
        _ => {
            return Err(ApiError::BadRequest(format!(
                "method {method} is not allowed on /v1/operator/keyring"
            )))
        }
    };
    api.server()?;
    // A key some agent still seals with cannot go: removing it from the others would cut
    // that agent off (it missed a `-use`). Checked before anything changes.
    if let (KeyOp::Remove(key), false) = (&op, internal) {
        let listed = everywhere(&api, &KeyOp::List, local_only).await?;
        // Every agent is in exactly one LAN pool: count there.
        let using: usize = listed
            .iter()
            .filter(|e| !e.wan)
            .map(|e| e.primary_keys.get(key).copied().unwrap_or(0))
            .sum();
        if using > 0 {
            return Err(ApiError::BadRequest(format!(
                "the key is still primary on {using} agents: make another key primary with `keyring -use` first"
            )));
        }
    }
    let entries = everywhere(&api, &op, local_only).await?;
    let op_label = match op {
        KeyOp::List => "list",
        KeyOp::Install(_) => "install",
        KeyOp::Use(_) => "use",
        KeyOp::Remove(_) => "remove",
    };
    let outcome = if entries.iter().all(|e| e.messages.is_empty()) {
        "ok"
    } else {
        "failed"
    };
    api.metrics
        .gossip
        .keyring_ops
        .with_label_values(&[op_label, outcome])
        .inc();
    if internal {
        return Ok(super::kv::json(&api, 1, Consistency::Stale, &entries));
    }
    let nodes: usize = entries.iter().map(|e| e.num_nodes).sum();
    // The same error from many nodes is said once, with who said it.
    let mut failures: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for entry in &entries {
        let pool = if entry.wan {
            "WAN".to_owned()
        } else {
            format!("{} LAN", entry.datacenter)
        };
        for (node, message) in &entry.messages {
            failures
                .entry(message.as_str())
                .or_default()
                .push(format!("{node} ({pool})"));
        }
    }
    if !failures.is_empty() {
        let failed: usize = failures.values().map(Vec::len).sum();
        let reasons: Vec<String> = failures
            .iter()
            .map(|(message, nodes)| format!("{message} [{}]", nodes.join(", ")))
            .collect();
        return Err(ApiError::Internal(format!(
            "{failed}/{nodes} nodes reported failure: {}",
            reasons.join("; ")
        )));
    }
    if method == Method::GET {
        return Ok(super::kv::json(&api, 1, Consistency::Stale, &entries));
    }
    Ok(([("content-type", "application/json")], "").into_response())
}

/// Runs `op` on the WAN pool, this datacenter's LAN pool and (unless `local_only`) every
/// other datacenter's LAN pool; one entry per pool, the WAN first.
async fn everywhere(api: &Api, op: &KeyOp, local_only: bool) -> Result<Vec<Entry>, ApiError> {
    let own_dc = api.agent.datacenter.clone();
    let mut entries = Vec::new();
    if !local_only {
        if let Some(wan) = &api.wan {
            let outcome = wan.keyring(op.clone()).await.map_err(ApiError::Internal)?;
            entries.push(Entry::new(true, &own_dc, outcome));
        }
    }
    let outcome = api
        .lan
        .keyring(op.clone())
        .await
        .map_err(ApiError::Internal)?;
    entries.push(Entry::new(false, &own_dc, outcome));
    if !local_only {
        if let Some(links) = &api.dc_links {
            let (method, body) = match op {
                KeyOp::List => (Method::GET, Vec::new()),
                KeyOp::Install(key) => (Method::POST, key_body(key)),
                KeyOp::Use(key) => (Method::PUT, key_body(key)),
                KeyOp::Remove(key) => (Method::DELETE, key_body(key)),
            };
            // Every other datacenter at once, within the forwarding timeout overall.
            let mut calls = tokio::task::JoinSet::new();
            for (dc, _) in super::catalog::federation(api).await.into_iter().skip(1) {
                let (links, method, body) = (links.clone(), method.clone(), body.clone());
                calls.spawn(async move { remote(&links, &dc, &method, &body).await });
            }
            while let Some(done) = calls.join_next().await {
                if let Ok(remote_entries) = done {
                    entries.extend(remote_entries);
                }
            }
            entries.sort_by(|a, b| (!a.wan, &a.datacenter).cmp(&(!b.wan, &b.datacenter)));
        }
    }
    Ok(entries)
}

fn key_body(key: &str) -> Vec<u8> {
    serde_json::json!({ "Key": key }).to_string().into_bytes()
}

/// Runs the operation on another datacenter's LAN pool through a server there.
async fn remote(links: &crate::wan::DcLinks, dc: &str, method: &Method, body: &[u8]) -> Vec<Entry> {
    let request = crate::rpc::messages::HttpRequest {
        method: method.to_string(),
        uri: format!("/v1/operator/keyring?local-only=1&{ENTRIES_PARAM}=1&dc={dc}"),
        headers: Vec::new(),
        body: body.to_vec(),
    };
    let failed = |why: String| {
        let mut entry = Entry::new(
            false,
            dc,
            KeyOutcome {
                answers: Vec::new(),
                silent: Vec::new(),
            },
        );
        entry.messages.insert(format!("datacenter {dc}"), why);
        vec![entry]
    };
    match links
        .call(dc, &request, std::time::Duration::from_secs(8))
        .await
    {
        Ok(response) if response.status == 200 => {
            serde_json::from_slice::<Vec<Entry>>(&response.body)
                .unwrap_or_else(|e| failed(format!("an answer that does not decode: {e}")))
        }
        Ok(response) => failed(format!(
            "answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body).trim()
        )),
        Err(e) => failed(e.to_string()),
    }
}
