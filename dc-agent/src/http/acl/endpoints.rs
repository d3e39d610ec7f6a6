//! `/v1/acl/*` as Consul's: the bootstrap, tokens, policies and roles; and
//! `/v1/isthmus/acl/resolve`, which tells a client agent what a token may do.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use wire::command::{Command, CommandResult};
use wire::records::{
    AclLink, AclNodeIdentity, AclPolicy, AclRole, AclServiceIdentity, AclToken,
    GLOBAL_MANAGEMENT_POLICY_ID,
};

use super::super::kv::write;
use super::super::{Api, ApiError};

pub(super) fn disabled(api: &Api) -> Result<(), ApiError> {
    if api.acl.is_none() {
        return Err(ApiError::Unauthorized("ACL support disabled".to_owned()));
    }
    Ok(())
}

fn new_uuid() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ApiError::Internal("the system random number generator failed".into()))?;
    Ok(wire::names::uuid_of(bytes))
}

fn json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([("content-type", "application/json")], body).into_response())
}

pub(super) fn rfc3339(ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A link as Consul shows it: ID and name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkBody {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ServiceIdentityBody {
    service_name: String,
    datacenters: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NodeIdentityBody {
    node_name: String,
    datacenter: String,
}

/// A token as Consul's API takes and shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TokenBody {
    #[serde(rename = "AccessorID")]
    accessor_id: String,
    #[serde(rename = "SecretID")]
    secret_id: String,
    description: String,
    policies: Vec<LinkBody>,
    roles: Vec<LinkBody>,
    service_identities: Vec<ServiceIdentityBody>,
    node_identities: Vec<NodeIdentityBody>,
    local: bool,
    #[serde(rename = "ExpirationTTL", skip_serializing)]
    expiration_ttl: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_time: Option<String>,
    #[serde(skip_deserializing)]
    create_time: String,
    #[serde(skip_deserializing)]
    create_index: u64,
    #[serde(skip_deserializing)]
    modify_index: u64,
}

/// A policy as Consul's API takes and shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PolicyBody {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    rules: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    datacenters: Vec<String>,
    #[serde(skip_deserializing)]
    create_index: u64,
    #[serde(skip_deserializing)]
    modify_index: u64,
}

/// A role as Consul's API takes and shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RoleBody {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    policies: Vec<LinkBody>,
    service_identities: Vec<ServiceIdentityBody>,
    node_identities: Vec<NodeIdentityBody>,
    #[serde(skip_deserializing)]
    create_index: u64,
    #[serde(skip_deserializing)]
    modify_index: u64,
}

