//! `/v1/catalog/*` (health in [`super::health`], coordinates in [`super::coordinate`]).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use wire::api::{
    AgentService, CatalogNode, CatalogServiceEntry, DeregisterRequest, NodeServices,
    RegisterRequest,
};
use wire::command::{CheckRegistration, Command, CommandResult, Registration, ServiceRegistration};
use wire::records::HealthStatus;

use super::acl::{mark_filtered, may_read, retain_readable, Token};
use super::kv::{confirm, json};
use super::{
    blocking, filter_of, filtered, meta_matches, node_meta_filter, params, Api, ApiError,
    Consistency, Params,
};

/// Whether `node`'s metadata holds every pair of `?node-meta=`.
pub(super) fn node_has_meta(
    catalog: &crate::state::Catalog,
    node: &str,
    wanted: &[(String, String)],
) -> bool {
    wanted.is_empty()
        || catalog
            .node(node)
            .is_some_and(|n| meta_matches(&n.meta, wanted))
}

pub(super) fn tags(params: &Params) -> Vec<String> {
    params
        .get("tag")
        .filter(|t| !t.is_empty())
        .map(|t| vec![t.clone()])
        .unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    wire::gojson::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))
}

async fn apply(api: &Api, command: Command) -> Result<Response, ApiError> {
    let (_index, result) = api
        .server()?
        .proposer
        .propose(command)
        .await
        .map_err(super::error::from_propose_error)?;
    api.metrics.raft_apply.inc();
    match result {
        CommandResult::Done => Ok(([("content-type", "application/json")], "true").into_response()),
        CommandResult::Refused(why) => Err(ApiError::BadRequest(why)),
        other => Err(ApiError::Internal(format!("unexpected result {other:?}"))),
    }
}

/// `PUT /v1/catalog/register`.
pub async fn register(
    State(api): State<Api>,
    token: Option<axum::Extension<super::acl::Resolved>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: RegisterRequest = decode(&body)?;
    let mut checks: Vec<_> = request.check.into_iter().chain(request.checks).collect();
    let mut registration_checks = Vec::new();
    for check in checks.drain(..) {
        if !check.node.is_empty() && check.node != request.node {
            return Err(ApiError::BadRequest(format!(
                "Check node {:?} does not match the registration's {:?}",
                check.node, request.node
            )));
        }
        let status = if check.status.is_empty() {
            HealthStatus::Critical
        } else {
            check.status.parse().map_err(ApiError::BadRequest)?
        };
        registration_checks.push(CheckRegistration {
            check_id: check.check_id,
            name: check.name,
            status,
            notes: check.notes,
            output: check.output,
            service_id: check.service_id,
            check_type: check.check_type,
        });
    }
    let datacenter = if request.datacenter.is_empty() {
        api.agent.datacenter.clone()
    } else {
        request.datacenter
    };
    let registration = Registration {
        node: request.node,
        address: request.address,
        datacenter,
        tagged_addresses: request.tagged_addresses,
        node_meta: request.node_meta,
        skip_node_update: request.skip_node_update,
        service: request.service.map(|s| ServiceRegistration {
            id: s.id,
            name: s.service,
            tags: s.tags,
            address: s.address,
            port: s.port,
            meta: s.meta,
        }),
        checks: registration_checks,
    };
    if let Some(axum::Extension(token)) = &token {
        check_registration(token, &registration)?;
    }
    let command = if request.id.is_empty() {
        Command::Register(Box::new(registration))
    } else {
        if !wire::names::is_uuid(&request.id) {
            return Err(ApiError::BadRequest(format!(
                "Bad node ID: {:?} is not a UUID",
                request.id
            )));
        }
        Command::RegisterWithId {
            id: request.id,
            registration: Box::new(registration),
        }
    };
    apply(&api, command).await
}

/// With ACLs, what a registration needs (Consul's rule): `node:write` on the node unless
/// only a service and its checks are added (`SkipNodeUpdate`), `service:write` on the
/// service.
fn check_registration(
    token: &super::acl::Resolved,
    registration: &Registration,
) -> Result<(), ApiError> {
    use super::acl::Required;
    let mut needs = Vec::new();
    let node_checks = registration.checks.iter().any(|c| c.service_id.is_empty());
    if !registration.skip_node_update || node_checks || registration.service.is_none() {
        needs.push(Required::One(
            acl::Resource::Node,
            registration.node.clone(),
            acl::Need::Write,
        ));
    }
    if let Some(service) = &registration.service {
        needs.push(Required::One(
            acl::Resource::Service,
            service.name.clone(),
            acl::Need::Write,
        ));
    }
    match Required::All(needs).refused_by(&token.authorizer) {
        Some(permission) => Err(ApiError::Forbidden(super::acl::denied_text(
            &token.accessor_id,
            &permission,
        ))),
        None => Ok(()),
    }
}

