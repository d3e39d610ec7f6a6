//! `consul agent`'s command line: every flag of Consul's agent, parsed as Go's `flag` package
//! parses them (`-name value`, `-name=value`, `--name`; a boolean takes `-name` or
//! `-name=true|false`), each turned into the config key it stands for. What a key then does
//! (applied, or warned about as not supported) is decided with the config files' keys, by
//! [`super::keys`].

use serde_json::{Map, Value};

use super::{Format, Sources};

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `-flag` or `-flag=true|false`.
    Bool,
    /// `-flag value` or `-flag=value`, a string.
    Text,
    /// A number.
    Int,
    /// Repeatable; each value is appended to a list.
    List,
    /// Repeatable `key:value`, into a map.
    Meta,
}

/// Where a flag goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// This config key (dotted).
    Key(&'static str),
    /// Handled by the parser itself.
    ConfigFile,
    ConfigDir,
    ConfigFormat,
    Hcl,
    Dev,
}

use Kind::*;
use Target::*;

/// Every flag of `consul agent` (1.2x).
const FLAGS: &[(&str, Kind, Target)] = &[
    ("advertise", Text, Key("advertise_addr")),
    ("advertise-wan", Text, Key("advertise_addr_wan")),
    ("alt-domain", Text, Key("alt_domain")),
    ("auto-reload-config", Bool, Key("auto_reload_config")),
    ("bind", Text, Key("bind_addr")),
    ("bootstrap", Bool, Key("bootstrap")),
    ("bootstrap-expect", Int, Key("bootstrap_expect")),
    ("check_output_max_size", Int, Key("check_output_max_size")),
    ("client", Text, Key("client_addr")),
    ("config-dir", List, ConfigDir),
    ("config-file", List, ConfigFile),
    ("config", List, ConfigFile),
    ("config-format", Text, ConfigFormat),
    ("data-dir", Text, Key("data_dir")),
    ("datacenter", Text, Key("datacenter")),
    ("default-query-time", Text, Key("default_query_time")),
    ("dev", Bool, Dev),
    ("disable-host-node-id", Bool, Key("disable_host_node_id")),
    ("disable-keyring-file", Bool, Key("disable_keyring_file")),
    ("dns-port", Int, Key("ports.dns")),
    ("domain", Text, Key("domain")),
    (
        "enable-local-script-checks",
        Bool,
        Key("enable_local_script_checks"),
    ),
    ("enable-script-checks", Bool, Key("enable_script_checks")),
    ("encrypt", Text, Key("encrypt")),
    ("expose-max-port", Int, Key("ports.expose_max_port")),
    ("expose-min-port", Int, Key("ports.expose_min_port")),
    ("grpc-port", Int, Key("ports.grpc")),
    ("grpc-tls-port", Int, Key("ports.grpc_tls")),
    ("hcl", List, Hcl),
    ("http-port", Int, Key("ports.http")),
    ("https-port", Int, Key("ports.https")),
    ("join", List, Key("start_join")),
    ("join-wan", List, Key("start_join_wan")),
    ("log-file", Text, Key("log_file")),
    ("log-json", Bool, Key("log_json")),
    ("log-level", Text, Key("log_level")),
    ("log-rotate-bytes", Int, Key("log_rotate_bytes")),
    ("log-rotate-duration", Text, Key("log_rotate_duration")),
    ("log-rotate-max-files", Int, Key("log_rotate_max_files")),
    ("max-query-time", Text, Key("max_query_time")),
    ("node", Text, Key("node_name")),
    ("node-id", Text, Key("node_id")),
    ("node-meta", Meta, Key("node_meta")),
    ("non-voting-server", Bool, Key("read_replica")),
    ("pid-file", Text, Key("pid_file")),
    ("primary-gateway", List, Key("primary_gateways")),
    ("protocol", Int, Key("protocol")),
    ("raft-protocol", Int, Key("raft_protocol")),
    ("read-replica", Bool, Key("read_replica")),
    ("recursor", List, Key("recursors")),
    ("rejoin", Bool, Key("rejoin_after_leave")),
    ("retry-interval", Text, Key("retry_interval")),
    ("retry-interval-wan", Text, Key("retry_interval_wan")),
    ("retry-join", List, Key("retry_join")),
    ("retry-join-wan", List, Key("retry_join_wan")),
    ("retry-max", Int, Key("retry_max")),
    ("retry-max-wan", Int, Key("retry_max_wan")),
    ("segment", Text, Key("segment")),
    (
        "serf-lan-allowed-cidrs",
        List,
        Key("serf_lan_allowed_cidrs"),
    ),
    ("serf-lan-bind", Text, Key("serf_lan")),
    ("serf-lan-port", Int, Key("ports.serf_lan")),
    (
        "serf-wan-allowed-cidrs",
        List,
        Key("serf_wan_allowed_cidrs"),
    ),
    ("serf-wan-bind", Text, Key("serf_wan")),
    ("serf-wan-port", Int, Key("ports.serf_wan")),
    ("server", Bool, Key("server")),
    ("server-port", Int, Key("ports.server")),
    ("sidecar-max-port", Int, Key("ports.sidecar_max_port")),
    ("sidecar-min-port", Int, Key("ports.sidecar_min_port")),
    ("syslog", Bool, Key("enable_syslog")),
    ("ui", Bool, Key("ui_config.enabled")),
    ("ui-content-path", Text, Key("ui_config.content_path")),
    ("ui-dir", Text, Key("ui_config.dir")),
];

