//! The Consul-compatible `/v1` HTTP API.
//!
//! Cross-cutting behaviour lives here: [`route_by_consistency`] sends each request to the
//! right server (any server for `?stale`, the leader otherwise, forwarding over QUIC from a
//! follower), and [`blocking`] implements blocking queries on top of the state machine's
//! applied-index watch. Endpoint files only read or write state.

pub mod acl;
mod agent;
mod agent_local;
mod autopilot;
pub mod blocking;
mod catalog;
mod coordinate;
mod error;
mod event;
pub mod filter;
pub(crate) mod forward;
pub(crate) mod h1;
mod health;
mod keyring;
mod kv;
pub mod middleware;
pub mod selectors;
pub mod serve;
pub mod session;
pub mod snapshot;
pub mod tls_listener;
mod txn;
mod ui;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;

pub use error::ApiError;
pub use forward::handler as forward_handler;
pub use forward::internal_handler;

use crate::metrics::Metrics;
use crate::server::Server;
use middleware::{Answer, Rest};

/// What answers the endpoints outside `/v1/agent/`.
#[derive(Clone)]
pub enum Backend {
    /// This agent is a server: it answers from its own state, through the leader.
    Server(Arc<Server>),
    /// A client agent: everything outside `/v1/agent/` goes to a server over QUIC.
    Client(Arc<crate::servers::ServerLink>),
}

/// What every handler can reach: one pointer, so the state each middleware layer and
/// handler holds while a request waits stays small.
#[derive(Clone)]
pub struct Api(Arc<ApiParts>);

impl Api {
    /// Shares `parts`.
    pub fn new(parts: ApiParts) -> Api {
        Api(Arc::new(parts))
    }
}

impl std::ops::Deref for Api {
    type Target = ApiParts;

    fn deref(&self) -> &ApiParts {
        &self.0
    }
}

/// What [`Api`] holds.
pub struct ApiParts {
    /// The local server, or the client's link to the servers.
    pub backend: Backend,
    /// Static facts about this agent.
    pub agent: Arc<AgentInfo>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The agent's own services and checks.
    pub local: Arc<crate::local::LocalAgent>,
    /// Re-reads the configuration (`/v1/agent/reload`).
    pub reload: crate::run::Reloader,
    /// The LAN gossip pool.
    pub lan: crate::gossip::pool::Pool,
    /// Cancelling it stops the agent (`/v1/agent/leave`).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// A server's links to its datacenter's gateways (none without `isthmus.gateways`).
    pub dc_links: Option<Arc<crate::wan::DcLinks>>,
    /// A server's WAN gossip pool (only with gateways: it rides the dc-links).
    pub wan: Option<crate::gossip::pool::Pool>,
    /// A server's queue of coordinate updates (written by the leader in batches).
    pub coordinates: Option<Arc<crate::server::coordinates::CoordinateQueue>>,
    /// The user events this agent kept.
    pub events: Arc<crate::events::UserEvents>,
    /// ACLs, when enabled.
    pub acl: Option<acl::AclSettings>,
    /// Token resolutions (a client agent's).
    pub acl_cache: Arc<acl::ResolutionCache>,
    /// The agent's tokens (`/v1/agent/token/*`).
    pub acl_tokens: acl::SharedTokens,
    /// The log lines `/v1/agent/monitor` streams.
    pub logs: crate::monitor::LogStream,
}

impl Api {
    /// The local server. Only endpoints a client agent forwards call it, so on a client it
    /// is reached only through a bug; the error says so rather than panicking.
    pub fn server(&self) -> Result<&Arc<Server>, ApiError> {
        match &self.backend {
            Backend::Server(server) => Ok(server),
            Backend::Client(_) => Err(ApiError::Internal(
                "this endpoint is answered by servers, and this agent is a client".to_owned(),
            )),
        }
    }
}

/// Static facts about this agent, for `/v1/agent/self`.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    /// Node name.
    pub node_name: String,
    /// Datacenter.
    pub datacenter: String,
    /// Primary datacenter.
    pub primary_datacenter: String,
    /// Domain.
    pub domain: String,
    /// Advertised address.
    pub address: String,
    /// HTTP address.
    pub http_addr: String,
    /// Whether this agent is a server.
    pub server: bool,
    /// Whether the agent runs in `-dev` mode.
    pub dev: bool,
    /// The node's ID (`NodeID`, a UUID as Consul's).
    pub node_id: String,
    /// The runtime configuration, in Consul's `DebugConfig` names (`/v1/agent/self`).
    pub debug_config: serde_json::Value,
    /// Whether the web UI is served at `/ui/`.
    pub ui: bool,
}

