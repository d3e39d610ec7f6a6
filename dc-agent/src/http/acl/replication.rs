//! ACLs across datacenters: the primary is authoritative for policies, roles and global
//! tokens. A secondary sends writes of those to the primary ([`to_primary`]), copies the
//! primary's tables (`crate::server::acl_replication`, which polls
//! `/v1/isthmus/acl/replicate` here, [`replicate`]) and says how that goes on
//! `/v1/acl/replication` ([`status`]).

use acl::{Global, Need};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::super::{blocking, params, Api, ApiError, Backend};
use super::Resolved;
use crate::server::acl_replication::ReplicaAnswer;

/// Sends a write of global ACL data made in a secondary datacenter to the primary (as
/// Consul's servers forward it): the bootstrap, policies, roles, and tokens that are not
/// `Local`; without token replication, reads of tokens this datacenter does not hold too,
/// and client agents' resolutions of them. It becomes a `?dc=PRIMARY` request, authorised
/// there. A request that came from another datacenter is never sent on (two datacenters
/// naming each other primary would bounce it for ever).
pub async fn to_primary(api: &Api, request: Request) -> Result<Request, Response> {
    let (Some(settings), Backend::Server(server)) = (api.acl.as_ref(), &api.backend) else {
        return Ok(request);
    };
    let Some(primary) = settings.primary.clone() else {
        return Ok(request);
    };
    let path = request.uri().path().to_owned();
    let is_get = request.method() == axum::http::Method::GET;
    let asks_primary = !settings.token_replication;
    let resolve = path == "/v1/isthmus/acl/resolve";
    let token_read = path.starts_with("/v1/acl/token") && asks_primary;
    if request
        .extensions()
        .get::<super::super::forward::FromOtherDatacenter>()
        .is_some()
        || !(path.starts_with("/v1/acl/") || (resolve && asks_primary))
        || path == "/v1/acl/replication"
        || (is_get && !token_read && !resolve)
    {
        return Ok(request);
    }
    let mut query = params(request.uri().query()).map_err(IntoResponse::into_response)?;
    if query
        .get("dc")
        .is_some_and(|dc| !dc.is_empty() && *dc != api.agent.datacenter)
    {
        return Ok(request);
    }
    // Whether a token this datacenter holds is a local one.
    let local_by = |find: &dyn Fn(&store::state::acl::Acl) -> Option<bool>| {
        server
            .state
            .read(|data| find(&data.state.acl))
            .ok()
            .flatten()
    };
    let (request, global) = if path == "/v1/acl/token" {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, 2 * 1024 * 1024)
            .await
            .map_err(|_| {
                ApiError::TooLarge("Request body too large, max size: 2097152 bytes".to_owned())
                    .into_response()
            })?;
        // Read as the endpoint reads it (Go's decoder: names without case, last wins).
        let local = super::endpoints::says_local(&bytes).map_err(IntoResponse::into_response)?;
        if local && asks_primary {
            return Err(ApiError::BadRequest(
                "Local tokens are disabled: this secondary datacenter does not replicate tokens (acl.enable_token_replication)".to_owned(),
            )
            .into_response());
        }
        (Request::from_parts(parts, Body::from(bytes)), !local)
    } else if path == "/v1/acl/token/self" || resolve {
        let secret = super::token_of(&request);
        let local = local_by(&|acl| {
            secret
                .as_deref()
                .and_then(|s| acl.token_by_secret(s).map(|t| t.local))
        });
        (request, local != Some(true))
    } else if let Some(rest) = path.strip_prefix("/v1/acl/token/") {
        let accessor = rest.strip_suffix("/clone").unwrap_or(rest).to_owned();
        let local = local_by(&|acl| acl.token(&accessor).map(|t| t.local));
        // A token this datacenter does not hold is the primary's to answer for.
        (request, local != Some(true))
    } else {
        (request, true)
    };
    if !global {
        return Ok(request);
    }
    query.insert("dc".to_owned(), primary);
    if resolve {
        // Resolved for this datacenter, by any server of the primary.
        query.insert("for".to_owned(), api.agent.datacenter.clone());
        query.insert("stale".to_owned(), String::new());
    }
    let mut pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                wire::percent::segment(k),
                wire::percent::segment(v)
            )
        })
        .collect();
    pairs.sort();
    let uri = format!("{path}?{}", pairs.join("&"));
    let (mut parts, body) = request.into_parts();
    parts.uri = uri
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("bad request URI {uri:?}")).into_response())?;
    Ok(Request::from_parts(parts, body))
}

/// `GET /v1/isthmus/acl/replicate` (the primary's side): its tables once their index
/// passes `?index`; global tokens too with `?tokens=true` and a token with `acl:write`.
pub async fn replicate(State(api): State<Api>, request: Request) -> Result<Response, ApiError> {
    super::endpoints::disabled(&api)?;
    let query = params(request.uri().query())?;
    let internal = request
        .extensions()
        .get::<super::super::forward::Internal>()
        .is_some();
    let may_copy_tokens = internal
        || request
            .extensions()
            .get::<Resolved>()
            .is_some_and(|r| r.authorizer.allows_global(Global::Acl, Need::Write));
    let with_tokens = query.get("tokens").is_some_and(|v| v == "true") && may_copy_tokens;
    let server = api.server()?;
    let (index, mut replica) = blocking::run(&server.state, &query, |data| {
        (data.state.acl.index, data.state.acl.replicated())
    })
    .await?;
    if !with_tokens {
        replica.tokens = None;
    }
    let body = serde_json::to_vec(&ReplicaAnswer { index, replica })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([("content-type", "application/json")], body).into_response())
}

/// Consul's `/v1/acl/replication`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct StatusBody {
    enabled: bool,
    running: bool,
    source_datacenter: String,
    replication_type: String,
    replicated_index: u64,
    replicated_role_index: u64,
    replicated_token_index: u64,
    last_success: String,
    last_error: String,
    last_error_message: String,
}

fn time_or_zero(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "0001-01-01T00:00:00Z".to_owned(),
        super::endpoints::rfc3339,
    )
}

/// `GET /v1/acl/replication`: what this datacenter's leader last did to copy the
/// primary's ACLs (in the primary: not enabled).
pub async fn status(State(api): State<Api>) -> Result<Response, ApiError> {
    let Some(settings) = api.acl.clone() else {
        return Err(ApiError::Unauthorized("ACL support disabled".to_owned()));
    };
    let server = api.server()?;
    let status = server.acl_replication.lock().clone();
    let body = match &settings.primary {
        None => StatusBody {
            enabled: false,
            running: false,
            source_datacenter: String::new(),
            replication_type: String::new(),
            replicated_index: 0,
            replicated_role_index: 0,
            replicated_token_index: 0,
            last_success: time_or_zero(None),
            last_error: time_or_zero(None),
            last_error_message: String::new(),
        },
        Some(primary) => StatusBody {
            enabled: true,
            running: status.running,
            source_datacenter: primary.clone(),
            replication_type: if settings.token_replication {
                "tokens"
            } else {
                "policies"
            }
            .to_owned(),
            replicated_index: status.replicated_index,
            replicated_role_index: status.replicated_role_index,
            replicated_token_index: status.replicated_token_index,
            last_success: time_or_zero(status.last_success_ms),
            last_error: time_or_zero(status.last_error_ms),
            last_error_message: status.last_error_message,
        },
    };
    let body = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([("content-type", "application/json")], body).into_response())
}
