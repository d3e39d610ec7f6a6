//! `kvbench`: KV PUT throughput and latency at several concurrencies, and leader failover,
//! for an Isthmus datacenter of three servers and for a three-member etcd cluster (Debian's
//! `etcd-server`) on the same machine, with the same client, key space and value size. Both
//! fsync every write. Appends its figures to a markdown file.
//!
//! Isthmus gets `PUT /v1/kv/<key>`; etcd gets `POST /v3/kv/put` on its JSON gateway. Each
//! client thread keeps one HTTP/1.1 connection to one member (thread i to member i % 3), so
//! both systems see writes arriving at followers and at the leader alike.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Parser;

/// Benchmark Isthmus against etcd.
#[derive(Parser)]
struct Args {
    /// Markdown file to append the results to.
    #[arg(long, default_value = "bench/RESULTS.md")]
    out: PathBuf,
    /// Seconds of measured load per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Distinct keys written.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// Concurrencies to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Leader kills per system.
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// Where client threads send writes: `all` members (thread i to member i % 3) or the `leader`.
    #[arg(long, default_value = "all")]
    target: String,
    /// Systems to measure: `isthmus`, `isthmus-acl` (ACLs on, `default_policy = "deny"`,
    /// every write with a token whose policy grants `key_prefix "bench/"`), `etcd`.
    #[arg(long, value_delimiter = ',', default_value = "isthmus,etcd")]
    systems: Vec<String>,
}

const MEMBERS: usize = 3;

/// A three-member cluster under test.
trait Cluster: Send + Sync {
    fn name(&self) -> &'static str;
    /// One write; true when acknowledged.
    fn put(&self, agent: &ureq::Agent, member: usize, key: &str, value: &[u8]) -> bool;
    /// The member that leads, as the live members report it.
    fn leader(&self) -> Option<usize>;
    fn kill(&mut self, member: usize);
    fn restart(&mut self, member: usize) -> Result<()>;
    fn is_up(&self, member: usize) -> bool;
}

fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build();
    ureq::Agent::new_with_config(config)
}

fn spawn(command: &mut Command, log: &Path) -> Result<Child> {
    let file = fs::OpenOptions::new().create(true).append(true).open(log)?;
    Ok(command
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .spawn()?)
}

struct Isthmus {
    dir: tempfile::TempDir,
    binary: PathBuf,
    children: Vec<Option<Child>>,
    /// With ACLs: the token every write carries.
    token: Option<String>,
}

impl Isthmus {
    fn start(acl: bool) -> Result<Isthmus> {
        let binary = std::env::current_exe()?.with_file_name("dc-agent");
        if !binary.is_file() {
            bail!(
                "{} is missing; run bench/run.sh (it builds it)",
                binary.display()
            );
        }
        let dir = tempfile::tempdir()?;
        let mut source = "[[datacenters]]\nname = \"dc1\"\nservers = [{ name = \"s1\", address = \"127.90.0.1\" }, { name = \"s2\", address = \"127.90.0.2\" }, { name = \"s3\", address = \"127.90.0.3\" }]\n".to_owned();
        if acl {
            source.push_str("[acl]\nenabled = true\ndefault_policy = \"deny\"\n");
        }
        let (topology, _) =
            topology::parse(&source, "bench").map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let out = dir.path().to_owned();
        let existing = |relative: &Path| fs::read_to_string(out.join(relative)).ok();
        let key = wire::gossip_key::encode(&[5u8; 32]);
        let plan = topology::render::plan(
            &topology,
            &Default::default(),
            &existing,
            &key,
            time::OffsetDateTime::now_utc(),
        )?;
        plan.write_to(&out)?;
        let mut cluster = Isthmus {
            dir,
            binary,
            children: (0..MEMBERS).map(|_| None).collect(),
            token: None,
        };
        for member in 0..MEMBERS {
            cluster.restart(member)?;
        }
        if acl {
            let management = fs::read_to_string(out.join(topology::acl::MANAGEMENT_FILE))?
                .trim()
                .to_owned();
            cluster.token = Some(writer_token(&management)?);
        }
        Ok(cluster)
    }

    fn http(member: usize) -> String {
        format!("http://127.90.0.{}:8500", member + 1)
    }
}

