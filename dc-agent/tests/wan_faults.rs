//! Faults of a federation under load, with every client operation recorded and each key's
//! history checked for linearizability (`lincheck`). Two datacenters of three servers and a
//! gateway, each in a network namespace of its own (its nodes on that namespace's loopback),
//! the two gateways joined by a veth "WAN" link. Clients in both datacenters write unique
//! values and read with `?consistent`, to their own datacenter's keys and, through the
//! gateways, to the other's (`?dc=`), while a nemesis in turn:
//!
//! - kills dc2's gateway (`kill -9`) and starts it again,
//! - partitions the WAN (the veth link down) and heals it,
//! - kills every server of dc2 at once and starts them again,
//! - makes a dc1 server leave (`PUT /v1/agent/leave`) and restarts it with the same config,
//! - kills dc1's leader.
//!
//! Acknowledged writes must all be there, no read may see the past, and the server that left
//! must be a voter again at the end. CI runs it for 40 s; `scripts/soak.sh` runs it longer.
//!
//! Needs root (network namespaces); `scripts/test.sh` runs the suite as the CI user, root.

mod support;

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dc_agent::client::ApiClient;
use lincheck::{Entry, Op};
use support::load::{self, Rng, Shared, Target};
use support::{ip, wan_addresses, Cluster};

const FILE: &str = r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.0.1.1" }, { name = "s2", address = "127.0.1.2" }, { name = "s3", address = "127.0.1.3" }]
gateways = [{ name = "gw1", address = "127.0.1.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.0.2.1" }, { name = "s2", address = "127.0.2.2" }, { name = "s3", address = "127.0.2.3" }]
gateways = [{ name = "gw1", address = "127.0.2.100" }]
"#;

/// Where each datacenter's nodes are in `Cluster::agents`.
const DC1: [usize; 3] = [0, 1, 2];
const DC1_GW: usize = 3;
const DC2: [usize; 3] = [4, 5, 6];
const DC2_GW: usize = 7;
/// The gateways' WAN addresses (on the veth link).
const WAN1: &str = "10.202.0.1";
const WAN2: &str = "10.202.0.2";
const KEYS: u64 = 3;

/// The two namespaces and the WAN link between them; removed when dropped.
struct Net {
    prefix: String,
}

impl Net {
    fn ns(&self, dc: &str) -> String {
        format!("{}-{dc}", self.prefix)
    }

    fn create() -> Net {
        let net = Net {
            prefix: format!("isthw{}", std::process::id()),
        };
        for dc in ["dc1", "dc2"] {
            ip(&["netns", "add", &net.ns(dc)]);
            ip(&["-n", &net.ns(dc), "link", "set", "lo", "up"]);
        }
        let (a, b) = (net.ns("dc1"), net.ns("dc2"));
        ip(&[
            "link", "add", "wan0", "netns", &a, "type", "veth", "peer", "name", "wan0", "netns", &b,
        ]);
        for (ns, addr) in [(&a, WAN1), (&b, WAN2)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "wan0",
            ]);
            ip(&["-n", ns, "link", "set", "wan0", "up"]);
        }
        net
    }

    /// The WAN link up (healed) or down (partitioned).
    fn wan(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        for dc in ["dc1", "dc2"] {
            ip(&["-n", &self.ns(dc), "link", "set", "wan0", state]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for dc in ["dc1", "dc2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(dc)])
                .output();
        }
    }
}

/// Moves the calling thread into namespace `ns` (what it then dials or spawns is there).
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("the namespace exists");
    // SAFETY: setns on a namespace file this thread opened; it changes only this thread's
    // network namespace.
    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(done, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns);
                f()
            })
            .join()
            .expect("a thread in the namespace")
    })
}

/// The federation, rendered and started in its namespaces.
struct Federation {
    net: Net,
    cluster: Cluster,
}

impl Federation {
    fn ns_of(&self, agent: usize) -> String {
        self.net.ns(if agent <= DC1_GW { "dc1" } else { "dc2" })
    }

    fn start(&mut self, agent: usize) {
        let ns = self.ns_of(agent);
        let cluster = &mut self.cluster;
        in_ns(&ns, || cluster.agents[agent].start());
    }

    /// The index of the leader `servers` agree on, waiting up to `limit`; `None` when none.
    fn leader(&mut self, servers: [usize; 3], limit: Duration) -> Option<usize> {
        let ns = self.ns_of(servers[0]);
        let cluster = &mut self.cluster;
        in_ns(&ns, || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                let mut named = Vec::new();
                for i in servers {
                    if !cluster.agents[i].is_running() {
                        continue;
                    }
                    let client = ApiClient::new(&cluster.agents[i].http(), Duration::from_secs(1));
                    if let Some(leader) = client
                        .get("/v1/status/leader")
                        .ok()
                        .and_then(|r| r.json::<String>().ok())
                    {
                        named.push(leader);
                    }
                }
                let found = named.first().and_then(|first| {
                    servers.into_iter().find(|i| {
                        named.iter().all(|n| n == first)
                            && first.starts_with(&format!("{}:", cluster.agents[*i].address))
                    })
                });
                if found.is_some() {
                    return found;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            None
        })
    }

