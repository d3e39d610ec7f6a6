//! A harness for end-to-end tests: renders a one-datacenter topology with the `topology`
//! library onto its own loopback subnet (so tests run in parallel), starts real `dc-agent`
//! processes and talks to them over HTTP. When a wait runs out, the panic message carries
//! every agent's command line and log.

#![allow(dead_code)]

pub mod flag_agent;
pub mod load;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dc_agent::client::{ApiClient, ApiResponse};

/// One agent process (a server or a client agent).
pub struct Agent {
    /// Node name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// A gateway (`wan-gateway run`) rather than an agent.
    pub gateway: bool,
    child: Option<Child>,
}

impl Agent {
    /// HTTP address.
    pub fn http(&self) -> String {
        format!("{}:8500", self.address)
    }

    /// An HTTP client of this agent.
    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.http(), Duration::from_secs(30))
    }

    /// The running process's ID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// An agent or gateway not started yet.
    pub fn new(name: &str, address: &str, config: PathBuf, log: PathBuf, gateway: bool) -> Agent {
        Agent {
            name: name.to_owned(),
            address: address.to_owned(),
            config,
            log,
            gateway,
            child: None,
        }
    }

    /// Starts (or restarts) the process.
    pub fn start(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let (binary, subcommand) = if self.gateway {
            (wan_gateway_binary(), "run")
        } else {
            (PathBuf::from(env!("CARGO_BIN_EXE_dc-agent")), "agent")
        };
        let child = Command::new(binary)
            .args([subcommand, "--config"])
            .arg(&self.config)
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn dc-agent");
        self.child = Some(child);
    }

    /// Edits the agent's JSON config.
    pub fn edit_config(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let text = fs::read_to_string(&self.config).expect("read config");
        let mut value: serde_json::Value = serde_json::from_str(&text).expect("config is JSON");
        edit(&mut value);
        fs::write(
            &self.config,
            serde_json::to_string_pretty(&value).expect("JSON"),
        )
        .expect("write config");
    }

    fn signal_pid(&self, pid: u32, signal: i32) {
        // SAFETY: sends a signal to a child process of this test; no memory is involved.
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }

    /// Sends a signal (SIGHUP, ...) to the running process.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            self.signal_pid(child.id(), signal);
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.signal_pid(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A datacenter of servers.
pub struct Cluster {
    /// The servers.
    pub agents: Vec<Agent>,
    /// The rendered directory (kept alive for the test).
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Renders and starts `n` servers on `127.<subnet>.0.N`.
    pub fn start(subnet: u8, n: usize) -> Cluster {
        let mut cluster = Cluster::render(subnet, n, "");
        for agent in &mut cluster.agents {
            agent.start();
        }
        cluster
    }

    /// Renders `n` servers on `127.<subnet>.0.N` without starting them; `defaults` is TOML
    /// for the topology's `[defaults]` table.
    pub fn render(subnet: u8, n: usize, defaults: &str) -> Cluster {
        Cluster::render_with_clients(subnet, n, 0, defaults)
    }

    /// Renders `n` servers (`s1..`) and `clients` client agents (`c1..`, after the servers:
    /// `127.<subnet>.0.<n+1>..`) without starting them.
    pub fn render_with_clients(subnet: u8, n: usize, clients: usize, defaults: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let servers: Vec<String> = (1..=n)
            .map(|i| format!("{{ name = \"s{i}\", address = \"127.{subnet}.0.{i}\" }}"))
            .collect();
        let client_nodes: Vec<String> = (1..=clients)
            .map(|i| {
                format!(
                    "{{ name = \"c{i}\", address = \"127.{subnet}.0.{}\" }}",
                    n + i
                )
            })
            .collect();
        let source = format!(
            "[defaults]\n{defaults}\n[[datacenters]]\nname = \"dc1\"\nservers = [{}]\n{}",
            servers.join(", "),
            if clients > 0 {
                format!("clients = [{}]\n", client_nodes.join(", "))
            } else {
                String::new()
            }
        );
        render_topology(&source, dir.path());
        let out = dir.path();
        let names = (1..=n)
            .map(|i| (format!("s{i}"), i))
            .chain((1..=clients).map(|i| (format!("c{i}"), n + i)));
        let agents: Vec<Agent> = names
            .map(|(name, i)| Agent {
                address: format!("127.{subnet}.0.{i}"),
                config: out.join(format!("dc1/{name}/agent.json")),
                log: out.join(format!("{name}.log")),
                name,
                gateway: false,
                child: None,
            })
            .collect();
        Cluster { agents, dir }
    }

    /// Every agent's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for agent in &self.agents {
            let log = fs::read_to_string(&agent.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            out.push_str(&format!(
                "\n===== {} ({} agent --config {}) =====\n{}\n",
                agent.name,
                env!("CARGO_BIN_EXE_dc-agent"),
                agent.config.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }

    /// Waits up to `limit` for `condition`; panics with the logs when it never holds.
    pub fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut condition: impl FnMut(&Cluster) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = condition(self) {
                return value;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {limit:?} waiting for {what}{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every running agent reports the same leader; returns its index in `agents`.
    pub fn wait_for_leader(&mut self) -> usize {
        let running: Vec<usize> = (0..self.agents.len()).collect();
        self.wait_for_leader_among(&running)
    }

    /// Waits until the running agents at `indexes` report the same running leader.
    pub fn wait_for_leader_among(&mut self, indexes: &[usize]) -> usize {
        let running: Vec<usize> = indexes
            .iter()
            .copied()
            .filter(|i| self.agents[*i].is_running())
            .collect();
        self.wait_for(
            "a leader all servers agree on",
            Duration::from_secs(30),
            |cluster| {
                let leaders: Vec<String> = running
                    .iter()
                    .filter_map(|i| cluster.agents[*i].client().get("/v1/status/leader").ok())
                    .filter(|r| r.status == 200)
                    .map(|r| r.json::<String>().unwrap_or_default())
                    .collect();
                let first = leaders.first()?.clone();
                if first.is_empty()
                    || leaders.len() != running.len()
                    || leaders.iter().any(|l| *l != first)
                {
                    return None;
                }
                // A leader only counts if it is one of the running servers.
                running
                    .iter()
                    .copied()
                    .find(|i| first.starts_with(&format!("{}:", cluster.agents[*i].address)))
            },
        )
    }

    /// An agent's answer, or a panic with the logs.
    pub fn request(&self, agent: usize, method: &str, path: &str, body: &[u8]) -> ApiResponse {
        let client = self.agents[agent].client();
        let result = match method {
            "GET" => client.get(path),
            "PUT" => client.put(path, body),
            "DELETE" => client.delete(path),
            other => panic!("unsupported method {other}"),
        };
        result.unwrap_or_else(|e| {
            panic!(
                "{method} {path} on {}: {e}{}",
                self.agents[agent].name,
                self.logs()
            )
        })
    }
}

/// Runs the `dc-agent` CLI against an agent: exit code, stdout, stderr.
pub fn cli(http_addr: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .arg("-http-addr")
        .arg(http_addr)
        .args(args)
        .output()
        .expect("run the CLI");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits up to `limit` for `done`, asking every 50 ms; panics naming `what` when it never
/// holds. Returns how long it took.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// Runs iproute2's `ip ARGS...` (network-namespace tests, as root); panics with its error.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2's `ip` is missing (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Rewrites a rendered gateway.toml: listen on every interface (its DC's and the WAN's),
/// and reach the other datacenter's gateway at its WAN address.
pub fn wan_addresses(path: &Path, remote_lan: &str, remote_wan: &str) {
    let text = std::fs::read_to_string(path).expect("read gateway.toml");
    let mut rewritten = String::new();
    for line in text.lines() {
        if line.starts_with("bind_addr") {
            rewritten.push_str("bind_addr = \"0.0.0.0\"\n");
        } else {
            rewritten.push_str(&line.replace(remote_lan, remote_wan));
            rewritten.push('\n');
        }
    }
    std::fs::write(path, rewritten).expect("write gateway.toml");
}

/// The `wan-gateway` binary, built beside `dc-agent` by `cargo test --workspace`.
pub fn wan_gateway_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_dc-agent")).with_file_name("wan-gateway");
    assert!(
        path.is_file(),
        "{} is missing: run the suite with `cargo test --workspace`",
        path.display()
    );
    path
}

/// Renders a topology file's nodes (configs, certificates, keys) into `out`; returns the
/// parsed topology.
pub fn render_topology(source: &str, out: &Path) -> topology::Topology {
    let (topology, _warnings) = topology::parse(source, "test").expect("test topology is valid");
    let existing = |relative: &Path| fs::read_to_string(out.join(relative)).ok();
    let key = wire::gossip_key::encode(&[7u8; 32]);
    let plan = topology::render::plan(
        &topology,
        &Default::default(),
        &existing,
        &key,
        time::OffsetDateTime::now_utc(),
    )
    .expect("render");
    plan.write_to(out).expect("write the rendered files");
    topology
}

/// The nodes of a rendered federation in `dir`, not started: `(dc, node, address)` in
/// order; names starting with `gw` are gateways. Logs go to `DIR/<dc>-<node>.log`.
#[allow(dead_code)]
pub fn federation_nodes(dir: tempfile::TempDir, list: &[(&str, &str, &str)]) -> Cluster {
    let out = dir.path();
    let agents = list
        .iter()
        .map(|(dc, name, address)| {
            let gateway = name.starts_with("gw");
            let file = if gateway {
                "gateway.toml"
            } else {
                "agent.json"
            };
            Agent::new(
                &format!("{dc}/{name}"),
                address,
                out.join(dc).join(name).join(file),
                out.join(format!("{dc}-{name}.log")),
                gateway,
            )
        })
        .collect();
    Cluster { agents, dir }
}

/// The `consul_*` and `isthmus_*` metric names that the shipped Grafana files (paths under
/// `grafana/`, each cut at `cut_at` when given) use but `exported` (Prometheus text) lacks.
/// Panics when the files name fewer than ten metrics (the check would prove nothing).
#[allow(dead_code)]
pub fn metrics_not_exported(files: &[&str], cut_at: Option<&str>, exported: &str) -> Vec<String> {
    let grafana = Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana");
    let mut used = std::collections::BTreeSet::new();
    for file in files {
        let mut text = fs::read_to_string(grafana.join(file)).expect("shipped file");
        if let Some(at) = cut_at.and_then(|c| text.find(c)) {
            text.truncate(at);
        }
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("consul_") || word.starts_with("isthmus_") {
                used.insert(word.to_owned());
            }
        }
    }
    assert!(used.len() >= 10, "found only {used:?}");
    used.into_iter()
        .filter(|name| {
            !exported.lines().any(|line| {
                line.starts_with(name.as_str()) && line[name.len()..].starts_with(['{', ' '])
            })
        })
        .collect()
}
