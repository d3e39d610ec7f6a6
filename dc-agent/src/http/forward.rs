//! Forwarding an HTTP request over QUIC (a follower's to the leader, a client agent's to a
//! server), and answering forwarded ones.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use axum::Router;
use tower::ServiceExt;
use wire::raft::RaftNode;

use super::{params, Api, ApiError, FORWARDED};
use crate::rpc::messages::{HttpHandler, HttpRequest, HttpResponse, RpcReply, RpcRequest};
use crate::server::Server;
use crate::servers::ServerLink;

/// Largest answer sent back to a follower: a frame, less room for headers.
pub(crate) const MAX_FORWARDED_ANSWER: usize = wire::frame::MAX_FRAME - 1024 * 1024;

/// Largest body forwarded (values are at most 512 KiB; transactions a little more).
pub(crate) const MAX_FORWARDED_BODY: usize = 2 * 1024 * 1024;

/// Reads a request into the form it travels in, marked with its hop count. An oversized
/// body is answered at once.
async fn encode(request: Request, hops: u32) -> Result<HttpRequest, Response> {
    let (parts, body) = request.into_parts();
    // A snapshot restore carries the datacenter's state.
    let limit = if parts.uri.path() == "/v1/snapshot" {
        super::snapshot::MAX_SNAPSHOT + 1
    } else {
        MAX_FORWARDED_BODY
    };
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            return Err(ApiError::TooLarge(format!(
                "Request body too large, max size: {limit} bytes"
            ))
            .into_response())
        }
    };
    let mut headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .filter(|(name, _)| {
            *name == "content-type"
                || *name == "authorization"
                || name.as_str().starts_with("x-consul")
                || *name == super::session::AGENT_NODE_HEADER
        })
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    headers.push((FORWARDED.to_owned(), hops.to_string().into_bytes()));
    // Still from another datacenter when passed on to the leader.
    if let Some(FromOtherDatacenter(dc)) = parts.extensions.get::<FromOtherDatacenter>() {
        headers.push((FROM_DC_HEADER.to_owned(), dc.as_bytes().to_vec()));
    }
    Ok(HttpRequest {
        method: parts.method.as_str().to_owned(),
        uri: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers,
        body: body.to_vec(),
    })
}

fn timeout_of(request: &Request) -> std::time::Duration {
    params(request.uri().query())
        .map(|p| super::forward_timeout(&p))
        .unwrap_or(super::blocking::DEFAULT_WAIT)
}

/// Sends a client agent's request to a server and returns its answer. The server routes
/// it on (to the leader, unless `?stale`), as it would its own. Blocking queries go through
/// [`crate::coalesce`]: shared with the same query already on its way, and bounded.
pub async fn to_server(api: Api, link: Arc<ServerLink>, request: Request) -> Response {
    let timeout = timeout_of(&request);
    let blocking_wait = (request.method() == axum::http::Method::GET)
        .then(|| params(request.uri().query()).ok())
        .flatten()
        .filter(|p| p.get("index").is_some_and(|i| i != "0" && !i.is_empty()))
        .map(|p| super::blocking::wait_of(&p).unwrap_or(super::blocking::DEFAULT_WAIT));
    // Boxed, as the forwarding below: what waits for the answer holds neither.
    let forwarded = match Box::pin(encode(request, 0)).await {
        Ok(forwarded) => forwarded,
        Err(response) => return response,
    };
    api.metrics.rpc_forwarded.inc();
    let answer = match blocking_wait {
        Some(wait) => link.blocking.call(&link, forwarded, wait, timeout).await,
        None => Box::pin(link.http(forwarded, timeout)).await,
    };
    match answer {
        Ok(response) => into_response(response),
        Err(e) => {
            tracing::warn!(error = %e, "no server answered a forwarded request");
            ApiError::Internal(format!("No known Consul servers: {e}")).into_response()
        }
    }
}

/// Sends a request for another datacenter through a gateway; a server there answers it as
/// its own (with the consistency mode it asks for).
pub async fn to_datacenter(
    api: &Api,
    links: &crate::wan::DcLinks,
    dc: &str,
    request: Request,
) -> Response {
    let timeout = timeout_of(&request);
    let mut forwarded = match encode(request, 0).await {
        Ok(forwarded) => forwarded,
        Err(response) => return response,
    };
    forwarded.headers.push((
        FROM_DC_HEADER.to_owned(),
        api.agent.datacenter.as_bytes().to_vec(),
    ));
    api.metrics.rpc_cross_dc.inc();
    match links.call(dc, &forwarded, timeout).await {
        Ok(response) => into_response(response),
        Err(e) => {
            tracing::warn!(dc = %dc, error = %e, "cross-DC request failed");
            ApiError::Internal(e.to_string()).into_response()
        }
    }
}

