//! The agent's own services and checks: registered through `/v1/agent/*` or config files,
//! checked here, and kept in the catalog by anti-entropy: after every change, and in a full
//! pass every minute that repairs drift (a restored server, a lost write), only differences
//! are written.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wire::api::{AgentCheckRegistration, AgentServiceRegistration};
use wire::command::ServiceRegistration;
use wire::records::HealthStatus;
use wire::GoDuration;

use crate::checks::run::{run, Probe};
use crate::checks::status::{CheckState, Thresholds};
use crate::persist::{Kind, Persisted};

/// Node maintenance check ID, as Consul names it.
pub const NODE_MAINTENANCE: &str = "_node_maintenance";

/// A check as the agent runs it.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// Check ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Notes.
    pub notes: String,
    /// The service it checks (empty: the node).
    pub service_id: String,
    /// What to probe (`None`: a TTL or maintenance check).
    pub probe: Option<Probe>,
    /// TTL of a TTL check.
    pub ttl: Option<Duration>,
    /// Run interval.
    pub interval: Duration,
    /// Per-run timeout.
    pub timeout: Duration,
    /// Thresholds.
    pub thresholds: Thresholds,
    /// Status before the first result.
    pub initial: HealthStatus,
    /// `http`, `tcp`, `script`, `ttl` or `maintenance`.
    pub kind: &'static str,
}

fn duration(field: &str, text: &str) -> Result<Option<Duration>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<GoDuration>()
        .map(|d| Some(d.0))
        .map_err(|e| format!("{field}: {e}"))
}

impl CheckSpec {
    /// Reads an API check registration; `service_id` is set for a service's own checks.
    pub fn from_api(
        registration: &AgentCheckRegistration,
        default_id: &str,
        service_id: &str,
        script_checks: bool,
    ) -> Result<CheckSpec, String> {
        let interval = duration("Interval", &registration.interval)?;
        let timeout = duration("Timeout", &registration.timeout)?;
        let ttl = duration("TTL", &registration.ttl)?;
        let kinds = [
            !registration.http.is_empty(),
            !registration.tcp.is_empty(),
            !registration.args.is_empty(),
            ttl.is_some(),
        ];
        let probe = match kinds {
            [true, false, false, false] => Some(Probe::Http {
                url: registration.http.clone(),
                method: registration.method.clone(),
                headers: registration.header.clone(),
                tls_skip_verify: registration.tls_skip_verify,
            }),
            [false, true, false, false] => Some(Probe::Tcp {
                address: registration.tcp.clone(),
            }),
            [false, false, true, false] => {
                if !script_checks {
                    return Err("Scripts are disabled on this agent; to enable, configure 'enable_script_checks' to true".to_owned());
                }
                Some(Probe::Script {
                    args: registration.args.clone(),
                })
            }
            [false, false, false, true] => None,
            _ => {
                return Err(
                    "Invalid check: exactly one of HTTP, TCP, Args or TTL must be set".to_owned(),
                )
            }
        };
        if probe.is_some() && interval.is_none() {
            return Err(
                "Invalid check: Interval is required for HTTP, TCP and script checks".to_owned(),
            );
        }
        let id = if !registration.id.is_empty() {
            registration.id.clone()
        } else if !registration.name.is_empty() && service_id.is_empty() {
            registration.name.clone()
        } else {
            default_id.to_owned()
        };
        let initial = if registration.status.is_empty() {
            HealthStatus::Critical
        } else {
            registration.status.parse().map_err(|e: String| e)?
        };
        let kind = match (&probe, ttl) {
            (Some(Probe::Http { .. }), _) => "http",
            (Some(Probe::Tcp { .. }), _) => "tcp",
            (Some(Probe::Script { .. }), _) => "script",
            (None, _) => "ttl",
        };
        Ok(CheckSpec {
            name: if registration.name.is_empty() {
                format!("Service '{service_id}' check")
            } else {
                registration.name.clone()
            },
            id,
            notes: registration.notes.clone(),
            service_id: service_id.to_owned(),
            probe,
            ttl,
            // As Consul: intervals under a second become a second, a zero timeout the default.
            interval: interval
                .unwrap_or(Duration::from_secs(10))
                .max(Duration::from_secs(1)),
            timeout: timeout
                .filter(|t| !t.is_zero())
                .unwrap_or(Duration::from_secs(10)),
            thresholds: Thresholds {
                success_before_passing: registration.success_before_passing,
                failures_before_critical: registration.failures_before_critical,
                deregister_critical_after: duration(
                    "DeregisterCriticalServiceAfter",
                    &registration.deregister_critical_service_after,
                )?,
            },
            initial,
            kind,
        })
    }
}

