//! What a check and a service are as the agent takes them: from config files and from
//! `/v1/agent/*` bodies, with Consul's defaults and IDs.

use super::*;

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
