//! Consul's own material against real agents: request bodies as Consul's docs and client
//! libraries write them (PascalCase, lowercase, `null`s, fields Isthmus does not know),
//! agents started with `consul agent`'s flags and config files (JSON and HCL), and the
//! tutorials' `join` flow. The rows that `COMPATIBILITY.md` marks as working are proved here.
//!
//! Each test has its own loopback subnet `127.<130+>.0.0/24`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dc_agent::client::{ApiClient, ApiResponse};

/// An agent started with `consul agent`'s command line, no topology file, no TLS.
struct FlagAgent {
    address: String,
    log: PathBuf,
    child: Option<Child>,
}

impl FlagAgent {
    /// `dc-agent agent ARGS...`, its output in `dir/<name>.log`.
    fn start(dir: &Path, name: &str, address: &str, args: &[&str]) -> FlagAgent {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create log");
        let child = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
            .arg("agent")
            .args(args)
            .stdout(Stdio::from(file.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn dc-agent");
        FlagAgent {
            address: address.to_owned(),
            log,
            child: Some(child),
        }
    }

    /// A server on `address` with data under `dir/<name>`, plus `more` flags.
    fn server(dir: &Path, name: &str, address: &str, more: &[&str]) -> FlagAgent {
        let data = dir.join(name).display().to_string();
        let mut args = vec![
            "-server".to_owned(),
            format!("-node={name}"),
            format!("-bind={address}"),
            format!("-client={address}"),
            format!("-data-dir={data}"),
        ];
        args.extend(more.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        FlagAgent::start(dir, name, address, &args)
    }

    fn http(&self) -> String {
        format!("{}:8500", self.address)
    }

    fn client(&self) -> ApiClient {
        ApiClient::new(&self.http(), Duration::from_secs(30))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn request(&self, method: &str, path: &str, body: &str) -> ApiResponse {
        let client = self.client();
        let result = match method {
            "GET" => client.get(path),
            "PUT" => client.put(path, body.as_bytes()),
            "DELETE" => client.delete(path),
            other => panic!("unsupported method {other}"),
        };
        result.unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// Waits until the agent answers with a leader.
    fn wait_for_leader(&self, limit: Duration) {
        wait_for(limit, &[self], "a leader", || {
            let response = self.client().get("/v1/status/leader").ok()?;
            let leader = response.json::<String>().ok()?;
            (!leader.is_empty()).then_some(())
        });
    }

    /// Whether the process has exited, and how.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for FlagAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits up to `limit` for `condition`; panics with the agents' logs when it never holds.
fn wait_for<T>(
    limit: Duration,
    agents: &[&FlagAgent],
    what: &str,
    mut condition: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = agents
                .iter()
                .map(|a| format!("===== {} =====\n{}", a.address, a.log()))
                .collect();
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn json(response: &ApiResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&response.body)))
}

/// Bodies as Consul's docs and its client libraries send them: PascalCase with fields
/// Isthmus does not keep, lowercase (python-consul, hand-written curl), `null` for empty
/// lists and maps. Go's `encoding/json` takes all of them; so must we.
#[test]
fn request_bodies_decode_as_go_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FlagAgent::server(dir.path(), "n1", "127.130.0.1", &["-bootstrap-expect=1"]);
    agent.wait_for_leader(Duration::from_secs(30));

    // /v1/agent/service/register, the body of Consul's API docs (Connect, Weights,
    // TaggedAddresses and EnableTagOverride are not kept, and must not be refused).
    let docs_body = r#"{
      "ID": "redis1",
      "Name": "redis",
      "Tags": ["primary", "v1"],
      "Address": "127.0.0.1",
      "Port": 8000,
      "Meta": {"redis_version": "4.0"},
      "EnableTagOverride": false,
      "Check": {
        "DeregisterCriticalServiceAfter": "90m",
        "Args": ["/usr/local/bin/check_redis.py"],
        "Interval": "10s",
        "Timeout": "5s"
      },
      "Weights": {"Passing": 10, "Warning": 1},
      "TaggedAddresses": {"lan": {"address": "127.0.0.1", "port": 8000}}
    }"#;
    let response = agent.request("PUT", "/v1/agent/service/register", docs_body);
    // Script checks are off by default, as in Consul: the docs' body is refused for that,
    // not for its shape.
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.text().contains("script"),
        "refused for the script check: {}",
        response.text()
    );
    let without_script = docs_body.replace(
        r#""Args": ["/usr/local/bin/check_redis.py"],"#,
        r#""TTL": "30s","#,
    );
    let without_script = without_script.replace(r#""Interval": "10s","#, "");
    let without_script = without_script.replace(r#""Timeout": "5s""#, r#""Notes": "ttl""#);
    let response = agent.request("PUT", "/v1/agent/service/register", &without_script);
    assert_eq!(response.status, 200, "{}", response.text());

    // Lowercase, as the issue reports from python clients, with nulls and unknown fields.
    let response = agent.request(
        "PUT",
        "/v1/agent/service/register",
        r#"{"name":"web","id":"web1","port":80,"tags":null,"meta":null,"address":"10.1.2.3",
            "check":{"ttl":"15s","name":"web ttl","deregister_critical_service_after":"1h"},
            "unknown_field":{"nested":[1,2,3]}}"#,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let services = json(&agent.request("GET", "/v1/agent/services", ""));
    assert_eq!(services["web1"]["Service"], "web");
    assert_eq!(services["web1"]["Port"], 80);
    assert_eq!(services["web1"]["Address"], "10.1.2.3");
    assert_eq!(services["web1"]["Tags"], serde_json::json!([]));
    assert_eq!(services["redis1"]["Meta"]["redis_version"], "4.0");
    let checks = json(&agent.request("GET", "/v1/agent/checks", ""));
    assert_eq!(checks["service:web1"]["Name"], "web ttl", "{checks:#}");
    assert_eq!(checks["service:redis1"]["Notes"], "ttl", "{checks:#}");

    // A check on its own, lowercase.
    let response = agent.request(
        "PUT",
        "/v1/agent/check/register",
        r#"{"name":"mem","checkid":"mem-util","ttl":"30s","serviceid":null}"#,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let response = agent.request("PUT", "/v1/agent/check/pass/mem-util", "");
    assert_eq!(response.status, 200, "{}", response.text());
    let checks = json(&agent.request("GET", "/v1/agent/checks", ""));
    assert_eq!(checks["mem-util"]["Status"], "passing", "{checks:#}");

    // /v1/catalog/register, the docs' body (with fields Isthmus does not keep), then
    // lowercase with nulls.
    let response = agent.request(
        "PUT",
        "/v1/catalog/register",
        r#"{
          "Datacenter": "dc1",
          "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
          "Node": "t2.320",
          "Address": "192.168.10.10",
          "TaggedAddresses": {"lan": "192.168.10.10", "wan": "10.0.10.10"},
          "NodeMeta": {"somekey": "somevalue"},
          "Service": {
            "ID": "redis1",
            "Service": "redis",
            "Tags": ["primary", "v1"],
            "Address": "127.0.0.1",
            "TaggedAddresses": {"lan": {"address": "127.0.0.1", "port": 8000}},
            "Meta": {"redis_version": "4.0"},
            "Port": 8000,
            "Namespace": "default"
          },
          "Check": {
            "Node": "t2.320",
            "CheckID": "service:redis1",
            "Name": "Redis health check",
            "Notes": "Script based health check",
            "Status": "passing",
            "ServiceID": "redis1",
            "Definition": {"TCP": "localhost:8888", "Interval": "5s", "Timeout": "1s"}
          },
          "SkipNodeUpdate": false
        }"#,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let response = agent.request(
        "PUT",
        "/v1/catalog/register",
        r#"{"node":"ext1","address":"10.9.9.9","nodemeta":null,
            "service":{"service":"search","port":9200,"tags":null},
            "checks":null}"#,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let search = json(&agent.request("GET", "/v1/catalog/service/search", ""));
    assert_eq!(search[0]["Node"], "ext1", "{search:#}");
    assert_eq!(search[0]["ServicePort"], 9200);
    let redis = json(&agent.request("GET", "/v1/health/service/redis?passing", ""));
    assert!(
        redis
            .as_array()
            .is_some_and(|all| all.iter().any(|e| e["Node"]["Node"] == "t2.320")),
        "{redis:#}"
    );

    // /v1/txn in lowercase.
    let response = agent.request(
        "PUT",
        "/v1/txn",
        r#"[{"kv":{"verb":"set","key":"app/a","value":"YQ=="}},
            {"KV":{"Verb":"get","Key":"app/a"}}]"#,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(json(&response)["Results"][1]["KV"]["Value"], "YQ==");

    // Malformed JSON is still a 400 naming the problem, and nothing is written.
    let response = agent.request("PUT", "/v1/agent/service/register", r#"{"name":"x","#);
    assert_eq!(response.status, 400);
    assert!(response.text().contains("Request decode failed"));
    let response = agent.request("PUT", "/v1/agent/service/register", r#"{"port":"80"}"#);
    assert_eq!(
        response.status,
        400,
        "a string for a number: {}",
        response.text()
    );
}
