//! Servers never dial another datacenter: two datacenters in network namespaces of their own,
//! made (and removed) by this test with iproute2. Each server's namespace reaches only its
//! gateway's; the two gateways' namespaces are joined by a "WAN" link; nothing forwards
//! packets. Cross-DC HTTP and DNS work through the gateways, and a server's direct attempt
//! to reach the other datacenter fails for want of a route.
//!
//! ```text
//!  [s1 10.201.1.1] --- [10.201.1.100 gw1 10.201.0.1] --- [10.201.0.2 gw2 10.201.2.100] --- [10.201.2.1 s1]
//!       dc1 server          dc1 gateway                       dc2 gateway                      dc2 server
//! ```
//!
//! Needs root (network namespaces); `scripts/test.sh` runs the suite as the CI user, root.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{ip, wan_addresses};

const FILE: &str = r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "10.201.1.1" }]
gateways = [{ name = "gw1", address = "10.201.1.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "10.201.2.1" }]
gateways = [{ name = "gw1", address = "10.201.2.100" }]
"#;

/// The namespaces and processes of the test; removed when dropped.
struct Net {
    prefix: String,
    children: Vec<Child>,
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn create() -> Net {
        let net = Net {
            prefix: format!("isth{}", std::process::id()),
            children: Vec::new(),
        };
        for name in ["s1", "g1", "g2", "s2"] {
            ip(&["netns", "add", &net.ns(name)]);
            ip(&["-n", &net.ns(name), "link", "set", "lo", "up"]);
        }
        // (namespace, interface, address) pairs joined by a veth.
        let links = [
            (("s1", "10.201.1.1/24"), ("g1", "10.201.1.100/24")),
            (("g1", "10.201.0.1/24"), ("g2", "10.201.0.2/24")),
            (("g2", "10.201.2.100/24"), ("s2", "10.201.2.1/24")),
        ];
        for (n, ((a, a_addr), (b, b_addr))) in links.into_iter().enumerate() {
            let (a_if, b_if) = (format!("v{n}a"), format!("v{n}b"));
            ip(&[
                "link",
                "add",
                &a_if,
                "netns",
                &net.ns(a),
                "type",
                "veth",
                "peer",
                "name",
                &b_if,
                "netns",
                &net.ns(b),
            ]);
            for (ns, iface, addr) in [(a, &a_if, a_addr), (b, &b_if, b_addr)] {
                ip(&["-n", &net.ns(ns), "addr", "add", addr, "dev", iface]);
                ip(&["-n", &net.ns(ns), "link", "set", iface, "up"]);
            }
        }
        net
    }

    /// Starts `program args` in namespace `name`, logging to `log`.
    fn spawn(&mut self, name: &str, program: &Path, args: &[&str], log: PathBuf) {
        let file = std::fs::File::create(&log).expect("create log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(name)])
            .arg(program)
            .args(args)
            .stdout(Stdio::from(file.try_clone().expect("clone log")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn in a namespace");
        self.children.push(child);
    }

    /// Runs `program args` in namespace `name`: exit success and stdout.
    fn run(&self, name: &str, program: &str, args: &[&str]) -> (bool, String) {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.ns(name), program])
            .args(args)
            .output()
            .expect("run in a namespace");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in ["s1", "g1", "g2", "s2"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(name)])
                .output();
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut condition: impl FnMut() -> bool, logs: &Path) {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            let mut all = String::new();
            for entry in std::fs::read_dir(logs).into_iter().flatten().flatten() {
                if entry.path().extension().is_some_and(|e| e == "log") {
                    all.push_str(&format!(
                        "\n===== {} =====\n{}",
                        entry.path().display(),
                        std::fs::read_to_string(entry.path()).unwrap_or_default()
                    ));
                }
            }
            panic!("timed out waiting for {what}{all}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn servers_reach_other_datacenters_only_through_the_gateways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path();
    support::render_topology(FILE, out);
    wan_addresses(
        &out.join("dc1/gw1/gateway.toml"),
        "10.201.2.100",
        "10.201.0.2",
    );
    wan_addresses(
        &out.join("dc2/gw1/gateway.toml"),
        "10.201.1.100",
        "10.201.0.1",
    );
    let agent = PathBuf::from(env!("CARGO_BIN_EXE_dc-agent"));
    let gateway = support::wan_gateway_binary();
    let mut net = Net::create();
    for (ns, dc) in [("s1", "dc1"), ("s2", "dc2")] {
        let config = out.join(dc).join("s1/agent.json");
        let config = config.to_string_lossy().into_owned();
        net.spawn(
            ns,
            &agent,
            &["agent", "--config", &config],
            out.join(format!("{dc}-s1.log")),
        );
    }
    for (ns, dc) in [("g1", "dc1"), ("g2", "dc2")] {
        let config = out.join(dc).join("gw1/gateway.toml");
        let config = config.to_string_lossy().into_owned();
        net.spawn(
            ns,
            &gateway,
            &["run", "--config", &config],
            out.join(format!("{dc}-gw1.log")),
        );
    }
    let curl = |ns: &str, args: &[&str]| {
        let mut all = vec!["-s", "--max-time", "3"];
        all.extend_from_slice(args);
        net.run(ns, "curl", &all)
    };

    // dc2 gets a service, registered from inside dc2.
    wait_for(
        "a registration in dc2",
        Duration::from_secs(30),
        || {
            curl("s2", &[
                "-X", "PUT", "-d",
                r#"{"Node":"web-node","Address":"10.201.2.9","Service":{"Service":"web","Port":80}}"#,
                "http://10.201.2.1:8500/v1/catalog/register",
            ]).1 == "true"
        },
        out,
    );
    // From dc1's server namespace: a write into dc2 and a read back, through the gateways.
    wait_for(
        "a cross-DC write from dc1",
        Duration::from_secs(30),
        || {
            curl(
                "s1",
                &[
                    "-X",
                    "PUT",
                    "-d",
                    "over-the-isthmus",
                    "http://10.201.1.1:8500/v1/kv/crossed?dc=dc2",
                ],
            )
            .1 == "true"
        },
        out,
    );
    assert_eq!(
        curl("s1", &["http://10.201.1.1:8500/v1/kv/crossed?dc=dc2&raw"]).1,
        "over-the-isthmus"
    );
    assert_eq!(
        curl("s2", &["http://10.201.2.1:8500/v1/kv/crossed?raw"]).1,
        "over-the-isthmus"
    );
    // DNS in dc1 for dc2's service.
    wait_for(
        "web.service.dc2 in dc1's DNS",
        Duration::from_secs(20),
        || {
            net.run(
                "s1",
                "dig",
                &[
                    "@10.201.1.1",
                    "-p",
                    "8600",
                    "+short",
                    "+time=2",
                    "+tries=1",
                    "web.service.dc2.consul",
                ],
            )
            .1 == "10.201.2.9\n"
        },
        out,
    );
    // The WAN gossip pool forms across the namespaces too: it rides the gateways.
    wait_for(
        "a WAN pool of both servers",
        Duration::from_secs(30),
        || {
            let members = curl("s1", &["http://10.201.1.1:8500/v1/agent/members?wan=1"]).1;
            members.contains("\"s1.dc2\"") && members.contains("\"s1.dc1\"")
        },
        out,
    );
    // And the proof: from dc1's server namespace, dc2's server and the WAN are unreachable.
    let (reached, _) = curl("s1", &["http://10.201.2.1:8500/v1/status/leader"]);
    assert!(!reached, "dc1's server reached dc2's server directly");
    let (reached, _) = curl("s1", &["http://10.201.0.2:9100/metrics"]);
    assert!(!reached, "dc1's server reached the WAN");
    let (routes_ok, routes) = net.run("s1", "ip", &["route"]);
    assert!(routes_ok);
    assert!(!routes.contains("default"), "{routes}");
}
