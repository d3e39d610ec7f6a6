//! `/v1/kv`: get (`?recurse`, `?keys`, `?separator`, `?raw`), put (`?cas`, `?flags`), delete
//! (`?recurse`, `?cas`).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use wire::api::KvPair;
use wire::command::{Command, CommandResult};
use wire::records::MAX_KV_VALUE;

use super::{blocking, params, query_meta, Api, ApiError, Consistency, Params};

/// Checks a key; writes need a non-empty one.
fn check_key(key: &str, for_write: bool) -> Result<(), ApiError> {
    if for_write && key.is_empty() {
        return Err(ApiError::BadRequest("Missing key name".to_owned()));
    }
    wire::records::check_key(key).map_err(key_error)
}

/// A refused key name: 413 when too long (as an oversized value), 400 otherwise.
pub fn key_error(error: wire::records::KeyError) -> ApiError {
    match error {
        wire::records::KeyError::TooLong(_) => ApiError::TooLarge(error.to_string()),
        wire::records::KeyError::Control(_) => ApiError::BadRequest(error.to_string()),
    }
}

fn number(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("Invalid {name}: {text:?} is not a number"))),
    }
}

/// Confirms leadership with a quorum for `?consistent`.
pub async fn confirm(api: &Api, consistency: Consistency) -> Result<(), ApiError> {
    if consistency == Consistency::Consistent {
        api.server()?
            .raft
            .ensure_linearizable()
            .await
            .map_err(|_| ApiError::NoLeader)?;
    }
    Ok(())
}

/// A JSON answer with Consul's query-meta headers.
pub fn json<T: serde::Serialize>(
    api: &Api,
    index: u64,
    consistency: Consistency,
    body: &T,
) -> Response {
    let mut headers = HeaderMap::new();
    query_meta(api, &mut headers, index, consistency);
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            headers.insert(
                "content-type",
                axum::http::HeaderValue::from_static("application/json"),
            );
            (StatusCode::OK, headers, bytes).into_response()
        }
        Err(e) => ApiError::Internal(format!("encoding the answer: {e}")).into_response(),
    }
}

/// A 404 with Consul's query-meta headers (blocking clients need the index).
pub fn not_found(api: &Api, index: u64, consistency: Consistency) -> Response {
    let mut headers = HeaderMap::new();
    query_meta(api, &mut headers, index, consistency);
    (StatusCode::NOT_FOUND, headers).into_response()
}

enum Answer {
    Keys(Vec<String>),
    Entries(Vec<KvPair>),
}

async fn read(
    api: Api,
    key: String,
    uri: Uri,
    token: Option<super::acl::Resolved>,
) -> Result<Response, ApiError> {
    check_key(&key, false)?;
    let params = params(uri.query())?;
    let consistency = Consistency::from_params(&params)?;
    confirm(&api, consistency).await?;
    let raw = params.contains_key("raw");
    let (index, answer) = if params.contains_key("keys") {
        let separator = params.get("separator").cloned();
        blocking::run(&api.server()?.state, &params, |data| {
            (
                data.state.kv.prefix_index(&key),
                Answer::Keys(data.state.kv.keys(&key, separator.as_deref())),
            )
        })
        .await?
    } else if params.contains_key("recurse") {
        blocking::run(&api.server()?.state, &params, |data| {
            (
                data.state.kv.prefix_index(&key),
                Answer::Entries(data.state.kv.list(&key).map(KvPair::from).collect()),
            )
        })
        .await?
    } else {
        blocking::run(&api.server()?.state, &params, |data| {
            (
                data.state.kv.key_index(&key),
                Answer::Entries(
                    data.state
                        .kv
                        .get(&key)
                        .map(KvPair::from)
                        .into_iter()
                        .collect(),
                ),
            )
        })
        .await?
    };
    // With ACLs, a recursive read or key list shows only the keys the token may read (as
    // Consul's, which says so in a header).
    let mut filtered = false;
    let answer = match (answer, &token) {
        (Answer::Keys(mut keys), Some(token)) => {
            let before = keys.len();
            keys.retain(|k| {
                token
                    .authorizer
                    .allows(acl::Resource::Key, k, acl::Need::Read)
            });
            filtered = keys.len() != before;
            Answer::Keys(keys)
        }
        (Answer::Entries(mut entries), Some(token)) => {
            let before = entries.len();
            entries.retain(|e| {
                token
                    .authorizer
                    .allows(acl::Resource::Key, &e.key, acl::Need::Read)
            });
            filtered = entries.len() != before;
            Answer::Entries(entries)
        }
        (answer, None) => answer,
    };
    let response = respond(&api, answer, index, consistency, raw)?;
    Ok(super::acl::mark_filtered(response, filtered))
}

fn respond(
    api: &Api,
    answer: Answer,
    index: u64,
    consistency: Consistency,
    raw: bool,
) -> Result<Response, ApiError> {
    let api = api.clone();
    match answer {
        Answer::Keys(keys) if keys.is_empty() => Ok(not_found(&api, index, consistency)),
        Answer::Keys(keys) => Ok(json(&api, index, consistency, &keys)),
        Answer::Entries(entries) if entries.is_empty() => Ok(not_found(&api, index, consistency)),
        Answer::Entries(mut entries) if raw => {
            let mut headers = HeaderMap::new();
            query_meta(&api, &mut headers, index, consistency);
            headers.insert(
                "content-type",
                axum::http::HeaderValue::from_static("application/octet-stream"),
            );
            Ok((StatusCode::OK, headers, entries.swap_remove(0).value).into_response())
        }
        Answer::Entries(entries) => Ok(json(&api, index, consistency, &entries)),
    }
}

