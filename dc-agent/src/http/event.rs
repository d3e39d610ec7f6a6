//! `/v1/event`: fire a user event (on a server; `?dc=` in another datacenter) and list the
//! ones this agent kept (see `crate::events`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{blocking, params, Api, ApiError};
use crate::events::{index_of, is_for, UserEvent, MAX_EVENT_SIZE};

/// A user event as Consul's API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EventOut {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    payload: Option<String>,
    node_filter: String,
    service_filter: String,
    tag_filter: String,
    version: u32,
    #[serde(rename = "LTime")]
    ltime: u64,
}

impl From<&UserEvent> for EventOut {
    fn from(e: &UserEvent) -> EventOut {
        use base64::Engine;
        EventOut {
            id: e.id.clone(),
            name: e.name.clone(),
            payload: e
                .payload
                .as_ref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            node_filter: e.node_filter.clone(),
            service_filter: e.service_filter.clone(),
            tag_filter: e.tag_filter.clone(),
            version: e.version,
            ltime: e.ltime,
        }
    }
}

fn json_response<T: Serialize>(index: Option<u64>, body: &T) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(index) = index {
        if let Ok(value) = HeaderValue::from_str(&index.to_string()) {
            headers.insert("x-consul-index", value);
        }
    }
    Ok((headers, bytes).into_response())
}

/// `PUT /v1/event/fire/:name?node=&service=&tag=`: the event, spread by LAN gossip.
pub async fn fire(
    State(api): State<Api>,
    Path(name): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    if name.is_empty() {
        return Err(ApiError::BadRequest("Missing name".to_owned()));
    }
    if name.len() + body.len() > MAX_EVENT_SIZE {
        return Err(ApiError::TooLarge(format!(
            "User event exceeds the {MAX_EVENT_SIZE}-byte limit (name and payload: {} bytes)",
            name.len() + body.len()
        )));
    }
    let params = params(uri.query())?;
    let filter = |key: &str| -> Result<String, ApiError> {
        let pattern = params.get(key).cloned().unwrap_or_default();
        if !pattern.is_empty() {
            crate::http::filter::regex::Regex::new(&pattern)
                .map_err(|e| ApiError::BadRequest(format!("Invalid {key} filter: {e}")))?;
        }
        Ok(pattern)
    };
    let event = UserEvent {
        id: new_id()?,
        name,
        payload: (!body.is_empty()).then(|| body.to_vec()),
        node_filter: filter("node")?,
        service_filter: filter("service")?,
        tag_filter: filter("tag")?,
        version: 1,
        ltime: api.events.tick(),
    };
    if !event.tag_filter.is_empty() && event.service_filter.is_empty() {
        return Err(ApiError::BadRequest(
            "Cannot provide tag filter without service filter".to_owned(),
        ));
    }
    let encoded = postcard::to_stdvec(&event).map_err(|e| ApiError::Internal(e.to_string()))?;
    if !api.lan.broadcast(encoded).await {
        return Err(ApiError::Internal("the gossip pool has stopped".to_owned()));
    }
    // Gossip does not bring a node its own broadcast.
    if is_for(&event, &api.agent.node_name, &api.local.services()) {
        api.events.keep(event.clone());
    }
    api.metrics.coordination.events_fired.inc();
    tracing::info!(name = %event.name, id = %event.id, "user event fired");
    json_response(None, &EventOut::from(&event))
}

fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ApiError::Internal("the system random number generator failed".into()))?;
    Ok(wire::names::uuid_of(bytes))
}

/// `GET /v1/event/list?name=`: this agent's events, oldest first (blocking on `?index`).
pub async fn list(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let index = blocking::index_of(&params)?;
    let wait = blocking::wait_of(&params)?;
    let name = params.get("name").filter(|n| !n.is_empty()).cloned();
    let (index, events) = api.events.wait_list(name.as_deref(), index, wait).await;
    debug_assert_eq!(index, index_of(&events));
    let out: Vec<EventOut> = events.iter().map(EventOut::from).collect();
    json_response(Some(index), &out)
}