/// The agent's command line, parsed.
#[derive(Debug, Clone, Default)]
pub struct AgentArgs {
    /// The config sources, flags as one layer.
    pub sources: Sources,
    /// `-dev`.
    pub dev: bool,
    /// `-h`, `-help`: print the flags and stop.
    pub help: bool,
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn set_path(layer: &mut Map<String, Value>, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else {
        return;
    };
    let mut target = layer;
    for part in parts {
        let entry = target
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(inner) => target = inner,
            _ => return,
        }
    }
    match (target.get_mut(last), value) {
        (Some(Value::Array(list)), Value::Array(more)) => list.extend(more),
        (Some(Value::Object(map)), Value::Object(more)) => map.extend(more),
        (_, value) => {
            target.insert(last.to_owned(), value);
        }
    }
}

/// The flag table's names, for `-help` and suggestions.
pub fn flag_names() -> Vec<&'static str> {
    FLAGS.iter().map(|(name, _, _)| *name).collect()
}

fn nearest_flag(name: &str) -> Option<&'static str> {
    flag_names()
        .into_iter()
        .map(|flag| (super::keys::edit_distance(name, flag), flag))
        .filter(|(distance, flag)| *distance <= (flag.len() / 3).max(2))
        .min()
        .map(|(_, flag)| flag)
}

/// Parses `consul agent`'s arguments (everything after `agent`).
pub fn parse(args: &[String]) -> Result<AgentArgs, String> {
    let mut parsed = AgentArgs::default();
    let mut layer = Map::new();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        index += 1;
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty())
        else {
            return Err(format!(
                "unexpected argument {arg:?}: the agent takes only flags (see -help)"
            ));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (body, None),
        };
        if matches!(name, "h" | "help") {
            parsed.help = true;
            continue;
        }
        let Some((flag, kind, target)) = FLAGS.iter().find(|(flag, _, _)| *flag == name) else {
            let hint = nearest_flag(name)
                .map(|near| format!("; did you mean -{near}?"))
                .unwrap_or_default();
            return Err(format!("flag provided but not defined: -{name}{hint}"));
        };
        let value = match (kind, inline) {
            (Bool, None) => "true".to_owned(),
            (_, Some(value)) => value,
            (_, None) => {
                let Some(value) = args.get(index) else {
                    return Err(format!("flag needs an argument: -{flag}"));
                };
                index += 1;
                value.clone()
            }
        };
        let json =
            match kind {
                Bool => Value::Bool(parse_bool(&value).ok_or_else(|| {
                    format!("invalid boolean value {value:?} for -{flag}: use true or false")
                })?),
                Int => Value::from(value.parse::<i64>().map_err(|_| {
                    format!("invalid value {value:?} for flag -{flag}: not a number")
                })?),
                Text => Value::String(value.clone()),
                List => Value::Array(vec![Value::String(value.clone())]),
                Meta => {
                    // Consul's parseMetaPair: `key` alone means the value "".
                    let (key, meta_value) = value.split_once(':').unwrap_or((value.as_str(), ""));
                    let mut map = Map::new();
                    map.insert(key.to_owned(), Value::String(meta_value.to_owned()));
                    Value::Object(map)
                }
            };
        match target {
            Key(key) => set_path(&mut layer, key, json),
            ConfigFile => parsed.sources.files.push(value.into()),
            ConfigDir => parsed.sources.dirs.push(value.into()),
            ConfigFormat => parsed.sources.format = Some(Format::parse(&value)?),
            Hcl => parsed.sources.hcl.push(value),
            Dev => parsed.dev = json == Value::Bool(true),
        }
    }
    parsed.sources.flags = layer;
    Ok(parsed)
}