pub(super) async fn write(api: &Api, command: Command) -> Result<CommandResult, ApiError> {
    let started = Instant::now();
    let (_index, result) = api
        .server()?
        .proposer
        .propose(command)
        .await
        .map_err(super::error::from_propose_error)?;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    api.metrics.kvs_apply.observe(elapsed_ms);
    api.metrics.raft_commit_time.observe(elapsed_ms);
    api.metrics.raft_apply.inc();
    Ok(result)
}

fn boolean(result: CommandResult) -> Response {
    match result {
        CommandResult::Applied(applied) => (
            [("content-type", "application/json")],
            if applied { "true" } else { "false" },
        )
            .into_response(),
        CommandResult::Refused(why) => ApiError::BadRequest(why).into_response(),
        other => ApiError::Internal(format!("unexpected result {other:?}")).into_response(),
    }
}

async fn store(api: Api, key: String, uri: Uri, body: Bytes) -> Result<Response, ApiError> {
    check_key(&key, true)?;
    let params = params(uri.query())?;
    if body.len() > MAX_KV_VALUE {
        return Err(ApiError::TooLarge(format!(
            "Value of {} bytes exceeds the {MAX_KV_VALUE}-byte limit (kv_max_value_size)",
            body.len()
        )));
    }
    let flags = number(&params, "flags")?.unwrap_or(0);
    let cas = number(&params, "cas")?;
    if let Some(session) = params.get("acquire") {
        return acquire(&api, key, body, flags, session, cas).await;
    }
    if let Some(session) = params.get("release") {
        let command = Command::KvUnlock {
            key,
            value: body.to_vec(),
            flags,
            session: session.clone(),
            cas,
        };
        return Ok(boolean(write(&api, command).await?));
    }
    let result = write(
        &api,
        Command::KvSet {
            key,
            value: body.to_vec(),
            flags,
            cas,
        },
    )
    .await?;
    Ok(boolean(result))
}

/// `?acquire=SESSION`: false while the key is in a lock delay (checked here, on the
/// leader, as Consul's leader checks it), or held by another session.
async fn acquire(
    api: &Api,
    key: String,
    body: Bytes,
    flags: u64,
    session: &str,
    cas: Option<u64>,
) -> Result<Response, ApiError> {
    if session.is_empty() {
        return Err(ApiError::BadRequest("Missing session".to_owned()));
    }
    let now_ms = crate::unix_ms();
    let delayed = api
        .server()?
        .state
        .read(|data| data.state.lock_delays.until(&key, now_ms))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let attempts = &api.metrics.coordination.lock_attempts;
    if let Some(until) = delayed {
        tracing::debug!(key = %key, remaining_ms = until - now_ms, "acquire refused: the key is in its lock delay");
        attempts.with_label_values(&["lock_delay"]).inc();
        return Ok(boolean(CommandResult::Applied(false)));
    }
    let command = Command::KvLock {
        key,
        value: body.to_vec(),
        flags,
        session: session.to_owned(),
        cas,
    };
    match write(api, command).await? {
        // An unknown session is Consul's RPC error (500).
        CommandResult::Refused(why) => Err(ApiError::Internal(why)),
        other => {
            let outcome = if other == CommandResult::Applied(true) {
                "acquired"
            } else {
                "held"
            };
            attempts.with_label_values(&[outcome]).inc();
            Ok(boolean(other))
        }
    }
}

async fn remove(api: Api, key: String, uri: Uri) -> Result<Response, ApiError> {
    check_key(&key, false)?;
    let params = params(uri.query())?;
    let command = if params.contains_key("recurse") {
        Command::KvDeleteTree { prefix: key }
    } else {
        if key.is_empty() {
            return Err(ApiError::BadRequest(
                "Missing key name; to delete everything, use ?recurse".to_owned(),
            ));
        }
        Command::KvDelete {
            key,
            cas: number(&params, "cas")?,
        }
    };
    Ok(boolean(write(&api, command).await?))
}

/// `GET /v1/kv/<key>`.
pub async fn get(
    State(api): State<Api>,
    Path(key): Path<String>,
    uri: Uri,
    token: Option<axum::Extension<super::acl::Resolved>>,
) -> Result<Response, ApiError> {
    read(api, key, uri, token.map(|t| t.0)).await
}

/// `GET /v1/kv/`.
pub async fn get_root(
    State(api): State<Api>,
    uri: Uri,
    token: Option<axum::Extension<super::acl::Resolved>>,
) -> Result<Response, ApiError> {
    read(api, String::new(), uri, token.map(|t| t.0)).await
}

/// `PUT /v1/kv/<key>`.
pub async fn put(
    State(api): State<Api>,
    Path(key): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    store(api, key, uri, body).await
}

/// `PUT /v1/kv/`: refused, a key is needed.
pub async fn put_root(State(api): State<Api>, uri: Uri, body: Bytes) -> Result<Response, ApiError> {
    store(api, String::new(), uri, body).await
}

/// `DELETE /v1/kv/<key>`.
pub async fn delete(
    State(api): State<Api>,
    Path(key): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    remove(api, key, uri).await
}

/// `DELETE /v1/kv/` (with `?recurse`: everything).
pub async fn delete_root(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    remove(api, String::new(), uri).await
}