/// A token whose policy lets it write under `bench/` (made once the leader has
/// bootstrapped ACLs with the management token).
fn writer_token(management: &str) -> Result<String> {
    let client = agent(Duration::from_secs(2));
    let url = |path: &str| format!("{}{path}", Isthmus::http(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let put = |path: &str, body: serde_json::Value| -> Option<serde_json::Value> {
        let mut response = client
            .put(url(path))
            .header("X-Consul-Token", management)
            .send(body.to_string())
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
    };
    loop {
        let policy = serde_json::json!({
            "Name": "bench-writer",
            "Rules": "key_prefix \"bench/\" { policy = \"write\" }"
        });
        if put("/v1/acl/policy", policy).is_some() {
            break;
        }
        if Instant::now() > deadline {
            bail!("ACLs were not bootstrapped within 60 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let token = put(
        "/v1/acl/token",
        serde_json::json!({"Policies": [{"Name": "bench-writer"}]}),
    )
    .context("creating the bench token")?;
    token["SecretID"]
        .as_str()
        .map(str::to_owned)
        .context("the token has no SecretID")
}

impl Cluster for Isthmus {
    fn name(&self) -> &'static str {
        if self.token.is_some() {
            "Isthmus, ACLs on"
        } else {
            "Isthmus"
        }
    }

    fn put(&self, agent: &ureq::Agent, member: usize, key: &str, value: &[u8]) -> bool {
        let mut request = agent.put(format!("{}/v1/kv/{key}", Self::http(member)));
        if let Some(token) = &self.token {
            request = request.header("X-Consul-Token", token);
        }
        match request.send(value) {
            Ok(mut response) => {
                response.status() == 200
                    && response
                        .body_mut()
                        .read_to_string()
                        .is_ok_and(|b| b == "true")
            }
            Err(_) => false,
        }
    }

    fn leader(&self) -> Option<usize> {
        let client = agent(Duration::from_millis(500));
        let mut answers = Vec::new();
        for member in (0..MEMBERS).filter(|m| self.is_up(*m)) {
            let mut response = client
                .get(format!("{}/v1/status/leader", Self::http(member)))
                .call()
                .ok()?;
            let leader: String =
                serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
            answers.push(leader);
        }
        let first = answers.first()?.clone();
        if answers.iter().any(|a| *a != first) {
            return None;
        }
        (0..MEMBERS)
            .find(|m| first == format!("127.90.0.{}:8300", m + 1))
            .filter(|m| self.is_up(*m))
    }

    fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.children[member].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, member: usize) -> Result<()> {
        let dir = self.dir.path().join(format!("dc1/s{}", member + 1));
        let child = spawn(
            Command::new(&self.binary)
                .arg("agent")
                .arg("--config")
                .arg(dir.join("agent.json")),
            &dir.join("agent.log"),
        )?;
        self.children[member] = Some(child);
        Ok(())
    }

    fn is_up(&self, member: usize) -> bool {
        self.children[member].is_some()
    }
}

impl Drop for Isthmus {
    fn drop(&mut self) {
        for member in 0..MEMBERS {
            self.kill(member);
        }
    }
}

struct Etcd {
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

impl Etcd {
    fn start() -> Result<Etcd> {
        if Command::new("etcd").arg("--version").output().is_err() {
            bail!("etcd is not installed; run bench/run.sh (it installs Debian's etcd-server)");
        }
        let mut cluster = Etcd {
            dir: tempfile::tempdir()?,
            children: (0..MEMBERS).map(|_| None).collect(),
        };
        for member in 0..MEMBERS {
            cluster.restart(member)?;
        }
        Ok(cluster)
    }

    fn client(member: usize) -> String {
        format!("http://127.91.0.{}:2379", member + 1)
    }
}

impl Cluster for Etcd {
    fn name(&self) -> &'static str {
        "etcd 3.4 (Debian etcd-server)"
    }

    fn put(&self, agent: &ureq::Agent, member: usize, key: &str, value: &[u8]) -> bool {
        let engine = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({ "key": engine.encode(key), "value": engine.encode(value) })
            .to_string();
        match agent
            .post(format!("{}/v3/kv/put", Self::client(member)))
            .send(body.as_bytes())
        {
            Ok(mut response) => {
                response.status() == 200
                    && response
                        .body_mut()
                        .read_to_string()
                        .is_ok_and(|b| b.contains("header"))
            }
            Err(_) => false,
        }
    }

    fn leader(&self) -> Option<usize> {
        let client = agent(Duration::from_millis(500));
        let mut leader_ids = Vec::new();
        let mut member_ids = Vec::new();
        for member in (0..MEMBERS).filter(|m| self.is_up(*m)) {
            let mut response = client
                .post(format!("{}/v3/maintenance/status", Self::client(member)))
                .send(b"{}".as_slice())
                .ok()?;
            let status: serde_json::Value =
                serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
            leader_ids.push(status["leader"].as_str()?.to_owned());
            member_ids.push((member, status["header"]["member_id"].as_str()?.to_owned()));
        }
        let first = leader_ids.first()?.clone();
        if leader_ids.iter().any(|l| *l != first) {
            return None;
        }
        member_ids
            .into_iter()
            .find(|(_, id)| *id == first)
            .map(|(member, _)| member)
    }

    fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.children[member].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, member: usize) -> Result<()> {
        let name = format!("e{}", member + 1);
        let ip = format!("127.91.0.{}", member + 1);
        let initial: Vec<String> = (1..=MEMBERS)
            .map(|m| format!("e{m}=http://127.91.0.{m}:2380"))
            .collect();
        let data = self.dir.path().join(&name);
        let child = spawn(
            Command::new("etcd")
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &format!("http://{ip}:2379")])
                .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
                .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://{ip}:2380"),
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "kvbench",
                ])
                .args(["--log-level", "warn"]),
            &self.dir.path().join(format!("{name}.log")),
        )?;
        self.children[member] = Some(child);
        Ok(())
    }

    fn is_up(&self, member: usize) -> bool {
        self.children[member].is_some()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in 0..MEMBERS {
            self.kill(member);
        }
    }
}

