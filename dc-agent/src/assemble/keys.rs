//! Consul's agent configuration keys, and what Isthmus does with each.
//!
//! [`CONSUL_KEYS`] is every key of Consul's agent configuration reference (1.2x, Community
//! Edition and Enterprise), dotted: `ports.grpc`, `tls.defaults.ca_file`. A list of objects
//! (`services`, `checks`, `watches`) is walked as one object, so `services.port` is the key of
//! each service. `node_meta.*` means the block's own keys are free-form. [`APPLIED`] are the
//! keys Isthmus honours; [`SATISFIED`] are the ones that ask for what Isthmus does anyway
//! (`disable_update_check`: it never checks), dropped without a word. Every other Consul key
//! is dropped with one warning that names it: a valid Consul config never stops the agent.
//! A key in neither table is a typo, refused with the nearest key.

use serde_json::{Map, Value};

use super::Format;

/// A key this source cannot have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key as written, dotted.
    pub key: String,
    /// What is wrong, and the nearest valid key.
    pub message: String,
}

/// The keys Isthmus applies. Whatever a block applies is listed key by key.
pub const APPLIED: &[&str] = &[
    "acl.default_policy",
    "acl.down_policy",
    "acl.enable_token_persistence",
    "acl.enable_token_replication",
    "acl.enabled",
    "acl.policy_ttl",
    "acl.role_ttl",
    "acl.token_ttl",
    "acl.tokens.agent",
    "acl.tokens.agent_recovery",
    "acl.tokens.default",
    "acl.tokens.initial_management",
    "acl.tokens.replication",
    "advertise_addr",
    "bind_addr",
    "bootstrap",
    "bootstrap_expect",
    "check_update_interval",
    "checks.args",
    "checks.deregister_critical_service_after",
    "checks.failures_before_critical",
    "checks.header.*",
    "checks.http",
    "checks.id",
    "checks.interval",
    "checks.method",
    "checks.name",
    "checks.notes",
    "checks.script",
    "checks.service_id",
    "checks.status",
    "checks.success_before_passing",
    "checks.tcp",
    "checks.timeout",
    "checks.tls_skip_verify",
    "checks.ttl",
    "client_addr",
    "data_dir",
    "datacenter",
    "dns_config.a_record_limit",
    "dns_config.allow_stale",
    "dns_config.max_stale",
    "dns_config.node_ttl",
    "dns_config.only_passing",
    "dns_config.recursor_timeout",
    "dns_config.service_ttl.*",
    "domain",
    "disable_remote_exec",
    "enable_script_checks",
    "encrypt",
    "encrypt_verify_incoming",
    "encrypt_verify_outgoing",
    "isthmus.config_version",
    "isthmus.gateways",
    "isthmus.http_header_read_timeout",
    "isthmus.tombstone_ttl",
    "leave_on_terminate",
    "limits.http_max_conns_per_client",
    "log_level",
    "node_meta.*",
    "node_name",
    "pid_file",
    "ports.dns",
    "ports.http",
    "ports.https",
    "ports.serf_lan",
    "ports.server",
    "primary_datacenter",
    "raft_snapshot_threshold",
    "recursors",
    "retry_join",
    "server",
    "services.address",
    "services.check.args",
    "services.check.deregister_critical_service_after",
    "services.check.failures_before_critical",
    "services.check.header.*",
    "services.check.http",
    "services.check.id",
    "services.check.interval",
    "services.check.method",
    "services.check.name",
    "services.check.notes",
    "services.check.script",
    "services.check.status",
    "services.check.success_before_passing",
    "services.check.tcp",
    "services.check.timeout",
    "services.check.tls_skip_verify",
    "services.check.ttl",
    "services.checks.args",
    "services.checks.deregister_critical_service_after",
    "services.checks.failures_before_critical",
    "services.checks.header.*",
    "services.checks.http",
    "services.checks.id",
    "services.checks.interval",
    "services.checks.method",
    "services.checks.name",
    "services.checks.notes",
    "services.checks.script",
    "services.checks.status",
    "services.checks.success_before_passing",
    "services.checks.tcp",
    "services.checks.timeout",
    "services.checks.tls_skip_verify",
    "services.checks.ttl",
    "services.id",
    "services.meta.*",
    "services.name",
    "services.port",
    "services.tags",
    "skip_leave_on_interrupt",
    "tls.https.ca_file",
    "tls.https.cert_file",
    "tls.https.key_file",
    "tls.https.verify_incoming",
    "tls.defaults.ca_file",
    "tls.defaults.cert_file",
    "tls.defaults.key_file",
    "tls.defaults.verify_incoming",
    "tls.defaults.verify_outgoing",
    "tls.internal_rpc.verify_server_hostname",
    "watches",
    "watches.*",
    "ui_config.enabled",
];

