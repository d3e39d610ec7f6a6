//! Consul's own material against real agents: request bodies as Consul's docs and client
//! libraries write them (PascalCase, lowercase, `null`s, fields Isthmus does not know),
//! agents started with `consul agent`'s flags and config files (JSON and HCL), and the
//! tutorials' `join` flow. The rows that `COMPATIBILITY.md` marks as working are proved here.
//!
//! Each test has its own loopback subnet `127.<130+>.0.0/24`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dc_agent::client::ApiClient;
use support::flag_agent::{dc_agent, json, wait_for, FlagAgent};

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
    // Node IDs as Consul's: kept from the registration, the agent's own is its NodeID, a
    // registration without one keeps the node's, a malformed one or one that another node
    // holds is refused.
    // The agent's own redis1 (synced by anti-entropy, node n1) may be listed too: pick
    // the registered node's entry.
    let redis = json(&agent.request("GET", "/v1/catalog/service/redis", ""));
    let registered = redis
        .as_array()
        .and_then(|all| all.iter().find(|e| e["Node"] == "t2.320"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        registered["ID"], "40e4a748-2192-161a-0510-9bf59fe950b5",
        "{redis:#}"
    );
    let response = agent.request(
        "PUT",
        "/v1/catalog/register",
        r#"{"Node":"t2.320","Address":"192.168.10.11"}"#,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let node = json(&agent.request("GET", "/v1/catalog/node/t2.320", ""));
    assert_eq!(node["Node"]["ID"], "40e4a748-2192-161a-0510-9bf59fe950b5");
    assert_eq!(node["Node"]["Address"], "192.168.10.11");
    let response = agent.request(
        "PUT",
        "/v1/catalog/register",
        r#"{"ID":"not-a-uuid","Node":"t2.321","Address":"192.168.10.12"}"#,
    );
    assert_eq!(response.status, 400, "{}", response.text());
    let response = agent.request(
        "PUT",
        "/v1/catalog/register",
        r#"{"ID":"40e4a748-2192-161a-0510-9bf59fe950b5","Node":"t2.321","Address":"192.168.10.12"}"#,
    );
    assert!(response.status >= 400, "{}", response.text());
    let own_id = json(&agent.request("GET", "/v1/agent/self", ""))["Config"]["NodeID"].clone();
    assert!(own_id.as_str().is_some_and(|id| id.len() == 36), "{own_id}");
    wait_for(
        Duration::from_secs(20),
        &[&agent],
        "the agent's node ID in the catalog",
        || {
            let nodes: serde_json::Value =
                agent.client().get("/v1/catalog/nodes").ok()?.json().ok()?;
            nodes
                .as_array()?
                .iter()
                .any(|n| n["ID"] == own_id && n["Node"] != "t2.320")
                .then_some(())
        },
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

/// A config directory as Consul users keep one: JSON and HCL mixed, with keys Isthmus does
/// not support (gRPC, ACLs, telemetry, Connect), top-level checks, a check's old `script`.
fn consul_config_dir(dir: &Path) -> PathBuf {
    let config = dir.join("consul.d");
    std::fs::create_dir_all(&config).expect("mkdir");
    std::fs::write(
        config.join("00-base.hcl"),
        r#"
datacenter = "dc1"
log_level = "INFO"
node_id = "adf4238a-882b-9ddc-4a9d-5b6758e4159e"
enable_script_checks = true
ports {
  grpc     = 8502
  grpc_tls = -1
  https    = -1
  dns      = -1
}
acl {
  enabled        = true
  default_policy = "allow"
  tokens {
    agent = "e95b599e-166e-7d80-08ad-aee76e7ddf19"
  }
}
telemetry {
  prometheus_retention_time = "60s"
  disable_hostname          = true
}
connect {
  enabled = true
}
performance {
  raft_multiplier = 1
}
"#,
    )
    .expect("write");
    std::fs::write(
        config.join("10-web.json"),
        r#"{
  "service": {
    "name": "web",
    "tags": ["rails"],
    "port": 80,
    "enable_tag_override": false,
    "weights": {"passing": 10, "warning": 1},
    "check": {"id": "web-ttl", "name": "web alive", "ttl": "30s"}
  },
  "check": {"id": "mem", "name": "Memory utilization", "script": "true", "interval": "10s"},
  "checks": [{"id": "disk", "name": "Disk", "ttl": "60s", "status": "passing"}]
}"#,
    )
    .expect("write");
    std::fs::write(
        config.join("20-db.hcl"),
        r#"
services {
  name = "db"
  port = 5432
  checks = [
    {
      id  = "db-ttl"
      ttl = "30s"
    }
  ]
}
"#,
    )
    .expect("write");
    // HCL1, which Consul reads and HCL2 refuses: commas between items, two items on one
    // line, a quoted key.
    std::fs::write(
        config.join("30-hcl1.hcl"),
        r#"
node_meta { rack = "r1", zone = "z1" }
"dns_config" { node_ttl = "10s" allow_stale = true }
"#,
    )
    .expect("write");
    config
}

/// `consul agent` as Consul's docs run it: every flag below is Consul's; the config
/// directory mixes JSON and HCL with keys Isthmus does not support. The agent starts, warns
/// once per unsupported key, applies the rest (`-1` turns DNS off), and `validate` says the
/// same of the same files.
#[test]
fn consul_flags_and_config_files_start_an_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = consul_config_dir(dir.path());
    let pid_file = dir.path().join("run/consul/consul.pid");
    let data = dir.path().join("data").display().to_string();
    let mut agent = FlagAgent::start(
        dir.path(),
        "server_01",
        "127.131.0.1",
        &[
            "-server=true",
            "-bootstrap-expect=1",
            "-node=server_01",
            "-bind=127.131.0.1",
            "-client",
            "127.131.0.1",
            &format!("-data-dir={data}"),
            &format!("-config-dir={}", config.display()),
            "-hcl",
            "ports {\n  serf_wan = -1\n}",
            "-ui",
            "-rejoin",
            "-retry-join-wan=127.131.0.9",
            "-grpc-port=8502",
            "-log-file=/tmp/ignored-consul.log",
            "-disable-host-node-id=false",
            &format!("-pid-file={}", pid_file.display()),
        ],
    );
    agent.wait_for_leader(Duration::from_secs(30));
    let log = agent.log();
    for key in [
        "ports.grpc",
        "ports.grpc_tls",
        "ports.serf_wan",
        "telemetry",
        "connect",
        "performance",
        "node_id",
        "services.enable_tag_override",
        "services.weights",
        "rejoin_after_leave",
        "retry_join_wan",
        "log_file",
        "disable_host_node_id",
    ] {
        assert!(
            log.contains(&format!("`{key}`")),
            "no warning names {key}:\n{log}"
        );
    }
    assert!(
        log.contains("server_01") && log.contains("will not be discoverable via DNS"),
        "a node name that is no DNS label is only warned about:\n{log}"
    );
    assert!(
        std::net::TcpStream::connect("127.131.0.1:8600").is_err(),
        "ports.dns = -1 turns DNS off"
    );
    // `-ui` serves the web UI, and `/` leads there, as Consul's agent does.
    let ui = agent.client().get("/ui/").expect("the UI");
    assert_eq!(ui.status, 200);
    assert!(ui.text().contains("/ui/assets/app.js"), "{}", ui.text());
    let head = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect("127.131.0.1:8500").expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.to_lowercase()
    };
    assert!(
        head.starts_with("http/1.1 301") && head.contains("location: /ui/"),
        "{head}"
    );
    let pid = std::fs::read_to_string(&pid_file).expect("the PID file, its directory created");
    assert_eq!(
        pid.trim(),
        agent
            .child
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default()
    );
    // Every check of the files runs: the service's, the top-level ones (a script, a TTL
    // given a status), the HCL service's.
    let checks = wait_for(
        Duration::from_secs(20),
        &[&agent],
        "the config's checks",
        || {
            let checks = json(&agent.request("GET", "/v1/agent/checks", ""));
            (checks["mem"]["Status"] == "passing").then_some(checks)
        },
    );
    assert_eq!(checks["web-ttl"]["ServiceID"], "web", "{checks:#}");
    assert_eq!(checks["disk"]["Status"], "passing", "{checks:#}");
    assert_eq!(checks["db-ttl"]["ServiceID"], "db", "{checks:#}");
    let nodes = wait_for(
        Duration::from_secs(20),
        &[&agent],
        "the node in the catalog",
        || {
            let nodes = json(&agent.request("GET", "/v1/catalog/nodes", ""));
            (nodes[0]["Node"] == "server_01" && nodes[0]["Meta"]["rack"] == "r1").then_some(nodes)
        },
    );
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes:#}");
    assert_eq!(
        nodes[0]["Meta"]["rack"], "r1",
        "the HCL1 file applies: {nodes:#}"
    );
    assert_eq!(nodes[0]["Meta"]["zone"], "z1", "{nodes:#}");

    // `validate` takes the same directory, says it is valid and names what it ignores.
    let (code, output) = dc_agent(&["validate", &config.display().to_string()]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Configuration is valid!"), "{output}");
    assert!(output.contains("`ports.grpc`"), "{output}");
    // A misspelt key stays an error, with its place and the key meant.
    let typo = dir.path().join("typo.hcl");
    std::fs::write(&typo, "datacenter = \"dc1\"\nports {\n  htp = 8500\n}\n").expect("write");
    let (code, output) = dc_agent(&["validate", &typo.display().to_string()]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains(
            "typo.hcl:3:3: unknown configuration key `ports.htp`; did you mean `ports.http`?"
        ),
        "{output}"
    );
    let (code, output) = dc_agent(&[
        "agent",
        "-server",
        "-config-file",
        &typo.display().to_string(),
    ]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("did you mean `ports.http`?"), "{output}");
    let (code, output) = dc_agent(&["agent", "-sever"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("did you mean -server?"), "{output}");

    // SIGTERM stops it and removes the PID file.
    agent.terminate();
    agent.wait_exit(Duration::from_secs(20), "the agent ignored SIGTERM");
    assert!(!pid_file.exists(), "the PID file is removed at exit");
}

/// `dc-agent agent ... 2>&1 | head -1`, then SIGTERM: the agent whose log pipe has closed
/// still stops (it used to hang on its next log line and ignore every signal).
#[test]
fn an_agent_with_a_closed_log_pipe_still_stops_on_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let (reader, writer) = std::io::pipe().expect("pipe");
    let data = dir.path().join("data").display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .args([
            "agent",
            "-server",
            "-bootstrap-expect=1",
            "-node=n1",
            "-bind=127.132.0.1",
            "-client=127.132.0.1",
            &format!("-data-dir={data}"),
            "-log-level=debug",
        ])
        .stdout(writer.try_clone().expect("clone pipe"))
        .stderr(writer)
        .spawn()
        .expect("spawn dc-agent");
    let mut first = String::new();
    let mut lines = std::io::BufReader::new(reader);
    lines.read_line(&mut first).expect("a first line");
    drop(lines);
    // Let it log (debug level) into the closed pipe for a while, as a running agent does.
    let client = ApiClient::new("127.132.0.1:8500", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get("/v1/status/leader")
        .ok()
        .and_then(|r| r.json::<String>().ok())
        .is_none_or(|leader| leader.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "no leader with the log pipe closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in 0..20 {
        let _ = client.put(&format!("/v1/kv/k{n}"), b"v");
    }
    // SAFETY: signals a child process of this test.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent ignored SIGTERM once its log pipe closed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every binary ends quietly when its reader goes away (`topology status | head -3`).
#[test]
fn command_line_tools_exit_quietly_on_a_closed_pipe() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .args(["agent", "-help"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .args(["--help"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The first seed tutorial: three servers started with `-bootstrap-expect=3` and no
/// `retry_join`, joined afterwards with `consul join`. Bootstrap counts the servers gossip
/// has found, so they elect a leader. Joining an address where nothing listens fails.
/// `operator raft transfer-leader` then moves the leadership, with and without `-id`.
#[test]
fn servers_joined_the_tutorials_way_elect_a_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addresses = ["127.133.0.1", "127.133.0.2", "127.133.0.3"];
    let servers: Vec<FlagAgent> = addresses
        .iter()
        .enumerate()
        .map(|(n, address)| {
            FlagAgent::server(
                dir.path(),
                &format!("consul-server-{}", n + 1),
                address,
                &["-bootstrap-expect=3"],
            )
        })
        .collect();
    let all: Vec<&FlagAgent> = servers.iter().collect();
    wait_for(
        Duration::from_secs(30),
        &all,
        "the agents to answer",
        || {
            servers
                .iter()
                .all(|s| s.client().get("/v1/agent/self").is_ok())
                .then_some(())
        },
    );
    // Nothing listens at 127.133.0.9: Consul's join fails, and so does ours.
    let (code, output) = dc_agent(&["-http-addr=127.133.0.1:8500", "join", "127.133.0.9"]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("Error joining address '127.133.0.9'"),
        "{output}"
    );
    assert!(output.contains("Failed to join any nodes."), "{output}");
    let (code, output) = dc_agent(&[
        "-http-addr=127.133.0.1:8500",
        "join",
        "127.133.0.2",
        "127.133.0.3",
    ]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        output,
        "Successfully joined cluster by contacting 2 nodes.\n"
    );
    let leader = wait_for(
        Duration::from_secs(30),
        &all,
        "a leader all agree on",
        || {
            let leaders: Vec<String> = servers
                .iter()
                .filter_map(|s| s.client().get("/v1/status/leader").ok())
                .filter_map(|r| r.json::<String>().ok())
                .collect();
            (leaders.len() == 3
                && !leaders[0].is_empty()
                && leaders.iter().all(|l| *l == leaders[0]))
            .then(|| leaders[0].clone())
        },
    );
    assert!(leader.starts_with("127.133.0."), "{leader}");
    let peers = json(&servers[0].request("GET", "/v1/operator/raft/configuration", ""));
    let voters = peers["Servers"]
        .as_array()
        .map(|all| all.iter().filter(|s| s["Voter"] == true).count());
    assert_eq!(voters, Some(3), "{peers:#}");
    // A write through any server is read back from another.
    let response = servers[2].request("PUT", "/v1/kv/tutorial", "joined");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        servers[1].request("GET", "/v1/kv/tutorial?raw", "").text(),
        "joined"
    );

    // `operator raft transfer-leader -id=ID` hands leadership to that follower.
    let peers = json(&servers[0].request("GET", "/v1/operator/raft/configuration", ""));
    let follower = peers["Servers"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["Leader"] == false).cloned())
        .unwrap_or_else(|| panic!("no follower in {peers:#}"));
    let id = follower["ID"].as_str().unwrap_or_default().to_owned();
    let address = follower["Address"].as_str().unwrap_or_default().to_owned();
    let (code, output) = dc_agent(&[
        "-http-addr=127.133.0.1:8500",
        "operator",
        "raft",
        "transfer-leader",
        &format!("-id={id}"),
    ]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(output, "Success\n");
    let leaders = |servers: &[FlagAgent]| -> Vec<String> {
        servers
            .iter()
            .filter_map(|s| s.client().get("/v1/status/leader").ok())
            .filter_map(|r| r.json::<String>().ok())
            .collect()
    };
    wait_for(Duration::from_secs(10), &all, "the new leader", || {
        leaders(&servers)
            .iter()
            .all(|l| *l == address)
            .then_some(())
    });
    let response = servers[0].request("PUT", "/v1/kv/tutorial", "transferred");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        servers[2].request("GET", "/v1/kv/tutorial?raw", "").text(),
        "transferred"
    );
    // Without an ID the most up-to-date other voter leads; Consul's answer shape.
    let response = servers[1]
        .client()
        .post("/v1/operator/raft/transfer-leader", b"")
        .expect("transfer-leader");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(json(&response), serde_json::json!({ "Success": true }));
    wait_for(Duration::from_secs(10), &all, "another leader", || {
        let now = leaders(&servers);
        (now.len() == 3 && now.iter().all(|l| *l == now[0]) && now[0] != address).then_some(())
    });
    // An ID that is not a server's is refused.
    let (code, output) = dc_agent(&[
        "-http-addr=127.133.0.1:8500",
        "operator",
        "raft",
        "transfer-leader",
        "-id=00000000-0000-0000-0000-000000000001",
    ]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("Error transfering leadership"), "{output}");
}

/// `consul leave` on the only server (a `-dev` agent, a one-server datacenter) stops it, as
/// Consul's does; it starts again from its data.
#[test]
fn leave_stops_a_single_server_and_its_data_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["-bootstrap-expect=1"];
    let mut agent = FlagAgent::server(dir.path(), "solo", "127.134.0.1", &args);
    agent.wait_for_leader(Duration::from_secs(30));
    assert_eq!(agent.request("PUT", "/v1/kv/kept", "1").text(), "true");
    let (code, output) = dc_agent(&["-http-addr=127.134.0.1:8500", "leave"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(output, "Graceful leave complete\n");
    agent.wait_exit(Duration::from_secs(20), "still running after leave");
    drop(agent);
    let agent = FlagAgent::server(dir.path(), "solo", "127.134.0.1", &args);
    agent.wait_for_leader(Duration::from_secs(30));
    assert_eq!(agent.request("GET", "/v1/kv/kept?raw", "").text(), "1");

    // `/v1/agent/self` has every top-level key of Consul's, and IDs are UUIDs.
    let me = json(&agent.request("GET", "/v1/agent/self", ""));
    for key in [
        "Config",
        "DebugConfig",
        "Coord",
        "Member",
        "Stats",
        "Meta",
        "xDS",
    ] {
        assert!(me.get(key).is_some(), "no {key} in {me:#}");
    }
    let node_id = me["Config"]["NodeID"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(node_id.len(), 36, "{node_id}");
    assert_eq!(node_id.matches('-').count(), 4, "{node_id}");
    let peers = json(&agent.request("GET", "/v1/operator/raft/configuration", ""));
    assert_eq!(peers["Servers"][0]["ID"], node_id.as_str(), "{peers:#}");
    let members = json(&agent.request("GET", "/v1/agent/members", ""));
    for key in [
        "ProtocolMin",
        "ProtocolMax",
        "ProtocolCur",
        "DelegateMin",
        "DelegateMax",
        "DelegateCur",
    ] {
        assert!(members[0].get(key).is_some(), "no {key} in {members:#}");
    }
    // Every server carries the `consul` service, so DNS can find the servers.
    let services = wait_for(
        Duration::from_secs(20),
        &[&agent],
        "the consul service",
        || {
            let services = json(&agent.request("GET", "/v1/catalog/services", ""));
            services.get("consul").is_some().then_some(services)
        },
    );
    assert_eq!(services["consul"], serde_json::json!([]), "{services:#}");
    let consul = json(&agent.request("GET", "/v1/catalog/service/consul", ""));
    assert_eq!(consul[0]["ServicePort"], 8300, "{consul:#}");
    assert_eq!(consul[0]["Node"], "solo", "{consul:#}");
}

fn voters(agent: &FlagAgent) -> Option<Vec<serde_json::Value>> {
    let peers: serde_json::Value = agent
        .client()
        .get("/v1/operator/raft/configuration")
        .ok()?
        .json()
        .ok()?;
    Some(
        peers["Servers"]
            .as_array()?
            .iter()
            .filter(|s| s["Voter"] == true)
            .cloned()
            .collect(),
    )
}

/// Dead servers leave Raft as Consul's do: autopilot's `CleanupDeadServers` (on by
/// default) removes a killed server; with it turned off (`operator autopilot set-config`),
/// `force-leave` of a dead server removes it, and `operator raft remove-peer -address` does
/// by hand. `autopilot get-config`, `state` and the health endpoint report the servers.
#[test]
fn dead_servers_are_removed_from_raft() {
    let dir = tempfile::tempdir().expect("tempdir");
    let join = "-retry-join=127.135.0.1";
    let mut servers: Vec<FlagAgent> = (1..=5)
        .map(|n| {
            FlagAgent::server(
                dir.path(),
                &format!("s{n}"),
                &format!("127.135.0.{n}"),
                &["-bootstrap-expect=3", join],
            )
        })
        .collect();
    let http = "-http-addr=127.135.0.1:8500";
    let voter_names = |servers: &[FlagAgent]| -> Option<Vec<String>> {
        let mut names: Vec<String> = voters(&servers[0])?
            .iter()
            .filter_map(|s| s["Node"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        Some(names)
    };
    {
        let all: Vec<&FlagAgent> = servers.iter().collect();
        wait_for(Duration::from_secs(40), &all, "five voters", || {
            (voter_names(&servers)?.len() == 5).then_some(())
        });
        let health = wait_for(Duration::from_secs(20), &all, "a healthy autopilot", || {
            let health: serde_json::Value = servers[0]
                .client()
                .get("/v1/operator/autopilot/health")
                .ok()?
                .json()
                .ok()?;
            (health["Healthy"] == true).then_some(health)
        });
        assert_eq!(health["FailureTolerance"], 2, "{health:#}");
        assert_eq!(
            health["Servers"].as_array().map(Vec::len),
            Some(5),
            "{health:#}"
        );
        // Each server's LastContact (the leader's: 0s) and since when it is healthy.
        for server in health["Servers"].as_array().into_iter().flatten() {
            let contact = server["LastContact"].as_str().unwrap_or_default();
            if server["Leader"] == true {
                assert_eq!(contact, "0s", "{health:#}");
            } else {
                assert!(contact.ends_with('s') && contact != "0s", "{health:#}");
            }
            let since = server["StableSince"].as_str().unwrap_or_default();
            assert!(since.len() >= 20 && since.contains('T'), "{health:#}");
        }
    }
    let (code, output) = dc_agent(&[http, "operator", "autopilot", "get-config"]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.starts_with(
            "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\n"
        ),
        "{output}"
    );
    // Health includes each follower's last contact (200 ms at most): a busy machine may
    // miss it for a moment, so ask until it holds.
    let all: Vec<&FlagAgent> = servers.iter().collect();
    let output = wait_for(
        Duration::from_secs(20),
        &all,
        "autopilot state healthy",
        || {
            let (code, output) = dc_agent(&[http, "operator", "autopilot", "state"]);
            (code == 0 && output.starts_with("Healthy:                      true\n"))
                .then_some(output)
        },
    );
    assert!(
        output.starts_with("Healthy:                      true\nFailure Tolerance:            2\n"),
        "{output}"
    );
    drop(all);

    // s5 dies: autopilot takes it out of Raft by itself.
    drop(servers.pop());
    let all: Vec<&FlagAgent> = servers.iter().collect();
    wait_for(
        Duration::from_secs(30),
        &all,
        "autopilot to remove s5",
        || (voter_names(&servers)? == ["s1", "s2", "s3", "s4"]).then_some(()),
    );
    // s5 comes back: its own log still names it a voter, so the leader adds it back.
    servers.push(FlagAgent::server(
        dir.path(),
        "s5",
        "127.135.0.5",
        &["-bootstrap-expect=3", join],
    ));
    let all: Vec<&FlagAgent> = servers.iter().collect();
    wait_for(Duration::from_secs(40), &all, "s5 added back", || {
        (voter_names(&servers)?.len() == 5).then_some(())
    });
    drop(servers.pop());
    let all: Vec<&FlagAgent> = servers.iter().collect();
    wait_for(
        Duration::from_secs(30),
        &all,
        "autopilot to remove s5 again",
        || (voter_names(&servers)? == ["s1", "s2", "s3", "s4"]).then_some(()),
    );

    // With cleanup off, a dead server stays until force-left.
    let (code, output) = dc_agent(&[
        http,
        "operator",
        "autopilot",
        "set-config",
        "-cleanup-dead-servers=false",
        "-max-trailing-logs=500",
    ]);
    assert_eq!((code, output.as_str()), (0, "Configuration updated!\n"));
    let (_, output) = dc_agent(&[http, "operator", "autopilot", "get-config"]);
    assert!(
        output.contains("CleanupDeadServers = false\n")
            && output.contains("MaxTrailingLogs = 500\n"),
        "{output}"
    );
    drop(servers.pop());
    let all: Vec<&FlagAgent> = servers.iter().collect();
    wait_for(Duration::from_secs(30), &all, "s4 failed", || {
        let members: serde_json::Value = servers[0]
            .client()
            .get("/v1/agent/members")
            .ok()?
            .json()
            .ok()?;
        members
            .as_array()?
            .iter()
            .any(|m| m["Name"] == "s4" && m["Status"] == 4)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        voter_names(&servers).map(|v| v.len()),
        Some(4),
        "cleanup is off: s4 stays a voter until force-left"
    );
    let (code, output) = wait_for(Duration::from_secs(30), &all, "force-leave", || {
        let (code, output) = dc_agent(&[http, "force-leave", "-prune", "s4"]);
        (!output.contains("No cluster leader")).then_some((code, output))
    });
    assert_eq!(code, 0, "{output}");
    wait_for(Duration::from_secs(30), &all, "three voters", || {
        (voter_names(&servers)? == ["s1", "s2", "s3"]).then_some(())
    });

    // s3 dies; remove-peer by address takes it out of Raft.
    let s3_address = voters(&servers[0])
        .and_then(|v| {
            v.into_iter()
                .find(|s| s["Node"] == "s3")
                .and_then(|s| s["Address"].as_str().map(str::to_owned))
        })
        .expect("s3 is a voter");
    drop(servers.pop());
    // Until a new leader stands (s3 may have led), the answer is "No cluster leader".
    let all: Vec<&FlagAgent> = servers.iter().collect();
    let (code, output) = wait_for(Duration::from_secs(30), &all, "a leader", || {
        let (code, output) = dc_agent(&[http, "operator", "raft", "remove-peer", "-id=nope"]);
        (!output.contains("No cluster leader")).then_some((code, output))
    });
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("was not found in the Raft configuration"),
        "{output}"
    );
    let (code, output) = wait_for(Duration::from_secs(30), &all, "remove-peer", || {
        let (code, output) = dc_agent(&[
            http,
            "operator",
            "raft",
            "remove-peer",
            &format!("-address={s3_address}"),
        ]);
        (!output.contains("No cluster leader")).then_some((code, output))
    });
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        output,
        format!("Removed peer with address \"{s3_address}\"\n")
    );
    assert_eq!(
        voter_names(&servers),
        Some(vec!["s1".to_owned(), "s2".to_owned()])
    );
    // The two left still form a cluster that takes writes.
    let write = wait_for(Duration::from_secs(30), &all, "a write", || {
        let response = servers[1].client().put("/v1/kv/after", b"x").ok()?;
        (response.status == 200).then(|| response.text())
    });
    assert_eq!(write, "true");
}

/// The CLI verbs Consul users reach for, with Consul's flags, files and output.
#[test]
fn cli_verbs_as_consuls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FlagAgent::server(dir.path(), "cli1", "127.136.0.1", &["-bootstrap-expect=1"]);
    agent.wait_for_leader(Duration::from_secs(30));
    let run = |args: &[&str]| -> (i32, String) {
        let mut all = vec!["-http-addr=127.136.0.1:8500", "-token=anonymous"];
        all.extend_from_slice(args);
        dc_agent(&all)
    };
    let (code, output) = run(&["version"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.starts_with("Isthmus v"), "{output}");
    assert!(output.contains("Protocol 2 spoken by default"), "{output}");

    // services register: flags, then an HCL definition file as Consul's docs write it.
    let (code, output) = run(&[
        "services",
        "register",
        "-name=web",
        "-port=8080",
        "-tag=v1",
        "-tag=primary",
        "-meta=team=a",
    ]);
    assert_eq!((code, output.as_str()), (0, "Registered service: web\n"));
    let file = dir.path().join("redis.hcl");
    std::fs::write(
        &file,
        "service {\n  name = \"redis\"\n  id   = \"redis1\"\n  port = 6379\n  tags = [\"cache\"]\n  check {\n    ttl = \"30s\"\n  }\n}\n",
    )
    .expect("write");
    let (code, output) = run(&["services", "register", &file.display().to_string()]);
    assert_eq!((code, output.as_str()), (0, "Registered service: redis\n"));
    let services = json(&agent.request("GET", "/v1/agent/services", ""));
    assert_eq!(
        services["web"]["Tags"],
        serde_json::json!(["v1", "primary"])
    );
    assert_eq!(services["web"]["Meta"]["team"], "a");
    assert_eq!(services["redis1"]["Port"], 6379);
    let checks = json(&agent.request("GET", "/v1/agent/checks", ""));
    assert_eq!(
        checks["service:redis1"]["ServiceID"], "redis1",
        "{checks:#}"
    );

    // catalog nodes -service, -detailed; catalog services -node.
    let output = wait_for(
        Duration::from_secs(20),
        &[&agent],
        "web in the catalog",
        || {
            let (code, output) = run(&["catalog", "services", "-node=cli1", "-tags"]);
            let consul = output.lines().any(|l| l.trim() == "consul");
            (code == 0 && output.contains("web") && consul).then_some(output)
        },
    );
    let rows: Vec<Vec<&str>> = output
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.contains(&vec!["redis", "cache"]), "{output}");
    assert!(rows.contains(&vec!["web", "v1,primary"]), "{output}");
    assert!(
        rows.contains(&vec!["consul"]),
        "a server's own service: {output}"
    );
    let (code, output) = run(&["catalog", "nodes", "-service=redis", "-detailed"]);
    assert_eq!(code, 0, "{output}");
    let lines: Vec<&str> = output.lines().collect();
    assert!(lines[0].starts_with("Node  ID"), "{output}");
    assert!(lines[0].contains("TaggedAddresses  Meta"), "{output}");
    assert!(lines[1].starts_with("cli1"), "{output}");
    let (code, output) = run(&["catalog", "nodes", "-service=nothing"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("No nodes match"), "{output}");
    let (code, output) = run(&["catalog", "nodes", "-filter=Node == cli1"]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.lines().nth(1).is_some_and(|l| l.starts_with("cli1")),
        "{output}"
    );
    let (code, output) = run(&["catalog", "nodes", "-node-meta=rack:none"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("No nodes match"), "{output}");
    let (code, output) = run(&["join", "-wan", "127.0.0.1"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("through their gateways"), "{output}");

    // maint: node, then a service; the listing shows both.
    let (code, output) = run(&["maint", "-enable", "-reason=upgrading"]);
    assert_eq!(
        (code, output.as_str()),
        (0, "Node maintenance is now enabled\n")
    );
    let (code, output) = run(&["maint", "-enable", "-service=web"]);
    assert_eq!(
        (code, output.as_str()),
        (0, "Service maintenance is now enabled for \"web\"\n")
    );
    let (code, output) = run(&["maint"]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("Node:\n  Name:   cli1\n  Reason: upgrading"),
        "{output}"
    );
    assert!(output.contains("Service:\n  ID:     web"), "{output}");
    let (code, output) = run(&["maint", "-disable"]);
    assert_eq!(
        (code, output.as_str()),
        (0, "Node maintenance is now disabled\n")
    );
    let (code, _) = run(&["maint", "-enable", "-service=nope"]);
    assert_eq!(code, 1);

    // kv export and import round trip, as Consul's JSON.
    for (key, value) in [("app/a", "1"), ("app/b/c", "two")] {
        let (code, output) = run(&["kv", "put", key, value]);
        assert_eq!(code, 0, "{output}");
    }
    let (code, exported) = run(&["kv", "export", "app/"]);
    assert_eq!(code, 0, "{exported}");
    assert!(
        exported.contains(
            "\t{\n\t\t\"key\": \"app/a\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"MQ==\"\n\t}"
        ),
        "{exported}"
    );
    let export_file = dir.path().join("export.json");
    std::fs::write(&export_file, &exported).expect("write");
    let (code, output) = run(&[
        "kv",
        "import",
        "-prefix=copy/",
        &format!("@{}", export_file.display()),
    ]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(output, "Imported: copy/app/a\nImported: copy/app/b/c\n");
    assert_eq!(
        agent.request("GET", "/v1/kv/copy/app/b/c?raw", "").text(),
        "two"
    );

    // services deregister by ID and by file.
    let (code, output) = run(&["services", "deregister", "-id=web"]);
    assert_eq!((code, output.as_str()), (0, "Deregistered service: web\n"));
    let (code, output) = run(&["services", "deregister", &file.display().to_string()]);
    assert_eq!(
        (code, output.as_str()),
        (0, "Deregistered service: redis1\n")
    );
    let services = json(&agent.request("GET", "/v1/agent/services", ""));
    assert_eq!(services, serde_json::json!({}), "{services:#}");
}

fn dig(server: &str, args: &[&str]) -> String {
    let output = Command::new("dig")
        .args([
            &format!("@{server}"),
            "-p",
            "8600",
            "+time=2",
            "+tries=1",
            "+noall",
            "+answer",
        ])
        .args(args)
        .output()
        .expect("dig is missing: install Debian's dnsutils (scripts/test.sh does)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// DNS answers as Consul's over the wire: a host-name address is a CNAME, the servers
/// answer `consul.` NS (and SOA), reverse lookups answer PTR.
#[test]
fn dns_answers_as_consuls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FlagAgent::server(dir.path(), "dns1", "127.137.0.1", &["-bootstrap-expect=1"]);
    agent.wait_for_leader(Duration::from_secs(30));
    let response = agent.request(
        "PUT",
        "/v1/catalog/register",
        r#"{"Node":"rds","Address":"mydb.example.com","Service":{"Service":"db","Port":5432}}"#,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let fields = |line: &str| -> Vec<String> {
        let parts: Vec<&str> = line.split_whitespace().collect();
        // name, ttl, class, type, data...: keep name, type and data.
        let mut out = vec![parts.first().copied().unwrap_or_default().to_owned()];
        out.extend(parts.iter().skip(3).map(|s| s.to_string()));
        out
    };
    let answer = dig("127.137.0.1", &["db.service.consul", "A"]);
    assert_eq!(
        answer.lines().map(fields).collect::<Vec<_>>(),
        [["db.service.consul.", "CNAME", "mydb.example.com."]],
        "{answer}"
    );
    let answer = wait_for(Duration::from_secs(20), &[&agent], "NS of consul.", || {
        let answer = dig("127.137.0.1", &["consul.", "NS"]);
        (!answer.is_empty()).then_some(answer)
    });
    assert_eq!(
        answer.lines().map(fields).collect::<Vec<_>>(),
        [["consul.", "NS", "dns1.node.dc1.consul."]],
        "{answer}"
    );
    let answer = dig("127.137.0.1", &["consul.", "SOA"]);
    assert!(
        answer.contains("SOA\tns.consul. hostmaster.consul."),
        "{answer}"
    );
    let answer = dig("127.137.0.1", &["-x", "127.137.0.1"]);
    assert_eq!(
        answer.lines().map(fields).collect::<Vec<_>>(),
        [["1.0.137.127.in-addr.arpa.", "PTR", "dns1.node.dc1.consul."]],
        "{answer}"
    );

    // A client agent answers NS and PTR the same, from its view of the catalog.
    let data = dir.path().join("client").display().to_string();
    let client = FlagAgent::start(
        dir.path(),
        "dnsc",
        "127.137.0.2",
        &[
            "-node=dnsc",
            "-bind=127.137.0.2",
            "-client=127.137.0.2",
            &format!("-data-dir={data}"),
            "-retry-join=127.137.0.1",
        ],
    );
    let answer = wait_for(
        Duration::from_secs(30),
        &[&agent, &client],
        "PTR from the client",
        || {
            let answer = dig("127.137.0.2", &["-x", "127.137.0.2"]);
            answer.contains("PTR").then_some(answer)
        },
    );
    assert_eq!(
        answer.lines().map(fields).collect::<Vec<_>>(),
        [["2.0.137.127.in-addr.arpa.", "PTR", "dnsc.node.dc1.consul."]],
        "{answer}"
    );
    let answer = dig("127.137.0.2", &["consul.", "NS"]);
    assert_eq!(
        answer.lines().map(fields).collect::<Vec<_>>(),
        [["consul.", "NS", "dns1.node.dc1.consul."]],
        "{answer}"
    );
}

/// `/v1/agent/metrics` (Consul's JSON without `?format`), `/v1/agent/host`,
/// `/v1/operator/usage` and `/v1/agent/monitor` (`consul monitor`).
#[test]
fn agent_endpoints_as_consuls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FlagAgent::server(dir.path(), "ep1", "127.138.0.1", &["-bootstrap-expect=1"]);
    agent.wait_for_leader(Duration::from_secs(30));
    let metrics = json(&agent.request("GET", "/v1/agent/metrics", ""));
    for key in ["Timestamp", "Gauges", "Points", "Counters", "Samples"] {
        assert!(metrics.get(key).is_some(), "no {key}: {metrics:#}");
    }
    assert!(
        metrics["Gauges"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["Name"] == "consul.server.isLeader")),
        "{metrics:#}"
    );
    assert_eq!(
        agent
            .request("GET", "/v1/agent/metrics?format=xml", "")
            .status,
        400
    );
    let host = json(&agent.request("GET", "/v1/agent/host", ""));
    assert!(
        host["Memory"]["total"].as_u64().is_some_and(|t| t > 0),
        "{host:#}"
    );
    assert!(host["Host"]["hostname"].is_string(), "{host:#}");
    assert!(
        host["CPU"].as_array().is_some_and(|c| !c.is_empty()),
        "{host:#}"
    );
    let usage = wait_for(
        Duration::from_secs(20),
        &[&agent],
        "usage with the node",
        || {
            let usage = json(&agent.request("GET", "/v1/operator/usage", ""));
            (usage["Usage"]["dc1"]["Nodes"] == 1 && usage["Usage"]["dc1"]["Services"] == 1)
                .then_some(usage)
        },
    );
    assert_eq!(usage["Usage"]["dc1"]["Services"], 1, "{usage:#}");

    // The agent's own view of a service's health: the status code is the aggregate.
    let response = agent.request(
        "PUT",
        "/v1/agent/service/register",
        r#"{"Name":"api","ID":"api1","Port":9000,"Check":{"TTL":"60s"}}"#,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let by_name = agent.request("GET", "/v1/agent/health/service/name/api", "");
    assert_eq!(by_name.status, 503, "a new TTL check is critical");
    assert_eq!(json(&by_name)[0]["AggregatedStatus"], "critical");
    assert_eq!(json(&by_name)[0]["Service"]["ID"], "api1");
    agent.request("PUT", "/v1/agent/check/warn/service:api1", "");
    let by_id = agent.request("GET", "/v1/agent/health/service/id/api1?format=text", "");
    assert_eq!((by_id.status, by_id.text().as_str()), (429, "warning"));
    agent.request("PUT", "/v1/agent/check/pass/service:api1", "");
    let by_id = agent.request("GET", "/v1/agent/health/service/id/api1", "");
    assert_eq!(by_id.status, 200);
    assert_eq!(json(&by_id)["AggregatedStatus"], "passing");
    assert_eq!(
        agent
            .request("GET", "/v1/agent/health/service/name/nope", "")
            .status,
        404
    );
    let node = wait_for(
        Duration::from_secs(20),
        &[&agent],
        "api in the catalog",
        || {
            let node = json(&agent.request("GET", "/v1/catalog/node-services/ep1", ""));
            node["Services"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["ID"] == "api1"))
                .then_some(node)
        },
    );
    assert_eq!(node["Node"]["Node"], "ep1", "{node:#}");
    // `debug`: a short capture, archived as Consul's (`.tar.gz`); tar reads the archive.
    let output_dir = dir.path().join("dbg");
    let (code, output) = dc_agent(&[
        "-http-addr=127.138.0.1:8500",
        "debug",
        "-duration=2s",
        "-interval=1s",
        &format!("-output={}", output_dir.display()),
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("Saved debug archive:"), "{output}");
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(dir.path().join("dbg.tar.gz"))
        .output()
        .expect("tar");
    assert!(listing.status.success(), "{listing:?}");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for name in [
        "dbg/agent.json",
        "dbg/members.json",
        "dbg/host.json",
        "dbg/0/metrics.json",
        "dbg/consul.log",
    ] {
        assert!(
            listing.lines().any(|l| l == name),
            "{name} not in:\n{listing}"
        );
    }
    let (code, output) = dc_agent(&[
        "-http-addr=127.138.0.1:8500",
        "operator",
        "usage",
        "instances",
    ]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("Billable Service Instances Total: 2"),
        "{output}"
    );

    // A bad level is refused; the monitor streams what the agent logs from now on.
    assert_eq!(
        agent
            .request("GET", "/v1/agent/monitor?loglevel=loud", "")
            .status,
        400
    );
    let mut monitor = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .args(["-http-addr=127.138.0.1:8500", "monitor", "-log-level=debug"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run monitor");
    let stdout = monitor.stdout.take().expect("piped");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        // Reloading logs a line at info.
        let _ = agent.client().put("/v1/agent/reload", b"");
        if let Ok(line) = received.recv_timeout(Duration::from_millis(500)) {
            if line.contains("[INFO]  agent: configuration reloaded") {
                break;
            }
            seen.push(line);
        }
        assert!(
            Instant::now() < deadline,
            "no reload line in the monitor: {seen:#?}"
        );
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
}

/// The rows of a table of COMPATIBILITY.md under `heading`, split into cells.
fn compatibility_rows(heading: &str) -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../COMPATIBILITY.md");
    let text = std::fs::read_to_string(path).expect("COMPATIBILITY.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("no section {heading}"));
    section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("|---"))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

/// A PATCH (a method Consul's API never uses) to `path`: the status and the `Allow` header.
/// A route that exists answers 405 with the methods it takes; one that does not, 404.
fn probe(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    write!(
        stream,
        "PATCH {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let allow = answer
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("allow")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, allow)
}

/// COMPATIBILITY.md's HTTP rows against a running agent: what it marks works or differs
/// reaches a handler for that method, what it marks not supported does not.
#[test]
fn http_rows_match_the_router() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FlagAgent::server(dir.path(), "rows", "127.139.0.1", &["-bootstrap-expect=1"]);
    agent.wait_for_leader(Duration::from_secs(30));
    let rows = compatibility_rows("HTTP API");
    assert!(rows.len() > 150, "{} rows", rows.len());
    let mut wrong = Vec::new();
    for row in &rows {
        let [_, method, path, status, ..] = row.as_slice() else {
            panic!("bad row {row:?}");
        };
        let concrete: String = path
            .split('/')
            .map(|part| if part.starts_with(':') { "x" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        let (code, allow) = probe(&agent.http(), &concrete);
        let routed = code == 405 && allow.split(',').any(|m| m.trim() == method);
        let claimed = status == "works" || status == "differs";
        if routed != claimed {
            wrong.push(format!(
                "{method} {path}: marked {status}, answered {code} (Allow: {allow})"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "COMPATIBILITY.md is not true:\n{}",
        wrong.join("\n")
    );
}

/// COMPATIBILITY.md's CLI rows against the binary: a verb marked works has a `--help`, one
/// marked not supported is refused as unknown.
#[test]
fn cli_rows_match_the_binary() {
    let rows = compatibility_rows("CLI");
    assert!(rows.len() > 100, "{} rows", rows.len());
    let mut wrong = Vec::new();
    for row in &rows {
        let [verb, status, ..] = row.as_slice() else {
            panic!("bad row {row:?}");
        };
        let mut args: Vec<&str> = verb.split_whitespace().collect();
        args.push("--help");
        let (code, output) = dc_agent(&args);
        let claimed = status == "works" || status == "differs";
        if (code == 0) != claimed {
            wrong.push(format!(
                "{verb}: marked {status}, `--help` exited {code}: {}",
                output.lines().next().unwrap_or_default()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "COMPATIBILITY.md is not true:\n{}",
        wrong.join("\n")
    );
}

/// `consul snapshot save | inspect | restore`: a snapshot taken on one server, the state
/// changed, the snapshot restored through a follower; every server has the saved state back,
/// a blocking query wakes on the restore, and it survives a restart of every server.
#[test]
fn snapshots_save_and_restore_the_datacenter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let join = "-retry-join=127.140.0.1";
    let start = |n: usize| {
        FlagAgent::server(
            dir.path(),
            &format!("s{n}"),
            &format!("127.140.0.{n}"),
            &["-bootstrap-expect=3", join],
        )
    };
    let mut servers: Vec<FlagAgent> = (1..=3).map(start).collect();
    for server in &servers {
        server.wait_for_leader(Duration::from_secs(30));
    }
    let http = "-http-addr=127.140.0.2:8500";
    for (key, value) in [("app/config", "v1"), ("app/flag", "on")] {
        assert_eq!(
            servers[0]
                .request("PUT", &format!("/v1/kv/{key}"), value)
                .text(),
            "true"
        );
    }
    let register =
        r#"{"Node":"ext","Address":"10.1.1.1","Service":{"Service":"search","Port":9200}}"#;
    assert_eq!(
        servers[0]
            .request("PUT", "/v1/catalog/register", register)
            .status,
        200
    );

    let file = dir.path().join("backup.snap");
    let (code, output) = dc_agent(&[http, "snapshot", "save", &file.display().to_string()]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.starts_with("Saved and verified snapshot to index "),
        "{output}"
    );
    let (code, output) = dc_agent(&["snapshot", "inspect", &file.display().to_string()]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains(" Datacenter   dc1"), "{output}");
    let kvs: Vec<&str> = output
        .lines()
        .find(|l| l.trim_start().starts_with("KVS"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(kvs.get(1), Some(&"2"), "{output}");

    // Change everything, then restore.
    assert_eq!(
        servers[0].request("PUT", "/v1/kv/app/config", "v2").text(),
        "true"
    );
    assert_eq!(
        servers[0].request("DELETE", "/v1/kv/app/flag", "").text(),
        "true"
    );
    assert_eq!(
        servers[0].request("PUT", "/v1/kv/later", "x").text(),
        "true"
    );
    let deregister = r#"{"Node":"ext"}"#;
    assert_eq!(
        servers[0]
            .request("PUT", "/v1/catalog/deregister", deregister)
            .status,
        200
    );
    let index: u64 = servers[0]
        .request("GET", "/v1/kv/app/config", "")
        .header("x-consul-index")
        .and_then(|i| i.parse().ok())
        .expect("index");
    let watcher = {
        let client = servers[2].client();
        std::thread::spawn(move || client.get(&format!("/v1/kv/app/config?index={index}&wait=30s")))
    };
    std::thread::sleep(Duration::from_millis(300));
    let (code, output) = dc_agent(&[http, "snapshot", "restore", &file.display().to_string()]);
    assert_eq!((code, output.as_str()), (0, "Restored snapshot\n"));
    let woken = watcher.join().expect("thread").expect("response");
    let value: serde_json::Value = woken.json().expect("entries");
    assert_eq!(
        value[0]["Value"], "djE=",
        "the watcher saw the restored value: {value}"
    );

    let check_restored = |servers: &[FlagAgent]| {
        for server in servers {
            wait_for(
                Duration::from_secs(20),
                &[server],
                "the restored state",
                || {
                    let config = server.client().get("/v1/kv/app/config?raw&stale").ok()?;
                    let later = server.client().get("/v1/kv/later?stale").ok()?;
                    let search = server
                        .client()
                        .get("/v1/catalog/service/search?stale")
                        .ok()?;
                    let search: serde_json::Value = search.json().ok()?;
                    (config.text() == "v1" && later.status == 404 && search[0]["Node"] == "ext")
                        .then_some(())
                },
            );
        }
    };
    check_restored(&servers);
    // A restart of every server keeps it: it went through Raft.
    servers.clear();
    let servers: Vec<FlagAgent> = (1..=3).map(start).collect();
    for server in &servers {
        server.wait_for_leader(Duration::from_secs(30));
    }
    check_restored(&servers);
    // Not a snapshot: refused, nothing changed.
    let response = servers[0].request("PUT", "/v1/snapshot", "hello");
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(
        servers[0]
            .request("GET", "/v1/kv/app/config?raw", "")
            .text(),
        "v1"
    );
}

/// `?node-meta=key:value` (repeatable, all must match) on the catalog and health endpoints.
#[test]
fn node_meta_filters_as_consuls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FlagAgent::server(dir.path(), "nm1", "127.141.0.1", &["-bootstrap-expect=1"]);
    agent.wait_for_leader(Duration::from_secs(30));
    for (node, rack, zone) in [("a", "r1", "z1"), ("b", "r1", "z2"), ("c", "r2", "z1")] {
        let body = format!(
            r#"{{"Node":"{node}","Address":"10.0.0.1","NodeMeta":{{"rack":"{rack}","zone":"{zone}"}},
                "Service":{{"Service":"svc-{node}","Port":80}},
                "Check":{{"CheckID":"c-{node}","Name":"c","Status":"passing","ServiceID":"svc-{node}"}}}}"#
        );
        assert_eq!(
            agent.request("PUT", "/v1/catalog/register", &body).status,
            200
        );
    }
    let names = |path: &str, field: &[&str]| -> Vec<String> {
        let value = json(&agent.request("GET", path, ""));
        let items: Vec<serde_json::Value> = match value {
            serde_json::Value::Array(items) => items,
            serde_json::Value::Object(map) => {
                return map.keys().filter(|k| *k != "consul").cloned().collect()
            }
            _ => Vec::new(),
        };
        let mut out: Vec<String> = items
            .iter()
            .filter_map(|item| {
                field
                    .iter()
                    .try_fold(item, |v, k| v.get(*k))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(
        names("/v1/catalog/nodes?node-meta=rack:r1", &["Node"]),
        ["a", "b"]
    );
    assert_eq!(
        names(
            "/v1/catalog/nodes?node-meta=rack:r1&node-meta=zone:z1",
            &["Node"]
        ),
        ["a"]
    );
    assert_eq!(
        names("/v1/catalog/services?node-meta=zone:z1", &[]),
        ["svc-a", "svc-c"]
    );
    assert_eq!(
        names("/v1/catalog/service/svc-b?node-meta=rack:r2", &["Node"]),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            "/v1/health/service/svc-c?node-meta=rack:r2",
            &["Node", "Node"]
        ),
        ["c"]
    );
    assert_eq!(
        names("/v1/health/state/passing?node-meta=zone:z2", &["Node"]),
        ["b"]
    );
    // `key` alone is the value "" (Consul's parseMetaPair): no node here has an empty rack.
    let none = agent.request("GET", "/v1/catalog/nodes?node-meta=rack", "");
    assert_eq!((none.status, json(&none)), (200, serde_json::json!([])));
}

/// `?filter=` with the expressions of Consul's filtering docs, on a running agent.
#[test]
fn filter_expressions_as_consuls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = FlagAgent::server(dir.path(), "f1", "127.142.0.1", &["-bootstrap-expect=1"]);
    agent.wait_for_leader(Duration::from_secs(30));
    for (id, env, tags) in [
        ("web-qa", "qa", r#"["v1"]"#),
        ("web-prod", "prod", r#"["v2","primary"]"#),
    ] {
        let body = format!(
            r#"{{"ID":"{id}","Name":"web","Tags":{tags},"Port":80,"Meta":{{"env":"{env}"}}}}"#
        );
        assert_eq!(
            agent
                .request("PUT", "/v1/agent/service/register", &body)
                .status,
            200
        );
    }
    for (node, os, status) in [
        ("linux-1", "linux", "passing"),
        ("win-1", "windows", "critical"),
    ] {
        let body = format!(
            r#"{{"Node":"{node}","Address":"10.0.0.9","NodeMeta":{{"os":"{os}"}},
                "Service":{{"ID":"db-{node}","Service":"db","Tags":["v1"],"Port":5432}},
                "Check":{{"CheckID":"db-check","Name":"db","Status":"{status}","ServiceID":"db-{node}"}}}}"#
        );
        assert_eq!(
            agent.request("PUT", "/v1/catalog/register", &body).status,
            200
        );
    }
    let get = |path: &str, filter: &str| -> serde_json::Value {
        let encoded = dc_agent::client::encode_key(filter).replace('/', "%2F");
        let response = agent.request("GET", &format!("{path}?filter={encoded}"), "");
        assert_eq!(response.status, 200, "{filter}: {}", response.text());
        json(&response)
    };
    // From Consul's docs: `Meta.env == "qa"` on /v1/agent/services.
    let services = get("/v1/agent/services", r#"Meta.env == "qa""#);
    assert_eq!(
        services
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["web-qa".to_owned()])
    );
    let services = get("/v1/agent/services", "primary in Tags and Port == 80");
    assert_eq!(
        services.as_object().map(|m| m.len()),
        Some(1),
        "{services:#}"
    );
    assert!(services.get("web-prod").is_some(), "{services:#}");
    // `NodeMeta.os == "linux"` on /v1/catalog/service.
    let db = get("/v1/catalog/service/db", r#"NodeMeta.os == "linux""#);
    assert_eq!(db.as_array().map(Vec::len), Some(1), "{db:#}");
    assert_eq!(db[0]["Node"], "linux-1");
    // Through a list: some check of the entry is critical.
    let critical = get("/v1/health/service/db", "Checks.Status == critical");
    assert_eq!(critical.as_array().map(Vec::len), Some(1), "{critical:#}");
    assert_eq!(critical[0]["Node"]["Node"], "win-1");
    let nodes = get(
        "/v1/catalog/nodes",
        r#"Meta.os matches "^lin" or Node == "nope""#,
    );
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes:#}");
    let checks = get(
        "/v1/health/state/any",
        r#"ServiceName == "db" and Status != passing"#,
    );
    assert_eq!(checks.as_array().map(Vec::len), Some(1), "{checks:#}");
    let names = get(
        "/v1/catalog/services",
        r#"ServiceMeta.env == "none" or NodeMeta.os == "windows""#,
    );
    assert_eq!(
        names
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["db".to_owned()]),
        "{names:#}"
    );
    // A selector the endpoint does not have is refused, as Consul refuses it.
    let response = agent.request(
        "GET",
        "/v1/health/service/db?filter=Servce.Tags%20is%20empty",
        "",
    );
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response
            .text()
            .contains(r#"Selector "Servce.Tags" is not valid"#),
        "{}",
        response.text()
    );
    // A bad expression is a 400 naming the problem, not a silent 200.
    let response = agent.request("GET", "/v1/catalog/nodes?filter=Node%20%3D%3D", "");
    assert_eq!(response.status, 400);
    assert!(
        response
            .text()
            .contains("Failed to create boolean expression evaluator"),
        "{}",
        response.text()
    );
}

/// SIGTERM stops an agent that is holding a long blocking query (as consul-template keeps
/// one open): the query is cut short instead of holding the agent for its whole wait.
#[test]
fn an_agent_stops_while_a_blocking_query_waits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = FlagAgent::server(dir.path(), "b1", "127.144.0.1", &["-bootstrap-expect=1"]);
    agent.wait_for_leader(Duration::from_secs(30));
    assert_eq!(agent.request("PUT", "/v1/kv/watched", "1").text(), "true");
    let index = agent
        .request("GET", "/v1/kv/watched", "")
        .header("x-consul-index")
        .unwrap_or("1")
        .to_owned();
    let client = agent.client();
    let waiting =
        std::thread::spawn(move || client.get(&format!("/v1/kv/watched?index={index}&wait=10m")));
    std::thread::sleep(Duration::from_millis(500));
    agent.terminate();
    agent.wait_exit(
        Duration::from_secs(30),
        "the agent waited for the blocking query",
    );
    // The watcher sees its connection end rather than an answer from a stopped agent.
    let _ = waiting.join();
}

/// Consul's stopping rules: a client agent leaves the cluster on SIGTERM (its peers see it
/// `left` and the catalog drops it), unless `leave_on_terminate = false`, when it only stops
/// and is seen `failed`; a server stays a member on SIGTERM (`shutdown::leaves_on`).
#[test]
fn clients_leave_on_sigterm_unless_told_not_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = FlagAgent::server(dir.path(), "s1", "127.146.0.1", &["-bootstrap-expect=1"]);
    server.wait_for_leader(Duration::from_secs(30));
    let client = |name: &str, address: &str, more: &[&str]| {
        let data = dir.path().join(name).display().to_string();
        let mut args = vec![
            format!("-node={name}"),
            format!("-bind={address}"),
            format!("-client={address}"),
            format!("-data-dir={data}"),
            "-retry-join=127.146.0.1".to_owned(),
        ];
        args.extend(more.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        FlagAgent::start(dir.path(), name, address, &args)
    };
    let mut leaver = client("c1", "127.146.0.2", &[]);
    let mut stayer = client("c2", "127.146.0.3", &["-hcl", "leave_on_terminate = false"]);
    let status_of = |name: &str| -> Option<u64> {
        let members = json(&server.request("GET", "/v1/agent/members", ""));
        members
            .as_array()?
            .iter()
            .find(|m| m["Name"] == name)
            .and_then(|m| m["Status"].as_u64())
    };
    wait_for(
        Duration::from_secs(30),
        &[&server, &leaver, &stayer],
        "both clients alive",
        || (status_of("c1") == Some(1) && status_of("c2") == Some(1)).then_some(()),
    );
    leaver.terminate();
    stayer.terminate();
    leaver.wait_exit(Duration::from_secs(30), "c1 did not stop on SIGTERM");
    stayer.wait_exit(Duration::from_secs(30), "c2 did not stop on SIGTERM");
    assert!(
        leaver.log().contains("leaving the cluster"),
        "{}",
        leaver.log()
    );
    // Consul's member statuses: 3 left, 4 failed.
    wait_for(
        Duration::from_secs(30),
        &[&server, &leaver, &stayer],
        "c1 left and c2 failed",
        || (status_of("c1") == Some(3) && status_of("c2") == Some(4)).then_some(()),
    );
    // The node that left leaves the catalog; the one that failed stays, critical.
    wait_for(
        Duration::from_secs(30),
        &[&server],
        "c1 out of the catalog",
        || {
            let nodes = json(&server.request("GET", "/v1/catalog/nodes", ""));
            let names: Vec<&str> = nodes
                .as_array()?
                .iter()
                .filter_map(|n| n["Node"].as_str())
                .collect();
            (!names.contains(&"c1") && names.contains(&"c2")).then_some(())
        },
    );
    wait_for(Duration::from_secs(30), &[&server], "c2 critical", || {
        let checks = json(&server.request("GET", "/v1/health/node/c2", ""));
        (checks[0]["CheckID"] == "serfHealth" && checks[0]["Status"] == "critical").then_some(())
    });
}