/// `PUT /v1/catalog/deregister`.
pub async fn deregister(
    State(api): State<Api>,
    token: Option<axum::Extension<super::acl::Resolved>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: DeregisterRequest = decode(&body)?;
    if request.node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".to_owned()));
    }
    if let Some(axum::Extension(token)) = &token {
        // As Consul: a service's deregistration needs service:write on it, anything else
        // node:write.
        let service = (!request.service_id.is_empty())
            .then(|| {
                api.server()
                    .ok()?
                    .state
                    .read(|data| {
                        data.state
                            .catalog
                            .node_services(&request.node)
                            .find(|s| s.id == request.service_id)
                            .map(|s| s.name.clone())
                    })
                    .ok()
                    .flatten()
            })
            .flatten();
        let need = match &service {
            Some(name) => {
                super::acl::Required::One(acl::Resource::Service, name.clone(), acl::Need::Write)
            }
            None => super::acl::Required::One(
                acl::Resource::Node,
                request.node.clone(),
                acl::Need::Write,
            ),
        };
        if let Some(permission) = need.refused_by(&token.authorizer) {
            return Err(ApiError::Forbidden(super::acl::denied_text(
                &token.accessor_id,
                &permission,
            )));
        }
    }
    let some = |s: String| if s.is_empty() { None } else { Some(s) };
    apply(
        &api,
        Command::Deregister {
            node: request.node,
            service_id: some(request.service_id),
            check_id: some(request.check_id),
        },
    )
    .await
}

/// `GET /v1/catalog/datacenters`.
pub async fn datacenters(State(api): State<Api>) -> Response {
    let names: Vec<String> = federation(&api)
        .await
        .into_iter()
        .map(|(dc, _)| dc)
        .collect();
    json(&api, 1, Consistency::Stale, &names)
}

/// The datacenters of the federation, each with the round trip its WAN link measures
/// (QUIC's smoothed RTT, microseconds): this one first with 0, the others nearest first,
/// unmeasured (no link now) last, by name.
///
/// A datacenter belongs to the federation while a gateway of it is linked to this
/// datacenter's, or it has a server in the WAN pool that has not left (a failed one keeps it
/// listed, as Consul lists a datacenter that is down), or this datacenter's gateways know
/// it and the WAN pool knows none of its servers (just after a restart, before the pool has
/// heard of them). A datacenter whose servers all left, and that no gateway links to, is
/// not listed: `remove-dc` removed it.
pub(crate) async fn federation(api: &Api) -> Vec<(String, Option<u64>)> {
    let mut known: Vec<(String, Option<u64>)> = vec![(api.agent.datacenter.clone(), Some(0))];
    let members = api
        .wan
        .as_ref()
        .map(|wan| wan.members())
        .unwrap_or_default();
    let present: std::collections::BTreeSet<String> = members
        .iter()
        .filter(|m| m.status != crate::gossip::pool::MemberStatus::Left)
        .map(|m| m.id.dc.clone())
        .collect();
    let seen: std::collections::BTreeSet<&str> = members.iter().map(|m| m.id.dc.as_str()).collect();
    if let Some(links) = &api.dc_links {
        if let Some(info) = links.gateway_info().await {
            for (dc, rtt) in info.datacenters {
                let listed = rtt.is_some() || present.contains(&dc) || !seen.contains(dc.as_str());
                if listed && !known.iter().any(|(k, _)| *k == dc) {
                    known.push((dc, rtt));
                }
            }
        }
    }
    for dc in present {
        if !known.iter().any(|(k, _)| *k == dc) {
            known.push((dc, None));
        }
    }
    known[1..].sort_by(|(a, ra), (b, rb)| {
        (ra.is_none(), ra.unwrap_or(0), a).cmp(&(rb.is_none(), rb.unwrap_or(0), b))
    });
    known
}