fn wait_for_leader(cluster: &dyn Cluster, limit: Duration) -> Result<usize> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(leader) = cluster.leader() {
            // The leader must also take a write.
            if cluster.put(&agent(Duration::from_secs(2)), leader, "bench/ready", b"1") {
                return Ok(leader);
            }
        }
        if Instant::now() > deadline {
            bail!("{}: no leader within {limit:?}", cluster.name());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct LoadResult {
    concurrency: usize,
    ops: usize,
    errors: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
}

fn load(
    cluster: &(dyn Cluster + 'static),
    args: &Args,
    concurrency: usize,
    leader: usize,
) -> LoadResult {
    let value = vec![b'v'; args.value_size];
    let warmup = Duration::from_secs(1);
    let measured = Duration::from_secs(args.seconds);
    let start = Instant::now();
    let latencies = Mutex::new(Vec::new());
    let errors = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for worker in 0..concurrency {
            let value = &value;
            let latencies = &latencies;
            let errors = &errors;
            scope.spawn(move || {
                let client = agent(Duration::from_secs(5));
                let member = if args.target == "leader" {
                    leader
                } else {
                    worker % MEMBERS
                };
                let mut mine = Vec::new();
                let mut failed = 0;
                let mut n = worker * 7919;
                loop {
                    let began = Instant::now();
                    if began >= start + warmup + measured {
                        break;
                    }
                    let key = format!("bench/k{:05}", n % args.keys);
                    n += 1;
                    let ok = cluster.put(&client, member, &key, value);
                    if began >= start + warmup {
                        if ok {
                            mine.push(began.elapsed());
                        } else {
                            failed += 1;
                        }
                    }
                }
                latencies
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(mine);
                *errors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) += failed;
            });
        }
    });
    let mut latencies = latencies
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    latencies.sort();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    LoadResult {
        concurrency,
        ops: latencies.len(),
        errors: errors
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        seconds: measured.as_secs_f64(),
        p50: quantile(0.50),
        p99: quantile(0.99),
    }
}

/// Kills the leader and measures the time to the first acknowledged write begun after it.
fn failover(cluster: &mut dyn Cluster, value_size: usize) -> Result<Duration> {
    let leader = wait_for_leader(cluster, Duration::from_secs(30))?;
    let survivors: Vec<usize> = (0..MEMBERS).filter(|m| *m != leader).collect();
    let value = vec![b'f'; value_size];
    let client = agent(Duration::from_millis(500));
    let kill_time = Instant::now();
    cluster.kill(leader);
    let deadline = kill_time + Duration::from_secs(60);
    let mut n = 0usize;
    let measured = loop {
        let member = survivors[n % survivors.len()];
        if Instant::now() > deadline {
            bail!(
                "{}: no write succeeded within 60s of killing the leader",
                cluster.name()
            );
        }
        if cluster.put(
            &client,
            member,
            &format!("bench/failover{}", n % 100),
            &value,
        ) {
            break kill_time.elapsed();
        }
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    };
    cluster.restart(leader)?;
    wait_for_leader(cluster, Duration::from_secs(60))?;
    // Let the restarted member catch up before the next trial.
    std::thread::sleep(Duration::from_secs(2));
    Ok(measured)
}