/// `dc-agent agent -help`.
pub fn usage() -> String {
    let mut out = String::from(
        "Usage: dc-agent agent [options]\n\n  Starts an agent: a server (-server) or a client agent. Every flag of `consul agent` is\n  accepted; the ones Isthmus does not support yet are named in a warning at start.\n\nOptions:\n\n",
    );
    for (name, kind, target) in FLAGS {
        let what = match (kind, target) {
            (_, Key(key)) => format!("sets `{key}`"),
            (_, ConfigFile) => "a config file (JSON or HCL), repeatable".to_owned(),
            (_, ConfigDir) => "a directory of config files, repeatable".to_owned(),
            (_, ConfigFormat) => "json or hcl, for every config file".to_owned(),
            (_, Hcl) => "a fragment of HCL config, repeatable".to_owned(),
            (_, Dev) => "development mode: one server, in memory, on 127.0.0.1".to_owned(),
        };
        let value = match kind {
            Bool => "",
            Int => "=<int>",
            Meta => "=<key:value>",
            Text | List => "=<value>",
        };
        out.push_str(&format!("  -{name}{value}\n      {what}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_as_go_parses_them() {
        let parsed = parse(&args(&[
            "-server=true",
            "--bootstrap-expect",
            "3",
            "-node=server_01",
            "-retry-join",
            "10.0.0.1",
            "-retry-join=10.0.0.2",
            "-dns-port=-1",
            "-node-meta=rack:r1",
            "-node-meta",
            "zone:a",
            "-enable-script-checks=false",
            "-ui",
            "-hcl",
            "ports { grpc = 8502 }",
            "-config-file=a.json",
        ]))
        .expect("parses");
        assert_eq!(
            Value::Object(parsed.sources.flags),
            serde_json::json!({
                "server": true, "bootstrap_expect": 3, "node_name": "server_01",
                "retry_join": ["10.0.0.1", "10.0.0.2"], "ports": {"dns": -1},
                "node_meta": {"rack": "r1", "zone": "a"}, "enable_script_checks": false,
                "ui_config": {"enabled": true}
            })
        );
        assert_eq!(parsed.sources.hcl, ["ports { grpc = 8502 }"]);
        assert_eq!(parsed.sources.files, [std::path::PathBuf::from("a.json")]);
    }

    #[test]
    fn bad_flags_are_explained() {
        assert_eq!(
            parse(&args(&["-sever"])).err().as_deref(),
            Some("flag provided but not defined: -sever; did you mean -server?")
        );
        assert_eq!(
            parse(&args(&["-server=maybe"])).err().as_deref(),
            Some("invalid boolean value \"maybe\" for -server: use true or false")
        );
        assert_eq!(
            parse(&args(&["-http-port"])).err().as_deref(),
            Some("flag needs an argument: -http-port")
        );
        assert!(parse(&args(&["-http-port=eighty"])).is_err());
        assert!(parse(&args(&["stray"])).is_err());
    }
}
