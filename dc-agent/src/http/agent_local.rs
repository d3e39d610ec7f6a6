//! The agent's own services and checks: `/v1/agent/service/*`, `/v1/agent/services`,
//! `/v1/agent/checks`, `/v1/agent/check/*`, `/v1/agent/maintenance`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use wire::api::{AgentCheckRegistration, AgentLocalService, AgentServiceRegistration, HealthCheck};
use wire::command::ServiceRegistration;
use wire::records::HealthStatus;

use super::acl::{mark_filtered, may_read, may_read_check, require, Token};
use super::kv::json;
use super::{params, Api, ApiError, Consistency};
use crate::local::{
    check_from_api, default_check_id, register_service_with_checks, service_from_api,
};
use crate::persist::Kind;

fn done() -> Response {
    ([("content-type", "application/json")], "").into_response()
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    wire::gojson::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))
}

/// Removes every member naming `field` as Go would match it (without case or underscores),
/// returning the last non-null one.
fn take_field(
    object: &mut serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Option<serde_json::Value> {
    let matching: Vec<String> = object
        .keys()
        .filter(|key| {
            let squashed: String = key.chars().filter(|c| *c != '_').collect();
            squashed.eq_ignore_ascii_case(field)
        })
        .cloned()
        .collect();
    matching
        .into_iter()
        .filter_map(|key| object.remove(&key))
        .filter(|value| !value.is_null())
        .last()
}

fn local_service(api: &Api, service: &ServiceRegistration) -> AgentLocalService {
    AgentLocalService {
        id: service.id.clone(),
        service: service.name.clone(),
        tags: service.tags.clone(),
        meta: service.meta.clone(),
        port: service.port,
        address: service.address.clone(),
        datacenter: api.agent.datacenter.clone(),
    }
}

/// `PUT /v1/agent/service/register`.
pub async fn register_service(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    let request: AgentServiceRegistration = decode(&body)?;
    let (service, checks) = service_from_api(request);
    let id = service.id.clone();
    let (service_body, check_bodies) = split_for_persistence(&body, &id, &checks)?;
    let local = api.local.clone();
    off_the_runtime(move || {
        let _registrations = local.registration_lock();
        register_service_with_checks(&local, service, &checks).map_err(ApiError::BadRequest)?;
        local
            .persist(Kind::Service, &id, &service_body)
            .map_err(ApiError::Internal)?;
        for (check_id, check_body) in check_bodies {
            local
                .persist(Kind::Check, &check_id, &check_body)
                .map_err(ApiError::Internal)?;
        }
        Ok(done())
    })
    .await
}

/// Runs `work` on tokio's blocking pool: registrations write and fsync files under the
/// agent's registration lock, which must not stall a runtime worker.
async fn off_the_runtime(
    work: impl FnOnce() -> Result<Response, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("registration task failed: {e}")))?
}

/// The service's body, and each check's (ID, body).
type KeptRegistration = (Vec<u8>, Vec<(String, Vec<u8>)>);

/// A service registration body as it is kept: the service without its checks, and each
/// check as a check registration of its own (with its ID and `ServiceID` filled in), so
/// that deregistering one of them later sticks across a restart, as in Consul.
fn split_for_persistence(
    body: &[u8],
    service_id: &str,
    checks: &[AgentCheckRegistration],
) -> Result<KeptRegistration, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("Request decode failed: not an object".to_owned()))?;
    let mut check_values: Vec<serde_json::Value> = Vec::new();
    if let Some(check) = take_field(object, "Check").filter(serde_json::Value::is_object) {
        check_values.push(check);
    }
    if let Some(serde_json::Value::Array(more)) = take_field(object, "Checks") {
        check_values.extend(more);
    }
    if check_values.len() != checks.len() {
        return Err(ApiError::Internal(
            "the service's checks could not be matched for persistence".to_owned(),
        ));
    }
    let mut check_bodies = Vec::new();
    for (n, (mut value, check)) in check_values.into_iter().zip(checks).enumerate() {
        let id = if check.id.is_empty() {
            default_check_id(service_id, n, checks.len())
        } else {
            check.id.clone()
        };
        if let Some(fields) = value.as_object_mut() {
            take_field(fields, "CheckID");
            take_field(fields, "ID");
            take_field(fields, "ServiceID");
            fields.insert("ID".to_owned(), id.clone().into());
            fields.insert("ServiceID".to_owned(), service_id.into());
        }
        check_bodies.push((id, value.to_string().into_bytes()));
    }
    Ok((value.to_string().into_bytes(), check_bodies))
}

