//! The `topology` binary, run as a user runs it: `check` on good and bad files (the error
//! texts are snapshots), `render` and what it writes.

use std::fs;
use std::path::Path;
use std::process::Command;

use expect_test::{expect, Expect};

/// Runs `topology ARGS` in `dir`: exit code, stdout, stderr.
fn run(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_topology"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run topology");
    format!(
        "exit: {}\n{}{}",
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Writes `source` as `federation.toml` and runs `topology check` on it.
fn check(source: &str, expect: Expect) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("federation.toml"), source).expect("write topology");
    expect.assert_eq(&run(dir.path(), &["check", "federation.toml"]));
}

#[test]
fn a_good_file_prints_its_layout() {
    check(
        r#"
primary_datacenter = "dc1"

[[datacenters]]
name = "dc1"
servers = 3
clients = 2
gateways = 1

[[datacenters.services]]
name = "web"
node = "c2"
port = 80
tags = ["rails"]
check = { http = "http://127.0.1.5/health", interval = "10s" }

[datacenters.overrides.s1]
log_level = "debug"
ports = { http = 18500 }

[[datacenters]]
name = "eu-west"
gateways = [{ name = "edge", address = "10.20.0.9" }]
servers = [
  { name = "consul-a", address = "10.20.0.1" },
  { name = "consul-b", address = "10.20.0.2" },
  { name = "consul-c", address = "10.20.0.3" },
]
"#,
        expect![[r#"
            exit: 0
            federation.toml: 2 datacenter(s), 8 agent(s), 2 gateway(s); domain `consul`, primary datacenter dc1
            state directory: .isthmus/federation
            gossip key: generated at the first render, then kept
            CA: generated at the first render, then kept; node certificates valid 365 days

            dc1 (primary)
              NODE  ROLE     ADDRESS      PORTS
              s1    server   127.0.1.1    server 8300/udp, serf_lan 8301/udp, http 18500/tcp, dns 8600/udp+tcp
              s2    server   127.0.1.2    server 8300/udp, serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              s3    server   127.0.1.3    server 8300/udp, serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              c1    client   127.0.1.4    serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              c2    client   127.0.1.5    serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              gw1   gateway  127.0.1.100  quic 8443/udp, metrics 9100/tcp
              services:
                web on c2, port 80, tags rails; check http http://127.0.1.5/health every 10s

            eu-west
              NODE      ROLE     ADDRESS    PORTS
              consul-a  server   10.20.0.1  server 8300/udp, serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              consul-b  server   10.20.0.2  server 8300/udp, serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              consul-c  server   10.20.0.3  server 8300/udp, serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              edge      gateway  10.20.0.9  quic 8443/udp, metrics 9100/tcp
        "#]],
    );
}

#[test]
fn an_unknown_key_suggests_the_nearest() {
    check(
        r#"
[[datacenters]]
name = "dc1"
sevrers = 3
"#,
        expect![[r#"
            exit: 1
            error: unknown key `sevrers`
             --> federation.toml:4:1
              |
            4 | sevrers = 3
              | ^^^^^^^
              = help: did you mean `servers`?
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn an_unknown_key_with_no_near_match_lists_the_valid_ones() {
    check(
        r#"
[tls]
zookeeper = true
"#,
        expect![[r#"
            exit: 1
            error: unknown key `zookeeper`
             --> federation.toml:3:1
              |
            3 | zookeeper = true
              | ^^^^^^^^^
              = help: valid keys here: ca, ca_dir, ca_days, cert_days, https
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn a_duplicate_node_name() {
    check(
        r#"
[[datacenters]]
name = "dc1"
servers = [
  { name = "s1", address = "10.0.0.1" },
  { name = "s2", address = "10.0.0.2" },
  { name = "s1", address = "10.0.0.3" },
]
"#,
        expect![[r#"
            exit: 1
            error: duplicate node name `s1` in dc1
             --> federation.toml:7:12
              |
            7 |   { name = "s1", address = "10.0.0.3" },
              |            ^^^^
             --> federation.toml:5:12
              |
            5 |   { name = "s1", address = "10.0.0.1" },
              |            ^^^^ first declared here
              = help: node names must be unique within a datacenter
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn a_duplicate_address_and_port() {
    check(
        r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "a", address = "10.0.0.1" }]
clients = [{ name = "b", address = "10.0.0.1" }]
"#,
        expect![[r#"
            exit: 1
            error: dc1/b and dc1/a both listen on 10.0.0.1: serf_lan 8301/udp, http 8500/tcp, dns 8600/udp, dns 8600/tcp
             --> federation.toml:5:21
              |
            5 | clients = [{ name = "b", address = "10.0.0.1" }]
              |                     ^^^
             --> federation.toml:4:21
              |
            4 | servers = [{ name = "a", address = "10.0.0.1" }]
              |                     ^^^ dc1/a is declared here
              = help: give one of them another address, or other ports with [datacenters.overrides.b] ports = { http = 8501, ... }
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn zero_servers() {
    check(
        r#"
[[datacenters]]
name = "dc1"
servers = 0
clients = 2
"#,
        expect![[r#"
            exit: 1
            error: datacenter `dc1` has no server
             --> federation.toml:4:11
              |
            4 | servers = 0
              |           ^
              = help: every datacenter needs servers to hold its catalog and KV: add `servers = 3`
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn an_even_server_count_is_a_warning() {
    check(
        r#"
[[datacenters]]
name = "dc1"
servers = 4
"#,
        expect![[r#"
            exit: 0
            federation.toml: 1 datacenter(s), 4 agent(s), 0 gateway(s); domain `consul`, primary datacenter dc1
            state directory: .isthmus/federation
            gossip key: generated at the first render, then kept
            CA: generated at the first render, then kept; node certificates valid 365 days

            dc1 (primary)
              NODE  ROLE    ADDRESS    PORTS
              s1    server  127.0.1.1  server 8300/udp, serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              s2    server  127.0.1.2  server 8300/udp, serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              s3    server  127.0.1.3  server 8300/udp, serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
              s4    server  127.0.1.4  server 8300/udp, serf_lan 8301/udp, http 8500/tcp, dns 8600/udp+tcp
            warning: datacenter `dc1` has 4 servers, an even number
             --> federation.toml:4:11
              |
            4 | servers = 4
              |           ^
              = help: 4 servers tolerate 1 failure(s), the same as 3; use an odd count (3 or 5)
        "#]],
    );
}

#[test]
fn a_datacenter_without_a_gateway_in_a_federation() {
    check(
        r#"
[[datacenters]]
name = "dc1"
servers = 3
gateways = 1

[[datacenters]]
name = "dc2"
servers = 3
"#,
        expect![[r#"
            exit: 1
            error: datacenter `dc2` has no gateway, so no other datacenter can reach it
             --> federation.toml:8:8
              |
            8 | name = "dc2"
              |        ^^^^^
              = help: servers reach other datacenters only through gateways: add `gateways = 1`
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn a_service_on_an_unknown_node() {
    check(
        r#"
[[datacenters]]
name = "dc1"
servers = 3
clients = 1

[[datacenters.services]]
name = "web"
node = "c2"
"#,
        expect![[r#"
            exit: 1
            error: service `web` is placed on unknown node `c2` in dc1
             --> federation.toml:9:8
              |
            9 | node = "c2"
              |        ^^^^
              = help: did you mean `s2`?
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn a_bad_duration() {
    check(
        r#"
[[datacenters]]
name = "dc1"
servers = 1

[[datacenters.services]]
name = "web"
node = "s1"
check = { http = "http://127.0.1.1/", interval = "10x" }
"#,
        expect![[r#"
            exit: 1
            error: unknown unit "x" in duration "10x"; valid units are ns, us, ms, s, m, h
             --> federation.toml:9:50
              |
            9 | check = { http = "http://127.0.1.1/", interval = "10x" }
              |                                                  ^^^^^
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn a_datacenter_name_that_is_not_a_dns_label() {
    check(
        r#"
[[datacenters]]
name = "US_East"
servers = 3
"#,
        expect![[r#"
            exit: 1
            error: datacenter name `US_East` is not a DNS label: it contains 'U'; use only lowercase letters, digits and '-'
             --> federation.toml:3:8
              |
            3 | name = "US_East"
              |        ^^^^^^^^^
              = help: datacenter names appear in DNS names and certificates; try `us-east`
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn several_problems_are_reported_together() {
    check(
        r#"
primary_datacenter = "dc3"

[gossip]
key = "c2hvcnQ="

[[datacenters]]
name = "dc1"
servers = 3
clients = 1
gateways = 1

[[datacenters.services]]
name = "cron"
node = "c1"
check = { args = ["/usr/local/bin/check-cron"], interval = "30s" }

[[datacenters.services]]
name = "db"
node = "gw1"

[datacenters.overrides.c9]
log_level = "verbose"

[[datacenters]]
name = "dc2"
servers = 1
gateways = 1
"#,
        expect![[r#"
            exit: 1
            error: the gossip key decodes to 5 bytes; it must be 16, 24 or 32
             --> federation.toml:5:7
              |
            5 | key = "c2hvcnQ="
              |       ^^^^^^^^^^
              = help: write `key = "generate"`, or paste the output of `dc-agent keygen` (32 random bytes, base64)
            error: override for unknown node `c9` in dc1
              --> federation.toml:22:24
               |
            22 | [datacenters.overrides.c9]
               |                        ^^
               = help: did you mean `c1`?
            error: a script check on `c1`, where script checks are disabled
              --> federation.toml:16:9
               |
            16 | check = { args = ["/usr/local/bin/check-cron"], interval = "30s" }
               |         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
               = help: enable them for that node: [datacenters.overrides.c1] extra = { enable_script_checks = true }
            error: service `db` is placed on gateway `gw1`
              --> federation.toml:20:8
               |
            20 | node = "gw1"
               |        ^^^^^
               = help: services run on servers or client agents; gateways only route between datacenters
            error: primary datacenter `dc3` is not declared
             --> federation.toml:2:22
              |
            2 | primary_datacenter = "dc3"
              |                      ^^^^^
              = help: did you mean `dc1`?
            federation.toml: 5 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn a_syntax_error_points_at_it() {
    check(
        r#"
[[datacenters]]
name = "dc1
servers = 3
"#,
        expect![[r#"
            exit: 1
            error: invalid basic string, expected `"`
             --> federation.toml:3:12
              |
            3 | name = "dc1
              |            ^
            federation.toml: 1 error(s); nothing was changed
        "#]],
    );
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    expect![[r#"
        exit: 1
        error: reading nowhere.toml: No such file or directory (os error 2)
    "#]]
    .assert_eq(&run(dir.path(), &["check", "nowhere.toml"]));
}

#[test]
fn the_shipped_examples_are_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for example in ["two-dcs.toml", "three-dcs.toml"] {
        let output = run(&examples, &["check", example]);
        assert!(output.starts_with("exit: 0\n"), "{example}:\n{output}");
        assert!(!output.contains("warning"), "{example}:\n{output}");
    }
}

const SMALL: &str = r#"
state_dir = "state"

[[datacenters]]
name = "dc1"
servers = 1
clients = 1
gateways = 1

[[datacenters.services]]
name = "web"
node = "c1"
port = 80
check = { http = "http://127.0.1.2/", interval = "10s" }

[datacenters.overrides.c1]
extra = { enable_script_checks = true, node_meta = { rack = "r1" } }

[[datacenters]]
name = "dc2"
servers = 1
gateways = 1
"#;

fn read(dir: &Path, relative: &str) -> String {
    fs::read_to_string(dir.join(relative)).unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

fn listing(root: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                #[cfg(unix)]
                let mode = {
                    use std::os::unix::fs::PermissionsExt;
                    fs::metadata(&path).expect("metadata").permissions().mode() & 0o777
                };
                #[cfg(not(unix))]
                let mode = 0;
                out.push(format!(
                    "{:o} {}",
                    mode,
                    path.strip_prefix(root).expect("under root").display()
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.join("\n") + "\n"
}

#[test]
fn render_writes_every_node_and_keeps_keys_on_a_second_render() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    fs::write(dir.join("federation.toml"), SMALL).expect("write topology");
    expect![[r#"
        exit: 0
        CA: generated a new CA in ca/
        gossip key: generated a new key in gossip.key
        node certificates: 5 issued, 0 kept
        rendered 30 files for 5 nodes into state
    "#]]
    .assert_eq(&run(dir, &["render", "federation.toml"]));
    let state = dir.join("state");
    expect![[r#"
        600 ca/ca-key.pem
        644 ca/ca.pem
        600 dc1/c1/agent.json
        644 dc1/c1/isthmus-dc1-c1.service
        644 dc1/c1/tls/ca.pem
        644 dc1/c1/tls/cert.pem
        600 dc1/c1/tls/key.pem
        600 dc1/gw1/gateway.toml
        644 dc1/gw1/isthmus-dc1-gw1.service
        644 dc1/gw1/tls/ca.pem
        644 dc1/gw1/tls/cert.pem
        600 dc1/gw1/tls/key.pem
        600 dc1/s1/agent.json
        644 dc1/s1/isthmus-dc1-s1.service
        644 dc1/s1/tls/ca.pem
        644 dc1/s1/tls/cert.pem
        600 dc1/s1/tls/key.pem
        600 dc2/gw1/gateway.toml
        644 dc2/gw1/isthmus-dc2-gw1.service
        644 dc2/gw1/tls/ca.pem
        644 dc2/gw1/tls/cert.pem
        600 dc2/gw1/tls/key.pem
        600 dc2/s1/agent.json
        644 dc2/s1/isthmus-dc2-s1.service
        644 dc2/s1/tls/ca.pem
        644 dc2/s1/tls/cert.pem
        600 dc2/s1/tls/key.pem
        600 gossip.key
        644 isthmus-alerts.yml
        644 prometheus.yml
    "#]]
    .assert_eq(&listing(&state));

    let key_material = [
        "ca/ca.pem",
        "ca/ca-key.pem",
        "gossip.key",
        "dc1/s1/tls/cert.pem",
        "dc1/s1/tls/key.pem",
    ];
    let before: Vec<String> = key_material.iter().map(|f| read(&state, f)).collect();
    expect![[r#"
        exit: 0
        CA: kept the existing ca/ca.pem
        gossip key: kept the existing gossip.key
        node certificates: 0 issued, 5 kept
        rendered 30 files for 5 nodes into state
    "#]]
    .assert_eq(&run(dir, &["render", "federation.toml"]));
    let after: Vec<String> = key_material.iter().map(|f| read(&state, f)).collect();
    assert_eq!(
        before, after,
        "a second render must keep the CA, the gossip key and valid node certificates"
    );

    let gossip_key = read(&state, "gossip.key");
    assert_eq!(
        wire::gossip_key::decode(&gossip_key).map(|k| k.len()),
        Ok(32)
    );
    let agent = read(&state, "dc1/c1/agent.json").replace(gossip_key.trim(), "<gossip key>");
    expect![[r#"
        {
          "bind_addr": "127.0.1.2",
          "client_addr": "127.0.1.2",
          "data_dir": "data",
          "datacenter": "dc1",
          "domain": "consul",
          "enable_script_checks": true,
          "encrypt": "<gossip key>",
          "isthmus": {
            "config_version": 1,
            "gateways": [
              "127.0.1.100:8443"
            ]
          },
          "log_level": "info",
          "node_meta": {
            "rack": "r1"
          },
          "node_name": "c1",
          "ports": {
            "dns": 8600,
            "http": 8500,
            "serf_lan": 8301
          },
          "primary_datacenter": "dc1",
          "retry_join": [
            "127.0.1.1"
          ],
          "server": false,
          "services": [
            {
              "check": {
                "http": "http://127.0.1.2/",
                "interval": "10s"
              },
              "name": "web",
              "port": 80
            }
          ],
          "tls": {
            "defaults": {
              "ca_file": "tls/ca.pem",
              "cert_file": "tls/cert.pem",
              "key_file": "tls/key.pem",
              "verify_incoming": true,
              "verify_outgoing": true
            },
            "internal_rpc": {
              "verify_server_hostname": true
            }
          }
        }
    "#]]
    .assert_eq(&agent);
    expect![[r##"
        # wan-gateway gw1 of dc1; rendered by `topology render`. Relative paths are from this file's directory.
        config_version = 1
        datacenter = "dc1"
        primary_datacenter = "dc1"
        domain = "consul"
        node_name = "gw1"
        bind_addr = "127.0.1.100"
        port = 8443
        metrics_port = 9100
        data_dir = "data"
        log_level = "info"
        servers = ["127.0.1.1:8300"]

        [tls]
        ca_file = "tls/ca.pem"
        cert_file = "tls/cert.pem"
        key_file = "tls/key.pem"

        [[remote_gateways]]
        datacenter = "dc2"
        node_name = "gw1"
        address = "127.0.2.100:8443"
    "##]]
    .assert_eq(&read(&state, "dc1/gw1/gateway.toml"));
    expect![[r#"
        # Isthmus dc-agent for node s1 (server) of dc1.
        # Install: copy this node's directory to /etc/isthmus/dc1-s1/ and dc-agent to /usr/local/bin/,
        # make the service's user once (useradd --system --home-dir /var/lib/isthmus --shell /usr/sbin/nologin isthmus),
        # let it read its config (chgrp -R isthmus /etc/isthmus/dc1-s1 && chmod -R g+rX /etc/isthmus/dc1-s1),
        # then: cp isthmus-dc1-s1.service /etc/systemd/system/ && systemctl enable --now isthmus-dc1-s1
        [Unit]
        Description=Isthmus dc-agent s1 (server, dc1)
        Wants=network-online.target
        After=network-online.target

        [Service]
        ExecStart=/usr/local/bin/dc-agent agent --config /etc/isthmus/dc1-s1/agent.json -data-dir=/var/lib/isthmus/dc1-s1
        ExecReload=/bin/kill -HUP $MAINPID
        KillSignal=SIGTERM
        Restart=on-failure
        RestartSec=2
        LimitNOFILE=65536
        StateDirectory=isthmus/dc1-s1
        StateDirectoryMode=0700
        User=isthmus
        Group=isthmus
        NoNewPrivileges=yes
        ProtectSystem=full
        ProtectHome=yes
        PrivateTmp=yes

        [Install]
        WantedBy=multi-user.target
    "#]]
    .assert_eq(&read(&state, "dc1/s1/isthmus-dc1-s1.service"));
    expect![[r##"
        # Prometheus scrape config for the whole federation; rendered by `topology render`.
        global:
          scrape_interval: 15s
          evaluation_interval: 15s

        rule_files:
          - isthmus-alerts.yml

        scrape_configs:
          - job_name: isthmus-agents
            metrics_path: /v1/agent/metrics
            params:
              format: [prometheus]
            static_configs:
              - targets: ["127.0.1.1:8500"]
                labels: {dc: "dc1", node: "s1", role: "server"}
              - targets: ["127.0.1.2:8500"]
                labels: {dc: "dc1", node: "c1", role: "client"}
              - targets: ["127.0.2.1:8500"]
                labels: {dc: "dc2", node: "s1", role: "server"}
          - job_name: isthmus-gateways
            metrics_path: /metrics
            static_configs:
              - targets: ["127.0.1.100:9100"]
                labels: {dc: "dc1", node: "gw1", role: "gateway"}
              - targets: ["127.0.2.100:9100"]
                labels: {dc: "dc2", node: "gw1", role: "gateway"}
    "##]]
    .assert_eq(&read(&state, "prometheus.yml"));

    let cert =
        pki::inspect_pem(read(&state, "dc1/s1/tls/cert.pem").as_bytes()).expect("node cert parses");
    let ca = pki::inspect_pem(read(&state, "ca/ca.pem").as_bytes()).expect("CA parses");
    assert_eq!(cert.issuer, ca.subject);
    assert_eq!(
        cert.sans,
        [
            "server.dc1.consul",
            "s1.server.dc1.consul",
            "localhost",
            "127.0.0.1",
            "127.0.1.1"
        ]
    );
}

#[test]
fn render_uses_a_named_ca_and_key_and_never_silently_replaces_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let now = time::OffsetDateTime::now_utc();
    let validity = pki::Validity::days_from(now, 30).expect("validity");
    for name in ["ca-one", "ca-two"] {
        let ca = pki::CertificateAuthority::create("consul", validity).expect("ca");
        fs::create_dir_all(dir.join(name)).expect("mkdir");
        fs::write(dir.join(name).join("ca.pem"), ca.cert_pem()).expect("write");
        fs::write(dir.join(name).join("ca-key.pem"), ca.key_pem()).expect("write");
    }
    let key_one = wire::gossip_key::encode(&[1u8; 32]);
    let key_two = wire::gossip_key::encode(&[2u8; 16]);
    fs::write(dir.join("gossip-one.key"), format!("{key_one}\n")).expect("write");
    let file = |ca_dir: &str, key: &str| {
        format!("state_dir = \"out\"\n[tls]\nca_dir = \"{ca_dir}\"\n[gossip]\n{key}\n[[datacenters]]\nname = \"dc1\"\nservers = 1\n")
    };
    fs::write(
        dir.join("f.toml"),
        file("ca-one", "key_file = \"gossip-one.key\""),
    )
    .expect("write");
    expect![[r#"
        exit: 0
        CA: using the CA named by tls.ca_dir
        gossip key: using the key named by the topology
        node certificates: 1 issued, 0 kept
        rendered 9 files for 1 nodes into out
    "#]]
    .assert_eq(&run(dir, &["render", "f.toml"]));
    assert_eq!(read(dir, "out/ca/ca.pem"), read(dir, "ca-one/ca.pem"));
    assert!(
        !dir.join("out/ca/ca-key.pem").exists(),
        "a named CA's key stays where it is"
    );
    assert_eq!(read(dir, "out/gossip.key").trim(), key_one);
    let issuer = pki::inspect_pem(read(dir, "out/dc1/s1/tls/cert.pem").as_bytes())
        .expect("cert")
        .issuer;
    let ca_one = pki::inspect_pem(read(dir, "ca-one/ca.pem").as_bytes())
        .expect("ca")
        .subject;
    assert_eq!(issuer, ca_one);

    fs::write(
        dir.join("f.toml"),
        file("ca-two", "key_file = \"gossip-one.key\""),
    )
    .expect("write");
    expect![[r#"
        exit: 1
        error: rendering into out: ca/ca.pem holds a different CA than ca-two; refusing to replace it
          = help: remove ca/ca.pem to switch CAs (every node certificate will be reissued)
    "#]]
    .assert_eq(&run(dir, &["render", "f.toml"]));
    fs::write(
        dir.join("f.toml"),
        file("ca-one", &format!("key = \"{key_two}\"")),
    )
    .expect("write");
    expect![[r#"
        exit: 1
        error: rendering into out: gossip.key holds a different gossip key than the topology file; refusing to replace it
          = help: rotate keys on a running federation with `dc-agent keyring`, or remove gossip.key if nothing runs yet
    "#]]
    .assert_eq(&run(dir, &["render", "f.toml"]));
    fs::write(
        dir.join("f.toml"),
        "state_dir = \"out\"\n[[datacenters]]\nname = \"dc1\"\nservers = 1\n",
    )
    .expect("write");
    expect![[r#"
        exit: 1
        error: rendering into out: ca/ca.pem holds a CA whose key is not in the output (was it named by tls.ca_dir?); refusing to replace it
          = help: name that CA again with `ca_dir`, or remove the output's ca/ directory to generate a new CA (every node certificate will be reissued)
    "#]]
    .assert_eq(&run(dir, &["render", "f.toml"]));
    assert_eq!(
        read(dir, "out/ca/ca.pem"),
        read(dir, "ca-one/ca.pem"),
        "nothing was replaced"
    );
    assert_eq!(
        read(dir, "out/gossip.key").trim(),
        key_one,
        "nothing was replaced"
    );
}

/// The rendered Prometheus config and the alert rules beside it pass Prometheus' own checker.
#[test]
fn the_rendered_prometheus_config_passes_promtool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/three-dcs.toml");
    let out = dir.path().join("out");
    let (code, output) = {
        let output = Command::new(env!("CARGO_BIN_EXE_topology"))
            .arg("render")
            .arg(&example)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run topology");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{output}");
    let checked = Command::new("promtool")
        .args(["check", "config"])
        .arg(out.join("prometheus.yml"))
        .output()
        .expect("promtool is missing: install Debian's prometheus package (scripts/test.sh does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(checked.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");

    // Every query of the shipped dashboards parses: promtool checks them as recording rules.
    let grafana = Path::new(env!("CARGO_MANIFEST_DIR")).join("../grafana/dashboards");
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut count = 0;
    for file in ["leader-health.json", "wan.json"] {
        let text = std::fs::read_to_string(grafana.join(file)).expect("shipped dashboard");
        for line in text.lines() {
            if let Some(expr) = line.trim().strip_prefix("\"expr\": ") {
                let expr = expr.trim_end_matches(',');
                count += 1;
                rules.push_str(&format!(
                    "      - record: dashboard:query_{count}\n        expr: {expr}\n"
                ));
            }
        }
    }
    assert!(count >= 20, "{count} queries found");
    let rules_file = dir.path().join("dashboards.rules.yml");
    std::fs::write(&rules_file, rules).expect("write rules");
    let checked = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .expect("promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(checked.status.success(), "{text}");
}