/// Sends `request` to the leader and returns its answer.
pub async fn to_leader(
    api: &Api,
    server: &Server,
    leader_id: u64,
    leader: &RaftNode,
    request: Request,
    hops: u32,
) -> Response {
    let timeout = timeout_of(&request);
    // A leadership transfer changes the leader by design; its answer is still the one to wait for.
    let changes_leader = request.uri().path() == "/v1/operator/raft/transfer-leader";
    let forwarded = match encode(request, hops).await {
        Ok(forwarded) => forwarded,
        Err(response) => return response,
    };
    api.metrics.rpc_forwarded.inc();
    // If Raft names another leader while the request is out (the one we forwarded to died),
    // answer at once so the client retries, instead of waiting out a dead connection. The
    // request is not sent again: a write that reached the old leader may have committed.
    let mut raft_metrics = server.raft.metrics();
    let leadership_changed = async move {
        if changes_leader {
            std::future::pending::<()>().await;
        }
        loop {
            if raft_metrics.changed().await.is_err() {
                return;
            }
            if raft_metrics.borrow().current_leader != Some(leader_id) {
                return;
            }
        }
    };
    let request = RpcRequest::Http(forwarded);
    let call = server.call(&leader.addr, &request, timeout);
    let outcome = tokio::select! {
        outcome = call => outcome,
        () = leadership_changed => {
            tracing::info!(leader = %leader.name, "leadership changed while a request was forwarded; the client should retry");
            return ApiError::NoLeader.into_response();
        }
    };
    match outcome {
        Ok(RpcReply::Http(response)) => into_response(response),
        Ok(_) => {
            ApiError::Internal("the leader answered another kind of RPC".to_owned()).into_response()
        }
        Err(e) => {
            tracing::warn!(leader = %leader.name, error = %format!("{e:#}"), "forwarding to the leader failed");
            ApiError::NoLeader.into_response()
        }
    }
}

fn into_response(forwarded: HttpResponse) -> Response {
    let mut response = Response::new(Body::from(forwarded.body));
    *response.status_mut() =
        StatusCode::from_u16(forwarded.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in forwarded.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_bytes(&value))
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Says, on a request sent to another datacenter, which one sent it.
const FROM_DC_HEADER: &str = "x-isthmus-from-dc";

/// Marks a request that came from another datacenter (through the gateways): it is
/// answered here, never sent on to a third. An extension set only by the handler of
/// forwarded requests (QUIC, mutual TLS), so nothing from the HTTP API can carry it.
#[derive(Debug, Clone)]
pub struct FromOtherDatacenter(pub String);

/// Marks a request the agent made itself (anti-entropy, the leader's duties, DNS views):
/// the ACL guard lets it through here; it carries the agent's token to any server it goes
/// on to. An extension, so nothing from the network can carry it.
#[derive(Debug, Clone, Copy)]
pub struct Internal;

/// Answers requests forwarded by other agents with the local router (checked as any).
pub fn handler(router: Router) -> HttpHandler {
    make_handler(router, None)
}

/// Answers the agent's own requests with the local router (see [`Internal`]); they carry
/// the agent's token (`acl.tokens.agent`, as it is at the time).
pub fn internal_handler(router: Router, tokens: super::acl::SharedTokens) -> HttpHandler {
    make_handler(router, Some(tokens))
}

fn make_handler(router: Router, internal: Option<super::acl::SharedTokens>) -> HttpHandler {
    std::sync::Arc::new(move |request: HttpRequest| {
        let router = router.clone();
        let internal = internal.clone();
        Box::pin(async move {
            let mut builder = axum::http::Request::builder()
                .method(request.method.as_str())
                .uri(request.uri.as_str());
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_slice());
            }
            let from_dc = request
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(FROM_DC_HEADER))
                .map(|(_, value)| String::from_utf8_lossy(value).into_owned());
            if let (Some(dc), None) = (from_dc, &internal) {
                builder = builder.extension(FromOtherDatacenter(dc));
            }
            if let Some(tokens) = &internal {
                builder = builder.extension(Internal);
                let has_token = request
                    .headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("x-consul-token"));
                let token = tokens.lock().for_agent();
                if let (Some(token), false) = (token, has_token) {
                    builder = builder.header("x-consul-token", token.as_str());
                }
            }
            let response = match builder.body(Body::from(request.body)) {
                Ok(request) => match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                Err(e) => ApiError::BadRequest(format!("malformed forwarded request: {e}"))
                    .into_response(),
            };
            let (parts, body) = response.into_parts();
            // The answer travels back in one frame: checked while it is read (a larger one is
            // never buffered whole), refused clearly instead of failing later.
            let body = match axum::body::to_bytes(body, MAX_FORWARDED_ANSWER).await {
                Ok(bytes) => Some(bytes.to_vec()),
                Err(e) => {
                    tracing::debug!(error = %e, "a forwarded answer was not read whole");
                    None
                }
            };
            let Some(body) = body else {
                let message = format!(
                    "the answer is too large to forward from the leader (limit {MAX_FORWARDED_ANSWER} bytes); ask the leader directly, add ?stale, or narrow the query"
                );
                return HttpResponse {
                    status: 413,
                    headers: vec![(
                        "content-type".to_owned(),
                        b"text/plain; charset=utf-8".to_vec(),
                    )],
                    body: message.into_bytes(),
                };
            };
            HttpResponse {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                    .collect(),
                body,
            }
        })
    })
}