    /// The voters of `dc`'s Raft configuration, as its first answering server says.
    fn voters(&mut self, servers: [usize; 3]) -> Vec<String> {
        let ns = self.ns_of(servers[0]);
        let cluster = &self.cluster;
        in_ns(&ns, || {
            servers
                .into_iter()
                .filter_map(|i| {
                    ApiClient::new(&cluster.agents[i].http(), Duration::from_secs(2))
                        .get("/v1/operator/raft/configuration")
                        .ok()
                        .filter(|r| r.status == 200)
                        .and_then(|r| r.json::<serde_json::Value>().ok())
                })
                .next()
                .and_then(|c| {
                    c["Servers"].as_array().map(|servers| {
                        servers
                            .iter()
                            .filter(|s| s["Voter"] == true)
                            .filter_map(|s| s["Node"].as_str().map(str::to_owned))
                            .collect()
                    })
                })
                .unwrap_or_default()
        })
    }
}

/// One fault, healed before it returns; its name.
fn fault(fed: &mut Federation, turn: usize, rng: &mut Rng) -> &'static str {
    let mut pause = || Duration::from_millis(1_500 + rng.below(1_000));
    match turn % 5 {
        0 => {
            fed.cluster.agents[DC2_GW].kill();
            std::thread::sleep(pause());
            fed.start(DC2_GW);
            "kill -9 dc2's gateway"
        }
        1 => {
            fed.net.wan(false);
            let until = Instant::now() + pause() + Duration::from_secs(1);
            // The partition is real: dc2 cannot be read from dc1 while it lasts.
            let ns = fed.ns_of(DC1[0]);
            let http = fed.cluster.agents[DC1[0]].http();
            let answered = in_ns(&ns, || {
                std::thread::sleep(Duration::from_millis(500));
                ApiClient::new(&http, Duration::from_secs(2))
                    .get("/v1/kv/none?dc=dc2")
                    .is_ok_and(|r| r.status == 200 || r.status == 404)
            });
            assert!(!answered, "dc2 answered dc1 through a partitioned WAN");
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            fed.net.wan(true);
            "partition the WAN"
        }
        2 => {
            for i in DC2 {
                fed.cluster.agents[i].kill();
            }
            std::thread::sleep(pause());
            for i in DC2 {
                fed.start(i);
            }
            "kill -9 every server of dc2"
        }
        3 => {
            let Some(leader) = fed.leader(DC1, Duration::from_secs(5)) else {
                return "no dc1 leader to find a follower by";
            };
            let leaver = DC1[(DC1.iter().position(|i| *i == leader).unwrap_or(0) + 1) % 3];
            let ns = fed.ns_of(leaver);
            let http = fed.cluster.agents[leaver].http();
            in_ns(&ns, || {
                let _ = ApiClient::new(&http, Duration::from_secs(10)).put("/v1/agent/leave", b"");
            });
            let deadline = Instant::now() + Duration::from_secs(20);
            while fed.cluster.agents[leaver].is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            // Still up after 20 s: the leave failed; stop it the hard way.
            fed.cluster.agents[leaver].kill();
            fed.start(leaver);
            "a dc1 follower leaves and restarts"
        }
        _ => {
            let Some(leader) = fed.leader(DC1, Duration::from_secs(5)) else {
                return "no dc1 leader to kill";
            };
            fed.cluster.agents[leader].kill();
            std::thread::sleep(pause());
            fed.start(leader);
            "kill -9 dc1's leader"
        }
    }
}