/// `PUT /v1/agent/service/deregister/<id>`.
pub async fn deregister_service(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let local = api.local.clone();
    off_the_runtime(move || {
        let _registrations = local.registration_lock();
        if local.deregister_service(&id) {
            Ok(done())
        } else {
            Err(ApiError::NotFound(format!("Unknown service ID {id:?}")))
        }
    })
    .await
}

/// `GET /v1/agent/services`.
pub async fn services(
    State(api): State<Api>,
    uri: Uri,
    token: Token,
) -> Result<Response, ApiError> {
    let filter = super::filter_of(&uri, super::selectors::AGENT_SERVICES)?;
    let mut services: BTreeMap<String, AgentLocalService> = api
        .local
        .services()
        .iter()
        .map(|(id, service)| (id.clone(), local_service(&api, service)))
        .collect();
    let before = services.len();
    services.retain(|_, s| may_read(&token, acl::Resource::Service, &s.service));
    Ok(mark_filtered(
        json(
            &api,
            1,
            Consistency::Stale,
            &super::filtered(&services, &filter)?,
        ),
        services.len() != before,
    ))
}

/// `GET /v1/agent/service/<id>`.
pub async fn service(
    State(api): State<Api>,
    Path(id): Path<String>,
    token: Token,
) -> Result<Response, ApiError> {
    let services = api.local.services();
    let service = services
        .get(&id)
        .ok_or_else(|| ApiError::NotFound(format!("unknown service ID: {id}")))?;
    require(
        &token,
        acl::Resource::Service,
        &service.name,
        acl::Need::Read,
    )?;
    Ok(json(
        &api,
        1,
        Consistency::Stale,
        &local_service(&api, service),
    ))
}

/// `GET /v1/agent/checks` (`?filter`).
pub async fn checks(State(api): State<Api>, uri: Uri, token: Token) -> Result<Response, ApiError> {
    let filter = super::filter_of(&uri, super::selectors::AGENT_CHECKS)?;
    let mut checks = local_checks(&api);
    let before = checks.len();
    checks.retain(|_, c| may_read_check(&token, c));
    Ok(mark_filtered(
        json(
            &api,
            1,
            Consistency::Stale,
            &super::filtered(&checks, &filter)?,
        ),
        checks.len() != before,
    ))
}

/// Consul's aggregate of checks: maintenance, then critical, then warning, then passing.
fn aggregate(checks: &[&HealthCheck]) -> &'static str {
    let has = |status: &str| checks.iter().any(|c| c.status == status);
    if has("maintenance")
        || checks.iter().any(|c| {
            c.check_id.starts_with("_node_maintenance")
                || c.check_id.starts_with("_service_maintenance")
        })
    {
        "maintenance"
    } else if has("critical") {
        "critical"
    } else if has("warning") {
        "warning"
    } else {
        "passing"
    }
}

