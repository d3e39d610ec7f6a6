//! Anti-entropy: the agent's services and checks written to the catalog, only where they
//! differ from what it holds; chatty check outputs held back by `check_update_interval`.

use super::*;

/// What the catalog holds for one node: the node, its services and its checks by ID.
type Held = (
    Option<wire::records::Node>,
    BTreeMap<String, wire::records::Service>,
    BTreeMap<String, wire::records::Check>,
);

/// Where anti-entropy reads what the catalog holds for this node.
#[derive(Clone)]
pub enum CatalogSource {
    /// A server reads its own state machine (a stale, local read).
    Local(crate::raft::state_machine::StateMachineStore),
    /// A client agent asks a server, through the API router.
    Remote,
}

impl CatalogSource {
    async fn read(
        &self,
        node: &str,
        handler: &crate::rpc::messages::HttpHandler,
    ) -> Result<Held, String> {
        match self {
            CatalogSource::Local(state) => state
                .read(|data| {
                    let catalog = &data.state.catalog;
                    let services = catalog
                        .node_services(node)
                        .map(|s| (s.id.clone(), s.clone()))
                        .collect();
                    let checks = catalog
                        .node_checks(node)
                        .map(|c| (c.check_id.clone(), c.clone()))
                        .collect();
                    (catalog.node(node).cloned(), services, checks)
                })
                .map_err(|e| e.to_string()),
            CatalogSource::Remote => read_remote(node, handler).await,
        }
    }
}

/// Reads a node's catalog entries through the API (`/v1/catalog/node`, `/v1/health/node`).
async fn read_remote(
    node: &str,
    handler: &crate::rpc::messages::HttpHandler,
) -> Result<Held, String> {
    let api = crate::internal::LocalApi::new(handler.clone());
    let listed = api.catalog_node(node).await?;
    let health = api.health_node(node).await?;
    let Some(listed) = listed else {
        return Ok((None, BTreeMap::new(), BTreeMap::new()));
    };
    let record = wire::records::Node {
        name: listed.node.node,
        id: listed.node.id,
        address: listed.node.address,
        datacenter: listed.node.datacenter,
        tagged_addresses: listed.node.tagged_addresses,
        meta: listed.node.meta,
        create_index: listed.node.create_index,
        modify_index: listed.node.modify_index,
    };
    let services = listed
        .services
        .into_values()
        .map(|s| {
            let service = wire::records::Service {
                node: node.to_owned(),
                id: s.id,
                name: s.service,
                tags: s.tags,
                address: s.address,
                port: s.port,
                meta: s.meta,
                create_index: s.create_index,
                modify_index: s.modify_index,
            };
            (service.id.clone(), service)
        })
        .collect();
    let mut checks = BTreeMap::new();
    for c in health {
        let status = c
            .status
            .parse()
            .map_err(|e: String| format!("check {}: {e}", c.check_id))?;
        let check = wire::records::Check {
            node: c.node,
            check_id: c.check_id,
            name: c.name,
            status,
            notes: c.notes,
            output: c.output,
            service_id: c.service_id,
            service_name: c.service_name,
            service_tags: c.service_tags,
            check_type: c.check_type,
            create_index: c.create_index,
            modify_index: c.modify_index,
        };
        checks.insert(check.check_id.clone(), check);
    }
    Ok((Some(record), services, checks))
}

/// Keeps the catalog in step with the agent: after every change, and fully every minute.
/// `write` sends a catalog request (method, path, JSON body) through the API, which forwards
/// to the leader; `read` reads what the catalog holds for this node (a stale, local read).
pub async fn anti_entropy(
    agent: Arc<LocalAgent>,
    source: CatalogSource,
    handler: crate::rpc::messages::HttpHandler,
    cancel: CancellationToken,
) {
    let mut full = tokio::time::interval(Duration::from_secs(60));
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = agent.changed() => {}
            _ = full.tick() => {}
            _ = ticker.tick() => {
                let now = Instant::now();
                agent.tick(now);
                if !agent.held_output_due(now) {
                    continue;
                }
            }
        }
        if let Err(e) = sync_once(&agent, &source, &handler).await {
            tracing::debug!(error = %e, "anti-entropy sync failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            agent.mark_changed();
        }
    }
}