fn read_acl<T>(api: &Api, f: impl FnOnce(&store::state::acl::Acl) -> T) -> Result<T, ApiError> {
    api.server()?
        .state
        .read(|data| f(&data.state.acl))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn links_out(acl: &store::state::acl::Acl, links: &[AclLink], roles: bool) -> Vec<LinkBody> {
    links
        .iter()
        .map(|l| LinkBody {
            id: l.id.clone(),
            name: if roles {
                acl.role(&l.id).map(|r| r.name.clone()).unwrap_or_default()
            } else {
                acl.policy(&l.id)
                    .map(|p| p.name.clone())
                    .unwrap_or_default()
            },
        })
        .collect()
}

fn token_out(acl: &store::state::acl::Acl, t: &AclToken) -> TokenBody {
    TokenBody {
        accessor_id: t.accessor_id.clone(),
        secret_id: t.secret_id.clone(),
        description: t.description.clone(),
        policies: links_out(acl, &t.policies, false),
        roles: links_out(acl, &t.roles, true),
        service_identities: t
            .service_identities
            .iter()
            .map(|s| ServiceIdentityBody {
                service_name: s.service_name.clone(),
                datacenters: s.datacenters.clone(),
            })
            .collect(),
        node_identities: t
            .node_identities
            .iter()
            .map(|n| NodeIdentityBody {
                node_name: n.node_name.clone(),
                datacenter: n.datacenter.clone(),
            })
            .collect(),
        local: t.local,
        expiration_ttl: String::new(),
        expiration_time: t.expiration_ms.map(rfc3339),
        create_time: rfc3339(t.create_ms),
        create_index: t.create_index,
        modify_index: t.modify_index,
    }
}

fn policy_out(p: &AclPolicy) -> PolicyBody {
    PolicyBody {
        id: p.id.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        rules: p.rules.clone(),
        datacenters: p.datacenters.clone(),
        create_index: p.create_index,
        modify_index: p.modify_index,
    }
}

fn role_out(acl: &store::state::acl::Acl, r: &AclRole) -> RoleBody {
    RoleBody {
        id: r.id.clone(),
        name: r.name.clone(),
        description: r.description.clone(),
        policies: links_out(acl, &r.policies, false),
        service_identities: r
            .service_identities
            .iter()
            .map(|s| ServiceIdentityBody {
                service_name: s.service_name.clone(),
                datacenters: s.datacenters.clone(),
            })
            .collect(),
        node_identities: r
            .node_identities
            .iter()
            .map(|n| NodeIdentityBody {
                node_name: n.node_name.clone(),
                datacenter: n.datacenter.clone(),
            })
            .collect(),
        create_index: r.create_index,
        modify_index: r.modify_index,
    }
}

async fn apply(api: &Api, command: Command) -> Result<(), ApiError> {
    match write(api, command).await? {
        CommandResult::Done | CommandResult::Applied(true) => Ok(()),
        CommandResult::Refused(why) => Err(ApiError::BadRequest(why)),
        other => Err(ApiError::Internal(format!("unexpected result {other:?}"))),
    }
}

/// `PUT /v1/acl/bootstrap`: the first management token, once.
pub async fn bootstrap(State(api): State<Api>) -> Result<Response, ApiError> {
    disabled(&api)?;
    let token = AclToken {
        accessor_id: new_uuid()?,
        secret_id: new_uuid()?,
        description: "Bootstrap Token (Global Management)".to_owned(),
        policies: Vec::new(),
        roles: Vec::new(),
        service_identities: Vec::new(),
        node_identities: Vec::new(),
        local: false,
        expiration_ms: None,
        create_ms: crate::unix_ms(),
        create_index: 0,
        modify_index: 0,
    };
    let accessor = token.accessor_id.clone();
    match write(&api, Command::AclBootstrap(Box::new(token))).await? {
        CommandResult::Done => {}
        CommandResult::Refused(why) => return Err(ApiError::Forbidden(why)),
        other => return Err(ApiError::Internal(format!("unexpected result {other:?}"))),
    }
    let out = read_acl(&api, |acl| acl.token(&accessor).map(|t| token_out(acl, t)))?
        .ok_or_else(|| ApiError::Internal("the bootstrap token vanished".into()))?;
    json(&out)
}

/// Links named by ID or by name, resolved to IDs.
fn resolve_links(
    acl: &store::state::acl::Acl,
    links: &[LinkBody],
    roles: bool,
) -> Result<Vec<AclLink>, ApiError> {
    links
        .iter()
        .map(|l| {
            let id = if !l.id.is_empty() {
                l.id.clone()
            } else if roles {
                acl.role_named(&l.name)
                    .map(|r| r.id.clone())
                    .unwrap_or_default()
            } else {
                acl.policy_named(&l.name)
                    .map(|p| p.id.clone())
                    .unwrap_or_default()
            };
            if id.is_empty() {
                let kind = if roles { "role" } else { "policy" };
                return Err(ApiError::BadRequest(format!(
                    "No such ACL {kind} with name {:?}",
                    l.name
                )));
            }
            Ok(AclLink { id })
        })
        .collect()
}

/// Whether a token body asks for a `Local` token, read as [`token_create`] reads it.
pub(super) fn says_local(body: &[u8]) -> Result<bool, ApiError> {
    decode::<TokenBody>(body).map(|token| token.local)
}

fn decode<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    wire::gojson::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))
}

