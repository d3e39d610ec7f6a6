//! Builds one agent configuration from Consul's sources, in Consul's order: config files and
//! directories (JSON, lexical order within a directory), then command-line flags. Objects
//! merge key by key; `retry_join` and `services` accumulate.
//!
//! Known Consul options Isthmus does not implement yet are removed with a warning that names
//! them; anything else unknown is an error naming the key and the file.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use wire::agent_config::AgentConfig;
use wire::config_file::ConfigError;

/// Consul agent-config keys accepted and ignored, with a warning.
pub const UNSUPPORTED_KEYS: &[&str] = &[
    "acl",
    "addresses",
    "advertise_addr_wan",
    "audit",
    "auto_config",
    "auto_encrypt",
    "autopilot",
    "client_addr_wan",
    "config_entries",
    "connect",
    "disable_anonymous_signature",
    "disable_host_node_id",
    "disable_keyring_file",
    "disable_remote_exec",
    "disable_update_check",
    "enable_central_service_config",
    "enable_debug",
    "enable_local_script_checks",
    "enable_syslog",
    "encrypt_verify_incoming",
    "encrypt_verify_outgoing",
    "leave_on_terminate",
    "license_path",
    "limits",
    "log_file",
    "log_json",
    "log_rotate_bytes",
    "log_rotate_duration",
    "performance",
    "pid_file",
    "raft_protocol",
    "reconnect_timeout",
    "rejoin_after_leave",
    "retry_interval",
    "retry_join_wan",
    "retry_max",
    "segment",
    "skip_leave_on_interrupt",
    "start_join",
    "syslog_facility",
    "telemetry",
    "translate_wan_addrs",
    "ui",
    "ui_config",
    "ui_dir",
    "unix_sockets",
    "watches",
];

/// Keys of `dns_config` Isthmus does not honour yet: warned about and dropped.
const UNSUPPORTED_DNS_KEYS: &[&str] = &[
    "cache_max_age",
    "disable_compression",
    "enable_additional_node_meta_txt",
    "enable_truncate",
    "prefer_namespace",
    "recursor_strategy",
    "soa",
    "udp_answer_limit",
    "use_cache",
];

/// A merged configuration and the warnings met on the way.
#[derive(Debug, Default)]
pub struct Assembled {
    /// The configuration.
    pub config: AgentConfig,
    /// One line per ignored option, naming it and where it came from.
    pub warnings: Vec<String>,
}

/// Path fields of a file (JSON pointers), resolved against the file's directory.
const PATH_FIELDS: &[&str] = &[
    "/data_dir",
    "/tls/defaults/ca_file",
    "/tls/defaults/cert_file",
    "/tls/defaults/key_file",
];

fn resolve_paths(value: &mut Value, base: &Path) {
    for pointer in PATH_FIELDS {
        if let Some(Value::String(path)) = value.pointer_mut(pointer) {
            if Path::new(path.as_str()).is_relative() {
                *path = base.join(path.as_str()).display().to_string();
            }
        }
    }
}

/// Merges `overlay` into `base`: objects key by key, accumulating lists, otherwise replacing.
pub fn merge(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(more)) => merge(existing, more),
            (Some(Value::Array(existing)), Value::Array(more))
                if key == "retry_join" || key == "services" || key == "recursors" =>
            {
                existing.extend(more)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Reads one JSON config file into an object, paths resolved, `service` folded into `services`.
pub fn read_file(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let shown = path.display().to_string();
    if path.extension().is_some_and(|e| e == "hcl") {
        return Err(ConfigError::Invalid {
            path: shown,
            problems: vec![
                "HCL config files are not supported; write the same settings as JSON".to_owned(),
            ],
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut value: Value = serde_json::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: shown.clone(),
        line: e.line(),
        column: e.column(),
        message: e
            .to_string()
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned(),
    })?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    resolve_paths(&mut value, &base);
    let Value::Object(mut object) = value else {
        return Err(ConfigError::Invalid {
            path: shown,
            problems: vec!["the file must hold a JSON object".to_owned()],
        });
    };
    if let Some(service) = object.remove("service") {
        let services = object
            .entry("services")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = services {
            list.insert(0, service);
        }
    }
    Ok(object)
}

/// The JSON files of a config directory, in lexical order.
pub fn dir_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
        path: shown,
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json" || e == "hcl"))
        .collect();
    files.sort();
    Ok(files)
}

/// Turns merged JSON into the typed configuration, warning about and dropping the Consul
/// options Isthmus ignores. `origin` names where the settings came from, for messages.
pub fn finish(mut merged: Map<String, Value>, origin: &str) -> Result<Assembled, ConfigError> {
    let mut warnings = Vec::new();
    for key in UNSUPPORTED_KEYS {
        if merged.remove(*key).is_some() {
            warnings.push(format!("the Consul option `{key}` (in {origin}) is not supported by Isthmus yet and is ignored"));
        }
    }
    if let Some(Value::Object(dns)) = merged.get_mut("dns_config") {
        for key in UNSUPPORTED_DNS_KEYS {
            if dns.remove(*key).is_some() {
                warnings.push(format!("the Consul option `dns_config.{key}` (in {origin}) is not supported by Isthmus yet and is ignored"));
            }
        }
    }
    let config: AgentConfig =
        serde_json::from_value(Value::Object(merged)).map_err(|e| ConfigError::Invalid {
            path: origin.to_owned(),
            problems: vec![e.to_string()],
        })?;
    Ok(Assembled { config, warnings })
}
