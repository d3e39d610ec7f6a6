//! `/v1/session`: create, destroy, info, node, list, renew, as Consul's. Sessions live in
//! the datacenter's state (through Raft); their TTL timers on the leader
//! (`server::sessions`).

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use wire::command::{Command, CommandResult};
use wire::records::{Session, SessionBehavior, MAX_LOCK_DELAY, SESSION_TTL_MAX, SESSION_TTL_MIN};

use super::acl::{mark_filtered, may_read, require, retain_readable, Token};
use super::catalog::read;
use super::kv::{json, write};
use super::{Api, ApiError};
use acl::{Need, Resource};

/// Set by the first agent a session create reaches: the node a session defaults to is
/// that agent's, wherever the request is answered (as Consul's agent fills it in before
/// its RPC).
pub const AGENT_NODE_HEADER: &str = "x-isthmus-agent-node";

/// The body of `PUT /v1/session/create` (Consul's `structs.Session` as its HTTP handler
/// decodes it).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    lock_delay: Option<serde_json::Value>,
    node: Option<String>,
    name: String,
    checks: Option<Vec<String>>,
    node_checks: Option<Vec<String>>,
    service_checks: Option<Vec<ServiceCheck>>,
    behavior: String,
    #[serde(rename = "TTL")]
    ttl: String,
}

/// A service check a session watches.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
struct ServiceCheck {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Namespace")]
    namespace: String,
}

/// A session as Consul's API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SessionOut {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    node: String,
    /// Nanoseconds.
    lock_delay: u64,
    behavior: &'static str,
    #[serde(rename = "TTL")]
    ttl: String,
    node_checks: Option<Vec<String>>,
    service_checks: Option<Vec<ServiceCheck>>,
    create_index: u64,
    modify_index: u64,
}

impl From<&Session> for SessionOut {
    fn from(s: &Session) -> SessionOut {
        SessionOut {
            id: s.id.clone(),
            name: s.name.clone(),
            node: s.node.clone(),
            lock_delay: s.lock_delay_ms.saturating_mul(1_000_000),
            behavior: s.behavior.as_str(),
            ttl: s.ttl.clone(),
            node_checks: (!s.node_checks.is_empty()).then(|| s.node_checks.clone()),
            service_checks: (!s.service_checks.is_empty()).then(|| {
                s.service_checks
                    .iter()
                    .map(|id| ServiceCheck {
                        id: id.clone(),
                        namespace: String::new(),
                    })
                    .collect()
            }),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// `LockDelay` as Consul reads it: a duration string, or a number of nanoseconds (a number
/// below 1000 is taken as seconds).
fn lock_delay(value: Option<&serde_json::Value>) -> Result<Duration, ApiError> {
    let bad = |what: &dyn std::fmt::Display| {
        ApiError::BadRequest(format!("Request decode failed: LockDelay {what}"))
    };
    let delay = match value {
        None => return Ok(Duration::from_secs(15)),
        Some(serde_json::Value::String(text)) => {
            text.parse::<wire::GoDuration>().map_err(|e| bad(&e))?.0
        }
        Some(serde_json::Value::Number(n)) => {
            let nanos = n.as_f64().filter(|n| *n >= 0.0).ok_or_else(|| bad(&n))?;
            Duration::from_nanos(nanos as u64)
        }
        Some(other) => return Err(bad(&other)),
    };
    if delay < Duration::from_nanos(1000) {
        return Ok(Duration::from_secs(delay.as_nanos() as u64));
    }
    Ok(delay)
}

/// Consul's `fixupEmptySessionChecks`: `NodeChecks` and the legacy `Checks` both default
/// to `serfHealth`; an empty `Checks` means no checks at all.
fn node_checks(body: &CreateBody) -> Vec<String> {
    let serf = vec!["serfHealth".to_owned()];
    let mut node_checks = body.node_checks.clone().unwrap_or_else(|| serf.clone());
    let mut checks = body.checks.clone().unwrap_or_else(|| serf.clone());
    if checks.is_empty() {
        return Vec::new();
    }
    if checks == serf || node_checks.is_empty() {
        checks.clear();
    }
    for check in checks {
        if !node_checks.contains(&check) {
            node_checks.push(check);
        }
    }
    node_checks.retain(|c| !c.is_empty());
    node_checks
}

/// A random session ID.
fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ApiError::Internal("the system random number generator failed".into()))?;
    Ok(wire::names::uuid_of(bytes))
}

/// The session a create asks for, checked as Consul's server checks it.
fn session_of(body: CreateBody, node: String) -> Result<Session, ApiError> {
    let behavior = match body.behavior.as_str() {
        "" | "release" => SessionBehavior::Release,
        "delete" => SessionBehavior::Delete,
        other => {
            return Err(ApiError::BadRequest(format!(
                "Invalid Behavior setting '{other}'"
            )))
        }
    };
    if !body.ttl.is_empty() {
        let ttl = body
            .ttl
            .parse::<wire::GoDuration>()
            .map_err(|e| ApiError::BadRequest(format!("Session TTL '{}' invalid: {e}", body.ttl)))?
            .0;
        if ttl != Duration::ZERO && !(SESSION_TTL_MIN..=SESSION_TTL_MAX).contains(&ttl) {
            return Err(ApiError::BadRequest(format!(
                "Invalid Session TTL '{}', must be between [10s=24h0m0s]",
                ttl.as_nanos()
            )));
        }
    }
    let delay = lock_delay(body.lock_delay.as_ref())?;
    if delay > MAX_LOCK_DELAY {
        return Err(ApiError::BadRequest(format!(
            "Invalid LockDelay {}: it must be at most 60s",
            wire::GoDuration(delay)
        )));
    }
    if node.is_empty() {
        return Err(ApiError::BadRequest("Must provide Node".to_owned()));
    }
    Ok(Session {
        id: new_id()?,
        name: body.name.clone(),
        node,
        node_checks: node_checks(&body),
        service_checks: body
            .service_checks
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .filter(|id| !id.is_empty())
            .collect(),
        lock_delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        behavior,
        ttl: body.ttl,
        create_index: 0,
        modify_index: 0,
    })
}

/// `PUT /v1/session/create`.
pub async fn create(
    State(api): State<Api>,
    headers: HeaderMap,
    token: Token,
    body: Bytes,
) -> Result<Response, ApiError> {
    let decoded: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        wire::gojson::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?
    };
    let default_node = headers
        .get(AGENT_NODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| api.agent.node_name.clone(), str::to_owned);
    let node = decoded.node.clone().unwrap_or(default_node);
    require(&token, Resource::Session, &node, Need::Write)?;
    let session = session_of(decoded, node)?;
    let (id, ttl) = (
        session.id.clone(),
        super::super::server::sessions::ttl_of(&session.ttl),
    );
    match write(&api, Command::SessionCreate(Box::new(session))).await? {
        CommandResult::Done => {}
        CommandResult::Refused(why) => return Err(ApiError::Internal(why)),
        other => return Err(ApiError::Internal(format!("unexpected result {other:?}"))),
    }
    if let Some(ttl) = ttl {
        api.server()?
            .session_timers
            .lock()
            .renew(&id, ttl, Instant::now());
    }
    Ok(json_body(&serde_json::json!({ "ID": id })))
}