async fn put_token(
    api: &Api,
    body: TokenBody,
    existing: Option<AclToken>,
) -> Result<Response, ApiError> {
    let (policies, roles) = read_acl(api, |acl| {
        Ok::<_, ApiError>((
            resolve_links(acl, &body.policies, false)?,
            resolve_links(acl, &body.roles, true)?,
        ))
    })??;
    let expiration_ms = if body.expiration_ttl.is_empty() {
        existing.as_ref().and_then(|t| t.expiration_ms)
    } else {
        let ttl = body
            .expiration_ttl
            .parse::<wire::GoDuration>()
            .map_err(|e| ApiError::BadRequest(format!("Invalid ExpirationTTL: {e}")))?;
        Some(crate::unix_ms() + u64::try_from(ttl.0.as_millis()).unwrap_or(u64::MAX))
    };
    let token = AclToken {
        accessor_id: match (&existing, body.accessor_id.is_empty()) {
            (Some(t), _) => t.accessor_id.clone(),
            (None, true) => new_uuid()?,
            (None, false) => body.accessor_id.clone(),
        },
        secret_id: match (&existing, body.secret_id.is_empty()) {
            (Some(t), true) => t.secret_id.clone(),
            (None, true) => new_uuid()?,
            (_, false) => body.secret_id.clone(),
        },
        description: body.description,
        policies,
        roles,
        service_identities: body
            .service_identities
            .into_iter()
            .map(|s| AclServiceIdentity {
                service_name: s.service_name,
                datacenters: s.datacenters,
            })
            .collect(),
        node_identities: body
            .node_identities
            .into_iter()
            .map(|n| AclNodeIdentity {
                node_name: n.node_name,
                datacenter: n.datacenter,
            })
            .collect(),
        local: existing.as_ref().map_or(body.local, |t| t.local),
        expiration_ms,
        create_ms: existing
            .as_ref()
            .map_or_else(crate::unix_ms, |t| t.create_ms),
        create_index: 0,
        modify_index: 0,
    };
    let accessor = token.accessor_id.clone();
    apply(api, Command::AclTokenSet(Box::new(token))).await?;
    let out = read_acl(api, |acl| acl.token(&accessor).map(|t| token_out(acl, t)))?
        .ok_or_else(|| ApiError::Internal("the token vanished".into()))?;
    json(&out)
}

/// `PUT /v1/acl/token`.
pub async fn token_create(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    disabled(&api)?;
    put_token(&api, decode(&body)?, None).await
}

fn find_token(api: &Api, accessor: &str) -> Result<AclToken, ApiError> {
    read_acl(api, |acl| acl.token(accessor).cloned())?
        .ok_or_else(|| ApiError::Forbidden("ACL not found".to_owned()))
}

/// `PUT /v1/acl/token/:AccessorID`.
pub async fn token_update(
    State(api): State<Api>,
    Path(accessor): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    let existing = find_token(&api, &accessor)?;
    put_token(&api, decode(&body)?, Some(existing)).await
}

/// `PUT /v1/acl/token/:AccessorID/clone`: the same links, a new secret.
pub async fn token_clone(
    State(api): State<Api>,
    Path(accessor): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    let existing = find_token(&api, &accessor)?;
    let asked: TokenBody = decode(&body)?;
    let mut copy = read_acl(&api, |acl| token_out(acl, &existing))?;
    copy.accessor_id = String::new();
    copy.secret_id = String::new();
    if !asked.description.is_empty() {
        copy.description = asked.description;
    }
    put_token(&api, copy, None).await
}

/// `GET /v1/acl/token/:AccessorID`.
pub async fn token_read(
    State(api): State<Api>,
    Path(accessor): Path<String>,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    let out = read_acl(&api, |acl| acl.token(&accessor).map(|t| token_out(acl, t)))?
        .ok_or_else(|| ApiError::Forbidden("ACL not found".to_owned()))?;
    json(&out)
}

/// `GET /v1/acl/token/self`.
pub async fn token_self(State(api): State<Api>, request: Request) -> Result<Response, ApiError> {
    disabled(&api)?;
    let secret = super::token_of(&request).unwrap_or_default();
    let out = read_acl(&api, |acl| {
        acl.token_by_secret(&secret).map(|t| token_out(acl, t))
    })?
    .ok_or_else(|| ApiError::Forbidden("ACL not found".to_owned()))?;
    json(&out)
}

/// `DELETE /v1/acl/token/:AccessorID`.
pub async fn token_delete(
    State(api): State<Api>,
    Path(accessor): Path<String>,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    apply(
        &api,
        Command::AclTokenDelete {
            accessor_id: accessor,
        },
    )
    .await?;
    json(&true)
}

/// `GET /v1/acl/tokens?policy=&role=`: the tokens, without their secrets.
pub async fn token_list(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    disabled(&api)?;
    let params = super::super::params(uri.query())?;
    let policy = params.get("policy").cloned();
    let role = params.get("role").cloned();
    let out: Vec<TokenBody> = read_acl(&api, |acl| {
        acl.tokens()
            .filter(|t| {
                policy
                    .as_ref()
                    .is_none_or(|p| t.policies.iter().any(|l| l.id == *p))
            })
            .filter(|t| {
                role.as_ref()
                    .is_none_or(|r| t.roles.iter().any(|l| l.id == *r))
            })
            .map(|t| TokenBody {
                secret_id: String::new(),
                ..token_out(acl, t)
            })
            .collect()
    })?;
    json(&out)
}

