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
            && status.contains("3/3 servers up, 1/1 clients up, 1/1 gateways up, healthy"),
        "{status}"
    );
    assert!(
        status.contains("beta: leader b")
            && status.contains("3/3 servers up, 1/1 gateways up, healthy"),
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
