//! ACL enforcement on the HTTP API (`acl.enabled`): the token of each request
//! (`X-Consul-Token`, `Authorization: Bearer`, `?token=`) is resolved to an
//! `acl::Authorizer` and checked against what the endpoint needs ([`required`]), before the
//! request is answered or forwarded. It never fails open: an endpoint without a rule of its
//! own needs `acl:write`.
//!
//! Servers resolve tokens from their own state (the ACL tables are replicated with the
//! rest). A client agent answers only `/v1/agent/*` and `/v1/event/list` itself (the rest
//! goes to a server, which checks it): for those it asks a server to resolve the token
//! (`/v1/isthmus/acl/resolve`) and keeps the answer for `token_ttl`; when no server
//! answers, `down_policy` decides (`extend-cache` keeps using what it had).

mod endpoints;
mod replication;
mod required;
mod tokens;

pub use endpoints::*;
pub use replication::{replicate, status as replication_status, to_primary};
pub use required::{required, Required};
pub use tokens::{AgentTokens, KeptTokens, SharedTokens, TOKENS_FILE};

use std::collections::HashMap;
use std::time::{Duration, Instant};

use acl::{Authorizer, Rules};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use wire::records::{AclToken, ANONYMOUS_TOKEN_ID, GLOBAL_MANAGEMENT_POLICY_ID};

use super::middleware::{finish, Rest};
use super::{Api, Backend};

/// The agent's ACL settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclSettings {
    /// `default_policy = "allow"`.
    pub default_allow: bool,
    /// `down_policy`.
    pub down_policy: String,
    /// `token_ttl` (client agents' cache).
    pub token_ttl: Duration,
    /// `tokens.initial_management`.
    pub initial_management: Option<String>,
    /// `tokens.agent`: what the agent's own requests carry.
    pub agent_token: Option<String>,
    /// `tokens.default`: the token of requests without one.
    pub default_token: Option<String>,
    /// `tokens.agent_recovery`.
    pub agent_recovery: Option<String>,
    /// The primary datacenter, when it is another one (this one is a secondary: its
    /// servers copy the primary's policies and roles, and send global writes there).
    pub primary: Option<String>,
    /// `enable_token_replication`: a secondary copies global tokens too.
    pub token_replication: bool,
    /// `tokens.replication`: what a secondary presents to the primary.
    pub replication_token: Option<String>,
    /// `enable_token_persistence`.
    pub token_persistence: bool,
}

impl AclSettings {
    /// The settings of `acl` when it is enabled (`primary`: the primary datacenter when it
    /// is not this one); problems go to `problems`.
    pub fn from_config(
        config: Option<&wire::agent_config::AclConfig>,
        primary: Option<&str>,
        problems: &mut Vec<String>,
    ) -> Option<AclSettings> {
        let config = config.filter(|c| c.enabled == Some(true))?;
        let default_allow = match config.default_policy.as_deref() {
            None | Some("allow") => true,
            Some("deny") => false,
            Some(other) => {
                problems.push(format!(
                    "acl.default_policy {other:?} must be \"allow\" or \"deny\""
                ));
                false
            }
        };
        let down_policy = config
            .down_policy
            .clone()
            .unwrap_or_else(|| "extend-cache".to_owned());
        if !["extend-cache", "async-cache", "allow", "deny"].contains(&down_policy.as_str()) {
            problems.push(format!(
                "acl.down_policy {down_policy:?} must be extend-cache, async-cache, allow or deny"
            ));
        }
        let tokens = config.tokens.clone().unwrap_or_default();
        // Resolutions are kept whole: for the shortest of the three TTLs.
        let token_ttl = [config.token_ttl, config.policy_ttl, config.role_ttl]
            .iter()
            .flatten()
            .map(|d| d.0)
            .min()
            .unwrap_or(Duration::from_secs(30));
        Some(AclSettings {
            default_allow,
            down_policy,
            token_ttl,
            primary: primary.map(str::to_owned),
            token_replication: config.enable_token_replication == Some(true),
            replication_token: tokens.replication,
            token_persistence: config.enable_token_persistence == Some(true),
            initial_management: tokens.initial_management,
            agent_token: tokens.agent,
            default_token: tokens.default,
            agent_recovery: tokens.agent_recovery,
        })
    }
}

