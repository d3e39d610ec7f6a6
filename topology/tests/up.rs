//! `topology up | status | down` with real agents: two datacenters of three servers each,
//! and a client agent in the first one carrying a service declared in the file.
//! Needs the `dc-agent` binary beside `topology` (`cargo test --workspace` builds both).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn topology(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_topology"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run topology");
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn dc_agent() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_topology")).with_file_name("dc-agent");
    assert!(
        path.is_file(),
        "{} is missing: run the suite with `cargo test --workspace`",
        path.display()
    );
    path
}

/// Stops the federation even when an assertion fails.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        topology(self.0, &["down", "federation.toml"]);
    }
}

const FILE: &str = r#"
[[datacenters]]
name = "alpha"
servers = [{ name = "a1", address = "127.81.0.1" }, { name = "a2", address = "127.81.0.2" }, { name = "a3", address = "127.81.0.3" }]
clients = [{ name = "ac1", address = "127.81.0.4" }]
gateways = [{ name = "gw", address = "127.81.0.100" }]

[[datacenters.services]]
name = "web"
node = "ac1"
port = 8080
tags = ["v1"]

[[datacenters]]
name = "beta"
servers = [{ name = "b1", address = "127.82.0.1" }, { name = "b2", address = "127.82.0.2" }, { name = "b3", address = "127.82.0.3" }]
gateways = [{ name = "gw", address = "127.82.0.100" }]
"#;