/// `DELETE /v1/isthmus/datacenters/<dc>` (`dc-agent operator federation remove-dc DC`):
/// removes a datacenter from the federation for good. Its servers must be gone (none alive
/// in the WAN pool) and its gateways unlinked; every server of it is then marked left
/// across the WAN pool, and it drops out of `/v1/catalog/datacenters` everywhere.
pub async fn remove_datacenter(
    State(api): State<Api>,
    axum::extract::Path(dc): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    if dc == api.agent.datacenter {
        return Err(ApiError::BadRequest(format!(
            "{dc} is this datacenter: remove a datacenter from a server of another one"
        )));
    }
    let Some(wan) = &api.wan else {
        return Err(ApiError::Internal(
            "this server is in no WAN pool: it has no gateway (isthmus.gateways)".to_owned(),
        ));
    };
    let members: Vec<crate::gossip::pool::Member> = wan
        .members()
        .into_iter()
        .filter(|m| m.id.dc == dc)
        .collect();
    let federation = federation(&api).await;
    let listed = federation.iter().find(|(d, _)| *d == dc);
    if members.is_empty() && listed.is_none() {
        return Err(ApiError::NotFound(format!(
            "No datacenter \"{dc}\" in the federation"
        )));
    }
    let alive: Vec<String> = members
        .iter()
        .filter(|m| m.status == crate::gossip::pool::MemberStatus::Alive)
        .map(|m| m.id.display_name())
        .collect();
    if !alive.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "{dc} still has live servers ({}): stop them before removing the datacenter",
            alive.join(", ")
        )));
    }
    if listed.is_some_and(|(_, rtt)| rtt.is_some()) {
        return Err(ApiError::BadRequest(format!(
            "a gateway of {dc} is still linked to this datacenter's: stop {dc}'s gateways before removing it"
        )));
    }
    let removed = wan.remove_datacenter(&dc).await;
    // The gateways forget it too (this datacenter's, and through them every one they link
    // to), so that no gateway dials it or lists it again.
    let gateways = match &api.dc_links {
        Some(links) => links.forget_datacenter(&dc).await,
        None => 0,
    };
    tracing::info!(dc = %dc, servers = removed, gateways, "datacenter removed from the federation");
    Ok(json(
        &api,
        1,
        Consistency::Stale,
        &serde_json::json!({"Datacenter": dc, "ServersLeft": removed, "GatewaysTold": gateways}),
    ))
}

/// `GET /v1/isthmus/datacenters`: every datacenter with the round trip to it as the
/// gateways measure it (`[{"Datacenter": "dc2", "RTTMicros": 312}]`; `null` when no link
/// is up). Isthmus's own endpoint: Consul estimates this from network coordinates.
pub async fn federation_rtt(State(api): State<Api>) -> Response {
    let rows: Vec<serde_json::Value> = federation(&api)
        .await
        .into_iter()
        .map(|(dc, rtt)| serde_json::json!({"Datacenter": dc, "RTTMicros": rtt}))
        .collect();
    json(&api, 1, Consistency::Stale, &rows)
}

/// `GET /v1/isthmus/gateways`: this datacenter's gateways as this server sees them (its
/// dc-link to each, and each one's WAN links with their round trips). Isthmus's own.
pub async fn gateways(State(api): State<Api>) -> Response {
    let states = match &api.dc_links {
        Some(links) => links.gateway_states().await,
        None => Vec::new(),
    };
    json(&api, 1, Consistency::Stale, &states)
}

pub(super) async fn read<T>(
    api: &Api,
    uri: &Uri,
    read: impl Fn(&crate::raft::state_machine::StateMachineData) -> (u64, T),
) -> Result<(u64, T, Consistency), ApiError> {
    let params = params(uri.query())?;
    let consistency = Consistency::from_params(&params)?;
    confirm(api, consistency).await?;
    api.metrics.rpc_request.inc();
    let (index, answer) = blocking::run(&api.server()?.state, &params, read).await?;
    Ok((index, answer, consistency))
}

/// `GET /v1/catalog/nodes`.
pub async fn nodes(
    State(api): State<Api>,
    uri: Uri,
    token: Option<axum::Extension<super::acl::Resolved>>,
) -> Result<Response, ApiError> {
    let near = params(uri.query())?.get("near").cloned();
    let wanted = node_meta_filter(uri.query())?;
    let filter = filter_of(&uri, super::selectors::NODES)?;
    let (index, nodes, consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        let mut nodes = catalog
            .nodes()
            .filter(|n| meta_matches(&n.meta, &wanted))
            .map(CatalogNode::from)
            .collect::<Vec<_>>();
        sort_near(
            &mut nodes,
            |n| &n.node,
            near.as_deref(),
            &data.state.coordinates,
        );
        (catalog.indexes().nodes, nodes)
    })
    .await?;
    let mut nodes = nodes;
    let mut hidden = false;
    if let Some(axum::Extension(token)) = &token {
        let before = nodes.len();
        nodes.retain(|n| {
            token
                .authorizer
                .allows(acl::Resource::Node, &n.node, acl::Need::Read)
        });
        hidden = nodes.len() != before;
    }
    Ok(super::acl::mark_filtered(
        json(&api, index, consistency, &filtered(&nodes, &filter)?),
        hidden,
    ))
}

