//! `topology up | status | down`: run a declared federation's agents on this machine, with
//! pid files and logs in the state directory (`<state>/<dc>/<node>/agent.{pid,log}`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use topology::model::{Datacenter, Node};
use topology::Topology;
use wire::Role;

/// A node this machine runs.
struct Managed<'a> {
    dc: &'a Datacenter,
    node: &'a Node,
    dir: PathBuf,
    /// The management token, with `[acl]` (the agent's own endpoints need one).
    token: Option<String>,
}

impl Managed<'_> {
    fn id(&self) -> String {
        format!("{}/{}", self.dc.name, self.node.name)
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }
    fn log_file(&self) -> PathBuf {
        self.dir.join("agent.log")
    }
    /// The agent's HTTP API, or a gateway's metrics endpoint.
    fn http(&self) -> String {
        let port = if self.node.role == Role::Gateway {
            self.node.ports.metrics
        } else {
            self.node.ports.http
        };
        std::net::SocketAddr::new(self.node.address, port).to_string()
    }
    fn gateway(&self) -> bool {
        self.node.role == Role::Gateway
    }
    /// The binary, its subcommand and its config file.
    fn command(&self, binaries: &Binaries) -> (PathBuf, &'static str, PathBuf) {
        if self.gateway() {
            (
                binaries.gateway.clone(),
                "run",
                self.dir.join("gateway.toml"),
            )
        } else {
            (binaries.agent.clone(), "agent", self.dir.join("agent.json"))
        }
    }
    fn running_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_our_agent(pid).then_some(pid)
    }
}

/// Whether `pid` is a live dc-agent (not a recycled pid).
fn is_our_agent(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists
        && fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmdline| {
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("dc-agent") || cmdline.contains("wan-gateway")
            })
            .unwrap_or(true)
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: sends a signal to a process we started; no memory is touched.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The nodes of the file: per datacenter its servers, then client agents, then gateways.
fn managed<'a>(topology: &'a Topology, out: &Path) -> Vec<Managed<'a>> {
    let token = topology
        .acl
        .as_ref()
        .and_then(|_| fs::read_to_string(out.join(topology::acl::MANAGEMENT_FILE)).ok())
        .map(|t| t.trim().to_owned());
    topology
        .datacenters
        .iter()
        .flat_map(|dc| {
            dc.nodes_of(Role::Server)
                .chain(dc.nodes_of(Role::Client))
                .chain(dc.nodes_of(Role::Gateway))
                .map({
                    let token = token.clone();
                    move |node| Managed {
                        dc,
                        node,
                        dir: out.join(&dc.name).join(&node.name),
                        token: token.clone(),
                    }
                })
        })
        .collect()
}

/// The binaries `up` starts.
struct Binaries {
    agent: PathBuf,
    gateway: PathBuf,
}

/// `dc-agent` and, when the file has gateways, `wan-gateway`: next to `topology`, else on
/// PATH.
fn binaries(topology: &Topology) -> Result<Binaries> {
    let gateways = topology
        .datacenters
        .iter()
        .any(|dc| dc.nodes_of(Role::Gateway).next().is_some());
    Ok(Binaries {
        agent: binary("dc-agent")?,
        gateway: if gateways {
            binary("wan-gateway")?
        } else {
            PathBuf::new()
        },
    })
}

fn binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the topology binary")?;
    let sibling = exe.with_file_name(name);
    if sibling.is_file() {
        return Ok(sibling);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "{name} is not next to topology ({}) nor on PATH; build it with `cargo build --release`",
        exe.parent()
            .map_or_else(String::new, |p| p.display().to_string())
    )
}

pub(crate) fn client(addr: &str) -> ureq::Agent {
    let _ = addr;
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build();
    ureq::Agent::new_with_config(config)
}