async fn put_policy(api: &Api, body: PolicyBody, id: String) -> Result<Response, ApiError> {
    acl::Rules::parse(&body.rules).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let policy = AclPolicy {
        id: id.clone(),
        name: body.name,
        description: body.description,
        rules: body.rules,
        datacenters: body.datacenters,
        create_index: 0,
        modify_index: 0,
    };
    apply(api, Command::AclPolicySet(Box::new(policy))).await?;
    let out = read_acl(api, |acl| acl.policy(&id).map(policy_out))?
        .ok_or_else(|| ApiError::Internal("the policy vanished".into()))?;
    json(&out)
}

/// `PUT /v1/acl/policy`.
pub async fn policy_create(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    disabled(&api)?;
    put_policy(&api, decode(&body)?, new_uuid()?).await
}

/// `PUT /v1/acl/policy/:id`.
pub async fn policy_update(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    put_policy(&api, decode(&body)?, id).await
}

/// `GET /v1/acl/policy/:id`.
pub async fn policy_read(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    let out = read_acl(&api, |acl| acl.policy(&id).map(policy_out))?
        .ok_or_else(|| ApiError::Forbidden("ACL not found".to_owned()))?;
    json(&out)
}

/// `GET /v1/acl/policy/name/:name`.
pub async fn policy_by_name(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    let out = read_acl(&api, |acl| acl.policy_named(&name).map(policy_out))?
        .ok_or_else(|| ApiError::Forbidden("ACL not found".to_owned()))?;
    json(&out)
}

/// `DELETE /v1/acl/policy/:id`.
pub async fn policy_delete(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    apply(&api, Command::AclPolicyDelete { id }).await?;
    json(&true)
}

/// `GET /v1/acl/policies`.
pub async fn policy_list(State(api): State<Api>) -> Result<Response, ApiError> {
    disabled(&api)?;
    let out: Vec<PolicyBody> = read_acl(&api, |acl| acl.policies().map(policy_out).collect())?;
    json(&out)
}

async fn put_role(api: &Api, body: RoleBody, id: String) -> Result<Response, ApiError> {
    let policies = read_acl(api, |acl| resolve_links(acl, &body.policies, false))??;
    let role = AclRole {
        id: id.clone(),
        name: body.name,
        description: body.description,
        policies,
        service_identities: body
            .service_identities
            .into_iter()
            .map(|s| AclServiceIdentity {
                service_name: s.service_name,
                datacenters: s.datacenters,
            })
            .collect(),
        node_identities: body
            .node_identities
            .into_iter()
            .map(|n| AclNodeIdentity {
                node_name: n.node_name,
                datacenter: n.datacenter,
            })
            .collect(),
        create_index: 0,
        modify_index: 0,
    };
    apply(api, Command::AclRoleSet(Box::new(role))).await?;
    let out = read_acl(api, |acl| acl.role(&id).map(|r| role_out(acl, r)))?
        .ok_or_else(|| ApiError::Internal("the role vanished".into()))?;
    json(&out)
}

/// `PUT /v1/acl/role`.
pub async fn role_create(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    disabled(&api)?;
    put_role(&api, decode(&body)?, new_uuid()?).await
}

/// `PUT /v1/acl/role/:id`.
pub async fn role_update(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    put_role(&api, decode(&body)?, id).await
}

/// `GET /v1/acl/role/:id`.
pub async fn role_read(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    let out = read_acl(&api, |acl| acl.role(&id).map(|r| role_out(acl, r)))?
        .ok_or_else(|| ApiError::Forbidden("ACL not found".to_owned()))?;
    json(&out)
}

/// `GET /v1/acl/role/name/:name`.
pub async fn role_by_name(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    let out = read_acl(&api, |acl| acl.role_named(&name).map(|r| role_out(acl, r)))?
        .ok_or_else(|| ApiError::Forbidden("ACL not found".to_owned()))?;
    json(&out)
}

