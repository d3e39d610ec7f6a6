//! `PUT /v1/txn`: KV operations applied atomically (200 with results, 409 with errors).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use wire::api::{KvPair, TxnErrorEntry, TxnOpRequest, TxnResponse, TxnResult};
use wire::command::{Command, CommandResult, TxnOp};
use wire::records::MAX_KV_VALUE;

use super::{Api, ApiError};

/// Consul's limit on operations per transaction.
const MAX_OPS: usize = 128;

fn to_op(index: usize, request: TxnOpRequest) -> Result<TxnOp, ApiError> {
    if let Some(session) = request.session {
        return match session.verb.as_str() {
            "delete" if !session.session.id.is_empty() => Ok(TxnOp::SessionDelete {
                id: session.session.id,
            }),
            "delete" => Err(ApiError::BadRequest(format!(
                "operation {index}: missing session ID"
            ))),
            other => Err(ApiError::BadRequest(format!(
                "operation {index}: unknown session verb {other:?}"
            ))),
        };
    }
    let Some(kv) = request.kv else {
        return Err(ApiError::BadRequest(format!(
            "operation {index}: only KV and session operations are supported"
        )));
    };
    // The limits of `/v1/kv`, with its statuses: 413 for what is too large.
    if kv.value.len() > MAX_KV_VALUE {
        return Err(ApiError::TooLarge(format!(
            "operation {index}: value of {} bytes exceeds the {MAX_KV_VALUE}-byte limit (kv_max_value_size)",
            kv.value.len()
        )));
    }
    let key = kv.key;
    if let Err(e) = wire::records::check_key(&key) {
        return Err(match super::kv::key_error(e) {
            ApiError::TooLarge(why) => ApiError::TooLarge(format!("operation {index}: {why}")),
            other => ApiError::BadRequest(format!("operation {index}: {other}")),
        });
    }
    let needs_key = !matches!(kv.verb.as_str(), "get-tree" | "delete-tree");
    if needs_key && key.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "operation {index}: missing key"
        )));
    }
    Ok(match kv.verb.as_str() {
        "set" => TxnOp::Set {
            key,
            value: kv.value,
            flags: kv.flags,
        },
        "cas" => TxnOp::Cas {
            key,
            value: kv.value,
            flags: kv.flags,
            index: kv.index,
        },
        "get" => TxnOp::Get { key },
        "get-tree" => TxnOp::GetTree { prefix: key },
        "check-index" => TxnOp::CheckIndex {
            key,
            index: kv.index,
        },
        "check-not-exists" => TxnOp::CheckNotExists { key },
        "delete" => TxnOp::Delete { key },
        "delete-tree" => TxnOp::DeleteTree { prefix: key },
        "delete-cas" => TxnOp::DeleteCas {
            key,
            index: kv.index,
        },
        "lock" | "unlock" | "check-session" if kv.session.is_empty() => {
            return Err(ApiError::BadRequest(format!(
                "operation {index}: missing session"
            )))
        }
        "lock" => TxnOp::Lock {
            key,
            value: kv.value,
            flags: kv.flags,
            session: kv.session,
        },
        "unlock" => TxnOp::Unlock {
            key,
            value: kv.value,
            flags: kv.flags,
            session: kv.session,
        },
        "check-session" => TxnOp::CheckSession {
            key,
            session: kv.session,
        },
        other => {
            return Err(ApiError::BadRequest(format!(
                "operation {index}: unknown KV verb {other:?}"
            )))
        }
    })
}

/// `PUT /v1/txn`.
pub async fn txn(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    let requests: Vec<TxnOpRequest> = wire::gojson::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("Failed to parse body: {e}")))?;
    if requests.len() > MAX_OPS {
        return Err(ApiError::TooLarge(format!(
            "Transaction contains too many operations ({} > {MAX_OPS})",
            requests.len()
        )));
    }
    let ops = requests
        .into_iter()
        .enumerate()
        .map(|(index, request)| to_op(index, request))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let (index, result) = api
        .server()?
        .proposer
        .propose(Command::Txn(ops))
        .await
        .map_err(super::error::from_propose_error)?;
    api.metrics
        .txn_apply
        .observe(started.elapsed().as_secs_f64() * 1000.0);
    api.metrics.raft_apply.inc();
    let (status, body) = match result {
        CommandResult::Txn(Ok(entries)) => (
            StatusCode::OK,
            TxnResponse {
                results: Some(
                    entries
                        .iter()
                        .map(|e| TxnResult {
                            kv: KvPair::from(e),
                        })
                        .collect(),
                ),
                errors: None,
            },
        ),
        CommandResult::Txn(Err(errors)) => (
            StatusCode::CONFLICT,
            TxnResponse {
                results: None,
                errors: Some(
                    errors
                        .into_iter()
                        .map(|e| TxnErrorEntry {
                            op_index: e.op_index,
                            what: e.what,
                        })
                        .collect(),
                ),
            },
        ),
        other => return Err(ApiError::Internal(format!("unexpected result {other:?}"))),
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut headers = axum::http::HeaderMap::new();
    super::query_meta(&api, &mut headers, index, super::Consistency::Default);
    headers.insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok((status, headers, bytes).into_response())
}