/// Builds the router: the data (KV, transactions, snapshots), the catalog and health, the
/// agent's own endpoints, and the operator's, behind the layers every request goes through.
pub fn router(api: Api) -> Router {
    let ui = api.agent.ui;
    let v1 = Router::new()
        .merge(data_routes())
        .merge(catalog_routes())
        .merge(agent_routes())
        .merge(operator_routes())
        .merge(session_routes())
        .merge(acl_routes())
        .fallback(not_found)
        .layer(middleware::Layer::new(api.clone(), route_by_consistency))
        .layer(middleware::Layer::new(api.clone(), acl_guard))
        .layer(middleware::Layer::new(api.clone(), count_requests))
        .layer(axum::extract::DefaultBodyLimit::max(2 * 1024 * 1024))
        .with_state(api);
    // The web UI's files are the agent's own: no ACL, no forwarding.
    if ui {
        ui::routes().merge(v1)
    } else {
        v1
    }
}

/// KV, transactions and snapshots.
fn data_routes() -> Router<Api> {
    Router::new()
        .route(
            "/v1/kv/",
            get(kv::get_root).put(kv::put_root).delete(kv::delete_root),
        )
        .route(
            "/v1/kv/{*key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
        .route("/v1/txn", put(txn::txn))
        .route(
            "/v1/snapshot",
            get(snapshot::save)
                .put(snapshot::restore)
                .layer(axum::extract::DefaultBodyLimit::max(
                    snapshot::MAX_SNAPSHOT + 1,
                )),
        )
}

/// ACLs.
fn acl_routes() -> Router<Api> {
    Router::new()
        .route("/v1/acl/bootstrap", put(acl::bootstrap))
        .route("/v1/acl/token", put(acl::token_create))
        .route("/v1/acl/token/self", get(acl::token_self))
        .route(
            "/v1/acl/token/{id}",
            get(acl::token_read)
                .put(acl::token_update)
                .delete(acl::token_delete),
        )
        .route("/v1/acl/token/{id}/clone", put(acl::token_clone))
        .route("/v1/acl/tokens", get(acl::token_list))
        .route("/v1/acl/policy", put(acl::policy_create))
        .route(
            "/v1/acl/policy/{id}",
            get(acl::policy_read)
                .put(acl::policy_update)
                .delete(acl::policy_delete),
        )
        .route("/v1/acl/policy/name/{name}", get(acl::policy_by_name))
        .route("/v1/acl/policies", get(acl::policy_list))
        .route("/v1/acl/role", put(acl::role_create))
        .route(
            "/v1/acl/role/{id}",
            get(acl::role_read)
                .put(acl::role_update)
                .delete(acl::role_delete),
        )
        .route("/v1/acl/role/name/{name}", get(acl::role_by_name))
        .route("/v1/acl/roles", get(acl::role_list))
        .route("/v1/acl/replication", get(acl::replication_status))
        .route("/v1/isthmus/acl/resolve", get(acl::resolve_token))
        .route("/v1/isthmus/acl/replicate", get(acl::replicate))
}

/// The ACL guard, where it applies: not for the agent's own requests, not where the request
/// goes on to be checked elsewhere (a client agent's server, another datacenter).
fn acl_guard(api: &Api, request: Request, rest: Rest) -> Answer {
    if api.acl.is_none() || request.extensions().get::<forward::Internal>().is_some() {
        return middleware::run(rest, request);
    }
    // A client agent checks only what it answers itself (`to_primary` is a server's).
    if matches!(api.backend, Backend::Client(_)) && !answered_here(request.uri().path()) {
        return middleware::run(rest, request);
    }
    middleware::boxed(check_acl(api.clone(), request, rest))
}

/// Whether a request is about this agent, answered here whatever its `?dc=`.
fn answered_here(path: &str) -> bool {
    path.starts_with("/v1/agent/") || path == "/v1/event/list"
}

/// [`acl_guard`] where it has to wait.
async fn check_acl(api: Api, request: Request, rest: Rest) -> Response {
    // A secondary's global ACL writes are the primary's to check and apply.
    let request = match acl::to_primary(&api, request).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let answered_here = answered_here(request.uri().path());
    if matches!(api.backend, Backend::Client(_)) && !answered_here {
        return middleware::finish(rest, request).await;
    }
    let other_dc = params(request.uri().query())
        .ok()
        .and_then(|p| p.get("dc").cloned())
        .is_some_and(|dc| !dc.is_empty() && dc != api.agent.datacenter);
    if other_dc && !answered_here {
        return middleware::finish(rest, request).await;
    }
    acl::guard(State(api), request, rest).await
}

/// Sessions.
fn session_routes() -> Router<Api> {
    Router::new()
        .route("/v1/session/create", put(session::create))
        .route("/v1/session/destroy/{id}", put(session::destroy))
        .route("/v1/session/info/{id}", get(session::info))
        .route("/v1/session/node/{node}", get(session::node))
        .route("/v1/session/list", get(session::list))
        .route("/v1/session/renew/{id}", put(session::renew))
        .route("/v1/event/fire/{name}", put(event::fire))
        .route("/v1/event/list", get(event::list))
}

/// The catalog, health, coordinates and the federation's datacenters.
fn catalog_routes() -> Router<Api> {
    Router::new()
        .route("/v1/catalog/register", put(catalog::register))
        .route("/v1/catalog/deregister", put(catalog::deregister))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{name}", get(catalog::service))
        .route("/v1/catalog/node/{node}", get(catalog::node))
        .route(
            "/v1/catalog/node-services/{node}",
            get(catalog::node_services),
        )
        .route("/v1/health/service/{name}", get(health::health_service))
        .route("/v1/health/checks/{name}", get(health::health_checks))
        .route("/v1/health/node/{node}", get(health::health_node))
        .route("/v1/health/state/{state}", get(health::health_state))
        .route(
            "/v1/coordinate/datacenters",
            get(coordinate::coordinate_datacenters),
        )
        .route("/v1/coordinate/nodes", get(coordinate::coordinate_nodes))
        .route("/v1/coordinate/update", put(coordinate::coordinate_update))
        .route(
            "/v1/coordinate/node/{node}",
            get(coordinate::coordinate_node),
        )
        .route("/v1/isthmus/datacenters", get(catalog::federation_rtt))
        .route("/v1/isthmus/gateways", get(catalog::gateways))
        .route(
            "/v1/isthmus/datacenters/{dc}",
            axum::routing::delete(catalog::remove_datacenter),
        )
}

/// The agent's own endpoints: its services and checks, membership, and itself.
fn agent_routes() -> Router<Api> {
    Router::new()
        .route("/v1/agent/host", get(agent::host))
        .route("/v1/agent/monitor", get(agent::monitor))
        .route("/v1/agent/version", get(agent::version))
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/metrics", get(agent::metrics))
        .route("/v1/agent/leave", put(agent::leave))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/join/{addr}", put(agent::join))
        .route("/v1/agent/force-leave/{node}", put(agent::force_leave))
        .route(
            "/v1/agent/service/register",
            put(agent_local::register_service),
        )
        .route(
            "/v1/agent/service/deregister/{id}",
            put(agent_local::deregister_service),
        )
        .route("/v1/agent/services", get(agent_local::services))
        .route("/v1/agent/service/{id}", get(agent_local::service))
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(agent_local::service_maintenance),
        )
        .route("/v1/agent/checks", get(agent_local::checks))
        .route(
            "/v1/agent/health/service/name/{name}",
            get(agent_local::health_by_name),
        )
        .route(
            "/v1/agent/health/service/id/{id}",
            get(agent_local::health_by_id),
        )
        .route("/v1/agent/check/register", put(agent_local::register_check))
        .route(
            "/v1/agent/check/deregister/{id}",
            put(agent_local::deregister_check),
        )
        .route("/v1/agent/check/pass/{id}", put(agent_local::pass))
        .route("/v1/agent/check/warn/{id}", put(agent_local::warn))
        .route("/v1/agent/check/fail/{id}", put(agent_local::fail))
        .route("/v1/agent/check/update/{id}", put(agent_local::update))
        .route("/v1/agent/maintenance", put(agent_local::node_maintenance))
        .route("/v1/agent/reload", put(agent_local::reload))
        .route("/v1/agent/token/{kind}", put(acl::set_agent_token))
}