/// One pass of anti-entropy. An item (the node, a service with its checks, the node-level
/// checks) is written when its body differs from the one last written successfully (a change
/// here) or the catalog differs from it (drift there). Comparing with what was written, not
/// only with the catalog, matters on a follower: its catalog lags the leader, and a change
/// undone within that lag would otherwise look already in place.
/// One anti-entropy write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogOp {
    /// Register the node, a service with its checks, or a node check. `key` names what it
    /// writes (`node`, `service:ID`, `check:ID`).
    Register {
        /// What it writes.
        key: String,
        /// The registration.
        request: Box<wire::api::RegisterRequest>,
    },
    /// Deregister a service or a check the agent no longer has.
    Deregister {
        /// What it removes.
        key: String,
        /// The deregistration.
        request: wire::api::DeregisterRequest,
    },
}

/// This agent's node as the catalog should show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeWant<'a> {
    /// Node name.
    pub node: &'a str,
    /// Node ID (UUID).
    pub id: &'a str,
    /// Address.
    pub address: &'a str,
    /// Datacenter.
    pub datacenter: &'a str,
    /// Metadata.
    pub meta: &'a BTreeMap<String, String>,
}

/// The JSON of what was last written for `key`, for `synced`.
fn written_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Pure: the writes that make the catalog (`held`) show what this agent has (`node`,
/// `services`, `checks`), in order: the node, each service with its checks, node checks,
/// then what the agent no longer has. An item the catalog shows as wanted and that this
/// agent wrote itself (`synced`: what it last wrote, by key) is left alone; the `consul`
/// service and the `serfHealth` check belong to the leader and are never touched.
pub fn plan_sync(
    node: &NodeWant<'_>,
    services: &BTreeMap<String, ServiceRegistration>,
    checks: &BTreeMap<String, LocalCheck>,
    held: &Held,
    synced: &BTreeMap<String, String>,
) -> Vec<CatalogOp> {
    use wire::api::{RegisterRequest, RegisterService};
    let (held_node, held_services, held_checks) = held;
    let mut ops = Vec::new();
    let mut register = |key: String, request: RegisterRequest, in_catalog: bool| {
        if !(in_catalog && synced.get(&key) == Some(&written_text(&request))) {
            ops.push(CatalogOp::Register {
                key,
                request: Box::new(request),
            });
        }
    };
    let node_request = RegisterRequest {
        id: node.id.to_owned(),
        node: node.node.to_owned(),
        address: node.address.to_owned(),
        datacenter: node.datacenter.to_owned(),
        node_meta: node.meta.clone(),
        ..RegisterRequest::default()
    };
    let node_in_catalog = held_node
        .as_ref()
        .is_some_and(|n| n.id == node.id && n.address == node.address && n.meta == *node.meta);
    register("node".to_owned(), node_request, node_in_catalog);
    for (id, service) in services {
        let own: Vec<&LocalCheck> = checks.values().filter(|c| c.0.service_id == *id).collect();
        let in_catalog = held_services.get(id).is_some_and(|s| {
            s.name == service.name
                && s.tags == service.tags
                && s.port == service.port
                && s.address == service.address
                && s.meta == service.meta
        }) && own.iter().all(|c| check_in_catalog(held_checks, c));
        let request = on_node(
            node,
            own.iter().map(|c| check_request(c)).collect(),
            Some(RegisterService {
                id: id.clone(),
                service: service.name.clone(),
                tags: service.tags.clone(),
                address: service.address.clone(),
                meta: service.meta.clone(),
                port: service.port,
            }),
        );
        register(format!("service:{id}"), request, in_catalog);
    }
    for check in checks.values().filter(|c| c.0.service_id.is_empty()) {
        let request = on_node(node, vec![check_request(check)], None);
        let in_catalog = check_in_catalog(held_checks, check);
        register(format!("check:{}", check.0.id), request, in_catalog);
    }
    ops.extend(plan_removals(node.node, services, checks, held));
    ops
}

/// A local check: its definition, status and output.
type LocalCheck = (CheckSpec, HealthStatus, String);

/// A check as the catalog registers it.
fn check_request((spec, status, output): &LocalCheck) -> wire::api::RegisterCheck {
    wire::api::RegisterCheck {
        check_id: spec.id.clone(),
        name: spec.name.clone(),
        notes: spec.notes.clone(),
        status: status.as_str().to_owned(),
        output: output.clone(),
        service_id: spec.service_id.clone(),
        check_type: spec.kind.to_owned(),
        ..wire::api::RegisterCheck::default()
    }
}

/// Whether the catalog shows the check as this agent has it.
fn check_in_catalog(
    held: &BTreeMap<String, wire::records::Check>,
    (spec, status, output): &LocalCheck,
) -> bool {
    held.get(&spec.id).is_some_and(|c| {
        c.status == *status
            && c.output == *output
            && c.name == spec.name
            && c.notes == spec.notes
            && c.service_id == spec.service_id
            && c.check_type == spec.kind
    })
}

/// A registration on this agent's node that leaves the node itself alone.
fn on_node(
    node: &NodeWant<'_>,
    checks: Vec<wire::api::RegisterCheck>,
    service: Option<wire::api::RegisterService>,
) -> wire::api::RegisterRequest {
    wire::api::RegisterRequest {
        node: node.node.to_owned(),
        address: node.address.to_owned(),
        datacenter: node.datacenter.to_owned(),
        skip_node_update: true,
        service,
        checks,
        ..wire::api::RegisterRequest::default()
    }
}

/// Deregistrations of what the catalog holds and the agent no longer has. The `consul`
/// service of a server and the `serfHealth` check are the leader's to keep (as in Consul);
/// checks of removed services go with them.
fn plan_removals(
    node: &str,
    services: &BTreeMap<String, ServiceRegistration>,
    checks: &BTreeMap<String, LocalCheck>,
    (_, held_services, held_checks): &Held,
) -> Vec<CatalogOp> {
    use wire::api::DeregisterRequest;
    let mut ops = Vec::new();
    for id in held_services
        .keys()
        .filter(|id| !services.contains_key(*id) && id.as_str() != "consul")
    {
        ops.push(CatalogOp::Deregister {
            key: format!("service:{id}"),
            request: DeregisterRequest {
                node: node.to_owned(),
                service_id: id.clone(),
                ..DeregisterRequest::default()
            },
        });
    }
    for (id, check) in held_checks {
        if id == "serfHealth"
            || checks.contains_key(id)
            || (!check.service_id.is_empty() && !services.contains_key(&check.service_id))
        {
            continue;
        }
        ops.push(CatalogOp::Deregister {
            key: format!("check:{id}"),
            request: DeregisterRequest {
                node: node.to_owned(),
                check_id: id.clone(),
                ..DeregisterRequest::default()
            },
        });
    }
    ops
}

async fn sync_once(
    agent: &LocalAgent,
    source: &CatalogSource,
    handler: &crate::rpc::messages::HttpHandler,
) -> Result<(), String> {
    let now = Instant::now();
    let (services, mut checks) = agent.desired();
    agent.hold_back_output(&mut checks, now);
    let held = source.read(&agent.node, handler).await?;
    let synced = agent.synced.lock().clone();
    let node = NodeWant {
        node: &agent.node,
        id: &agent.node_id,
        address: &agent.address,
        datacenter: &agent.datacenter,
        meta: &agent.node_meta,
    };
    let api = crate::internal::LocalApi::new(handler.clone());
    let remember = |key: String, text: Option<String>| {
        let mut synced = agent.synced.lock();
        match text {
            Some(text) => synced.insert(key, text),
            None => synced.remove(&key),
        };
    };
    for op in plan_sync(&node, &services, &checks, &held, &synced) {
        match op {
            CatalogOp::Register { key, request } => {
                api.catalog_register(&request).await?;
                remember(key, Some(written_text(&*request)));
            }
            CatalogOp::Deregister { key, request } => {
                api.catalog_deregister(&request).await?;
                remember(key, None);
            }
        }
    }
    // Forget what was written for items that no longer exist here, so that re-adding one
    // is written even if the catalog still (stale) shows it.
    {
        let mut synced = agent.synced.lock();
        synced.retain(|key, _| {
            key == "node"
                || key
                    .strip_prefix("service:")
                    .is_some_and(|id| services.contains_key(id))
                || key
                    .strip_prefix("check:")
                    .is_some_and(|id| checks.contains_key(id))
        });
    }
    agent.output_written(&checks, now);
    Ok(())
}

impl LocalAgent {
    /// Consul's `check_update_interval`: where a check's status is what was last written and
    /// only its output changed, write the old output until the interval since that write has
    /// passed, so chatty outputs (timestamps, latencies) do not become a Raft write per run.
    fn hold_back_output(
        &self,
        checks: &mut BTreeMap<String, (CheckSpec, HealthStatus, String)>,
        now: Instant,
    ) {
        let sent = self.output_sent.lock();
        let mut due: Option<Instant> = None;
        for (id, (_, status, output)) in checks.iter_mut() {
            let Some((sent_status, sent_output, at)) = sent.get(id) else {
                continue;
            };
            let until = *at + self.check_update_interval;
            if sent_status == status && sent_output != output && now < until {
                output.clone_from(sent_output);
                due = Some(due.map_or(until, |d| d.min(until)));
            }
        }
        *self.output_due.lock() = due;
    }

    /// Records what a successful sync wrote.
    fn output_written(
        &self,
        checks: &BTreeMap<String, (CheckSpec, HealthStatus, String)>,
        now: Instant,
    ) {
        let mut sent = self.output_sent.lock();
        sent.retain(|id, _| checks.contains_key(id));
        for (id, (_, status, output)) in checks {
            let unchanged = sent
                .get(id)
                .is_some_and(|(s, o, _)| s == status && o == output);
            if !unchanged {
                sent.insert(id.clone(), (*status, output.clone(), now));
            }
        }
    }

    /// Whether a held-back output is now due to be written.
    fn held_output_due(&self, now: Instant) -> bool {
        self.output_due.lock().is_some_and(|due| now >= due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, service_id: &str) -> CheckSpec {
        CheckSpec {
            id: id.into(),
            name: id.into(),
            notes: String::new(),
            service_id: service_id.into(),
            probe: None,
            ttl: Some(Duration::from_secs(30)),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            thresholds: Thresholds::default(),
            initial: HealthStatus::Critical,
            kind: "ttl",
        }
    }

    fn keys(ops: &[CatalogOp]) -> Vec<String> {
        ops.iter()
            .map(|op| match op {
                CatalogOp::Register { key, .. } => format!("+{key}"),
                CatalogOp::Deregister { key, .. } => format!("-{key}"),
            })
            .collect()
    }

    /// What the catalog would hold after `ops` on an empty catalog (the fields compared).
    fn held_after(ops: &[CatalogOp]) -> Held {
        let mut held: Held = (None, BTreeMap::new(), BTreeMap::new());
        for op in ops {
            let CatalogOp::Register { request, .. } = op else {
                continue;
            };
            if !request.skip_node_update {
                held.0 = Some(wire::records::Node {
                    name: request.node.clone(),
                    id: request.id.clone(),
                    address: request.address.clone(),
                    datacenter: request.datacenter.clone(),
                    tagged_addresses: BTreeMap::new(),
                    meta: request.node_meta.clone(),
                    create_index: 1,
                    modify_index: 1,
                });
            }
            if let Some(s) = &request.service {
                held.1.insert(
                    s.id.clone(),
                    wire::records::Service {
                        node: request.node.clone(),
                        id: s.id.clone(),
                        name: s.service.clone(),
                        tags: s.tags.clone(),
                        address: s.address.clone(),
                        port: s.port,
                        meta: s.meta.clone(),
                        create_index: 1,
                        modify_index: 1,
                    },
                );
            }
            for c in &request.checks {
                held.2.insert(
                    c.check_id.clone(),
                    wire::records::Check {
                        node: request.node.clone(),
                        check_id: c.check_id.clone(),
                        name: c.name.clone(),
                        status: c.status.parse().unwrap_or(HealthStatus::Critical),
                        notes: c.notes.clone(),
                        output: c.output.clone(),
                        service_id: c.service_id.clone(),
                        service_name: String::new(),
                        service_tags: Vec::new(),
                        check_type: c.check_type.clone(),
                        create_index: 1,
                        modify_index: 1,
                    },
                );
            }
        }
        held
    }

    #[test]
    fn writes_what_differs_once_and_leaves_the_leaders_items_alone() {
        let meta = BTreeMap::from([("rack".to_owned(), "r1".to_owned())]);
        let node = NodeWant {
            node: "n1",
            id: "40e4a748-2192-161a-0510-9bf59fe950b5",
            address: "10.0.0.1",
            datacenter: "dc1",
            meta: &meta,
        };
        let services = BTreeMap::from([(
            "web1".to_owned(),
            ServiceRegistration {
                id: "web1".into(),
                name: "web".into(),
                port: 80,
                ..Default::default()
            },
        )]);
        let checks = BTreeMap::from([
            (
                "web-ttl".to_owned(),
                (
                    check("web-ttl", "web1"),
                    HealthStatus::Passing,
                    "ok".to_owned(),
                ),
            ),
            (
                "disk".to_owned(),
                (check("disk", ""), HealthStatus::Warning, "90%".to_owned()),
            ),
        ]);
        // An empty catalog: the node, the service with its check, the node check.
        let empty: Held = (None, BTreeMap::new(), BTreeMap::new());
        let ops = plan_sync(&node, &services, &checks, &empty, &BTreeMap::new());
        assert_eq!(keys(&ops), ["+node", "+service:web1", "+check:disk"]);
        let CatalogOp::Register { request, .. } = &ops[1] else {
            panic!("{ops:?}")
        };
        assert!(request.skip_node_update);
        assert_eq!(request.checks.len(), 1);
        assert_eq!(request.checks[0].status, "passing");

        // Written and shown: nothing to do.
        let mut held = held_after(&ops);
        let synced: BTreeMap<String, String> = ops
            .iter()
            .filter_map(|op| match op {
                CatalogOp::Register { key, request } => {
                    Some((key.clone(), written_text(&**request)))
                }
                _ => None,
            })
            .collect();
        assert!(plan_sync(&node, &services, &checks, &held, &synced).is_empty());
        // Shown, but written by someone else (a restored server): written again.
        assert_eq!(
            keys(&plan_sync(
                &node,
                &services,
                &checks,
                &held,
                &BTreeMap::new()
            )),
            ["+node", "+service:web1", "+check:disk"]
        );
        // A check's output changed: only its own registration.
        let mut changed = checks.clone();
        if let Some(c) = changed.get_mut("disk") {
            c.2 = "95%".to_owned();
        }
        assert_eq!(
            keys(&plan_sync(&node, &services, &changed, &held, &synced)),
            ["+check:disk"]
        );
        // The catalog holds more: a stale service and check go; the leader's `consul`
        // service and `serfHealth` check, and checks of a removed service, stay.
        let consul = held.1.get("web1").cloned().map(|mut s| {
            s.id = "consul".into();
            s
        });
        held.1.extend(consul.map(|s| (s.id.clone(), s)));
        let old = held.1.get("web1").cloned().map(|mut s| {
            s.id = "old".into();
            s
        });
        held.1.extend(old.map(|s| (s.id.clone(), s)));
        for (id, service_id) in [("serfHealth", ""), ("gone", ""), ("of-gone", "vanished")] {
            let template = held.2.get("disk").cloned().map(|mut c| {
                c.check_id = id.into();
                c.service_id = service_id.into();
                c
            });
            held.2.extend(template.map(|c| (c.check_id.clone(), c)));
        }
        assert_eq!(
            keys(&plan_sync(&node, &services, &checks, &held, &synced)),
            ["-service:old", "-check:gone"]
        );
    }
}