/// A running check.
#[derive(Debug)]
pub struct LocalCheck {
    /// What it is.
    pub spec: CheckSpec,
    /// Its status.
    pub state: CheckState,
}

#[derive(Debug, Default)]
struct LocalState {
    services: BTreeMap<String, ServiceRegistration>,
    checks: BTreeMap<String, LocalCheck>,
}

/// The agent's services and checks.
pub struct LocalAgent {
    /// Node name.
    pub node: String,
    /// The node's ID (a UUID).
    pub node_id: String,
    /// Node address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Whether script checks may run.
    pub script_checks: bool,
    state: Mutex<LocalState>,
    runners: Mutex<HashMap<String, CancellationToken>>,
    changed: Notify,
    cancel: CancellationToken,
    /// What anti-entropy last wrote successfully, per item (JSON bodies).
    synced: Mutex<BTreeMap<String, String>>,
    /// The services that came from config files, as loaded (for `reload`).
    config_services: Mutex<BTreeMap<String, (ServiceRegistration, Vec<AgentCheckRegistration>)>>,
    /// The top-level checks that came from config files, as loaded (for `reload`).
    config_checks: Mutex<BTreeMap<String, AgentCheckRegistration>>,
    /// Where API registrations are kept across restarts (none: not kept).
    persist: Option<Persisted>,
    /// Output-only check changes wait this long before they are written (Consul's
    /// `check_update_interval`); zero writes every change.
    check_update_interval: Duration,
    /// Per check: the status and output last written, and when that output was written.
    output_sent: Mutex<HashMap<String, (HealthStatus, String, Instant)>>,
    /// When the earliest held-back output becomes due.
    output_due: Mutex<Option<Instant>>,
    /// Held by API (de)registrations, so a registration and its file change together.
    registrations: Mutex<()>,
}

/// What the catalog should hold for this node: (services, checks).
pub type Desired = (
    BTreeMap<String, ServiceRegistration>,
    BTreeMap<String, (CheckSpec, HealthStatus, String)>,
);

/// What a [`LocalAgent`] is built from.
#[derive(Debug)]
pub struct LocalSettings {
    /// Node name.
    pub node: String,
    /// The node's ID (a UUID), registered with the node.
    pub node_id: String,
    /// Node address.
    pub address: String,
    /// Datacenter.
    pub datacenter: String,
    /// Node metadata.
    pub node_meta: BTreeMap<String, String>,
    /// Whether script checks may run.
    pub script_checks: bool,
    /// Where API registrations are kept across restarts.
    pub persist: Option<Persisted>,
    /// Consul's `check_update_interval`.
    pub check_update_interval: Duration,
}