/// The secret a request presents: `X-Consul-Token`, `Authorization: Bearer`, `?token=`.
pub fn token_of(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(token) = headers
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(token.to_owned());
    }
    if let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(token.trim().to_owned());
    }
    super::params(request.uri().query())
        .ok()
        .and_then(|p| p.get("token").cloned())
        .filter(|t| !t.is_empty())
}

/// A resolved token: who it is and what it may do.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Its accessor ID (the anonymous token's without a token).
    pub accessor_id: String,
    /// What it may do.
    pub authorizer: Authorizer,
}

/// Why a token did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No such token (or it expired): Consul's `ACL not found`.
    NotFound,
    /// No server could be asked (a client agent).
    Unreachable(String),
    /// The agent cannot ask anyone, whatever happens (`down_policy` does not apply).
    Misconfigured(String),
}

/// What a token may do, from the ACL tables: a management token everything, any other its
/// policies', roles' and identities' rules over the default policy. `None`: no such token.
pub fn authorize(
    acl: &store::state::acl::Acl,
    token: &AclToken,
    datacenter: &str,
    default_allow: bool,
    now_ms: u64,
) -> Option<Authorizer> {
    if token.expiration_ms.is_some_and(|at| at <= now_ms) {
        return None;
    }
    let mut rules = Rules::default();
    let mut management = false;
    let mut policies: Vec<&str> = token.policies.iter().map(|l| l.id.as_str()).collect();
    let mut service_identities = token.service_identities.clone();
    let mut node_identities = token.node_identities.clone();
    for role in token.roles.iter().filter_map(|l| acl.role(&l.id)) {
        policies.extend(role.policies.iter().map(|l| l.id.as_str()));
        service_identities.extend(role.service_identities.iter().cloned());
        node_identities.extend(role.node_identities.iter().cloned());
    }
    for id in policies {
        if id == GLOBAL_MANAGEMENT_POLICY_ID {
            management = true;
            continue;
        }
        let Some(policy) = acl.policy(id) else {
            continue;
        };
        if !policy.datacenters.is_empty() && !policy.datacenters.iter().any(|d| d == datacenter) {
            continue;
        }
        // Rules were checked when the policy was written; unreadable ones grant nothing.
        if let Ok(parsed) = Rules::parse(&policy.rules) {
            rules.merge(&parsed);
        }
    }
    for identity in &service_identities {
        if identity.datacenters.is_empty() || identity.datacenters.iter().any(|d| d == datacenter) {
            rules.merge(&Rules::service_identity(&identity.service_name));
        }
    }
    for identity in &node_identities {
        if identity.datacenter == datacenter {
            rules.merge(&Rules::node_identity(&identity.node_name));
        }
    }
    Some(if management {
        Authorizer::management()
    } else {
        Authorizer::new(rules, default_allow)
    })
}

/// Resolutions kept, by secret: a client agent's (or a secondary's, from the primary)
/// with when they came, and a server's own, with the ACL index they were made at (valid
/// until the ACL tables change or the token expires: rules are parsed once, not on every
/// request).
#[derive(Default)]
pub struct ResolutionCache {
    entries: Mutex<HashMap<String, (Instant, Resolved)>>,
    local: Mutex<HashMap<String, LocalResolution>>,
}

struct LocalResolution {
    index: u64,
    expires_ms: Option<u64>,
    resolved: Resolved,
}

impl ResolutionCache {
    const MAX: usize = 4096;

    fn get_local(&self, secret: &str, index: u64, now_ms: u64) -> Option<Resolved> {
        let local = self.local.lock();
        let hit = local.get(secret)?;
        (hit.index == index && hit.expires_ms.is_none_or(|at| now_ms < at))
            .then(|| hit.resolved.clone())
    }

    fn put_local(&self, secret: &str, index: u64, expires_ms: Option<u64>, resolved: Resolved) {
        let mut local = self.local.lock();
        if local.len() >= Self::MAX {
            local.clear();
        }
        local.insert(
            secret.to_owned(),
            LocalResolution {
                index,
                expires_ms,
                resolved,
            },
        );
    }

