//! `GET /v1/snapshot` and `PUT /v1/snapshot`: the datacenter's whole state saved to a file
//! and restored from one through Raft, as `consul snapshot save|restore`.
//!
//! The file is a header line (`isthmus-snapshot 1`), one JSON line of metadata (`Index`,
//! `Term`, `Datacenter`, `Version`, as `snapshot inspect` prints them), then the state as
//! the servers' own snapshot encoding (`wire::snapshot::StateSnapshot`, versioned).
//! Consul's archives are not read (their state is Consul's Go structures).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wire::command::{Command, CommandResult};
use wire::snapshot::StateSnapshot;

use super::{params, query_meta, Api, ApiError, Consistency};

/// The first line of a snapshot file.
pub const MAGIC: &str = "isthmus-snapshot 1";

/// The largest snapshot taken back (it travels as one Raft entry).
pub const MAX_SNAPSHOT: usize = 32 * 1024 * 1024;

/// What a snapshot file says about itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapshotMeta {
    /// The Raft index it was taken at.
    pub index: u64,
    /// The Raft term then.
    pub term: u64,
    /// The datacenter it was taken from.
    pub datacenter: String,
    /// The state format ([`wire::snapshot::SNAPSHOT_VERSION`]).
    pub version: u32,
}

/// Splits a snapshot file into its metadata and state.
pub fn parse(file: &[u8]) -> Result<(SnapshotMeta, StateSnapshot), String> {
    let not_ours = || "not an Isthmus snapshot (save one with `dc-agent snapshot save`)".to_owned();
    let first_end = file.iter().position(|b| *b == b'\n').ok_or_else(not_ours)?;
    if &file[..first_end] != MAGIC.as_bytes() {
        return Err(not_ours());
    }
    let rest = &file[first_end + 1..];
    let meta_end = rest.iter().position(|b| *b == b'\n').ok_or_else(not_ours)?;
    let meta: SnapshotMeta = serde_json::from_slice(&rest[..meta_end])
        .map_err(|e| format!("the snapshot's metadata is damaged: {e}"))?;
    let state = StateSnapshot::decode(&rest[meta_end + 1..])
        .map_err(|e| format!("the snapshot's state is damaged: {e}"))?;
    Ok((meta, state))
}

/// `GET /v1/snapshot`: the state as a snapshot file (on the leader unless `?stale`).
pub async fn save(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let consistency = Consistency::from_params(&params)?;
    let server = api.server()?;
    let (index, term, state) = server
        .state
        .read(|data| {
            let log = data.last_applied;
            (
                log.map_or(0, |l| l.index),
                log.map_or(0, |l| l.leader_id.term),
                data.state.to_snapshot(),
            )
        })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let meta = SnapshotMeta {
        index,
        term,
        datacenter: api.agent.datacenter.clone(),
        version: state.version,
    };
    let encoded = wire::frame::to_bytes(&state)
        .map_err(|e| ApiError::Internal(format!("encoding the snapshot: {e}")))?;
    let meta_line = serde_json::to_string(&meta).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut body = Vec::with_capacity(encoded.len() + 128);
    body.extend_from_slice(MAGIC.as_bytes());
    body.push(b'\n');
    body.extend_from_slice(meta_line.as_bytes());
    body.push(b'\n');
    body.extend_from_slice(&encoded);
    let mut headers = HeaderMap::new();
    query_meta(&api, &mut headers, index, consistency);
    headers.insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    Ok((StatusCode::OK, headers, body).into_response())
}

/// `PUT /v1/snapshot`: replaces the datacenter's state with the file's, through Raft (so
/// every server takes it and it survives restarts).
pub async fn restore(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    if body.len() > MAX_SNAPSHOT {
        return Err(ApiError::TooLarge(format!(
            "Snapshot of {} bytes exceeds the {MAX_SNAPSHOT}-byte limit",
            body.len()
        )));
    }
    let (meta, state) = parse(&body).map_err(ApiError::BadRequest)?;
    let encoded = wire::frame::to_bytes(&state)
        .map_err(|e| ApiError::Internal(format!("encoding the snapshot: {e}")))?;
    if meta.datacenter != api.agent.datacenter {
        tracing::warn!(from = %meta.datacenter, into = %api.agent.datacenter, "restoring a snapshot taken in another datacenter");
    }
    let (_index, result) = api
        .server()?
        .proposer
        .propose(Command::Restore(encoded))
        .await
        .map_err(super::error::from_propose_error)?;
    tracing::info!(taken_at = meta.index, "snapshot restored");
    match result {
        CommandResult::Done => Ok(([("content-type", "application/json")], "").into_response()),
        CommandResult::Refused(why) => Err(ApiError::BadRequest(why)),
        other => Err(ApiError::Internal(format!("unexpected result {other:?}"))),
    }
}
