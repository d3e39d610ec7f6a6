//! The agent's own services and checks: registered through `/v1/agent/*` or config files,
//! checked here, and kept in the catalog by anti-entropy: after every change, and in a full
//! pass every minute that repairs drift (a restored server, a lost write), only differences
//! are written.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
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

mod files;
mod spec;
mod sync;

pub use spec::*;
pub use sync::{anti_entropy, CatalogSource};

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

    fn lock(&self) -> parking_lot::MutexGuard<'_, LocalState> {
        self.state.lock()
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
        let mut runners = self.runners.lock();
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
        let mut runners = self.runners.lock();
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
            crate::tasks::spawn(async move {
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
        let mut runners = self.runners.lock();
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
