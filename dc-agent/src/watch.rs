//! Watches, as Consul's `consul watch` and the agent's `watches` block: a blocking query
//! per watch (`key`, `keyprefix`, `services`, `nodes`, `service`, `checks`, `event`) against
//! an agent's HTTP API, and a handler run each time the answer changes: a script (the JSON
//! on its stdin, `CONSUL_INDEX` in its environment) or an HTTP request (the JSON as its
//! body, `X-Consul-Index` in its headers). Errors back off from 1 s to 20 s.
//!
//! [`WatchSpec`] is pure (what to ask, and what the answer means); [`run`] is the loop,
//! on a thread of its own (the CLI's, or one per watch in the agent).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::client::{encode_key, ApiClient};

/// What a watch asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSpec {
    /// `key`, `keyprefix`, `services`, `nodes`, `service`, `checks` or `event`.
    pub kind: String,
    /// `key` of a `key` watch.
    pub key: String,
    /// `prefix` of a `keyprefix` watch.
    pub prefix: String,
    /// `service` of a `service` or `checks` watch.
    pub service: String,
    /// `tag`s of a `service` watch.
    pub tags: Vec<String>,
    /// `passingonly` of a `service` watch.
    pub passing_only: bool,
    /// `state` of a `checks` watch.
    pub state: String,
    /// `name` of an `event` watch.
    pub name: String,
    /// `datacenter`.
    pub datacenter: String,
}

impl WatchSpec {
    /// The endpoint it blocks on (without `index` and `wait`), or why the spec is wrong (in
    /// Consul's words).
    pub fn path(&self) -> Result<String, String> {
        let mut query: Vec<String> = Vec::new();
        let path = match self.kind.as_str() {
            "key" if self.key.is_empty() => return Err("Must specify a single key to watch".into()),
            "key" => format!("/v1/kv/{}", encode_key(&self.key)),
            "keyprefix" if self.prefix.is_empty() => {
                return Err("Must specify a single prefix to watch".into())
            }
            "keyprefix" => {
                query.push("recurse".into());
                format!("/v1/kv/{}", encode_key(&self.prefix))
            }
            "services" => "/v1/catalog/services".into(),
            "nodes" => "/v1/catalog/nodes".into(),
            "service" if self.service.is_empty() => {
                return Err("Must specify a single service to watch".into())
            }
            "service" => {
                for tag in &self.tags {
                    query.push(format!("tag={}", encode_key(tag)));
                }
                if self.passing_only {
                    query.push("passing".into());
                }
                format!("/v1/health/service/{}", encode_key(&self.service))
            }
            "checks" if !self.service.is_empty() && !self.state.is_empty() => {
                return Err("Cannot specify service and state".into())
            }
            "checks" if !self.service.is_empty() => {
                format!("/v1/health/checks/{}", encode_key(&self.service))
            }
            "checks" => {
                let state = if self.state.is_empty() {
                    "any"
                } else {
                    &self.state
                };
                format!("/v1/health/state/{}", encode_key(state))
            }
            "event" => {
                if !self.name.is_empty() {
                    query.push(format!("name={}", encode_key(&self.name)));
                }
                "/v1/event/list".into()
            }
            "" => return Err("Watch type must be specified".into()),
            other => return Err(format!("Unsupported watch type: {other}")),
        };
        if !self.datacenter.is_empty() {
            query.push(format!("dc={}", encode_key(&self.datacenter)));
        }
        Ok(if query.is_empty() {
            path
        } else {
            format!("{path}?{}", query.join("&"))
        })
    }