/// The HTTP status Consul's agent health endpoints answer for an aggregate.
fn health_code(status: &str) -> axum::http::StatusCode {
    match status {
        "passing" => axum::http::StatusCode::OK,
        "warning" => axum::http::StatusCode::TOO_MANY_REQUESTS,
        _ => axum::http::StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// One instance's entry of `/v1/agent/health/service/...`, and its aggregate.
fn health_entry(
    api: &Api,
    service: &ServiceRegistration,
    checks: &BTreeMap<String, HealthCheck>,
) -> (serde_json::Value, &'static str) {
    let own: Vec<&HealthCheck> = checks
        .values()
        .filter(|c| c.service_id.is_empty() || c.service_id == service.id)
        .collect();
    let status = aggregate(&own);
    (
        serde_json::json!({
            "AggregatedStatus": status,
            "Service": local_service(api, service),
            "Checks": own,
        }),
        status,
    )
}

fn health_response(
    api: &Api,
    text: bool,
    status: &'static str,
    body: serde_json::Value,
) -> Response {
    let code = health_code(status);
    if text {
        return (code, [("content-type", "text/plain")], status).into_response();
    }
    let mut response = json(api, 1, Consistency::Stale, &body);
    *response.status_mut() = code;
    response
}

/// `?format=text` of the agent health endpoints.
fn text_format(uri: &Uri) -> Result<bool, ApiError> {
    Ok(params(uri.query())?
        .get("format")
        .is_some_and(|f| f == "text"))
}

/// A 404 of the agent health endpoints: the message as text, else `body` as JSON (or the
/// message as Consul's error).
fn health_not_found(
    api: &Api,
    text: bool,
    message: String,
    body: Option<serde_json::Value>,
) -> Response {
    match (text, body) {
        (false, Some(body)) => {
            let mut response = json(api, 1, Consistency::Stale, &body);
            *response.status_mut() = axum::http::StatusCode::NOT_FOUND;
            response
        }
        (false, None) => ApiError::NotFound(message).into_response(),
        (true, _) => (axum::http::StatusCode::NOT_FOUND, message).into_response(),
    }
}

/// `GET /v1/agent/health/service/name/<name>[?format=text]`: the local instances of a
/// service with their checks; 200 passing, 429 warning, 503 critical or maintenance.
pub async fn health_by_name(
    State(api): State<Api>,
    Path(name): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let text = text_format(&uri)?;
    let checks = local_checks(&api);
    let services = api.local.services();
    let entries: Vec<(serde_json::Value, &'static str)> = services
        .values()
        .filter(|s| s.name.eq_ignore_ascii_case(&name))
        .map(|s| health_entry(&api, s, &checks))
        .collect();
    if entries.is_empty() {
        let message = format!("ServiceName {name} Not Found");
        return Ok(health_not_found(
            &api,
            text,
            message,
            Some(serde_json::json!([])),
        ));
    }
    let order = ["passing", "warning", "critical", "maintenance"];
    let worst = entries
        .iter()
        .map(|(_, s)| *s)
        .max_by_key(|s| order.iter().position(|o| o == s))
        .unwrap_or("passing");
    let body = serde_json::Value::Array(entries.into_iter().map(|(e, _)| e).collect());
    Ok(health_response(&api, text, worst, body))
}

/// `GET /v1/agent/health/service/id/<id>[?format=text]`: one local instance.
pub async fn health_by_id(
    State(api): State<Api>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let text = text_format(&uri)?;
    let checks = local_checks(&api);
    let services = api.local.services();
    let Some(service) = services.get(&id) else {
        let message = format!("ServiceId {id} not found");
        return Ok(health_not_found(&api, text, message, None));
    };
    let (body, status) = health_entry(&api, service, &checks);
    Ok(health_response(&api, text, status, body))
}

fn local_checks(api: &Api) -> BTreeMap<String, HealthCheck> {
    let (services, checks) = api.local.desired();
    let checks: BTreeMap<String, HealthCheck> = checks
        .into_iter()
        .map(|(id, (spec, status, output))| {
            let service = services.get(&spec.service_id);
            (
                id.clone(),
                HealthCheck {
                    node: api.agent.node_name.clone(),
                    check_id: id,
                    name: spec.name.clone(),
                    status: status.as_str().to_owned(),
                    notes: spec.notes.clone(),
                    output,
                    service_id: spec.service_id.clone(),
                    service_name: service.map(|s| s.name.clone()).unwrap_or_default(),
                    service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
                    check_type: spec.kind.to_owned(),
                    create_index: 0,
                    modify_index: 0,
                },
            )
        })
        .collect();
    checks
}

/// `PUT /v1/agent/check/register`.
pub async fn register_check(State(api): State<Api>, body: Bytes) -> Result<Response, ApiError> {
    let request: AgentCheckRegistration = decode(&body)?;
    let local = api.local.clone();
    off_the_runtime(move || {
        let _registrations = local.registration_lock();
        let spec = check_from_api(&local, &request).map_err(ApiError::BadRequest)?;
        let id = spec.id.clone();
        local.register_check(spec);
        local
            .persist(Kind::Check, &id, &body)
            .map_err(ApiError::Internal)?;
        Ok(done())
    })
    .await
}

/// `PUT /v1/agent/check/deregister/<id>`.
pub async fn deregister_check(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let local = api.local.clone();
    off_the_runtime(move || {
        let _registrations = local.registration_lock();
        if local.deregister_check(&id) {
            Ok(done())
        } else {
            Err(ApiError::NotFound(format!("Unknown check ID {id:?}")))
        }
    })
    .await
}

async fn ttl(api: Api, id: String, uri: Uri, status: HealthStatus) -> Result<Response, ApiError> {
    let note = params(uri.query())?
        .get("note")
        .cloned()
        .unwrap_or_default();
    api.local
        .update_ttl(&id, status, &note)
        .map_err(ApiError::NotFound)?;
    Ok(done())
}

/// `PUT /v1/agent/check/pass/<id>`.
pub async fn pass(
    State(api): State<Api>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    ttl(api, id, uri, HealthStatus::Passing).await
}

/// `PUT /v1/agent/check/warn/<id>`.
pub async fn warn(
    State(api): State<Api>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    ttl(api, id, uri, HealthStatus::Warning).await
}

/// `PUT /v1/agent/check/fail/<id>`.
pub async fn fail(
    State(api): State<Api>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    ttl(api, id, uri, HealthStatus::Critical).await
}

fn maintenance_switch(uri: &Uri) -> Result<(bool, String), ApiError> {
    let params = params(uri.query())?;
    // Go's strconv.ParseBool, as Consul reads `enable`.
    let enable = match params.get("enable").map(String::as_str) {
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => true,
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => false,
        _ => return Err(ApiError::BadRequest("Missing value for enable".to_owned())),
    };
    Ok((enable, params.get("reason").cloned().unwrap_or_default()))
}

/// `PUT /v1/agent/maintenance?enable=true&reason=...`.
pub async fn node_maintenance(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let (enable, reason) = maintenance_switch(&uri)?;
    api.local
        .set_maintenance("", enable, &reason)
        .map_err(ApiError::NotFound)?;
    Ok(done())
}

/// `PUT /v1/agent/service/maintenance/<id>?enable=true&reason=...`.
pub async fn service_maintenance(
    State(api): State<Api>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (enable, reason) = maintenance_switch(&uri)?;
    api.local
        .set_maintenance(&id, enable, &reason)
        .map_err(ApiError::NotFound)?;
    Ok(done())
}

/// `PUT /v1/agent/reload`: re-reads the config files and applies services and checks.
pub async fn reload(State(api): State<Api>) -> Result<Response, ApiError> {
    let reloader = api.reload.clone();
    let outcome = tokio::task::spawn_blocking(move || reloader())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    outcome.map_err(|e| ApiError::Internal(format!("Failed reloading the configuration: {e}")))?;
    Ok(done())
}

/// The body of `PUT /v1/agent/check/update/<id>` (the Go client's `UpdateTTL`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TtlUpdate {
    status: String,
    #[serde(default)]
    output: String,
}

/// `PUT /v1/agent/check/update/<id>` with `{"Status": "passing", "Output": "..."}`.
pub async fn update(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let update: TtlUpdate = decode(&body)?;
    let status: HealthStatus = update.status.parse().map_err(ApiError::BadRequest)?;
    api.local
        .update_ttl(&id, status, &update.output)
        .map_err(ApiError::NotFound)?;
    Ok(done())
}