fn get_json(addr: &str, path: &str, token: Option<&str>) -> Option<serde_json::Value> {
    let mut request = client(addr).get(format!("http://{addr}{path}"));
    if let Some(token) = token {
        request = request.header("X-Consul-Token", token);
    }
    let mut response = request.call().ok()?;
    if response.status() != 200 {
        return None;
    }
    let text = response.body_mut().read_to_string().ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether a gateway's metrics endpoint answers.
fn gateway_up(addr: &str) -> bool {
    client(addr)
        .get(format!("http://{addr}/metrics"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let last: Vec<&str> = text.lines().rev().take(lines).collect();
    last.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// The leader every server of a DC agrees on: (node name, term).
fn agreed_leader(nodes: &[&Managed<'_>]) -> Option<(String, String)> {
    let mut leaders = Vec::new();
    for node in nodes {
        let leader = get_json(&node.http(), "/v1/status/leader", None)?;
        leaders.push(leader.as_str()?.to_owned());
    }
    let first = leaders.first()?.clone();
    if first.is_empty() || leaders.iter().any(|l| *l != first) {
        return None;
    }
    let leader = nodes.iter().find(|n| {
        std::net::SocketAddr::new(n.node.address, n.node.ports.server).to_string() == first
    })?;
    // The term is for show: a secondary datacenter with ACLs cannot tell it before it has
    // copied the primary's tokens.
    let term = get_json(&leader.http(), "/v1/agent/self", leader.token.as_deref())
        .and_then(|info| info["Stats"]["raft"]["term"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned());
    Some((leader.node.name.clone(), term))
}

/// Starts every server, waits for each DC's leader, and (in the foreground) stops them all
/// on Ctrl-C.
pub fn up(topology: &Topology, out: &Path, detach: bool) -> Result<ExitCode> {
    let binaries = binaries(topology)?;
    let nodes = managed(topology, out);
    let mut children = start_all(&nodes, &binaries)?;
    println!("waiting for every datacenter to elect a leader...");
    let leaders = wait_for_leaders(topology, out, &nodes, &mut children)?;
    if topology.acl.is_some() {
        crate::provision::provision(topology, out)?;
    }
    println!();
    print!("{}", table(&node_rows(&nodes, &leaders)));
    print_try(
        &nodes,
        topology
            .acl
            .is_some()
            .then(|| out.join(topology::acl::MANAGEMENT_FILE)),
        topology.https.then(|| out.join("ca/ca.pem")),
    );
    if detach {
        println!("running in the background; stop with `topology down`");
        return Ok(ExitCode::SUCCESS);
    }
    println!("press Ctrl-C to stop every agent");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    println!();
    down(topology, out)
}

/// Starts every node not already running, each in its own process group with its log;
/// returns the children by index into `nodes`.
fn start_all(nodes: &[Managed<'_>], binaries: &Binaries) -> Result<Vec<(usize, Child)>> {
    let mut children: Vec<(usize, Child)> = Vec::new();
    for (index, managed) in nodes.iter().enumerate() {
        if let Some(pid) = managed.running_pid() {
            println!("  {:<12} already running (pid {pid})", managed.id());
            continue;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(managed.log_file())
            .with_context(|| format!("opening {}", managed.log_file().display()))?;
        let (binary, subcommand, config) = managed.command(binaries);
        let mut command = Command::new(binary);
        command
            .arg(subcommand)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group: Ctrl-C reaches `topology`, which stops agents in order.
            command.process_group(0);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", managed.id()))?;
        fs::write(managed.pid_file(), format!("{}\n", child.id()))
            .with_context(|| format!("writing {}", managed.pid_file().display()))?;
        println!(
            "  {:<12} started   (pid {}, log {})",
            managed.id(),
            child.id(),
            managed.log_file().display()
        );
        children.push((index, child));
    }

    Ok(children)
}

/// Waits (90 s at most) until every datacenter's servers agree on a leader; a node that
/// exits meanwhile ends the wait with its log's last lines.
fn wait_for_leaders(
    topology: &Topology,
    out: &Path,
    nodes: &[Managed<'_>],
    children: &mut [(usize, Child)],
) -> Result<BTreeMap<String, (String, String)>> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut leaders: BTreeMap<String, (String, String)> = BTreeMap::new();
    while leaders.len() < topology.datacenters.len() {
        for (index, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let managed = &nodes[*index];
                let _ = fs::remove_file(managed.pid_file());
                bail!(
                    "{} exited ({status}) while starting; its log ends with:\n{}",
                    managed.id(),
                    tail(&managed.log_file(), 20)
                );
            }
        }
        for dc in &topology.datacenters {
            if leaders.contains_key(&dc.name) {
                continue;
            }
            let dc_servers: Vec<&Managed<'_>> = nodes
                .iter()
                .filter(|m| m.dc.name == dc.name && m.node.role == Role::Server)
                .collect();
            if let Some((leader, term)) = agreed_leader(&dc_servers) {
                println!("  {:<12} leader {leader} (term {term})", dc.name);
                leaders.insert(dc.name.clone(), (leader, term));
            }
        }
        if Instant::now() > deadline {
            let missing: Vec<&str> = topology
                .datacenters
                .iter()
                .filter(|dc| !leaders.contains_key(&dc.name))
                .map(|dc| dc.name.as_str())
                .collect();
            bail!(
                "no leader in {} after 90s; check the logs under {} and `topology status`",
                missing.join(", "),
                out.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    Ok(leaders)
}

/// The table of nodes, their HTTP addresses and which one leads.
fn node_rows(
    nodes: &[Managed<'_>],
    leaders: &BTreeMap<String, (String, String)>,
) -> Vec<Vec<String>> {
    let mut rows = vec![["DC", "NODE", "ROLE", "HTTP", "WEB UI", "LEADER"]
        .map(str::to_owned)
        .to_vec()];
    for managed in nodes {
        let leader = leaders
            .get(&managed.dc.name)
            .is_some_and(|(name, _)| *name == managed.node.name);
        rows.push(vec![
            managed.dc.name.clone(),
            managed.node.name.clone(),
            managed.node.role.to_string(),
            if managed.gateway() {
                format!("http://{}/metrics", managed.http())
            } else {
                format!("http://{}", managed.http())
            },
            // Servers serve the web UI (rendered with `ui_config.enabled`).
            if managed.node.role == Role::Server {
                format!("http://{}/ui/", managed.http())
            } else {
                String::new()
            },
            if leader {
                "*".to_owned()
            } else {
                String::new()
            },
        ]);
    }
    rows
}

/// A first command to try, against the first node.
fn print_try(nodes: &[Managed<'_>], management: Option<PathBuf>, https_ca: Option<PathBuf>) {
    let first = nodes.first().map(|m| m.http()).unwrap_or_default();
    // The dc-agent that runs the nodes, named as the user can type it (relative to the
    // working directory when it lies below it, as `./target/release/dc-agent`).
    let agent = binary("dc-agent")
        .map(|path| {
            let shown = std::env::current_dir().ok().and_then(|cwd| {
                path.strip_prefix(&cwd)
                    .ok()
                    .map(|p| format!("./{}", p.display()))
            });
            shown.unwrap_or_else(|| path.display().to_string())
        })
        .unwrap_or_else(|_| "dc-agent".to_owned());
    if let (Some(ca), Some(node)) = (&https_ca, nodes.iter().find(|m| !m.gateway())) {
        let https = std::net::SocketAddr::new(node.node.address, node.node.ports.https);
        println!(
            "\nHTTPS is on (ports.https, each agent's certificate): CONSUL_HTTP_ADDR=https://{https} CONSUL_CACERT={}",
            ca.display()
        );
    }
    match management {
        Some(file) => {
            println!(
                "\nACLs are on: the management token is in {} (mode 0600); every agent has its own token",
                file.display()
            );
            println!(
                "try: CONSUL_HTTP_TOKEN_FILE={} CONSUL_HTTP_ADDR={first} {agent} kv put hello world",
                file.display()
            );
        }
        None => println!("\ntry: CONSUL_HTTP_ADDR={first} {agent} kv put hello world"),
    }
}

/// Stops every agent with SIGTERM (SIGKILL after 20s), keeping all data.
pub fn down(topology: &Topology, out: &Path) -> Result<ExitCode> {
    let nodes = managed(topology, out);
    let mut stopping = Vec::new();
    for managed in &nodes {
        match managed.running_pid() {
            Some(pid) => {
                signal(pid, libc::SIGTERM);
                stopping.push((managed, pid));
            }
            None => {
                let _ = fs::remove_file(managed.pid_file());
            }
        }
    }
    for (managed, pid) in stopping {
        let deadline = Instant::now() + Duration::from_secs(20);
        while is_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_alive(pid) {
            signal(pid, libc::SIGKILL);
            println!("  {:<12} killed (did not stop within 20s)", managed.id());
        } else {
            println!("  {:<12} stopped", managed.id());
        }
        let _ = fs::remove_file(managed.pid_file());
    }
    println!(
        "data kept in {}; `topology up` starts again from it",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Alive and not a zombie (a child of ours that exited but was not reaped yet).
fn is_alive(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: reaps the child if it is ours and has exited; harmless for other processes.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Each datacenter's leader, Raft membership and health, as the servers report them (not
/// whether processes run); exit 1 unless every DC is healthy: one leader every live server
/// agrees on, every declared server up and a voter, every client and gateway up.
pub fn status(topology: &Topology, out: &Path) -> Result<ExitCode> {
    let nodes = managed(topology, out);
    let mut healthy = true;
    for dc in &topology.datacenters {
        let dc_nodes: Vec<&Managed<'_>> = nodes.iter().filter(|m| m.dc.name == dc.name).collect();
        let (dc_healthy, rows, line) = dc_status(&dc.name, &dc_nodes);
        healthy &= dc_healthy;
        println!("{line}");
        print!("{}", table(&rows));
        println!();
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The Raft configuration as a datacenter's servers report it: node name -> voter, from the
/// first server that answers (forwarded to its leader).
fn raft_configuration(servers: &[&&Managed<'_>]) -> Option<BTreeMap<String, bool>> {
    servers.iter().find_map(|managed| {
        let answer = get_json(
            &managed.http(),
            "/v1/operator/raft/configuration",
            managed.token.as_deref(),
        )?;
        let servers = answer["Servers"].as_array()?;
        Some(
            servers
                .iter()
                .filter_map(|s| Some((s["Node"].as_str()?.to_owned(), s["Voter"].as_bool()?)))
                .collect(),
        )
    })
}

/// One datacenter: (healthy, table rows, summary line).
fn dc_status(name: &str, dc_nodes: &[&Managed<'_>]) -> (bool, Vec<Vec<String>>, String) {
    let mut rows = vec![[
        "NODE",
        "ADDRESS",
        "PID",
        "STATE",
        "RAFT",
        "TERM",
        "APPLIED",
        "LAST CONTACT",
    ]
    .map(str::to_owned)
    .to_vec()];
    let servers: Vec<&&Managed<'_>> = dc_nodes
        .iter()
        .filter(|m| m.node.role == Role::Server)
        .collect();
    let configuration = raft_configuration(&servers);
    let mut leaders = std::collections::BTreeSet::new();
    let (mut up, mut voters, mut clients_up, mut gateways_up) = (0, 0, 0, 0);
    let count = |role: Role| dc_nodes.iter().filter(|m| m.node.role == role).count();
    let (clients, gateways) = (count(Role::Client), count(Role::Gateway));
    for managed in dc_nodes {
        let pid = managed
            .running_pid()
            .map_or_else(|| "-".to_owned(), |p| p.to_string());
        let info = if managed.gateway() {
            gateway_up(&managed.http()).then(|| serde_json::json!({}))
        } else {
            get_json(&managed.http(), "/v1/agent/self", managed.token.as_deref())
        };
        let raft = info
            .as_ref()
            .map(|i| i["Stats"]["raft"].clone())
            .unwrap_or_default();
        let field = |name: &str| raft[name].as_str().unwrap_or("-").to_owned();
        let state = match &info {
            None => "down".to_owned(),
            Some(_) if managed.node.role == Role::Client => "client".to_owned(),
            Some(_) if managed.gateway() => "gateway".to_owned(),
            Some(_) => field("state").to_lowercase(),
        };
        let membership = match (managed.node.role, &configuration) {
            (Role::Server, Some(configuration)) => match configuration.get(&managed.node.name) {
                Some(true) => "voter",
                Some(false) => "nonvoter",
                None => "absent",
            },
            (Role::Server, None) => "unknown",
            _ => "",
        };
        if info.is_some() {
            match managed.node.role {
                Role::Client => clients_up += 1,
                Role::Gateway => gateways_up += 1,
                Role::Server => {
                    up += 1;
                    // The leader this server follows (or itself), by name.
                    if let Some(leader) = info
                        .as_ref()
                        .and_then(|i| i["Stats"]["consul"]["leader_addr"].as_str())
                        .filter(|a| !a.is_empty())
                    {
                        leaders.insert(leader.to_owned());
                    } else {
                        leaders.insert(String::new());
                    }
                }
            }
        }
        if membership == "voter" {
            voters += 1;
        }
        rows.push(vec![
            managed.node.name.clone(),
            managed.node.address.to_string(),
            pid,
            state,
            membership.to_owned(),
            field("term"),
            field("applied_index"),
            field("last_contact"),
        ]);
    }
    let tally = Tally {
        up,
        total: servers.len(),
        voters,
        voters_known: configuration.is_some(),
        clients_up,
        clients,
        gateways_up,
        gateways,
    };
    let (dc_healthy, line) = summary_line(name, &servers, &leaders, &tally);
    (dc_healthy, rows, line)
}

/// What `dc_status` counted in one datacenter.
struct Tally {
    up: usize,
    total: usize,
    voters: usize,
    voters_known: bool,
    clients_up: usize,
    clients: usize,
    gateways_up: usize,
    gateways: usize,
}

/// A datacenter's summary line, and whether it is healthy: one leader, named by every live
/// server and itself a server of this datacenter, every server up and a voter, every client
/// and gateway up.
fn summary_line(
    name: &str,
    servers: &[&&Managed<'_>],
    leaders: &std::collections::BTreeSet<String>,
    t: &Tally,
) -> (bool, String) {
    let leader = match leaders.len() {
        1 => leaders.iter().next().and_then(|addr| {
            servers
                .iter()
                .find(|m| addr.starts_with(&format!("{}:", m.node.address)))
                .map(|m| m.node.name.clone())
        }),
        _ => None,
    };
    let Tally {
        up, total, voters, ..
    } = *t;
    let dc_healthy = leader.is_some()
        && up == total
        && voters == total
        && t.clients_up == t.clients
        && t.gateways_up == t.gateways;
    let mut others = String::new();
    if t.clients > 0 {
        others.push_str(&format!(", {}/{} clients up", t.clients_up, t.clients));
    }
    if t.gateways > 0 {
        others.push_str(&format!(", {}/{} gateways up", t.gateways_up, t.gateways));
    }
    let leader_text = match (&leader, leaders.len()) {
        (Some(name), _) => name.clone(),
        (None, n) if n > 1 => "disputed".to_owned(),
        (None, _) => "none".to_owned(),
    };
    let voters_text = if t.voters_known {
        format!("{voters}/{total} voters")
    } else {
        "Raft configuration unknown".to_owned()
    };
    let line = format!(
        "{name}: leader {leader_text}, {up}/{total} servers up, {voters_text}{others}, {}",
        if dc_healthy { "healthy" } else { "DEGRADED" }
    );
    (dc_healthy, line)
}

fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        text.push_str("  ");
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}