fn json_body(value: &serde_json::Value) -> Response {
    ([("content-type", "application/json")], value.to_string()).into_response()
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::BadRequest("Missing session".to_owned()));
    }
    if !wire::names::is_uuid(id) {
        return Err(ApiError::BadRequest(format!(
            "Session id '{id}' is not a valid UUID"
        )));
    }
    Ok(())
}

/// `PUT /v1/session/destroy/:uuid`: true, whether or not the session existed.
pub async fn destroy(
    State(api): State<Api>,
    Path(id): Path<String>,
    token: Token,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    session_write(&api, &token, &id)?;
    let started = Instant::now();
    write(&api, Command::SessionDestroy { id: id.clone() }).await?;
    api.metrics
        .coordination
        .session_apply
        .observe(started.elapsed().as_secs_f64() * 1000.0);
    Ok(json_body(&serde_json::Value::Bool(true)))
}

/// `session:write` on the node of session `id` (Consul's rule for destroy and renew); an
/// unknown session needs nothing.
fn session_write(api: &Api, token: &Token, id: &str) -> Result<(), ApiError> {
    if token.is_none() {
        return Ok(());
    }
    let node = api
        .server()?
        .state
        .read(|data| data.state.sessions.get(id).map(|s| s.node.clone()))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    match node {
        Some(node) => require(token, Resource::Session, &node, Need::Write),
        None => Ok(()),
    }
}

/// Sessions the token may read (`session:read` on their node); true when some were left
/// out.
fn readable(token: &Token, sessions: &mut Vec<SessionOut>) -> bool {
    retain_readable(sessions, |s| may_read(token, Resource::Session, &s.node))
}

/// `GET /v1/session/info/:uuid`: the session, or `[]`.
pub async fn info(
    State(api): State<Api>,
    Path(id): Path<String>,
    uri: Uri,
    token: Token,
) -> Result<Response, ApiError> {
    if id.is_empty() {
        return Err(ApiError::BadRequest("Missing session".to_owned()));
    }
    let (index, sessions, consistency) = read(&api, &uri, |data| {
        let sessions = &data.state.sessions;
        let found: Vec<SessionOut> = sessions
            .get(&id)
            .map(SessionOut::from)
            .into_iter()
            .collect();
        (sessions.index, found)
    })
    .await?;
    let mut sessions = sessions;
    let hidden = readable(&token, &mut sessions);
    Ok(mark_filtered(
        json(&api, index, consistency, &sessions),
        hidden,
    ))
}