/// Keys that ask for what Isthmus does anyway: dropped without a warning.
pub const SATISFIED: &[&str] = &[
    // Isthmus never calls home.
    "disable_anonymous_signature",
    "disable_update_check",
    // The checks' IDs in `check.*` are always kept apart from the service's (Consul's
    // default); the keyring file is always written.
];

/// Every key of Consul's agent configuration.
pub const CONSUL_KEYS: &[&str] = &include!("consul_keys.in");

fn children(path: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for entry in APPLIED.iter().chain(SATISFIED).chain(CONSUL_KEYS) {
        let rest = if path.is_empty() {
            Some(*entry)
        } else {
            entry
                .strip_prefix(path)
                .and_then(|rest| rest.strip_prefix('.'))
        };
        if let Some(child) = rest.and_then(|rest| rest.split('.').next()) {
            if child != "*" && !out.contains(&child) {
                out.push(child);
            }
        }
    }
    out
}

fn listed(table: &[&str], path: &str) -> bool {
    table.contains(&path)
}

/// Whether `path` holds free-form keys (`node_meta`, a service's `meta`).
fn free_form(path: &str) -> bool {
    let pattern = format!("{path}.*");
    APPLIED
        .iter()
        .chain(CONSUL_KEYS)
        .any(|entry| *entry == pattern)
}

/// Whether `path`, or a block holding it, is applied.
fn applied(path: &str) -> bool {
    listed(APPLIED, path)
        || free_form(path) && listed(APPLIED, &format!("{path}.*"))
        || APPLIED
            .iter()
            .any(|entry| entry.starts_with(path) && entry[path.len()..].starts_with('.'))
}

fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The known key `key` names: as written, else without case, `_` and `-` (`NodeName`,
/// `node-name`), as Consul's decoder matches them.
fn canonical(key: &str, candidates: &[&'static str]) -> Option<&'static str> {
    if let Some(exact) = candidates.iter().find(|c| **c == key) {
        return Some(exact);
    }
    let squashed = squash(key);
    candidates.iter().find(|c| squash(c) == squashed).copied()
}

/// Levenshtein distance, for suggesting the key (or flag) meant.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// The known key nearest to a misspelt one, when one is near enough to be meant.
fn nearest(key: &str, candidates: &[&'static str]) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&key, c), *c))
        .filter(|(distance, c)| *distance <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

struct Walk<'a> {
    origin: &'a str,
    warnings: &'a mut Vec<String>,
    problems: Vec<Problem>,
}

impl Walk<'_> {
    /// Checks one object at `path`: keys renamed to their canonical spelling, unsupported
    /// ones dropped with a warning, unknown ones reported. `report_only` walks a dropped
    /// block for typos without warning again.
    fn object(&mut self, object: &mut Map<String, Value>, path: &str, report_only: bool) {
        let candidates = children(path);
        let keys: Vec<String> = object.keys().cloned().collect();
        for key in keys {
            let Some(mut value) = object.remove(&key) else {
                continue;
            };
            let Some(name) = canonical(&key, &candidates) else {
                let shown = join(path, &key);
                let message = match nearest(&key, &candidates) {
                    Some(near) => format!(
                        "unknown configuration key `{shown}`; did you mean `{}`?",
                        join(path, near)
                    ),
                    None if path.is_empty() => format!(
                        "unknown configuration key `{shown}`; see Consul's agent configuration reference for the valid keys"
                    ),
                    None => format!(
                        "unknown configuration key `{shown}`; `{path}` takes {}",
                        candidates.join(", ")
                    ),
                };
                self.problems.push(Problem {
                    key: shown,
                    message,
                });
                continue;
            };
            // `null` leaves a setting unset.
            if value.is_null() {
                continue;
            }
            let full = join(path, name);
            if report_only {
                self.descend(&mut value, &full, true);
                continue;
            }
            if listed(SATISFIED, &full) {
                continue;
            }
            if applied(&full) {
                self.descend(&mut value, &full, false);
                object.insert(name.to_owned(), value);
            } else {
                self.warnings.push(format!(
                    "the Consul option `{full}` (in {}) is not supported by Isthmus yet and is ignored",
                    self.origin
                ));
                self.descend(&mut value, &full, true);
            }
        }
    }

    fn descend(&mut self, value: &mut Value, path: &str, report_only: bool) {
        if free_form(path) {
            return;
        }
        match value {
            Value::Object(inner) if !children(path).is_empty() => {
                self.object(inner, path, report_only)
            }
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        if !children(path).is_empty() {
                            self.object(inner, path, report_only);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Moves a singular block (`service`, `check`: one object, or a list of them from repeated
/// HCL blocks) to the front of its list (`services`, `checks`).
fn fold_singular(object: &mut Map<String, Value>, singular: &str, plural: &str) {
    let Some(key) = object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(singular))
        .cloned()
    else {
        return;
    };
    let Some(value) = object.remove(&key) else {
        return;
    };
    let mut front = match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        single => vec![single],
    };
    let plural_key = object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(plural))
        .cloned()
        .unwrap_or_else(|| plural.to_owned());
    match object.remove(&plural_key) {
        Some(Value::Array(rest)) => front.extend(rest),
        Some(Value::Object(one)) => front.push(Value::Object(one)),
        _ => {}
    }
    object.insert(plural.to_owned(), Value::Array(front));
}

/// Wraps a lone object at `key` (any spelling) into a list of one.
fn listify(object: &mut Map<String, Value>, key: &str) {
    let Some(found) = object.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned() else {
        return;
    };
    if let Some(value) = object.get_mut(&found) {
        if value.is_object() {
            *value = Value::Array(vec![value.take()]);
        }
    }
}

/// Consul's deprecated spellings (dotted) and the keys that replaced them.
const RENAMED: &[(&str, &[&str])] = &[
    // Consul's `ui = true`, before `ui_config`.
    ("ui", &["ui_config", "enabled"]),
    (
        "acl.tokens.agent_master",
        &["acl", "tokens", "agent_recovery"],
    ),
    (
        "acl.tokens.master",
        &["acl", "tokens", "initial_management"],
    ),
    (
        "acl_agent_master_token",
        &["acl", "tokens", "agent_recovery"],
    ),
    ("acl_agent_token", &["acl", "tokens", "agent"]),
    ("acl_datacenter", &["primary_datacenter"]),
    ("acl_default_policy", &["acl", "default_policy"]),
    ("acl_down_policy", &["acl", "down_policy"]),
    ("acl_master_token", &["acl", "tokens", "initial_management"]),
    ("acl_replication_token", &["acl", "tokens", "replication"]),
    ("acl_token", &["acl", "tokens", "default"]),
    ("acl_ttl", &["acl", "token_ttl"]),
    (
        "enable_acl_replication",
        &["acl", "enable_token_replication"],
    ),
    ("ca_file", &["tls", "defaults", "ca_file"]),
    ("cert_file", &["tls", "defaults", "cert_file"]),
    ("key_file", &["tls", "defaults", "key_file"]),
    ("verify_incoming", &["tls", "defaults", "verify_incoming"]),
    (
        "verify_incoming_https",
        &["tls", "https", "verify_incoming"],
    ),
    ("verify_outgoing", &["tls", "defaults", "verify_outgoing"]),
    (
        "verify_server_hostname",
        &["tls", "internal_rpc", "verify_server_hostname"],
    ),
];

/// Removes and returns what is at `path` (names matched as Consul matches them).
fn take(object: &mut Map<String, Value>, path: &[&str]) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    let key = object
        .keys()
        .find(|k| squash(k) == squash(first))
        .cloned()?;
    if rest.is_empty() {
        return object.remove(&key);
    }
    match object.get_mut(&key) {
        Some(Value::Object(inner)) => take(inner, rest),
        _ => None,
    }
}

/// Puts `value` at `path` unless something is there already (the current key wins).
fn place(object: &mut Map<String, Value>, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            object.entry(last.to_string()).or_insert(value);
        }
        [first, rest @ ..] => {
            let entry = object
                .entry(first.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                place(inner, rest, value);
            }
        }
    }
}

/// Rewrites deprecated keys into their current place (the current key wins when both are
/// set, as in Consul), and `start_join` into `retry_join`.
fn translate_deprecated(object: &mut Map<String, Value>, warnings: &mut Vec<String>, origin: &str) {
    // Before `acl.enabled`, Consul turned ACLs on with `acl_datacenter` (and still does):
    // a legacy config that sets it never runs open.
    if object.keys().any(|k| squash(k) == squash("acl_datacenter")) {
        if let Value::Object(acl) = object
            .entry("acl")
            .or_insert_with(|| Value::Object(Map::new()))
        {
            acl.retain(|k, _| squash(k) != "enabled");
            acl.insert("enabled".to_owned(), Value::Bool(true));
        }
    }
    // `acl_replication_token` also turned token replication on.
    if object
        .keys()
        .any(|k| squash(k) == squash("acl_replication_token"))
    {
        place(
            object,
            &["acl", "enable_token_replication"],
            Value::Bool(true),
        );
    }
    for (old, new) in RENAMED {
        let path: Vec<&str> = old.split('.').collect();
        if let Some(value) = take(object, &path) {
            place(object, new, value);
        }
    }
    if let Some(key) = object.keys().find(|k| squash(k) == "startjoin").cloned() {
        if let Some(Value::Array(addresses)) = object.remove(&key) {
            warnings.push(format!(
                "`start_join` (in {origin}) is deprecated in Consul; its addresses are joined as `retry_join`, retried until one answers"
            ));
            if let Value::Array(list) = object
                .entry("retry_join")
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                list.extend(addresses);
            }
        }
    }
}

/// A check's `script` (removed from Consul's docs, still in old configs) runs through the
/// shell as `args = ["sh", "-c", script]`.
fn translate_script(check: &mut Map<String, Value>) {
    // `ScriptArgs` is the old name of `args`.
    if let Some(key) = check.keys().find(|k| squash(k) == "scriptargs").cloned() {
        if let Some(args) = check.remove(&key) {
            check.entry("args").or_insert(args);
        }
    }
    let script_key = check.keys().find(|k| squash(k) == "script").cloned();
    if let Some(Value::String(script)) = script_key.and_then(|k| check.remove(&k)) {
        check
            .entry("args")
            .or_insert_with(|| Value::from(vec!["/bin/sh".to_owned(), "-c".to_owned(), script]));
    }
}

fn translate_scripts(object: &mut Map<String, Value>) {
    if let Some(Value::Array(checks)) = object.get_mut("checks") {
        checks
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(translate_script);
    }
    if let Some(Value::Array(services)) = object.get_mut("services") {
        for service in services.iter_mut().filter_map(Value::as_object_mut) {
            let key = |service: &Map<String, Value>, name: &str| {
                service
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case(name))
                    .cloned()
            };
            let single = key(service, "check");
            if let Some(Value::Object(check)) = single.and_then(|k| service.get_mut(&k)) {
                translate_script(check);
            }
            let list = key(service, "checks");
            if let Some(Value::Array(checks)) = list.and_then(|k| service.get_mut(&k)) {
                checks
                    .iter_mut()
                    .filter_map(Value::as_object_mut)
                    .for_each(translate_script);
            }
        }
    }
}

/// Checks one source (a file, the flags, an `-hcl` fragment) in place: folds `service` and
/// `check` into their lists, translates deprecated keys, drops unsupported Consul keys with
/// one warning each, and returns the keys that are not Consul's.
pub fn check_source(
    object: &mut Map<String, Value>,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Vec<Problem> {
    fold_singular(object, "service", "services");
    fold_singular(object, "check", "checks");
    // One HCL block (`services { ... }`) reads as an object: a list of one.
    for list in ["services", "checks"] {
        listify(object, list);
    }
    if let Some(Value::Array(services)) = object.get_mut("services") {
        for service in services.iter_mut().filter_map(Value::as_object_mut) {
            listify(service, "checks");
        }
    }
    translate_deprecated(object, warnings, origin);
    translate_scripts(object);
    let mut walk = Walk {
        origin,
        warnings,
        problems: Vec::new(),
    };
    walk.object(object, "", false);
    walk.problems
}

/// Line and column where `key` (dotted; its last part is looked for) is written in `text`,
/// or 1:1 when it cannot be found.
pub fn locate(text: &str, key: &str, format: Format) -> (usize, usize) {
    let last = key.rsplit('.').next().unwrap_or(key);
    let offset = match format {
        Format::Json => text.find(&format!("\"{last}\"")),
        Format::Hcl => {
            let mut offset = None;
            let mut start = 0;
            for line in text.split_inclusive('\n') {
                let trimmed = line.trim_start();
                if let Some(rest) = trimmed.strip_prefix(last) {
                    if rest.starts_with(|c: char| c.is_whitespace() || c == '=' || c == '{') {
                        offset = Some(start + (line.len() - trimmed.len()));
                        break;
                    }
                }
                start += line.len();
            }
            offset
        }
    };
    offset.map_or((1, 1), |at| wire::config_file::line_col(text, at))
}

/// The agent configuration table of `COMPATIBILITY.md`: every key Consul has (and the
/// `isthmus` extensions), with what the agent does with it. Generated from the tables the
/// agent uses, so it cannot drift from them.
pub fn compatibility_table() -> String {
    let mut keys: Vec<&str> = CONSUL_KEYS
        .iter()
        .chain(APPLIED)
        .chain(SATISFIED)
        .copied()
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = String::from("| Key | Status | Notes |\n|---|---|---|\n");
    for key in keys {
        let base = key.strip_suffix(".*").unwrap_or(key);
        let renamed = RENAMED.iter().find(|(old, _)| *old == key);
        let (status, note) = if let Some((_, new)) = renamed {
            (
                "works",
                format!("deprecated in Consul; read as `{}`", new.join(".")),
            )
        } else if key == "start_join" {
            (
                "differs",
                "deprecated in Consul; joined as `retry_join` (retried until one answers)"
                    .to_owned(),
            )
        } else if matches!(key, "service" | "check") {
            ("works", format!("read as one entry of `{key}s`"))
        } else if key.ends_with(".script") {
            (
                "differs",
                "runs as `/bin/sh -c SCRIPT` (Consul dropped `script`)".to_owned(),
            )
        } else if listed(SATISFIED, key) {
            ("works", "what Isthmus does anyway".to_owned())
        } else if key.starts_with("isthmus.") {
            ("isthmus", "Isthmus's own setting".to_owned())
        } else if listed(APPLIED, key) || (key.ends_with(".*") && listed(APPLIED, key)) {
            ("works", String::new())
        } else if applied(base) {
            ("works", "in part: see the keys under it".to_owned())
        } else {
            (
                "not supported",
                "accepted; one warning names it, and it is ignored".to_owned(),
            )
        };
        out.push_str(&format!("| `{key}` | {status} | {note} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_md_lists_every_config_key() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../COMPATIBILITY.md");
        let text = std::fs::read_to_string(&path).expect("COMPATIBILITY.md at the top");
        let (start, end) = ("<!-- config-keys:start -->\n", "<!-- config-keys:end -->");
        let (Some(from), Some(to)) = (text.find(start), text.find(end)) else {
            panic!("COMPATIBILITY.md has no config-keys markers");
        };
        let current = &text[from + start.len()..to];
        let generated = compatibility_table();
        if current != generated {
            if std::env::var_os("UPDATE_EXPECT").is_some() {
                let updated = format!("{}{generated}{}", &text[..from + start.len()], &text[to..]);
                std::fs::write(&path, updated).expect("rewrite COMPATIBILITY.md");
            } else {
                panic!("COMPATIBILITY.md's configuration table is stale: run `UPDATE_EXPECT=1 cargo test -p dc-agent --lib compatibility`");
            }
        }
    }

    fn check(json: &str) -> (Value, Vec<String>, Vec<String>) {
        let mut object = match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(object)) => object,
            other => panic!("test input is an object: {other:?}"),
        };
        let mut warnings = Vec::new();
        let problems = check_source(&mut object, "test.json", &mut warnings);
        (
            Value::Object(object),
            warnings,
            problems.into_iter().map(|p| p.message).collect(),
        )
    }

    #[test]
    fn every_applied_key_is_read_by_the_config_type() {
        // A key listed as applied that the typed config does not read would be dropped
        // silently at the end (`deny_unknown_fields` would refuse it): build a config with
        // each and decode it.
        for key in APPLIED {
            if key.contains('*') || key.starts_with("checks.") || key.starts_with("services.") {
                continue;
            }
            if matches!(*key, "bootstrap" | "pid_file") {
                continue;
            }
            let mut value = Value::String("x".to_owned());
            for part in key.rsplit('.') {
                let mut map = Map::new();
                map.insert(part.to_owned(), value);
                value = Value::Object(map);
            }
            let error = serde_json::from_value::<wire::agent_config::AgentConfig>(value)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                !error.contains("unknown field"),
                "{key} is listed as applied but the config type refuses it: {error}"
            );
        }
    }

    #[test]
    fn consul_keys_are_warned_about_and_typos_refused() {
        let (value, warnings, problems) = check(
            r#"{"datacenter":"dc1","ports":{"grpc":8502,"http":8500,"grpc_tls":-1},
                "node_id":"adf4238a-882b-9ddc-4a9d-5b6758e4159e","limits":{"http_max_conns_per_client":200,"rpc_rate":100},
                "telemetry":{"prometheus_retention_time":"1m"},"disable_update_check":true}"#,
        );
        assert_eq!(
            value,
            serde_json::json!({"datacenter":"dc1","ports":{"http":8500},"limits":{"http_max_conns_per_client":200}})
        );
        assert_eq!(warnings.len(), 5, "{warnings:#?}");
        assert!(problems.is_empty(), "{problems:?}");
        let (_, _, problems) = check(r#"{"datcenter":"dc1","ports":{"htp":1}}"#);
        assert_eq!(
            problems,
            [
                "unknown configuration key `datcenter`; did you mean `datacenter`?",
                "unknown configuration key `ports.htp`; did you mean `ports.http`?"
            ]
        );
    }

    #[test]
    fn spellings_and_deprecated_keys_become_current_ones() {
        let (value, warnings, problems) = check(
            r#"{"NodeName":"n1","ca_file":"ca.pem","start_join":["10.0.0.1"],
                "service":{"Name":"web","check":{"script":"true","interval":"10s"}},
                "check":{"id":"mem","ttl":"30s"}}"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(
            value,
            serde_json::json!({
                "node_name": "n1",
                "tls": {"defaults": {"ca_file": "ca.pem"}},
                "retry_join": ["10.0.0.1"],
                "services": [{"name": "web", "check": {"args": ["/bin/sh", "-c", "true"], "interval": "10s"}}],
                "checks": [{"id": "mem", "ttl": "30s"}]
            })
        );
    }

    #[test]
    fn legacy_acl_keys_become_the_acl_block() {
        let (value, _, problems) = check(
            r#"{"acl_datacenter":"dc1","acl_default_policy":"deny","acl_master_token":"m",
                "acl_agent_token":"a","enable_acl_replication":true,
                "acl":{"enabled":false,"tokens":{"agent_master":"r"}}}"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            value,
            serde_json::json!({
                "primary_datacenter": "dc1",
                "acl": {
                    "enabled": true,
                    "default_policy": "deny",
                    "enable_token_replication": true,
                    "tokens": {"initial_management": "m", "agent": "a", "agent_recovery": "r"}
                }
            })
        );
    }

    #[test]
    fn locates_keys_in_json_and_hcl() {
        assert_eq!(
            locate("{\n  \"datcenter\": 1\n}", "datcenter", Format::Json),
            (2, 3)
        );
        assert_eq!(
            locate("a = 1\nports {\n  htp = 2\n}\n", "ports.htp", Format::Hcl),
            (3, 3)
        );
    }
}