/// Starts one system under test.
type Starter = Box<dyn Fn() -> Result<Box<dyn Cluster>>>;

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
                    / 1024
                    / 1024
            })
        })
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    format!("{cores} cores ({cpu}), {memory} GiB RAM, Linux {kernel}; all members and the client on one machine, loopback")
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut report = String::new();
    let today = time::OffsetDateTime::now_utc().date();
    let _ = writeln!(
        report,
        "\n## {today}: KV PUT ({})\n",
        args.systems.join(", ")
    );
    let _ = writeln!(report, "Machine: {}.  ", machine());
    let _ = writeln!(
        report,
        "Command: `bench/run.sh` (kvbench --systems {} --seconds {} --keys {} --value-size {} --concurrency {} --failovers {} --target {}).  ",
        args.systems.join(","),
        args.seconds,
        args.keys,
        args.value_size,
        args.concurrency.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
        args.failovers,
        args.target
    );
    let spread = if args.target == "leader" {
        "all client threads writing to the leader"
    } else {
        "client threads spread over all members"
    };
    let _ = writeln!(
        report,
        "Both systems: three members, every write fsynced before it is acknowledged, {spread}.\n"
    );
    let _ = writeln!(
        report,
        "| system | concurrency | writes/s | p50 ms | p99 ms | errors |"
    );
    let _ = writeln!(report, "|---|---:|---:|---:|---:|---:|");
    let mut failovers: Vec<(String, Vec<Duration>)> = Vec::new();
    let mut systems: Vec<Starter> = Vec::new();
    for system in &args.systems {
        match system.as_str() {
            "isthmus" => systems.push(Box::new(|| {
                Ok(Box::new(Isthmus::start(false)?) as Box<dyn Cluster>)
            })),
            "isthmus-acl" => systems.push(Box::new(|| {
                Ok(Box::new(Isthmus::start(true)?) as Box<dyn Cluster>)
            })),
            "etcd" => systems.push(Box::new(
                || Ok(Box::new(Etcd::start()?) as Box<dyn Cluster>),
            )),
            other => bail!("unknown system {other:?}: isthmus, isthmus-acl or etcd"),
        }
    }
    for start in systems {
        let mut cluster = start()?;
        let leader = wait_for_leader(cluster.as_ref(), Duration::from_secs(60))?;
        for &concurrency in &args.concurrency {
            let result = load(cluster.as_ref(), &args, concurrency, leader);
            let line = format!(
                "| {} | {} | {:.0} | {} | {} | {} |",
                cluster.name(),
                result.concurrency,
                result.ops as f64 / result.seconds,
                ms(result.p50),
                ms(result.p99),
                result.errors
            );
            println!("{line}");
            let _ = writeln!(report, "{line}");
        }
        let mut times = Vec::new();
        for trial in 0..args.failovers {
            let time = failover(cluster.as_mut(), args.value_size)?;
            println!("{} failover {}: {} ms", cluster.name(), trial + 1, ms(time));
            times.push(time);
        }
        failovers.push((cluster.name().to_owned(), times));
    }
    let _ = writeln!(report, "\nLeader failover (`kill -9` of the leader, then time to the first acknowledged write begun after it, writing to the survivors with a 500 ms client timeout):\n");
    let _ = writeln!(report, "| system | trials (ms) | median ms |");
    let _ = writeln!(report, "|---|---|---:|");
    for (name, mut times) in failovers {
        let trials: Vec<String> = times.iter().map(|t| ms(*t)).collect();
        times.sort();
        let median = times.get(times.len() / 2).copied().unwrap_or_default();
        let _ = writeln!(
            report,
            "| {name} | {} | {} |",
            trials.join(", "),
            ms(median)
        );
    }
    print!("{report}");
    let mut existing = fs::read_to_string(&args.out).unwrap_or_else(|_| {
        "# Benchmark results\n\nFigures appended by `bench/run.sh`, newest last.\n".to_owned()
    });
    existing.push_str(&report);
    fs::write(&args.out, existing).with_context(|| format!("writing {}", args.out.display()))?;
    Ok(())
}