/// `DELETE /v1/acl/role/:id`.
pub async fn role_delete(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    apply(&api, Command::AclRoleDelete { id }).await?;
    json(&true)
}

/// `GET /v1/acl/roles`.
pub async fn role_list(State(api): State<Api>) -> Result<Response, ApiError> {
    disabled(&api)?;
    let out: Vec<RoleBody> = read_acl(&api, |acl| acl.roles().map(|r| role_out(acl, r)).collect())?;
    json(&out)
}

/// `GET /v1/isthmus/acl/resolve` (servers): what the request's token may do, for a client
/// agent, or (`?for=DC`) for a secondary datacenter that does not copy the primary's
/// tokens; 403 `ACL not found` for an unknown token, and for a `Local` token asked for
/// from another datacenter.
pub async fn resolve_token(
    State(api): State<Api>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    let settings = api
        .acl
        .clone()
        .ok_or_else(|| ApiError::Unauthorized("ACL support disabled".into()))?;
    let secret = headers
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let here = api.agent.datacenter.clone();
    let datacenter = super::super::params(uri.query())?
        .get("for")
        .filter(|dc| !dc.is_empty())
        .cloned()
        .unwrap_or_else(|| here.clone());
    let answer = read_acl(&api, |acl| {
        let token = acl.token_by_secret(&secret)?;
        if token.expiration_ms.is_some_and(|at| at <= crate::unix_ms()) {
            return None;
        }
        if token.local && datacenter != here {
            return None;
        }
        let mut policies: Vec<&str> = token.policies.iter().map(|l| l.id.as_str()).collect();
        let here_too = |s: &&AclServiceIdentity| {
            s.datacenters.is_empty() || s.datacenters.contains(&datacenter)
        };
        let mut services: Vec<String> = token
            .service_identities
            .iter()
            .filter(here_too)
            .map(|s| s.service_name.clone())
            .collect();
        let mut nodes: Vec<String> = token
            .node_identities
            .iter()
            .filter(|n| n.datacenter == datacenter)
            .map(|n| n.node_name.clone())
            .collect();
        for role in token.roles.iter().filter_map(|l| acl.role(&l.id)) {
            policies.extend(role.policies.iter().map(|l| l.id.as_str()));
            services.extend(
                role.service_identities
                    .iter()
                    .filter(here_too)
                    .map(|s| s.service_name.clone()),
            );
            nodes.extend(
                role.node_identities
                    .iter()
                    .filter(|n| n.datacenter == datacenter)
                    .map(|n| n.node_name.clone()),
            );
        }
        let management = policies.contains(&GLOBAL_MANAGEMENT_POLICY_ID);
        let rules = policies
            .iter()
            .filter_map(|id| acl.policy(id))
            .filter(|p| p.datacenters.is_empty() || p.datacenters.contains(&datacenter))
            .map(|p| p.rules.clone())
            .collect();
        Some(super::ResolveAnswer {
            accessor_id: token.accessor_id.clone(),
            management,
            rules,
            service_identities: services,
            node_identities: nodes,
            default_allow: settings.default_allow,
        })
    })?;
    match answer {
        Some(answer) => json(&answer),
        None => Ok((StatusCode::FORBIDDEN, "ACL not found").into_response()),
    }
}

/// `PUT /v1/agent/token/:kind` (`{"Token": "..."}`): sets one of this agent's tokens
/// (`agent`, `default`, `agent_recovery`, and Consul's older names), in memory.
pub async fn set_agent_token(
    State(api): State<Api>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    disabled(&api)?;
    #[derive(Default, Deserialize)]
    #[serde(rename_all = "PascalCase", default)]
    struct TokenBody {
        token: String,
    }
    let body: TokenBody = decode(&body)?;
    let token = (!body.token.is_empty()).then_some(body.token);
    let persisted = {
        let mut tokens = api.acl_tokens.lock();
        if !tokens.set(&kind, token) {
            return Err(ApiError::NotFound(format!("Token {kind:?} is unknown")));
        }
        tokens.file.is_some()
    };
    if persisted {
        let shared = api.acl_tokens.clone();
        tokio::task::spawn_blocking(move || super::AgentTokens::persist_latest(&shared))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| {
                ApiError::Internal(format!("the token is set but could not be persisted: {e}"))
            })?;
    }
    tracing::info!(kind = %kind, persisted, "agent ACL token updated");
    Ok(StatusCode::OK.into_response())
}