/// Status, Raft, autopilot, the keyring and usage.
fn operator_routes() -> Router<Api> {
    Router::new()
        .route("/v1/status/leader", get(agent::status_leader))
        .route("/v1/status/peers", get(agent::status_peers))
        .route(
            "/v1/operator/raft/configuration",
            get(agent::raft_configuration),
        )
        .route(
            "/v1/operator/raft/peer",
            axum::routing::delete(agent::remove_raft_peer),
        )
        .route(
            "/v1/operator/raft/transfer-leader",
            axum::routing::post(agent::transfer_leader),
        )
        .route(
            "/v1/operator/autopilot/configuration",
            get(autopilot::get_config).put(autopilot::set_config),
        )
        .route("/v1/operator/autopilot/health", get(autopilot::health))
        .route("/v1/operator/autopilot/state", get(autopilot::state))
        .route(
            "/v1/operator/keyring",
            get(keyring::keyring)
                .post(keyring::keyring)
                .put(keyring::keyring)
                .delete(keyring::keyring),
        )
        .route("/v1/operator/usage", get(catalog::usage))
}

/// Counts every request by method and status code (`isthmus_http_requests_total`), and
/// runs it in a `http_request` span (method, path, forwarded hops), so that everything it
/// logs, here or on the way to the leader, says which request it belongs to.
fn count_requests(api: &Api, request: Request, rest: Rest) -> Answer {
    use tracing::Instrument;
    let method = request.method().clone();
    let hops = request
        .headers()
        .get(FORWARDED)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0");
    let span = tracing::debug_span!(
        "http_request",
        method = %method,
        path = %request.uri().path(),
        hops = %hops,
        status = tracing::field::Empty,
    );
    let answer = span.in_scope(|| middleware::run(rest, request));
    let metrics = api.metrics.clone();
    Box::pin(async move {
        let Ok(response) = answer.instrument(span.clone()).await;
        span.record("status", response.status().as_u16());
        metrics
            .http_requests
            .with_label_values(&[method.as_str(), response.status().as_str()])
            .inc();
        Ok(response)
    })
}