    /// What a handler gets from an answer: a `key` watch gets the entry (or `null`), a
    /// missing prefix no entries (`null`), the rest the answer as it is.
    pub fn value_of(&self, status: u16, body: &[u8]) -> Result<Value, String> {
        if status == 404 && matches!(self.kind.as_str(), "key" | "keyprefix") {
            return Ok(Value::Null);
        }
        if status != 200 {
            return Err(format!(
                "Unexpected response code: {status} ({})",
                String::from_utf8_lossy(body).trim()
            ));
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(match self.kind.as_str() {
            "key" => value.get(0).cloned().unwrap_or(Value::Null),
            _ => value,
        })
    }

    /// A spec from Consul's `watches` block (a watch's settings, as written).
    pub fn from_config(watch: &BTreeMap<String, Value>) -> Result<WatchSpec, String> {
        let text = |key: &str| -> String {
            watch
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let tags = match watch.get("tag") {
            Some(Value::String(tag)) => vec![tag.clone()],
            Some(Value::Array(tags)) => tags
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let spec = WatchSpec {
            kind: text("type"),
            key: text("key"),
            prefix: text("prefix"),
            service: text("service"),
            tags,
            passing_only: watch
                .get("passingonly")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            state: text("state"),
            name: text("name"),
            datacenter: text("datacenter"),
        };
        spec.path()?;
        Ok(spec)
    }
}

/// What runs when a watch's answer changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// Print the answer once and stop (`consul watch` without a handler).
    Print,
    /// A command: through `$SHELL -c` (one string), or as arguments (`args`).
    Script {
        /// The command line.
        args: Vec<String>,
        /// Through the shell.
        shell: bool,
    },
    /// An HTTP request (`handler_type = "http"`).
    Http {
        /// The URL.
        url: String,
        /// The method (default POST).
        method: String,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Timeout (default 10 s).
        timeout: Duration,
    },
}

impl Handler {
    /// The handler of a `watches` block entry: `args`, `handler` (deprecated, through the
    /// shell), or `handler_type = "http"` with `http_handler_config`.
    pub fn from_config(watch: &BTreeMap<String, Value>) -> Result<Handler, String> {
        let kind = watch
            .get("handler_type")
            .and_then(Value::as_str)
            .unwrap_or("script");
        match kind {
            "script" => {
                if let Some(args) = watch.get("args").and_then(Value::as_array) {
                    let args: Vec<String> = args
                        .iter()
                        .filter_map(|a| a.as_str().map(str::to_owned))
                        .collect();
                    if args.is_empty() {
                        return Err("Watch handler 'args' is empty".into());
                    }
                    return Ok(Handler::Script { args, shell: false });
                }
                match watch.get("handler").and_then(Value::as_str) {
                    Some(handler) if !handler.is_empty() => Ok(Handler::Script {
                        args: vec![handler.to_owned()],
                        shell: true,
                    }),
                    _ => Err("Watch handler must have 'args' (or 'handler')".into()),
                }
            }
            "http" => {
                let config = watch
                    .get("http_handler_config")
                    .and_then(Value::as_object)
                    .ok_or("Watch handler_type http needs http_handler_config")?;
                let url = config
                    .get("path")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .ok_or("http_handler_config needs a path")?
                    .to_owned();
                let headers = config
                    .get("header")
                    .and_then(Value::as_object)
                    .map(|h| {
                        h.iter()
                            .flat_map(|(name, values)| {
                                let values: Vec<String> = match values {
                                    Value::Array(v) => v
                                        .iter()
                                        .filter_map(|x| x.as_str().map(str::to_owned))
                                        .collect(),
                                    Value::String(v) => vec![v.clone()],
                                    _ => Vec::new(),
                                };
                                values.into_iter().map(move |v| (name.clone(), v))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let timeout = config
                    .get("timeout")
                    .and_then(Value::as_str)
                    .and_then(|t| t.parse::<wire::GoDuration>().ok())
                    .map_or(Duration::from_secs(10), |d| d.0);
                Ok(Handler::Http {
                    url,
                    method: config
                        .get("method")
                        .and_then(Value::as_str)
                        .unwrap_or("POST")
                        .to_ascii_uppercase(),
                    headers,
                    timeout,
                })
            }
            other => Err(format!("Unsupported handler type: {other}")),
        }
    }

    /// Runs once with `value` at `index`.
    fn call(&self, value: &Value, index: u64) -> Result<(), String> {
        match self {
            Handler::Print => {
                let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
                println!("{text}");
                Ok(())
            }
            Handler::Script { args, shell } => {
                use std::io::Write;
                let mut command = if *shell {
                    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".to_owned());
                    let mut c = std::process::Command::new(shell);
                    c.arg("-c").arg(args.join(" "));
                    c
                } else {
                    let (program, rest) = args.split_first().ok_or("empty handler")?;
                    let mut c = std::process::Command::new(program);
                    c.args(rest);
                    c
                };
                let mut child = command
                    .env("CONSUL_INDEX", index.to_string())
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("Failed to invoke watch handler: {e}"))?;
                let mut input = serde_json::to_vec(value).map_err(|e| e.to_string())?;
                input.push(b'\n');
                if let Some(mut stdin) = child.stdin.take() {
                    // A handler that does not read its input is fine.
                    let _ = stdin.write_all(&input);
                }
                let status = child.wait().map_err(|e| e.to_string())?;
                if !status.success() {
                    return Err(format!("Watch handler failed: {status}"));
                }
                Ok(())
            }
            Handler::Http {
                url,
                method,
                headers,
                timeout,
            } => {
                let agent = ureq::Agent::config_builder()
                    .timeout_global(Some(*timeout))
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
                let mut request = ureq::http::Request::builder()
                    .method(method.as_str())
                    .uri(url.as_str())
                    .header("Content-Type", "application/json")
                    .header("X-Consul-Index", index.to_string());
                for (name, value) in headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                let request = request.body(body).map_err(|e| e.to_string())?;
                let response = agent.run(request).map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                if !(200..300).contains(&status) {
                    return Err(format!("Watch HTTP handler got {status}"));
                }
                Ok(())
            }
        }
    }
}

/// Runs `spec` against `client` until `stop` (or, with [`Handler::Print`], once): the
/// handler runs on the first answer and then only when the answer changes.
pub fn run(
    client: &ApiClient,
    spec: &WatchSpec,
    handler: &Handler,
    stop: &AtomicBool,
) -> Result<(), String> {
    let path = spec.path()?;
    let separator = if path.contains('?') { '&' } else { '?' };
    let mut index: u64 = 0;
    let mut last: Option<Value> = None;
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        let url = if index == 0 {
            path.clone()
        } else {
            format!("{path}{separator}index={index}&wait=60s")
        };
        let answer = client.get(&url).and_then(|r| {
            Ok((
                r.header("x-consul-index")
                    .and_then(|i| i.parse::<u64>().ok()),
                spec.value_of(r.status, &r.body)?,
            ))
        });
        let (new_index, value) = match answer {
            Ok((new_index, value)) => (new_index.unwrap_or(0), value),
            Err(e) => {
                if *handler == Handler::Print {
                    return Err(e);
                }
                tracing::warn!(watch = %spec.kind, error = %e, retry_in = ?backoff, "watch query failed");
                sleep_unless(backoff, stop);
                backoff = (backoff * 2).min(Duration::from_secs(20));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        // An index that went back (a restore, a rebuilt datacenter): start over.
        index = if new_index < index { 0 } else { new_index };
        if last.as_ref() == Some(&value) {
            continue;
        }
        if let Err(e) = handler.call(&value, new_index) {
            tracing::warn!(watch = %spec.kind, error = %e, "watch handler failed");
            if *handler == Handler::Print {
                return Err(e);
            }
        }
        if *handler == Handler::Print {
            return Ok(());
        }
        last = Some(value);
    }
    Ok(())
}

fn sleep_unless(duration: Duration, stop: &AtomicBool) {
    let until = std::time::Instant::now() + duration;
    while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The agent's `watches`: one thread each, against the agent's own HTTP API (as Consul's
/// agent runs its watch plans), replaced as a whole on `reload`.
pub struct AgentWatches {
    addr: Option<String>,
    running: parking_lot::Mutex<Vec<std::sync::Arc<AtomicBool>>>,
}

impl AgentWatches {
    /// Watches that will ask the agent at `addr` (none: the HTTP port is off).
    pub fn new(addr: Option<std::net::SocketAddr>) -> AgentWatches {
        AgentWatches {
            addr: addr.map(|a| a.to_string()),
            running: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// Stops the watches running and starts `watches` (checked already); how many run.
    pub fn replace(&self, watches: &[BTreeMap<String, Value>]) -> usize {
        let mut running = self.running.lock();
        for stop in running.drain(..) {
            stop.store(true, Ordering::SeqCst);
        }
        if watches.is_empty() {
            return 0;
        }
        let Some(addr) = &self.addr else {
            tracing::warn!("watches need the HTTP API (ports.http); they do not run");
            return 0;
        };
        for watch in watches {
            let (spec, handler) = match (WatchSpec::from_config(watch), Handler::from_config(watch))
            {
                (Ok(spec), Ok(handler)) => (spec, handler),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "a watch was not started");
                    continue;
                }
            };
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            running.push(stop.clone());
            let client = ApiClient::new(addr, Duration::from_secs(90)).with_token(
                watch
                    .get("token")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
            tracing::info!(watch = %spec.kind, "watch started");
            std::thread::spawn(move || {
                if let Err(e) = run(&client, &spec, &handler, &stop) {
                    tracing::warn!(watch = %spec.kind, error = %e, "watch stopped");
                }
            });
        }
        running.len()
    }

    /// Stops every watch (the agent stops).
    pub fn stop_all(&self) {
        self.replace(&[]);
    }
}

/// Checks a `watches` block as the agent will run it; each problem says which watch.
pub fn check_config(watches: &[BTreeMap<String, Value>]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, watch) in watches.iter().enumerate() {
        for result in [
            WatchSpec::from_config(watch).err(),
            Handler::from_config(watch).err(),
        ]
        .into_iter()
        .flatten()
        {
            problems.push(format!("watches[{i}]: {result}"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<WatchSpec, String> {
        let map: BTreeMap<String, Value> = serde_json::from_str(json).expect("json");
        WatchSpec::from_config(&map)
    }

    #[test]
    fn each_type_asks_consuls_endpoint() {
        let path = |json: &str| spec(json).and_then(|s| s.path());
        assert_eq!(
            path(r#"{"type": "key", "key": "a/b"}"#).as_deref(),
            Ok("/v1/kv/a/b")
        );
        assert_eq!(
            path(r#"{"type": "keyprefix", "prefix": "a/"}"#).as_deref(),
            Ok("/v1/kv/a/?recurse")
        );
        assert_eq!(
            path(r#"{"type": "service", "service": "web", "tag": ["v1", "x"], "passingonly": true, "datacenter": "dc2"}"#)
                .as_deref(),
            Ok("/v1/health/service/web?tag=v1&tag=x&passing&dc=dc2")
        );
        assert_eq!(
            path(r#"{"type": "checks", "state": "critical"}"#).as_deref(),
            Ok("/v1/health/state/critical")
        );
        assert_eq!(
            path(r#"{"type": "checks", "service": "web"}"#).as_deref(),
            Ok("/v1/health/checks/web")
        );
        assert_eq!(
            path(r#"{"type": "event", "name": "deploy"}"#).as_deref(),
            Ok("/v1/event/list?name=deploy")
        );
        assert_eq!(
            path(r#"{"type": "nodes"}"#).as_deref(),
            Ok("/v1/catalog/nodes")
        );
        assert!(path(r#"{"type": "key"}"#).is_err());
        assert!(path(r#"{"type": "weather"}"#).is_err());
        assert!(path(r#"{"type": "checks", "service": "a", "state": "passing"}"#).is_err());
    }

    #[test]
    fn handlers_from_the_watches_block() {
        let handler = |json: &str| {
            let map: BTreeMap<String, Value> = serde_json::from_str(json).expect("json");
            Handler::from_config(&map)
        };
        assert_eq!(
            handler(r#"{"args": ["/bin/echo", "hi"]}"#),
            Ok(Handler::Script {
                args: vec!["/bin/echo".into(), "hi".into()],
                shell: false
            })
        );
        assert_eq!(
            handler(r#"{"handler": "echo hi"}"#),
            Ok(Handler::Script {
                args: vec!["echo hi".into()],
                shell: true
            })
        );
        let http = handler(
            r#"{"handler_type": "http", "http_handler_config": {"path": "http://127.0.0.1:1/x", "method": "put", "header": {"A": ["b"]}, "timeout": "3s"}}"#,
        );
        assert_eq!(
            http,
            Ok(Handler::Http {
                url: "http://127.0.0.1:1/x".into(),
                method: "PUT".into(),
                headers: vec![("A".into(), "b".into())],
                timeout: Duration::from_secs(3),
            })
        );
        assert!(handler("{}").is_err());
    }

    #[test]
    fn a_key_watch_gets_the_entry_or_null() {
        let key = spec(r#"{"type": "key", "key": "a"}"#).expect("spec");
        assert_eq!(key.value_of(404, b""), Ok(Value::Null));
        assert_eq!(
            key.value_of(200, br#"[{"Key": "a"}]"#),
            Ok(serde_json::json!({"Key": "a"}))
        );
        assert!(key.value_of(500, b"boom").is_err());
    }
}