    fn get(&self, secret: &str, ttl: Duration, any_age: bool) -> Option<Resolved> {
        let entries = self.entries.lock();
        let (at, resolved) = entries.get(secret)?;
        (any_age || at.elapsed() < ttl).then(|| resolved.clone())
    }

    fn put(&self, secret: &str, resolved: Resolved) {
        let mut entries = self.entries.lock();
        if entries.len() >= Self::MAX {
            entries.clear();
        }
        entries.insert(secret.to_owned(), (Instant::now(), resolved));
    }
}

fn now_ms() -> u64 {
    crate::unix_ms()
}

/// Resolves `secret` (none: the default token, else anonymous) for this agent.
pub async fn resolve(
    api: &Api,
    settings: &AclSettings,
    secret: Option<&str>,
) -> Result<Resolved, ResolveError> {
    let default = api.acl_tokens.lock().default.clone();
    let secret = secret.or(default.as_deref());
    // A secret that cannot even travel in a header is no token (never "unreachable",
    // which `down_policy` would decide).
    if secret.is_some_and(|s| s.len() > 256 || HeaderValue::from_str(s).is_err()) {
        return Err(ResolveError::NotFound);
    }
    match &api.backend {
        Backend::Server(server) => {
            let datacenter = api.agent.datacenter.clone();
            // A secondary that does not copy the primary's tokens holds only its local
            // ones (a global token left from before is not its to trust); it asks the
            // primary for the rest (as Consul's remote token resolution).
            let asks_primary = settings.primary.is_some() && !settings.token_replication;
            let here = server
                .state
                .read(|data| {
                    let acl = &data.state.acl;
                    let trusted = secret.filter(|s| {
                        !asks_primary || acl.token_by_secret(s).is_some_and(|t| t.local)
                    });
                    match (secret, trusted) {
                        (Some(_), None) => Err(ResolveError::NotFound),
                        (Some(secret), Some(_)) => {
                            let now = now_ms();
                            if let Some(hit) = api.acl_cache.get_local(secret, acl.index, now) {
                                return Ok(hit);
                            }
                            let resolved =
                                resolve_in(acl, Some(secret), &datacenter, settings.default_allow);
                            if let Ok(resolved) = &resolved {
                                let expires =
                                    acl.token_by_secret(secret).and_then(|t| t.expiration_ms);
                                api.acl_cache.put_local(
                                    secret,
                                    acl.index,
                                    expires,
                                    resolved.clone(),
                                );
                            }
                            resolved
                        }
                        (None, _) => resolve_in(acl, None, &datacenter, settings.default_allow),
                    }
                })
                .map_err(|e| ResolveError::Unreachable(e.to_string()))?;
            match (here, secret) {
                (Err(ResolveError::NotFound), Some(secret)) if asks_primary => {
                    remote(api, settings, secret).await
                }
                (here, _) => here,
            }
        }
        Backend::Client(_) => match secret {
            None => Ok(anonymous(settings.default_allow)),
            Some(secret) => remote(api, settings, secret).await,
        },
    }
}

/// A resolution from elsewhere (a client agent's server, a secondary's primary), kept for
/// `token_ttl`; when nobody answers, `down_policy` decides.
async fn remote(api: &Api, settings: &AclSettings, secret: &str) -> Result<Resolved, ResolveError> {
    if let Some(hit) = api.acl_cache.get(secret, settings.token_ttl, false) {
        return Ok(hit);
    }
    match ask(api, settings, secret).await {
        Ok(resolved) => {
            api.acl_cache.put(secret, resolved.clone());
            Ok(resolved)
        }
        Err(ResolveError::Unreachable(why)) => down(api, settings, secret, why),
        Err(other) => Err(other),
    }
}

/// What `down_policy` makes of a token nobody could resolve.
fn down(
    api: &Api,
    settings: &AclSettings,
    secret: &str,
    why: String,
) -> Result<Resolved, ResolveError> {
    let unreachable = ResolveError::Unreachable(why);
    match settings.down_policy.as_str() {
        // Consul's `allow`: everything but managing ACLs.
        "allow" => Ok(Resolved {
            accessor_id: String::new(),
            authorizer: Authorizer::new(Rules::default(), true),
        }),
        "deny" => Err(unreachable),
        // extend-cache, async-cache: what was known, however old.
        _ => api
            .acl_cache
            .get(secret, settings.token_ttl, true)
            .ok_or(unreachable),
    }
}