#[test]
fn federation_histories_stay_linearizable_through_gateway_dc_and_wan_faults() {
    let seconds: u64 = std::env::var("ISTHMUS_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().expect("tempdir");
    support::render_topology(FILE, dir.path());
    wan_addresses(
        &dir.path().join("dc1/gw1/gateway.toml"),
        "127.0.2.100",
        WAN2,
    );
    wan_addresses(
        &dir.path().join("dc2/gw1/gateway.toml"),
        "127.0.1.100",
        WAN1,
    );
    let cluster = support::federation_nodes(
        dir,
        &[
            ("dc1", "s1", "127.0.1.1"),
            ("dc1", "s2", "127.0.1.2"),
            ("dc1", "s3", "127.0.1.3"),
            ("dc1", "gw1", "127.0.1.100"),
            ("dc2", "s1", "127.0.2.1"),
            ("dc2", "s2", "127.0.2.2"),
            ("dc2", "s3", "127.0.2.3"),
            ("dc2", "gw1", "127.0.2.100"),
        ],
    );
    let mut fed = Federation {
        net: Net::create(),
        cluster,
    };
    for agent in 0..8 {
        fed.start(agent);
    }
    for servers in [DC1, DC2] {
        if fed.leader(servers, Duration::from_secs(40)).is_none() {
            panic!("no leader in {servers:?}{}", fed.cluster.logs());
        }
    }
    // Both ways across the gateways before the load starts.
    for (from, dc) in [(DC1[0], "dc2"), (DC2[0], "dc1")] {
        let ns = fed.ns_of(from);
        let http = fed.cluster.agents[from].http();
        let crossed = in_ns(&ns, || {
            let client = ApiClient::new(&http, Duration::from_secs(3));
            load::final_read(
                &client,
                &format!("/v1/kv/none?dc={dc}&raw"),
                Duration::from_secs(40),
            )
        });
        assert!(crossed.is_some(), "no way to {dc}{}", fed.cluster.logs());
    }

    let addresses = |servers: [usize; 3]| -> Vec<String> {
        servers
            .iter()
            .map(|i| fed.cluster.agents[*i].http())
            .collect()
    };
    let (dc1, dc2) = (addresses(DC1), addresses(DC2));
    let target = |addresses: &Vec<String>, dc: Option<&str>, label: &str| Target {
        addresses: addresses.clone(),
        dc: dc.map(str::to_owned),
        label: label.to_owned(),
        acknowledged: Default::default(),
    };
    // Two clients in each datacenter, each on both datacenters' keys.
    let (local1, cross1) = (
        target(&dc1, None, "dc1/"),
        target(&dc1, Some("dc2"), "dc2/"),
    );
    let (local2, cross2) = (
        target(&dc2, None, "dc2/"),
        target(&dc2, Some("dc1"), "dc1/"),
    );
    let (ns1, ns2) = (fed.net.ns("dc1"), fed.net.ns("dc2"));
    let clients = [
        (ns1.clone(), vec![local1.clone(), cross1.clone()]),
        (ns1, vec![local1, cross1.clone()]),
        (ns2.clone(), vec![local2.clone(), cross2.clone()]),
        (ns2, vec![local2, cross2.clone()]),
    ];
    let shared = Shared::new();
    let started = shared.started;
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(id, (ns, targets))| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                enter(&ns);
                load::client(id as u64, targets, KEYS, shared)
            })
        })
        .collect();

    // The nemesis: each kind of fault in turn, each healed before the next.
    let mut rng = Rng(0x005E_ED0F_FA17_5EED);
    let mut faults = Vec::new();
    let end = started + Duration::from_secs(seconds);
    let mut turn = 0;
    while Instant::now() + Duration::from_secs(5) < end {
        std::thread::sleep(Duration::from_millis(1_000 + rng.below(1_000)));
        faults.push(fault(&mut fed, turn, &mut rng));
        turn += 1;
    }
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("client thread");
    }

    // Every key read once more from its own datacenter, after everything healed.
    let mut history = shared.history.lock().expect("history").clone();
    for (servers, label) in [(DC1, "dc1/"), (DC2, "dc2/")] {
        let Some(leader) = fed.leader(servers, Duration::from_secs(60)) else {
            panic!(
                "no leader in {label} after the faults{}",
                fed.cluster.logs()
            );
        };
        let ns = fed.ns_of(leader);
        let http = fed.cluster.agents[leader].http();
        for k in 0..KEYS {
            let invoked = started.elapsed().as_nanos() as u64;
            let seen = in_ns(&ns, || {
                let client = ApiClient::new(&http, Duration::from_secs(3));
                load::final_read(
                    &client,
                    &format!("/v1/kv/lin/{k}?consistent&raw"),
                    Duration::from_secs(30),
                )
            });
            let Some(seen) = seen else {
                panic!("no final read of {label}lin/{k}{}", fed.cluster.logs());
            };
            history.push(Entry {
                key: format!("{label}lin/{k}"),
                op: Op::Read(seen),
                invoked,
                returned: Some(started.elapsed().as_nanos() as u64),
            });
        }
    }
    load::verdict("wan faults", &shared, &history, &faults, seconds, || {
        fed.cluster.logs()
    });
    assert!(faults.len() >= 5, "the nemesis ran every kind: {faults:?}");
    let crossed = [&cross1, &cross2].map(|t| t.acknowledged.load(Ordering::Relaxed));
    println!(
        "acknowledged writes across the WAN: dc1 -> dc2 {}, dc2 -> dc1 {}",
        crossed[0], crossed[1]
    );
    assert!(
        crossed.iter().all(|n| *n >= 20),
        "writes through the gateways acknowledged: {crossed:?}"
    );
    // The server that left is a voter again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let voters = fed.voters(DC1);
        if voters.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dc1 runs on voters {voters:?} after a server left and came back{}",
            fed.cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