/// `GET /v1/catalog/services`.
pub async fn services(
    State(api): State<Api>,
    uri: Uri,
    token: Option<axum::Extension<super::acl::Resolved>>,
) -> Result<Response, ApiError> {
    let wanted = node_meta_filter(uri.query())?;
    let filter = filter_of(&uri, super::selectors::SERVICE_NODES)?;
    let (index, services, consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        // With `?filter`, the instances (Consul's ServiceNode fields) are taken out to be
        // filtered after the read, not under the state's lock.
        let mut instances: Vec<(String, Vec<String>, serde_json::Value)> = Vec::new();
        let names: std::collections::BTreeMap<String, Vec<String>> = if filter.is_some() {
            for (name, _) in catalog.service_names() {
                for (node, service) in catalog.instances(name, &[]) {
                    if !meta_matches(&node.meta, &wanted) {
                        continue;
                    }
                    if let Ok(entry) = serde_json::to_value(CatalogServiceEntry::new(node, service))
                    {
                        instances.push((service.name.clone(), service.tags.clone(), entry));
                    }
                }
            }
            Default::default()
        } else if wanted.is_empty() {
            catalog
                .service_names()
                .into_iter()
                .map(|(name, tags)| {
                    (
                        name.to_owned(),
                        tags.into_iter().map(str::to_owned).collect(),
                    )
                })
                .collect()
        } else {
            // Only the services of nodes with that metadata.
            let mut names: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
                Default::default();
            for node in catalog.nodes().filter(|n| meta_matches(&n.meta, &wanted)) {
                for service in catalog.node_services(&node.name) {
                    names
                        .entry(service.name.clone())
                        .or_default()
                        .extend(service.tags.iter().cloned());
                }
            }
            names
                .into_iter()
                .map(|(name, tags)| (name, tags.into_iter().collect()))
                .collect()
        };
        (catalog.indexes().services, (names, instances))
    })
    .await?;
    let (mut services, instances) = services;
    if let Some(filter) = &filter {
        let mut matched: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for (name, tags, entry) in instances {
            if filter.matches(&entry) {
                matched.entry(name).or_default().extend(tags);
            }
        }
        services = matched
            .into_iter()
            .map(|(name, tags)| (name, tags.into_iter().collect()))
            .collect();
    }
    let mut hidden = false;
    if let Some(axum::Extension(token)) = &token {
        let before = services.len();
        services.retain(|name, _| {
            token
                .authorizer
                .allows(acl::Resource::Service, name, acl::Need::Read)
        });
        hidden = services.len() != before;
    }
    Ok(super::acl::mark_filtered(
        json(&api, index, consistency, &services),
        hidden,
    ))
}

/// `GET /v1/operator/usage`: how many nodes, services and instances the catalog holds, in
/// Consul's shape (per datacenter; no Connect instances here).
pub async fn usage(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let datacenter = api.agent.datacenter.clone();
    let (index, usage, consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        let names = catalog.service_names();
        let instances: usize = names
            .keys()
            .map(|name| catalog.instances(name, &[]).count())
            .sum();
        let indexes = catalog.indexes();
        let index = indexes.nodes.max(indexes.services);
        let usage = serde_json::json!({
            "Usage": {
                datacenter.clone(): {
                    "Services": names.len(),
                    "ServiceInstances": instances,
                    "ConnectServiceInstances": {
                        "api-gateway": 0, "connect-native": 0, "connect-proxy": 0,
                        "ingress-gateway": 0, "mesh-gateway": 0, "terminating-gateway": 0,
                    },
                    "BillableServiceInstances": instances,
                    "Nodes": catalog.nodes().count(),
                }
            },
            "Index": index,
        });
        (index, usage)
    })
    .await?;
    Ok(json(&api, index, consistency, &usage))
}