/// `GET /v1/session/node/:node`.
pub async fn node(
    State(api): State<Api>,
    Path(node): Path<String>,
    uri: Uri,
    token: Token,
) -> Result<Response, ApiError> {
    let (index, sessions, consistency) = read(&api, &uri, |data| {
        let sessions = &data.state.sessions;
        let found: Vec<SessionOut> = sessions.of_node(&node).map(SessionOut::from).collect();
        (sessions.index, found)
    })
    .await?;
    let mut sessions = sessions;
    let hidden = readable(&token, &mut sessions);
    Ok(mark_filtered(
        json(&api, index, consistency, &sessions),
        hidden,
    ))
}

/// `GET /v1/session/list`.
pub async fn list(State(api): State<Api>, uri: Uri, token: Token) -> Result<Response, ApiError> {
    let (index, sessions, consistency) = read(&api, &uri, |data| {
        let sessions = &data.state.sessions;
        let all: Vec<SessionOut> = sessions.list().map(SessionOut::from).collect();
        (sessions.index, all)
    })
    .await?;
    let mut sessions = sessions;
    let hidden = readable(&token, &mut sessions);
    Ok(mark_filtered(
        json(&api, index, consistency, &sessions),
        hidden,
    ))
}

/// `PUT /v1/session/renew/:uuid` (answered by the leader, which keeps the timers): the
/// session, or 404.
pub async fn renew(
    State(api): State<Api>,
    Path(id): Path<String>,
    token: Token,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    session_write(&api, &token, &id)?;
    let server = api.server()?;
    // A leader just elected may not have applied every committed entry yet: without this,
    // a session created in the last term could be answered `404` (found by the failover
    // test).
    server
        .raft
        .ensure_linearizable()
        .await
        .map_err(|_| ApiError::NoLeader)?;
    let session = server
        .state
        .read(|data| data.state.sessions.get(&id).cloned())
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::NotFound(format!("Session id '{id}' not found")))?;
    if let Some(ttl) = crate::server::sessions::ttl_of(&session.ttl) {
        server.session_timers.lock().renew(&id, ttl, Instant::now());
    }
    let index = server
        .state
        .read(|data| data.state.sessions.index)
        .unwrap_or(0);
    Ok(json(
        &api,
        index,
        super::Consistency::Default,
        &[SessionOut::from(&session)],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> CreateBody {
        wire::gojson::from_slice(json.as_bytes()).expect("decodes")
    }

    #[test]
    fn checks_default_and_fix_up_as_consul() {
        assert_eq!(node_checks(&body("{}")), ["serfHealth"]);
        assert_eq!(
            node_checks(&body(r#"{"Checks": []}"#)),
            Vec::<String>::new()
        );
        assert_eq!(
            node_checks(&body(r#"{"NodeChecks": []}"#)),
            Vec::<String>::new()
        );
        assert_eq!(
            node_checks(&body(r#"{"checks": ["a", "b"]}"#)),
            ["serfHealth", "a", "b"]
        );
        assert_eq!(node_checks(&body(r#"{"NodeChecks": ["x"]}"#)), ["x"]);
        assert_eq!(
            node_checks(&body(r#"{"NodeChecks": ["x"], "Checks": ["serfHealth"]}"#)),
            ["x"]
        );
    }

    #[test]
    fn lock_delay_as_consul_reads_it() {
        let delay = |json: &str| lock_delay(body(json).lock_delay.as_ref()).ok();
        assert_eq!(delay("{}"), Some(Duration::from_secs(15)));
        assert_eq!(
            delay(r#"{"LockDelay": "2s"}"#),
            Some(Duration::from_secs(2))
        );
        assert_eq!(delay(r#"{"LockDelay": 5}"#), Some(Duration::from_secs(5)));
        assert_eq!(delay(r#"{"LockDelay": 0}"#), Some(Duration::ZERO));
        assert_eq!(
            delay(r#"{"lockdelay": 15000000000}"#),
            Some(Duration::from_secs(15))
        );
        assert_eq!(delay(r#"{"LockDelay": "soon"}"#), None);
    }

    #[test]
    fn ttl_and_behavior_are_checked() {
        let made = |json: &str| session_of(body(json), "n1".into());
        assert!(made(r#"{"TTL": "5s"}"#).is_err());
        assert!(made(r#"{"TTL": "25h"}"#).is_err());
        assert!(made(r#"{"Behavior": "keep"}"#).is_err());
        assert!(made(r#"{"LockDelay": "2m"}"#).is_err());
        let session = made(r#"{"ttl": "30s", "behavior": "delete", "Name": "x"}"#).expect("ok");
        assert_eq!(session.behavior, SessionBehavior::Delete);
        assert!(wire::names::is_uuid(&session.id));
        assert_eq!(session.lock_delay_ms, 15_000);
    }
}
