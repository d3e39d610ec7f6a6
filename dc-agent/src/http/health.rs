//! `/v1/health/*`: checks by service, node and state, and healthy instances, answered
//! with what the request's token may read (as Consul's).

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use wire::api::{AgentService, CatalogNode, HealthCheck, ServiceEntry};
use wire::records::HealthStatus;

use super::acl::{mark_filtered, may_read_check, retain_readable, Token};
use super::catalog::{node_has_meta, read, sort_near, tags};
use super::kv::json;
use super::{filter_of, filtered, meta_matches, node_meta_filter, params, Api, ApiError};

/// `GET /v1/health/service/<name>` (`?passing`, `?tag=`).
pub async fn health_service(
    State(api): State<Api>,
    Path(name): Path<String>,
    uri: Uri,
    token: Option<axum::Extension<super::acl::Resolved>>,
) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let tags = tags(&params);
    let passing_only = params.contains_key("passing");
    let near = params.get("near").cloned();
    let wanted = node_meta_filter(uri.query())?;
    let filter = filter_of(&uri, super::selectors::SERVICE_HEALTH)?;
    let (index, entries, consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        let mut entries: Vec<ServiceEntry> = catalog
            .service_health(&name, &tags)
            .into_iter()
            .filter(|h| meta_matches(&h.node.meta, &wanted))
            .filter(|h| !passing_only || h.checks.iter().all(|c| c.status == HealthStatus::Passing))
            .map(|h| ServiceEntry {
                node: CatalogNode::from(h.node),
                service: AgentService::from(h.service),
                checks: h.checks.iter().map(|c| HealthCheck::from(*c)).collect(),
            })
            .collect();
        sort_near(
            &mut entries,
            |e| &e.node.node,
            near.as_deref(),
            &data.state.coordinates,
        );
        (catalog.service_index(&name), entries)
    })
    .await?;
    let mut entries = entries;
    let mut hidden = false;
    if let Some(axum::Extension(token)) = &token {
        let before = entries.len();
        let auth = &token.authorizer;
        if !auth.allows(acl::Resource::Service, &name, acl::Need::Read) {
            entries.clear();
        }
        entries.retain(|e| auth.allows(acl::Resource::Node, &e.node.node, acl::Need::Read));
        hidden = entries.len() != before;
    }
    Ok(super::acl::mark_filtered(
        json(&api, index, consistency, &filtered(&entries, &filter)?),
        hidden,
    ))
}

/// A list of checks as the `/v1/health` endpoints answer it: only those the token may read
/// (Consul's filtering, marked in the headers), then `?filter`.
fn checks_answer(
    api: &Api,
    token: &Token,
    index: u64,
    consistency: super::Consistency,
    mut checks: Vec<HealthCheck>,
    filter: &Option<super::filter::Filter>,
) -> Result<Response, ApiError> {
    let hidden = retain_readable(&mut checks, |c| may_read_check(token, c));
    Ok(mark_filtered(
        json(api, index, consistency, &filtered(&checks, filter)?),
        hidden,
    ))
}

/// `GET /v1/health/checks/<service>`.
pub async fn health_checks(
    State(api): State<Api>,
    Path(name): Path<String>,
    uri: Uri,
    token: Token,
) -> Result<Response, ApiError> {
    let filter = filter_of(&uri, super::selectors::CHECKS)?;
    let wanted = node_meta_filter(uri.query())?;
    let (index, checks, consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        (
            catalog.service_index(&name),
            catalog
                .service_checks(&name)
                .filter(|c| node_has_meta(catalog, &c.node, &wanted))
                .map(HealthCheck::from)
                .collect::<Vec<_>>(),
        )
    })
    .await?;
    checks_answer(&api, &token, index, consistency, checks, &filter)
}

/// `GET /v1/health/node/<node>`.
pub async fn health_node(
    State(api): State<Api>,
    Path(node): Path<String>,
    uri: Uri,
    token: Token,
) -> Result<Response, ApiError> {
    let filter = filter_of(&uri, super::selectors::CHECKS)?;
    let (index, checks, consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        (
            catalog.node_index(&node),
            catalog
                .node_checks(&node)
                .map(HealthCheck::from)
                .collect::<Vec<_>>(),
        )
    })
    .await?;
    checks_answer(&api, &token, index, consistency, checks, &filter)
}

/// `GET /v1/health/state/<state>` (`any`, `passing`, `warning`, `critical`).
pub async fn health_state(
    State(api): State<Api>,
    Path(state): Path<String>,
    uri: Uri,
    token: Token,
) -> Result<Response, ApiError> {
    let filter = filter_of(&uri, super::selectors::CHECKS)?;
    let wanted = match state.as_str() {
        "any" => None,
        other => Some(other.parse::<HealthStatus>().map_err(|_| {
            ApiError::BadRequest(format!(
                "Invalid check state {other:?}: use any, passing, warning or critical"
            ))
        })?),
    };
    let meta = node_meta_filter(uri.query())?;
    let (index, checks, consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        (
            catalog.indexes().checks,
            catalog
                .checks_in_state(wanted)
                .filter(|c| node_has_meta(catalog, &c.node, &meta))
                .map(HealthCheck::from)
                .collect::<Vec<_>>(),
        )
    })
    .await?;
    checks_answer(&api, &token, index, consistency, checks, &filter)
}