/// `GET /v1/catalog/service/<name>` (`?tag=`).
pub async fn service(
    State(api): State<Api>,
    Path(name): Path<String>,
    uri: Uri,
    token: Option<axum::Extension<super::acl::Resolved>>,
) -> Result<Response, ApiError> {
    let params = params(uri.query())?;
    let tags = tags(&params);
    let near = params.get("near").cloned();
    let wanted = node_meta_filter(uri.query())?;
    let filter = filter_of(&uri, super::selectors::SERVICE_NODES)?;
    let (index, entries, consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        let mut entries: Vec<CatalogServiceEntry> = catalog
            .instances(&name, &tags)
            .filter(|(node, _)| meta_matches(&node.meta, &wanted))
            .map(|(node, service)| CatalogServiceEntry::new(node, service))
            .collect();
        sort_near(
            &mut entries,
            |e| &e.node,
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
        entries.retain(|e| auth.allows(acl::Resource::Node, &e.node, acl::Need::Read));
        hidden = entries.len() != before;
    }
    Ok(super::acl::mark_filtered(
        json(&api, index, consistency, &filtered(&entries, &filter)?),
        hidden,
    ))
}

/// `GET /v1/catalog/node/<node>`.
pub async fn node(
    State(api): State<Api>,
    Path(node): Path<String>,
    uri: Uri,
    token: Token,
) -> Result<Response, ApiError> {
    let filter = filter_of(&uri, super::selectors::NODE_SERVICES)?;
    let (index, (hidden, answer), consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        let (readable, hidden) = readable_services(&token, &node, catalog);
        let answer = readable.and_then(|services| {
            catalog.node(&node).map(|n| NodeServices {
                node: CatalogNode::from(n),
                services: services.into_iter().map(|s| (s.id.clone(), s)).collect(),
            })
        });
        (catalog.node_index(&node), (hidden, answer))
    })
    .await?;
    // `?filter` selects among the node's services.
    let answer = super::filtered_field(&answer, "Services", &filter)?;
    Ok(mark_filtered(
        json(&api, index, consistency, &answer),
        hidden,
    ))
}

/// The services of `node` the token may read (none at all when it may not read the node,
/// as Consul answers `null`), and whether ACLs left something out.
fn readable_services(
    token: &Token,
    node: &str,
    catalog: &crate::state::Catalog,
) -> (Option<Vec<AgentService>>, bool) {
    if !may_read(token, acl::Resource::Node, node) {
        return (None, catalog.node(node).is_some());
    }
    let mut services: Vec<AgentService> = catalog
        .node_services(node)
        .map(AgentService::from)
        .collect();
    let hidden = retain_readable(&mut services, |s| {
        may_read(token, acl::Resource::Service, &s.service)
    });
    (Some(services), hidden)
}

/// `GET /v1/catalog/node-services/<node>`: the node and its services as a list (Consul's
/// newer shape of `/v1/catalog/node`); `null` for an unknown node, as Consul.
pub async fn node_services(
    State(api): State<Api>,
    Path(node): Path<String>,
    uri: Uri,
    token: Token,
) -> Result<Response, ApiError> {
    let filter = filter_of(&uri, super::selectors::NODE_SERVICES)?;
    let (index, (hidden, answer), consistency) = read(&api, &uri, |data| {
        let catalog = &data.state.catalog;
        let (readable, hidden) = readable_services(&token, &node, catalog);
        let answer = readable.and_then(|services| {
            catalog.node(&node).map(|n| {
                serde_json::json!({
                    "Node": CatalogNode::from(n),
                    "Services": services,
                })
            })
        });
        (catalog.node_index(&node), (hidden, answer))
    })
    .await?;
    // `?filter` selects among the node's services.
    let answer = super::filtered_field(&answer, "Services", &filter)?;
    Ok(mark_filtered(
        json(&api, index, consistency, &answer),
        hidden,
    ))
}

/// Consul's `?near=NODE`: sorts by the round trip estimated from NODE's coordinate, nearest
/// first; entries whose node has no coordinate go last, in their order. Without a
/// coordinate for NODE (or without `near`), the order is left alone.
pub(super) fn sort_near<T>(
    items: &mut [T],
    node_of: impl Fn(&T) -> &str,
    near: Option<&str>,
    coordinates: &crate::state::Coordinates,
) {
    let Some(origin) = near.and_then(|n| coordinates.by_node.get(n)) else {
        return;
    };
    items.sort_by(|a, b| {
        let distance = |item: &T| {
            coordinates
                .by_node
                .get(node_of(item))
                .map(|c| origin.distance_to(c))
        };
        match (distance(a), distance(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
}