impl LocalAgent {
    /// An empty agent state; check runners stop with `cancel`.
    pub fn new(settings: LocalSettings, cancel: CancellationToken) -> Arc<LocalAgent> {
        let LocalSettings {
            node,
            node_id,
            address,
            datacenter,
            node_meta,
            script_checks,
            persist,
            check_update_interval,
        } = settings;
        Arc::new(LocalAgent {
            node,
            node_id,
            address,
            datacenter,
            node_meta,
            script_checks,
            state: Mutex::new(LocalState::default()),
            runners: Mutex::new(HashMap::new()),
            changed: Notify::new(),
            cancel,
            config_services: Mutex::new(BTreeMap::new()),
            config_checks: Mutex::new(BTreeMap::new()),
            synced: Mutex::new(BTreeMap::new()),
            persist,
            check_update_interval,
            output_sent: Mutex::new(HashMap::new()),
            output_due: Mutex::new(None),
            registrations: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Something changed: wake anti-entropy.
    pub fn mark_changed(&self) {
        self.changed.notify_one();
    }

    /// Waits for a change.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Adds or replaces a service and its checks.
    pub fn register_service(
        self: &Arc<Self>,
        service: ServiceRegistration,
        checks: Vec<CheckSpec>,
    ) {
        let id = service.id.clone();
        {
            let mut state = self.lock();
            state.services.insert(id.clone(), service);
        }
        for check in checks {
            self.register_check(check);
        }
        self.mark_changed();
    }

    /// Removes a service and its checks; false when it was not registered.
    pub fn deregister_service(&self, id: &str) -> bool {
        let mut runners = self
            .runners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (existed, checks) = {
            let mut state = self.lock();
            let existed = state.services.remove(id).is_some();
            let checks: Vec<String> = state
                .checks
                .values()
                .filter(|c| c.spec.service_id == id)
                .map(|c| c.spec.id.clone())
                .collect();
            for check in &checks {
                state.checks.remove(check);
            }
            (existed, checks)
        };
        for check in checks {
            if let Some(token) = runners.remove(&check) {
                token.cancel();
            }
            if let Some(persist) = &self.persist {
                persist.remove(Kind::Check, &check);
                persist.remove(Kind::CheckState, &check);
                persist.remove(Kind::Maintenance, &check);
            }
        }
        drop(runners);
        if let Some(persist) = &self.persist {
            persist.remove(Kind::Service, id);
        }
        self.mark_changed();
        existed
    }

    /// Adds or replaces a check and starts running it.
    pub fn register_check(self: &Arc<Self>, spec: CheckSpec) {
        let now = Instant::now();
        let id = spec.id.clone();
        let mut state = CheckState::new(now, spec.initial);
        if let Some(ttl) = spec.ttl {
            state.start_ttl(now, ttl);
            // A status set before a restart holds until its TTL would have run out.
            if let Some(kept) = self.kept_ttl_state(&id) {
                let left = Duration::from_millis(kept.expires_ms.saturating_sub(crate::unix_ms()));
                if !left.is_zero() {
                    state.restore_ttl(now, now + left.min(ttl), kept.status, &kept.output);
                }
            }
        }
        let probe = spec
            .probe
            .clone()
            .map(|probe| (probe, spec.interval, spec.timeout));
        // The check table and its runner change together, under the runners lock (always
        // taken before the state lock), so concurrent registrations never leave two runners
        // feeding one check or a runner with no check.
        let mut runners = self
            .runners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.lock()
            .checks
            .insert(id.clone(), LocalCheck { spec, state });
        if let Some(old) = runners.remove(&id) {
            old.cancel();
        }
        if let Some((probe, interval, timeout)) = probe {
            let token = self.cancel.child_token();
            runners.insert(id.clone(), token.clone());
            let agent = Arc::clone(self);
            tokio::spawn(async move {
                loop {
                    let result = tokio::select! {
                        biased;
                        _ = token.cancelled() => return,
                        result = run(&probe, timeout) => result,
                    };
                    agent.record(&id, result);
                    tokio::select! {
                        biased;
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(interval) => {}
                    }
                }
            });
        }
        drop(runners);
        self.mark_changed();
    }

    fn record(&self, id: &str, result: crate::checks::status::RunResult) {
        let changed = {
            let mut state = self.lock();
            match state.checks.get_mut(id) {
                Some(check) => {
                    let thresholds = check.spec.thresholds;
                    check
                        .state
                        .record(Instant::now(), result, &thresholds)
                        .is_some()
                }
                None => false,
            }
        };
        if changed {
            self.mark_changed();
        }
    }

    /// Removes a check; false when it was not registered.
    pub fn deregister_check(&self, id: &str) -> bool {
        let mut runners = self
            .runners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let existed = self.lock().checks.remove(id).is_some();
        if let Some(token) = runners.remove(id) {
            token.cancel();
        }
        drop(runners);
        if let Some(persist) = &self.persist {
            persist.remove(Kind::Check, id);
            persist.remove(Kind::CheckState, id);
            persist.remove(Kind::Maintenance, id);
        }
        self.mark_changed();
        existed
    }

    /// A TTL check's status kept in the data directory, if any.
    fn kept_ttl_state(&self, id: &str) -> Option<crate::persist::CheckStateRecord> {
        let body = self.persist.as_ref()?.read(Kind::CheckState, id)?;
        serde_json::from_slice::<crate::persist::CheckStateRecord>(&body)
            .ok()
            .filter(|kept| kept.check_id == id)
    }

    /// `/v1/agent/check/pass|warn|fail/<id>`: updates a TTL check, and keeps its status in
    /// the data directory until the TTL runs out (as Consul's `checks/state/`).
    pub fn update_ttl(&self, id: &str, status: HealthStatus, note: &str) -> Result<(), String> {
        let (changed, ttl) = {
            let mut state = self.lock();
            let check = state
                .checks
                .get_mut(id)
                .ok_or_else(|| format!("Unknown check ID {id:?}"))?;
            let Some(ttl) = check.spec.ttl else {
                return Err(format!("Check {id:?} is not a TTL check"));
            };
            let changed = check
                .state
                .update_ttl(Instant::now(), ttl, status, note)
                .is_some();
            (changed, ttl)
        };
        if let Some(persist) = &self.persist {
            let record = crate::persist::CheckStateRecord {
                check_id: id.to_owned(),
                status,
                output: crate::checks::status::bound_output(note),
                expires_ms: crate::unix_ms()
                    .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            };
            let saved = serde_json::to_vec(&record)
                .map_err(|e| e.to_string())
                .and_then(|body| {
                    persist
                        .save(Kind::CheckState, id, &body)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = saved {
                tracing::warn!(check = %id, error = %e, "could not keep a TTL check's status for a restart");
            }
        }
        if changed {
            self.mark_changed();
        }
        Ok(())
    }

    /// Turns maintenance on or off for the node (`service_id` empty) or one service.
    pub fn set_maintenance(
        self: &Arc<Self>,
        service_id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), String> {
        let id = if service_id.is_empty() {
            NODE_MAINTENANCE.to_owned()
        } else {
            format!("_service_maintenance:{service_id}")
        };
        if !service_id.is_empty() && !self.lock().services.contains_key(service_id) {
            return Err(format!("No service registered with ID {service_id:?}"));
        }
        if !enable {
            self.deregister_check(&id);
            return Ok(());
        }
        if let Some(persist) = &self.persist {
            let record = crate::persist::MaintenanceRecord {
                service_id: service_id.to_owned(),
                reason: reason.to_owned(),
            };
            let saved = serde_json::to_vec(&record)
                .map_err(|e| e.to_string())
                .and_then(|body| {
                    persist
                        .save(Kind::Maintenance, &id, &body)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = saved {
                return Err(format!("failed to persist maintenance mode: {e}"));
            }
        }
        let default_reason = if service_id.is_empty() {
            "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
        } else {
            "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
        };
        self.register_check(CheckSpec {
            id,
            name: if service_id.is_empty() {
                "Node Maintenance Mode".to_owned()
            } else {
                "Service Maintenance Mode".to_owned()
            },
            notes: if reason.is_empty() {
                default_reason.to_owned()
            } else {
                reason.to_owned()
            },
            service_id: service_id.to_owned(),
            probe: None,
            ttl: None,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            thresholds: Thresholds::default(),
            initial: HealthStatus::Critical,
            kind: "maintenance",
        });
        Ok(())
    }

    /// Expires TTL checks and reaps services critical for too long; call every second.
    pub fn tick(&self, now: Instant) {
        let (changed, doomed) = {
            let mut state = self.lock();
            let mut changed = false;
            let mut doomed = Vec::new();
            for check in state.checks.values_mut() {
                changed |= check.state.expire_ttl(now).is_some();
                if !check.spec.service_id.is_empty()
                    && check.state.should_deregister(now, &check.spec.thresholds)
                {
                    doomed.push(check.spec.service_id.clone());
                }
            }
            (changed, doomed)
        };
        for service in doomed {
            tracing::info!(service = %service, "deregistering a service critical for longer than deregister_critical_service_after");
            self.deregister_service(&service);
        }
        if changed {
            self.mark_changed();
        }
    }

    /// The services, by ID.
    pub fn services(&self) -> BTreeMap<String, ServiceRegistration> {
        self.lock().services.clone()
    }

    /// What the catalog should hold for this node.
    pub fn desired(&self) -> Desired {
        let state = self.lock();
        let checks = state
            .checks
            .values()
            .map(|c| {
                (
                    c.spec.id.clone(),
                    (
                        c.spec.clone(),
                        c.state.status(),
                        c.state.output().to_owned(),
                    ),
                )
            })
            .collect();
        (state.services.clone(), checks)
    }
}

/// Converts a config-file check (`wire::agent_config`) into the API's shape.
pub fn check_from_config(check: &wire::agent_config::CheckDefinition) -> AgentCheckRegistration {
    let text = |d: Option<GoDuration>| d.map(|d| d.to_string()).unwrap_or_default();
    AgentCheckRegistration {
        id: check.id.clone().unwrap_or_default(),
        name: check.name.clone().unwrap_or_default(),
        notes: check.notes.clone().unwrap_or_default(),
        service_id: check.service_id.clone().unwrap_or_default(),
        status: check.status.clone().unwrap_or_default(),
        http: check.http.clone().unwrap_or_default(),
        method: check.method.clone().unwrap_or_default(),
        header: check.header.clone(),
        tls_skip_verify: check.tls_skip_verify.unwrap_or(false),
        tcp: check.tcp.clone().unwrap_or_default(),
        args: check.args.clone(),
        ttl: text(check.ttl),
        interval: text(check.interval),
        timeout: text(check.timeout),
        deregister_critical_service_after: text(check.deregister_critical_service_after),
        success_before_passing: check.success_before_passing.unwrap_or(0),
        failures_before_critical: check.failures_before_critical.unwrap_or(0),
    }
}

/// The check IDs Consul gives a service's checks when they have none: `service:<id>`, or
/// `service:<id>:<n>` (from 1) when there are several.
pub fn default_check_id(service_id: &str, index: usize, count: usize) -> String {
    if count == 1 {
        format!("service:{service_id}")
    } else {
        format!("service:{service_id}:{}", index + 1)
    }
}

/// Reads an API service registration: the service and its checks.
pub fn service_from_api(
    request: AgentServiceRegistration,
) -> (ServiceRegistration, Vec<AgentCheckRegistration>) {
    let id = if request.id.is_empty() {
        request.name.clone()
    } else {
        request.id.clone()
    };
    let service = ServiceRegistration {
        id,
        name: request.name,
        tags: request.tags,
        address: request.address,
        port: request.port,
        meta: request.meta,
    };
    (
        service,
        request.check.into_iter().chain(request.checks).collect(),
    )
}

/// Reads an API check registration (`/v1/agent/check/register`); errors are for a 400.
pub fn check_from_api(
    agent: &LocalAgent,
    request: &AgentCheckRegistration,
) -> Result<CheckSpec, String> {
    if request.id.is_empty() && request.name.is_empty() {
        return Err("Missing check name".to_owned());
    }
    if !request.service_id.is_empty() && !agent.services().contains_key(&request.service_id) {
        return Err(format!("ServiceID {:?} does not exist", request.service_id));
    }
    CheckSpec::from_api(
        request,
        &request.name,
        &request.service_id,
        agent.script_checks,
    )
}

/// Registers a service and its checks from API or config input; errors are for a 400.
pub fn register_service_with_checks(
    agent: &Arc<LocalAgent>,
    service: ServiceRegistration,
    checks: &[AgentCheckRegistration],
) -> Result<(), String> {
    if service.name.is_empty() {
        return Err("Missing service name".to_owned());
    }
    let specs = checks
        .iter()
        .enumerate()
        .map(|(n, check)| {
            CheckSpec::from_api(
                check,
                &default_check_id(&service.id, n, checks.len()),
                &service.id,
                agent.script_checks,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    agent.register_service(service, specs);
    Ok(())
}

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

impl LocalAgent {
    /// Serializes API registrations and deregistrations with their files.
    pub fn registration_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.registrations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps an API registration (its JSON body) for the next start. A failure is answered
    /// with a 500: the registration holds until the agent restarts.
    pub fn persist(&self, kind: Kind, id: &str, body: &[u8]) -> Result<(), String> {
        match &self.persist {
            Some(persist) => persist
                .save(kind, id, body)
                .map_err(|e| format!("failed to persist the registration of {id:?}: {e}")),
            None => Ok(()),
        }
    }

    /// Registers again what the API registered before a restart: services, then checks.
    /// A service defined in the config files wins over a persisted one with its ID.
    /// Unreadable or invalid files are reported and left in place. Returns the counts.
    pub fn restore(self: &Arc<Self>) -> (usize, usize) {
        let Some(persist) = self.persist.clone() else {
            return (0, 0);
        };
        let from_config: Vec<String> = self
            .config_services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        let mut services = 0;
        for (file, body) in persist.load(Kind::Service) {
            let outcome = wire::gojson::from_slice::<AgentServiceRegistration>(&body)
                .map_err(|e| e.to_string())
                .map(service_from_api)
                .and_then(|(service, checks)| {
                    if from_config.contains(&service.id) {
                        return Ok(false);
                    }
                    register_service_with_checks(self, service, &checks).map(|()| true)
                });
            match outcome {
                Ok(restored) => services += usize::from(restored),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "skipping a persisted service")
                }
            }
        }
        let mut checks = 0;
        for (file, body) in persist.load(Kind::Check) {
            let outcome = wire::gojson::from_slice::<AgentCheckRegistration>(&body)
                .map_err(|e| e.to_string())
                .and_then(|request| check_from_api(self, &request));
            match outcome {
                Ok(spec) => {
                    self.register_check(spec);
                    checks += 1;
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "skipping a persisted check")
                }
            }
        }
        // Maintenance mode, once the services it may name are back.
        for (file, body) in persist.load(Kind::Maintenance) {
            let outcome = serde_json::from_slice::<crate::persist::MaintenanceRecord>(&body)
                .map_err(|e| e.to_string())
                .and_then(|record| self.set_maintenance(&record.service_id, true, &record.reason));
            match outcome {
                Ok(()) => checks += 1,
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "skipping a persisted maintenance mode");
                    let _ = std::fs::remove_file(&file);
                }
            }
        }
        (services, checks)
    }

    /// Applies the services of a (re)loaded configuration: registers new and changed ones,
    /// removes the config services that are gone, and leaves unchanged ones running (their
    /// checks keep their state) and API-registered ones alone. Nothing changes on error.
    pub fn load_config_services(
        self: &Arc<Self>,
        definitions: &[wire::agent_config::ServiceDefinition],
    ) -> Result<usize, String> {
        let mut wanted: BTreeMap<String, (ServiceRegistration, Vec<AgentCheckRegistration>)> =
            BTreeMap::new();
        for definition in definitions {
            let service = ServiceRegistration {
                id: definition
                    .id
                    .clone()
                    .unwrap_or_else(|| definition.name.clone()),
                name: definition.name.clone(),
                tags: definition.tags.clone(),
                address: definition.address.clone().unwrap_or_default(),
                port: definition.port.unwrap_or(0),
                meta: definition.meta.clone(),
            };
            let checks: Vec<AgentCheckRegistration> = definition
                .check
                .iter()
                .chain(definition.checks.iter())
                .map(check_from_config)
                .collect();
            // Validate everything before changing anything.
            for (n, check) in checks.iter().enumerate() {
                CheckSpec::from_api(
                    check,
                    &default_check_id(&service.id, n, checks.len()),
                    &service.id,
                    self.script_checks,
                )
                .map_err(|e| format!("service {:?}: {e}", service.name))?;
            }
            if service.name.is_empty() {
                return Err("a service without a name".to_owned());
            }
            wanted.insert(service.id.clone(), (service, checks));
        }
        let mut loaded = self
            .config_services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let wanted = wanted
            .into_iter()
            .map(|(id, loaded)| (id, (loaded.clone(), loaded)))
            .collect();
        apply_config_set(
            &mut loaded,
            wanted,
            |id| {
                self.deregister_service(id);
            },
            |id, (service, checks)| {
                self.deregister_service(id);
                register_service_with_checks(self, service, &checks)
            },
        )
    }

    /// Applies the top-level checks of a (re)loaded configuration (`check`, `checks`: of the
    /// node, or of a service with `service_id`), as [`Self::load_config_services`] does for
    /// services. Call it after the services are loaded. Nothing changes on error.
    pub fn load_config_checks(
        self: &Arc<Self>,
        definitions: &[wire::agent_config::CheckDefinition],
    ) -> Result<usize, String> {
        let mut wanted: BTreeMap<String, (AgentCheckRegistration, CheckSpec)> = BTreeMap::new();
        for definition in definitions {
            let registration = check_from_config(definition);
            let spec = check_from_api(self, &registration).map_err(|e| {
                format!(
                    "check {:?}: {e}",
                    if registration.name.is_empty() {
                        &registration.id
                    } else {
                        &registration.name
                    }
                )
            })?;
            wanted.insert(spec.id.clone(), (registration, spec));
        }
        let mut loaded = self
            .config_checks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        apply_config_set(
            &mut loaded,
            wanted,
            |id| {
                self.deregister_check(id);
            },
            |_, spec| {
                self.register_check(spec);
                Ok(())
            },
        )
    }
}

/// Brings what the config files registered (`loaded`, by ID) to what they hold now
/// (`wanted`: the value compared, and what registering takes): removes what is gone,
/// registers what is new or changed, leaves the rest running. Returns how many changed.
fn apply_config_set<V: PartialEq, A>(
    loaded: &mut BTreeMap<String, V>,
    wanted: BTreeMap<String, (V, A)>,
    mut remove: impl FnMut(&str),
    mut register: impl FnMut(&str, A) -> Result<(), String>,
) -> Result<usize, String> {
    let gone: Vec<String> = loaded
        .keys()
        .filter(|id| !wanted.contains_key(*id))
        .cloned()
        .collect();
    let mut changes = gone.len();
    for id in gone {
        remove(&id);
        loaded.remove(&id);
    }
    for (id, (value, input)) in wanted {
        if loaded.get(&id) == Some(&value) {
            continue;
        }
        register(&id, input)?;
        loaded.insert(id, value);
        changes += 1;
    }
    Ok(changes)
}