fn anonymous(default_allow: bool) -> Resolved {
    Resolved {
        accessor_id: ANONYMOUS_TOKEN_ID.to_owned(),
        authorizer: Authorizer::new(Rules::default(), default_allow),
    }
}

/// Resolution against the ACL tables (a server's).
pub fn resolve_in(
    acl: &store::state::acl::Acl,
    secret: Option<&str>,
    datacenter: &str,
    default_allow: bool,
) -> Result<Resolved, ResolveError> {
    let Some(secret) = secret else {
        return Ok(anonymous(default_allow));
    };
    let token = acl.token_by_secret(secret).ok_or(ResolveError::NotFound)?;
    let authorizer =
        authorize(acl, token, datacenter, default_allow, now_ms()).ok_or(ResolveError::NotFound)?;
    Ok(Resolved {
        accessor_id: token.accessor_id.clone(),
        authorizer,
    })
}

/// Asks what a token may do: a client agent its server, a secondary's server the primary.
async fn ask(api: &Api, settings: &AclSettings, secret: &str) -> Result<Resolved, ResolveError> {
    // Any server of the primary may answer (`stale`, as Consul's remote resolution), so an
    // election there is not an outage here.
    let uri = match &settings.primary {
        Some(primary) if matches!(api.backend, Backend::Server(_)) => format!(
            "/v1/isthmus/acl/resolve?dc={}&for={}&stale",
            wire::percent::segment(primary),
            wire::percent::segment(&api.agent.datacenter)
        ),
        _ => "/v1/isthmus/acl/resolve".to_owned(),
    };
    let request = axum::http::Request::builder()
        .method("GET")
        .uri(uri)
        .header("x-consul-token", secret)
        .body(axum::body::Body::empty())
        .map_err(|_| ResolveError::NotFound)?;
    let response = match (&api.backend, &settings.primary, &api.dc_links) {
        (Backend::Client(link), _, _) => {
            super::forward::to_server(api.clone(), link.clone(), request).await
        }
        (Backend::Server(_), Some(primary), Some(links)) => {
            super::forward::to_datacenter(api, links, primary, request).await
        }
        (Backend::Server(_), _, _) => {
            return Err(ResolveError::Misconfigured(
                "this secondary datacenter has no path to the primary (isthmus.gateways)"
                    .to_owned(),
            ))
        }
    };
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .map_err(|e| ResolveError::Unreachable(e.to_string()))?;
    // Only a failure to get an answer is "unreachable"; any other refusal means no token.
    if status.is_client_error() && status != StatusCode::FORBIDDEN {
        return Err(ResolveError::NotFound);
    }
    match status {
        // This datacenter's default policy applies here, whoever resolved the token.
        StatusCode::OK => serde_json::from_slice::<ResolveAnswer>(&body)
            .map(|answer| {
                ResolveAnswer {
                    default_allow: settings.default_allow,
                    ..answer
                }
                .into_resolved()
            })
            .map_err(|e| ResolveError::Unreachable(e.to_string())),
        StatusCode::FORBIDDEN => Err(ResolveError::NotFound),
        other => Err(ResolveError::Unreachable(format!(
            "{other}: {}",
            String::from_utf8_lossy(&body)
        ))),
    }
}

/// What `/v1/isthmus/acl/resolve` answers: a token's rules, so that a client agent can
/// build the same authorizer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolveAnswer {
    /// The token's accessor ID.
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    /// A management token.
    pub management: bool,
    /// The rules of its policies (already merged and filtered to this datacenter).
    pub rules: Vec<String>,
    /// Its service identities' services.
    pub service_identities: Vec<String>,
    /// Its node identities' nodes (this datacenter's).
    pub node_identities: Vec<String>,
    /// The default policy.
    pub default_allow: bool,
}

impl ResolveAnswer {
    fn into_resolved(self) -> Resolved {
        if self.management {
            return Resolved {
                accessor_id: self.accessor_id,
                authorizer: Authorizer::management(),
            };
        }
        let mut rules = Rules::default();
        for text in &self.rules {
            if let Ok(parsed) = Rules::parse(text) {
                rules.merge(&parsed);
            }
        }
        for service in &self.service_identities {
            rules.merge(&Rules::service_identity(service));
        }
        for node in &self.node_identities {
            rules.merge(&Rules::node_identity(node));
        }
        Resolved {
            accessor_id: self.accessor_id,
            authorizer: Authorizer::new(rules, self.default_allow),
        }
    }
}