async fn not_found(request: Request) -> Response {
    ApiError::NotFound(format!(
        "no such endpoint: {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

/// Query parameters, as Consul reads them (`?recurse` has no value).
pub type Params = HashMap<String, String>;

/// Parses the query string; a malformed one is a 400.
pub fn params(query: Option<&str>) -> Result<Params, ApiError> {
    let mut params = Params::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |text: &str| {
            wire::percent::decode_query(text)
                .ok_or_else(|| ApiError::BadRequest(format!("Invalid query string near {pair:?}")))
        };
        params.insert(decode(key)?, decode(value)?);
    }
    Ok(params)
}

/// The `?filter=` of a request, parsed (none when absent or empty); a bad expression, or a
/// selector the endpoint does not have (`allowed`, from `selectors`), is a 400 naming the
/// problem.
pub fn filter_of(uri: &Uri, allowed: &[&str]) -> Result<Option<filter::Filter>, ApiError> {
    let params = params(uri.query())?;
    match params.get("filter").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(expression) => {
            let filter = filter::Filter::parse(expression).map_err(ApiError::BadRequest)?;
            filter
                .check_selectors(allowed)
                .map_err(ApiError::BadRequest)?;
            Ok(Some(filter))
        }
    }
}

/// A response body with `?filter=` applied (to the items of a list, or the values of a map).
pub fn filtered<T: serde::Serialize>(
    body: &T,
    filter: &Option<filter::Filter>,
) -> Result<serde_json::Value, ApiError> {
    let value = serde_json::to_value(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(match filter {
        Some(filter) => filter::apply(filter, value),
        None => value,
    })
}

/// A response body with `?filter=` applied to the list or map under `field` (the services
/// of `/v1/catalog/node/N` and `/node-services/N`).
pub fn filtered_field<T: serde::Serialize>(
    body: &T,
    field: &str,
    filter: &Option<filter::Filter>,
) -> Result<serde_json::Value, ApiError> {
    let mut value = serde_json::to_value(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let (Some(filter), Some(inner)) = (filter, value.get_mut(field)) {
        *inner = filter::apply(filter, inner.take());
    }
    Ok(value)
}

/// Every `?node-meta=key:value` of a query (Consul's node metadata filter; all must match).
pub fn node_meta_filter(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut wanted = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let Some(value) = pair.strip_prefix("node-meta=") else {
            continue;
        };
        let value = wire::percent::decode_query(value)
            .ok_or_else(|| ApiError::BadRequest(format!("Invalid query string near {pair:?}")))?;
        // Consul's parseMetaPair: `key` alone means the value "".
        let (key, meta) = value.split_once(':').unwrap_or((value.as_str(), ""));
        wanted.retain(|(k, _): &(String, String)| k != key);
        wanted.push((key.to_owned(), meta.to_owned()));
    }
    Ok(wanted)
}

/// Whether node metadata holds every wanted pair.
pub fn meta_matches(
    meta: &std::collections::BTreeMap<String, String>,
    wanted: &[(String, String)],
) -> bool {
    wanted
        .iter()
        .all(|(key, value)| meta.get(key).is_some_and(|v| v == value))
}

/// How a read wants to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Through the leader (Consul's default).
    Default,
    /// Any server, possibly stale.
    Stale,
    /// Through the leader, after it confirms leadership with a quorum.
    Consistent,
}

impl Consistency {
    /// Reads `?stale` / `?consistent`.
    pub fn from_params(params: &Params) -> Result<Consistency, ApiError> {
        match (
            params.contains_key("stale"),
            params.contains_key("consistent"),
        ) {
            (true, true) => Err(ApiError::BadRequest(
                "Cannot specify ?stale with ?consistent, conflicting semantics.".to_owned(),
            )),
            (true, false) => Ok(Consistency::Stale),
            (false, true) => Ok(Consistency::Consistent),
            (false, false) => Ok(Consistency::Default),
        }
    }

    fn header(self) -> &'static str {
        match self {
            Consistency::Default => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// Header marking a request forwarded between servers, with its hop count.
const FORWARDED: &str = "x-isthmus-forwarded";

/// What the agent asked fills in before a request is answered anywhere: `?near=_agent`
/// becomes this agent's node, and a session to create defaults to this agent's node (as
/// Consul's agent resolves both before forwarding).
fn fill_in_agent(api: &Api, request: &mut Request) {
    // `?near=_agent` means this agent, wherever the request is answered (as Consul's agent
    // resolves it before forwarding).
    let is_near_agent = |pair: &str| {
        pair.split_once('=').is_some_and(|(k, v)| {
            wire::percent::decode_query(k).as_deref() == Some("near")
                && wire::percent::decode_query(v).as_deref() == Some("_agent")
        })
    };
    if let Some(query) = request.uri().query() {
        if query.split('&').any(is_near_agent) {
            let node: String = url_encode(&api.agent.node_name);
            let rewritten: Vec<String> = query
                .split('&')
                .map(|pair| {
                    if is_near_agent(pair) {
                        format!("near={node}")
                    } else {
                        pair.to_owned()
                    }
                })
                .collect();
            let uri = format!("{}?{}", request.uri().path(), rewritten.join("&"));
            if let Ok(uri) = uri.parse() {
                *request.uri_mut() = uri;
            }
        }
    }
    // A session defaults to the node of the agent it was asked of (as Consul's agent
    // fills it in), wherever the request is then answered.
    if request.uri().path() == "/v1/session/create"
        && !request.headers().contains_key(session::AGENT_NODE_HEADER)
    {
        if let Ok(value) = axum::http::HeaderValue::from_str(&api.agent.node_name) {
            request
                .headers_mut()
                .insert(session::AGENT_NODE_HEADER, value);
        }
    }
}

/// Sends each request where Consul would answer it: agent and status endpoints and `?stale`
/// reads locally; everything else on the leader, forwarded over QUIC from a follower. A
/// client agent answers `/v1/agent/` itself and sends everything else to a server.
fn route_by_consistency(api: &Api, mut request: Request, rest: Rest) -> Answer {
    fill_in_agent(api, &mut request);
    // Agent endpoints (and the events this agent kept) are about this agent: answered here,
    // whatever `?dc=` says (as Consul).
    if answered_here(request.uri().path()) {
        return middleware::run(rest, request);
    }
    match &api.backend {
        Backend::Server(server) => {
            middleware::boxed(route_on_server(api.clone(), server.clone(), request, rest))
        }
        Backend::Client(link) => {
            middleware::boxed(forward::to_server(api.clone(), link.clone(), request))
        }
    }
}

/// [`route_by_consistency`] on a server.
async fn route_on_server(api: Api, server: Arc<Server>, request: Request, rest: Rest) -> Response {
    let path = request.uri().path();
    // `?dc=` naming another datacenter goes through a gateway, to be answered there as a
    // local request; without a path, Consul's error. Never answered with local data.
    let other_dc = params(request.uri().query())
        .ok()
        .and_then(|p| p.get("dc").cloned())
        .filter(|dc| !dc.is_empty() && *dc != api.agent.datacenter);
    if let Some(dc) = other_dc {
        return match &api.dc_links {
            Some(links) => Box::pin(forward::to_datacenter(&api, links, &dc, request)).await,
            None => ApiError::Internal(format!(
                "No path to datacenter \"{dc}\": this server has no gateway (isthmus.gateways)"
            ))
            .into_response(),
        };
    }
    let local_only = path.starts_with("/v1/agent/")
        || path.starts_with("/v1/status/")
        || path == "/v1/catalog/datacenters"
        || path.starts_with("/v1/isthmus/datacenters")
        || path == "/v1/isthmus/gateways"
        || path == "/v1/coordinate/datacenters";
    let stale = params(request.uri().query())
        .map(|p| p.contains_key("stale"))
        .unwrap_or(false);
    let is_read = request.method() == axum::http::Method::GET;
    if local_only {
        return middleware::finish(rest, request).await;
    }
    let hops: u32 = request
        .headers()
        .get(FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Where to answer, as `read_gate` says: a `?stale` read here once this server has caught
    // up since it started, anything else here only on a leader ready to answer; otherwise on
    // the leader, held while there is none (or it is not ready) for up to `HOLD`.
    let deadline = tokio::time::Instant::now() + crate::server::read_gate::HOLD;
    loop {
        let leader = server.leader();
        let stale_here = stale && is_read && server.caught_up();
        let here = match &leader {
            Some((id, _)) if *id == server.id => server.leader_ready() || stale_here,
            _ => stale_here,
        };
        if here {
            return middleware::finish(rest, request).await;
        }
        match leader {
            Some((leader_id, leader)) if leader_id != server.id && hops < 3 => {
                return Box::pin(forward::to_leader(
                    &api,
                    &server,
                    leader_id,
                    &leader,
                    request,
                    hops + 1,
                ))
                .await;
            }
            Some((leader_id, _)) if leader_id != server.id => {
                return ApiError::NoLeader.into_response()
            }
            _ => {}
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return ApiError::NoLeader.into_response();
        }
        server.readiness_changed(deadline - now).await;
    }
}

/// Adds Consul's query-meta headers to a response.
pub fn query_meta(api: &Api, headers: &mut HeaderMap, index: u64, consistency: Consistency) {
    let mut entries = vec![
        ("x-consul-index", index.max(1).to_string()),
        (
            "x-consul-effective-consistency",
            consistency.header().to_owned(),
        ),
    ];
    // A client agent answers only `/v1/agent/` itself, which carries no Raft facts.
    if let Backend::Server(server) = &api.backend {
        entries.push(("x-consul-knownleader", server.known_leader().to_string()));
        entries.push(("x-consul-lastcontact", server.last_contact_ms().to_string()));
    }
    for (name, value) in entries {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// How long to wait before forwarding gives up: a blocking query's wait plus a margin, or
/// 15s for anything else.
pub fn forward_timeout(params: &Params) -> Duration {
    let margin = Duration::from_secs(15);
    if !params.contains_key("index") {
        return margin;
    }
    // The leader waits up to wait + wait/16 (Consul's jitter): cover all of it.
    let wait = blocking::wait_of(params).unwrap_or(blocking::DEFAULT_WAIT);
    wait + wait / 16 + margin
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_blocking_query_outlives_the_leaders_wait() {
        let params = |query: &str| super::params(Some(query)).expect("valid");
        assert_eq!(forward_timeout(&params("recurse")), Duration::from_secs(15));
        let longest = blocking::MAX_WAIT + blocking::MAX_WAIT / 16;
        assert!(forward_timeout(&params("index=5&wait=10m")) > longest);
        assert!(
            forward_timeout(&params("index=5"))
                > blocking::DEFAULT_WAIT + blocking::DEFAULT_WAIT / 16
        );
    }
}
