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
    async fn get<T: serde::de::DeserializeOwned>(
        handler: &crate::rpc::messages::HttpHandler,
        uri: String,
    ) -> Result<T, String> {
        let response = crate::rpc::messages::get(handler, uri.clone()).await?;
        serde_json::from_slice(&response.body).map_err(|e| format!("{uri}: {e}"))
    }
    let listed: Option<wire::api::NodeServices> =
        get(handler, format!("/v1/catalog/node/{node}")).await?;
    let health: Vec<wire::api::HealthCheck> =
        get(handler, format!("/v1/health/node/{node}")).await?;
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
async fn sync_once(
    agent: &LocalAgent,
    source: &CatalogSource,
    handler: &crate::rpc::messages::HttpHandler,
) -> Result<(), String> {
    use serde_json::json;
    let now = Instant::now();
    let (services, mut checks) = agent.desired();
    agent.hold_back_output(&mut checks, now);
    let node = agent.node.clone();
    let (held_node, held_services, held_checks) = source.read(&node, handler).await?;
    let send = |method: &str, path: &str, body: &serde_json::Value| {
        let request = crate::rpc::messages::HttpRequest {
            method: method.to_owned(),
            uri: path.to_owned(),
            headers: vec![("content-type".to_owned(), b"application/json".to_vec())],
            body: body.to_string().into_bytes(),
        };
        handler(request)
    };
    let ok = |response: crate::rpc::messages::HttpResponse| {
        if response.status == 200 {
            Ok(())
        } else {
            Err(format!(
                "catalog answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ))
        }
    };
    let written = |key: &str, body: &serde_json::Value| {
        agent
            .synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            == Some(&body.to_string())
    };
    let remember = |key: &str, body: Option<&serde_json::Value>| {
        let mut synced = agent
            .synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match body {
            Some(body) => synced.insert(key.to_owned(), body.to_string()),
            None => synced.remove(key),
        };
    };

    let node_body = json!({"ID": agent.node_id, "Node": node, "Address": agent.address, "Datacenter": agent.datacenter, "NodeMeta": agent.node_meta});
    let node_in_catalog = held_node.as_ref().is_some_and(|n| {
        n.id == agent.node_id && n.address == agent.address && n.meta == agent.node_meta
    });
    if !node_in_catalog || !written("node", &node_body) {
        ok(send("PUT", "/v1/catalog/register", &node_body).await)?;
        remember("node", Some(&node_body));
    }
    let check_json = |(spec, status, output): &(CheckSpec, HealthStatus, String)| json!({"CheckID": spec.id, "Name": spec.name, "Notes": spec.notes, "Status": status.as_str(), "Output": output, "ServiceID": spec.service_id, "Type": spec.kind});
    let check_in_catalog = |(spec, status, output): &(CheckSpec, HealthStatus, String)| {
        held_checks.get(&spec.id).is_some_and(|c| {
            c.status == *status
                && c.output == *output
                && c.name == spec.name
                && c.notes == spec.notes
                && c.service_id == spec.service_id
                && c.check_type == spec.kind
        })
    };
    for (id, service) in &services {
        let own: Vec<&(CheckSpec, HealthStatus, String)> =
            checks.values().filter(|c| c.0.service_id == *id).collect();
        let in_catalog = held_services.get(id).is_some_and(|s| {
            s.name == service.name
                && s.tags == service.tags
                && s.port == service.port
                && s.address == service.address
                && s.meta == service.meta
        }) && own.iter().all(|c| check_in_catalog(c));
        let body = json!({
            "Node": node, "Address": agent.address, "Datacenter": agent.datacenter, "SkipNodeUpdate": true,
            "Service": {"ID": id, "Service": service.name, "Tags": service.tags, "Address": service.address, "Port": service.port, "Meta": service.meta},
            "Checks": own.iter().map(|c| check_json(c)).collect::<Vec<_>>(),
        });
        let key = format!("service:{id}");
        if in_catalog && written(&key, &body) {
            continue;
        }
        ok(send("PUT", "/v1/catalog/register", &body).await)?;
        remember(&key, Some(&body));
    }
    let node_checks: Vec<&(CheckSpec, HealthStatus, String)> = checks
        .values()
        .filter(|c| c.0.service_id.is_empty())
        .collect();
    for check in node_checks {
        let body = json!({"Node": node, "Address": agent.address, "SkipNodeUpdate": true, "Checks": [check_json(check)]});
        let key = format!("check:{}", check.0.id);
        if check_in_catalog(check) && written(&key, &body) {
            continue;
        }
        ok(send("PUT", "/v1/catalog/register", &body).await)?;
        remember(&key, Some(&body));
    }
    // The `consul` service of a server is the leader's to keep (as in Consul).
    for id in held_services
        .keys()
        .filter(|id| !services.contains_key(*id) && id.as_str() != "consul")
    {
        ok(send(
            "PUT",
            "/v1/catalog/deregister",
            &json!({"Node": node, "ServiceID": id}),
        )
        .await)?;
        remember(&format!("service:{id}"), None);
    }
    for (id, check) in &held_checks {
        // serfHealth belongs to the leader (gossip); checks of removed services went with them.
        if id == "serfHealth"
            || checks.contains_key(id)
            || (!check.service_id.is_empty() && !services.contains_key(&check.service_id))
        {
            continue;
        }
        ok(send(
            "PUT",
            "/v1/catalog/deregister",
            &json!({"Node": node, "CheckID": id}),
        )
        .await)?;
        remember(&format!("check:{id}"), None);
    }
    // Forget what was written for items that no longer exist here, so that re-adding one
    // is written even if the catalog still (stale) shows it.
    {
        let mut synced = agent
            .synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        let sent = self
            .output_sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        *self
            .output_due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = due;
    }

    /// Records what a successful sync wrote.
    fn output_written(
        &self,
        checks: &BTreeMap<String, (CheckSpec, HealthStatus, String)>,
        now: Instant,
    ) {
        let mut sent = self
            .output_sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        self.output_due
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|due| now >= due)
    }
}