#[test]
fn up_status_down_and_up_again_keeps_data() {
    let dc_agent = dc_agent();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    fs::write(dir.join("federation.toml"), FILE).expect("write");
    let _down = Down(dir);

    let (code, output) = topology(dir, &["up", "--detach", "federation.toml"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("alpha        leader"), "{output}");
    assert!(output.contains("beta         leader"), "{output}");
    for node in [
        "alpha/a1",
        "alpha/a2",
        "alpha/a3",
        "alpha/ac1",
        "alpha/gw",
        "beta/gw",
        "beta/b1",
        "beta/b2",
        "beta/b3",
    ] {
        assert!(
            output.contains(&format!("{node:<12} started")),
            "{node} in {output}"
        );
        assert!(dir
            .join(".isthmus/federation")
            .join(node)
            .join("agent.pid")
            .is_file());
    }

    let (code, status) = topology(dir, &["status", "federation.toml"]);
    assert_eq!(code, 0, "{status}");
    assert!(
        status.contains("alpha: leader a")
            && status
                .contains("3/3 servers up, 3/3 voters, 1/1 clients up, 1/1 gateways up, healthy"),
        "{status}"
    );
    assert!(
        status.contains("beta: leader b")
            && status.contains("3/3 servers up, 3/3 voters, 1/1 gateways up, healthy"),
        "{status}"
    );
    // The gateways join the two datacenters: beta's catalog, asked of alpha's client agent.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer = ureq::get("http://127.81.0.4:8500/v1/catalog/nodes?dc=beta")
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        if ["b1", "b2", "b3"]
            .iter()
            .all(|n| answer.contains(&format!("\"{n}\"")))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "beta never answered through the gateways: {answer}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The client agent registered the file's service; a server's catalog has it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let listed = Command::new(&dc_agent)
            .args([
                "-http-addr",
                "127.81.0.4:8500",
                "catalog",
                "services",
                "-tags",
            ])
            .output()
            .expect("catalog services");
        let text = String::from_utf8_lossy(&listed.stdout).into_owned();
        if text
            .lines()
            .any(|l| l.starts_with("web") && l.contains("v1"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "web never listed: {text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // A server that leaves is out of the Raft configuration: status says so (not only that
    // its process is gone), and `up` starts it again, as a voter once more.
    let left = Command::new(&dc_agent)
        .args(["-http-addr", "127.81.0.3:8500", "leave"])
        .output()
        .expect("leave");
    assert!(
        left.status.success(),
        "{}",
        String::from_utf8_lossy(&left.stderr)
    );
    wait_until("status to show a3 out of Raft", || {
        let (code, status) = topology(dir, &["status", "federation.toml"]);
        // Its process gone too (PID "-"), or `up` would find it still running.
        let gone = status.lines().any(|l| {
            l.split_whitespace().take(4).collect::<Vec<_>>() == ["a3", "127.81.0.3", "-", "down"]
        });
        let done = code == 1
            && gone
            && status.contains("2/3 servers up, 2/3 voters")
            && status.contains("DEGRADED");
        (!done).then_some(status)
    });
    let (code, output) = topology(dir, &["up", "--detach", "federation.toml"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("alpha/a3     started"), "{output}");
    wait_until("a3 back as a voter", || {
        let (code, status) = topology(dir, &["status", "federation.toml"]);
        (!(code == 0 && status.contains("3/3 servers up, 3/3 voters"))).then_some(status)
    });

    let put = Command::new(&dc_agent)
        .args([
            "-http-addr",
            "127.82.0.2:8500",
            "kv",
            "put",
            "kept",
            "across-restarts",
        ])
        .output()
        .expect("kv put");
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    let (code, output) = topology(dir, &["down", "federation.toml"]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("beta/b3      stopped"), "{output}");
    let (code, status) = topology(dir, &["status", "federation.toml"]);
    assert_eq!(code, 1, "a stopped federation is not healthy: {status}");
    assert!(status.contains("0/3 servers up"), "{status}");

    let (code, output) = topology(dir, &["up", "--detach", "federation.toml"]);
    assert_eq!(code, 0, "{output}");
    let get = Command::new(&dc_agent)
        .args(["-http-addr", "127.82.0.1:8500", "kv", "get", "kept"])
        .output()
        .expect("kv get");
    assert_eq!(
        String::from_utf8_lossy(&get.stdout),
        "across-restarts\n",
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
}

const ACL_FILE: &str = r#"
[acl]
enabled = true

[tls]
https = true

[[datacenters]]
name = "one"
servers = [{ name = "o1", address = "127.163.0.1" }]
clients = [{ name = "oc1", address = "127.163.0.4" }]
gateways = [{ name = "gw", address = "127.163.0.100" }]

[[datacenters.services]]
name = "web"
node = "oc1"
port = 8080

[[datacenters]]
name = "two"
servers = [{ name = "t1", address = "127.164.0.1" }]
gateways = [{ name = "gw", address = "127.164.0.100" }]
"#;

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("X-Consul-Token", token);
    }
    match request.call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> Option<String>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match done() {
            None => return,
            Some(last) if std::time::Instant::now() > deadline => {
                panic!("timed out waiting for {what}: {last}")
            }
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(250)),
        }
    }
}

#[test]
fn up_with_acls_bootstraps_once_and_gives_every_agent_its_token() {
    let dc_agent = dc_agent();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    fs::write(dir.join("federation.toml"), ACL_FILE).expect("write");
    let _down = Down(dir);

    let (code, output) = topology(dir, &["up", "--detach", "federation.toml"]);
    assert_eq!(code, 0, "{output}");
    let file = dir.join(".isthmus/federation/acl/management.token");
    assert!(output.contains("ACLs are on"), "{output}");
    assert!(output.contains("ACLs: two has copied them"), "{output}");
    assert!(
        output.contains("CONSUL_HTTP_TOKEN_FILE=.isthmus/federation/acl/management.token"),
        "{output}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(&file)
        .expect("management.token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let management = fs::read_to_string(&file).expect("read").trim().to_owned();

    // Closed to anonymous writes; the management token (from the file, as printed) works.
    let anonymous = Command::new(&dc_agent)
        .args(["-http-addr", "127.163.0.1:8500", "kv", "put", "x", "1"])
        .output()
        .expect("kv put");
    assert!(!anonymous.status.success());
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    let put = Command::new(&dc_agent)
        .env("CONSUL_HTTP_TOKEN_FILE", &file)
        .args(["-http-addr", "127.164.0.1:8500", "kv", "put", "x", "1"])
        .output()
        .expect("kv put");
    assert!(
        put.status.success(),
        "the management token works in the other datacenter too: {}",
        String::from_utf8_lossy(&put.stderr)
    );

    // HTTPS with the federation's PKI: the CLI checks the agent's certificate against the
    // CA, as printed.
    assert!(
        output.contains("HTTPS is on")
            && output.contains("CONSUL_HTTP_ADDR=https://127.163.0.1:8501"),
        "{output}"
    );
    let ca = dir.join(".isthmus/federation/ca/ca.pem");
    let https = |args: &[&str]| {
        Command::new(&dc_agent)
            .env("CONSUL_HTTP_TOKEN_FILE", &file)
            .env("CONSUL_CACERT", &ca)
            .args(["-http-addr", "https://127.163.0.1:8501"])
            .args(args)
            .output()
            .expect("dc-agent")
    };
    let put = https(&["kv", "put", "over-https", "1"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let over_https = https(&["kv", "get", "over-https"]);
    assert_eq!(
        String::from_utf8_lossy(&over_https.stdout),
        "1\n",
        "{}",
        String::from_utf8_lossy(&over_https.stderr)
    );
    let untrusted = Command::new(&dc_agent)
        .env("CONSUL_HTTP_TOKEN_FILE", &file)
        .args(["-http-addr", "https://127.163.0.1:8501", "kv", "get", "x"])
        .output()
        .expect("kv get");
    assert!(
        !untrusted.status.success(),
        "no CA given: the certificate is not trusted"
    );

    // Each agent's own token: the client agent registered its node and the file's service
    // (node and service identities), and the default (DNS) token reads the catalog.
    wait_until("oc1 and web in the catalog", || {
        let (_, service) = get(
            "http://127.163.0.1:8500/v1/catalog/service/web",
            Some(&management),
        );
        (!service.contains("\"oc1\"")).then_some(service)
    });
    let (status, nodes) = get("http://127.163.0.1:8500/v1/catalog/nodes", None);
    assert_eq!(status, 200, "{nodes}");
    assert!(nodes.contains("\"oc1\""), "{nodes}");
    let (_, tokens) = get("http://127.163.0.1:8500/v1/acl/tokens", Some(&management));
    assert!(tokens.contains("Agent token of one/oc1"), "{tokens}");
    assert_eq!(
        tokens.matches("Initial Management Token").count(),
        1,
        "{tokens}"
    );

    // `topology status` reads the agents with the management token; `up` again changes
    // nothing (the tokens exist).
    let (code, status) = topology(dir, &["status", "federation.toml"]);
    assert_eq!(code, 0, "{status}");
    let (code, output) = topology(dir, &["up", "--detach", "federation.toml"]);
    assert_eq!(code, 0, "{output}");
    let (_, again) = get("http://127.163.0.1:8500/v1/acl/tokens", Some(&management));
    assert_eq!(
        again.matches("AccessorID").count(),
        tokens.matches("AccessorID").count(),
        "{again}"
    );
}
