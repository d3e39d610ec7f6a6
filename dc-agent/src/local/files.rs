//! What outlives the process: API registrations persisted and restored, and the services
//! and checks of config files loaded and reloaded.

use super::*;

impl LocalAgent {
    /// Serializes API registrations and deregistrations with their files.
    pub fn registration_lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.registrations.lock()
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
        let from_config: Vec<String> = self.config_services.lock().keys().cloned().collect();
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
        let mut loaded = self.config_services.lock();
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
        let mut loaded = self.config_checks.lock();
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