/// The resolution the guard attached to a request (none without ACLs, and for the
/// agent's own requests, which see everything).
pub type Token = Option<axum::Extension<Resolved>>;

/// Whether the request's token may read `name` of `resource`.
pub fn may_read(token: &Token, resource: acl::Resource, name: &str) -> bool {
    token
        .as_ref()
        .is_none_or(|t| t.authorizer.allows(resource, name, acl::Need::Read))
}

/// Whether it may read a check: its node's, and its service's when it has one (Consul's
/// rule for checks in lists).
pub fn may_read_check(token: &Token, check: &wire::api::HealthCheck) -> bool {
    may_read(token, acl::Resource::Node, &check.node)
        && (check.service_name.is_empty()
            || may_read(token, acl::Resource::Service, &check.service_name))
}

/// Refuses, in Consul's words, unless the request's token may do `need` on `name` of
/// `resource` (for handlers that learn the name from the body or the state).
pub fn require(
    token: &Token,
    resource: acl::Resource,
    name: &str,
    need: acl::Need,
) -> Result<(), super::ApiError> {
    let Some(axum::Extension(token)) = token else {
        return Ok(());
    };
    match Required::One(resource, name.to_owned(), need).refused_by(&token.authorizer) {
        Some(permission) => Err(super::ApiError::Forbidden(denied_text(
            &token.accessor_id,
            &permission,
        ))),
        None => Ok(()),
    }
}

/// Keeps what the token may read; true when something was left out.
pub fn retain_readable<T>(items: &mut Vec<T>, readable: impl Fn(&T) -> bool) -> bool {
    let before = items.len();
    items.retain(|item| readable(item));
    items.len() != before
}

/// Says in a header that ACLs took something out of the answer (Consul's
/// `X-Consul-Results-Filtered-By-ACLs`).
pub fn mark_filtered(mut response: Response, filtered: bool) -> Response {
    if filtered {
        response.headers_mut().insert(
            "x-consul-results-filtered-by-acls",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// Consul's refusal, as text.
pub fn denied_text(accessor_id: &str, permission: &str) -> String {
    format!(
        "Permission denied: token with AccessorID '{accessor_id}' lacks permission {permission}"
    )
}

/// Consul's refusal.
pub fn denied(accessor_id: &str, permission: &str) -> Response {
    (StatusCode::FORBIDDEN, denied_text(accessor_id, permission)).into_response()
}

/// The middleware: resolves the request's token and checks what the endpoint needs; the
/// resolution goes with the request (handlers that filter lists read it).
pub async fn guard(State(api): State<Api>, mut request: Request, rest: Rest) -> Response {
    let Some(settings) = api.acl.clone() else {
        return finish(rest, request).await;
    };
    let need = required(request.method(), request.uri());
    if need == Required::Nothing {
        return finish(rest, request).await;
    }
    let secret = token_of(&request);
    // The recovery token manages this agent's own endpoints, with no server.
    if request.uri().path().starts_with("/v1/agent/")
        && secret.is_some()
        && secret == api.acl_tokens.lock().agent_recovery
    {
        return finish(rest, request).await;
    }
    // A request forwarded by another agent of this datacenter was checked there only if it
    // was answered there; it is checked again here with its own token.
    let resolved = match resolve(&api, &settings, secret.as_deref()).await {
        Ok(resolved) => resolved,
        Err(ResolveError::NotFound) => {
            return (StatusCode::FORBIDDEN, "ACL not found").into_response()
        }
        Err(ResolveError::Unreachable(e)) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ACL could not be resolved (no server answered): {e}"),
            )
                .into_response()
        }
        Err(ResolveError::Misconfigured(e)) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("ACL could not be resolved: {e}"),
            )
                .into_response()
        }
    };
    if let Some(permission) = need.refused_by(&resolved.authorizer) {
        api.metrics.coordination.acl_denied.inc();
        return denied(&resolved.accessor_id, &permission);
    }
    request.extensions_mut().insert(resolved);
    finish(rest, request).await
}
