//! Consul's catalog, health, txn and status endpoints on a real server, answers as snapshots
//! (JSON with sorted keys; Raft indexes replaced by `N` since elections can add entries).

mod support;

use std::time::Duration;

use expect_test::{expect, Expect};
use support::Cluster;

/// Renders a response as status, the headers clients rely on, and sorted JSON.
fn show(response: &dc_agent::client::ApiResponse) -> String {
    let body = match serde_json::from_slice::<serde_json::Value>(&response.body) {
        Ok(mut value) => {
            redact(&mut value);
            serde_json::to_string_pretty(&value).unwrap_or_default()
        }
        Err(_) => response.text(),
    };
    let index = if response.header("x-consul-index").is_some() {
        " X-Consul-Index: N"
    } else {
        ""
    };
    format!("{}{index}\n{body}\n", response.status)
}

fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key.ends_with("Index")
                    && inner.is_u64()
                    && key != "LockIndex"
                    && key != "OpIndex"
                {
                    *inner = "N".into();
                } else if key == "ID" && inner.as_str().is_some_and(wire::names::is_uuid) {
                    // An agent's node ID is random.
                    *inner = "UUID".into();
                } else {
                    redact(inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn check(cluster: &Cluster, method: &str, path: &str, body: &str, expect: Expect) {
    expect.assert_eq(&show(&cluster.request(0, method, path, body.as_bytes())));
}

#[test]
fn catalog_health_txn_and_status() {
    let mut cluster = Cluster::start(78, 1);
    cluster.wait_for_leader();
    // The leader gives its server the `consul` service; wait for it so answers are stable.
    cluster.wait_for("the consul service", Duration::from_secs(20), |c| {
        let services: serde_json::Value = c
            .request(0, "GET", "/v1/catalog/services", b"")
            .json()
            .ok()?;
        services.get("consul").map(|_| ())
    });
    for registration in [
        r#"{"Node":"n1","Address":"10.0.0.1","NodeMeta":{"rack":"r1"},"Service":{"ID":"web-1","Service":"web","Tags":["v1","primary"],"Port":80},"Checks":[{"CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing"},{"CheckID":"web-http","Name":"HTTP on 80","Status":"passing","ServiceID":"web-1"}]}"#,
        r#"{"Node":"n2","Address":"10.0.0.2","Service":{"ID":"web-2","Service":"web","Tags":["v2"],"Port":8080,"Address":"10.0.9.9"},"Check":{"CheckID":"web-http","Name":"HTTP on 8080","Status":"critical","ServiceID":"web-2","Output":"connection refused"}}"#,
        r#"{"Node":"n2","Address":"10.0.0.2","Service":{"Service":"db","Port":5432}}"#,
    ] {
        assert_eq!(
            cluster
                .request(0, "PUT", "/v1/catalog/register", registration.as_bytes())
                .text(),
            "true"
        );
    }
    check(
        &cluster,
        "GET",
        "/v1/catalog/services",
        "",
        expect![[r#"
            200 X-Consul-Index: N
            {
              "consul": [],
              "db": [],
              "web": [
                "primary",
                "v1",
                "v2"
              ]
            }
        "#]],
    );
    check(
        &cluster,
        "GET",
        "/v1/catalog/service/web?tag=v2",
        "",
        expect![[r#"
        200 X-Consul-Index: N
        [
          {
            "Address": "10.0.0.2",
            "CreateIndex": "N",
            "Datacenter": "dc1",
            "ID": "",
            "ModifyIndex": "N",
            "Node": "n2",
            "NodeMeta": {},
            "ServiceAddress": "10.0.9.9",
            "ServiceEnableTagOverride": false,
            "ServiceID": "web-2",
            "ServiceMeta": {},
            "ServiceName": "web",
            "ServicePort": 8080,
            "ServiceTags": [
              "v2"
            ],
            "TaggedAddresses": {}
          }
        ]
    "#]],
    );
    check(
        &cluster,
        "GET",
        "/v1/catalog/nodes",
        "",
        expect![[r#"
            200 X-Consul-Index: N
            [
              {
                "Address": "10.0.0.1",
                "CreateIndex": "N",
                "Datacenter": "dc1",
                "ID": "",
                "Meta": {
                  "rack": "r1"
                },
                "ModifyIndex": "N",
                "Node": "n1",
                "TaggedAddresses": {}
              },
              {
                "Address": "10.0.0.2",
                "CreateIndex": "N",
                "Datacenter": "dc1",
                "ID": "",
                "Meta": {},
                "ModifyIndex": "N",
                "Node": "n2",
                "TaggedAddresses": {}
              },
              {
                "Address": "127.78.0.1",
                "CreateIndex": "N",
                "Datacenter": "dc1",
                "ID": "UUID",
                "Meta": {},
                "ModifyIndex": "N",
                "Node": "s1",
                "TaggedAddresses": {}
              }
            ]
        "#]],
    );
    check(
        &cluster,
        "GET",
        "/v1/catalog/node/n2",
        "",
        expect![[r#"
        200 X-Consul-Index: N
        {
          "Node": {
            "Address": "10.0.0.2",
            "CreateIndex": "N",
            "Datacenter": "dc1",
            "ID": "",
            "Meta": {},
            "ModifyIndex": "N",
            "Node": "n2",
            "TaggedAddresses": {}
          },
          "Services": {
            "db": {
              "Address": "",
              "CreateIndex": "N",
              "ID": "db",
              "Meta": {},
              "ModifyIndex": "N",
              "Port": 5432,
              "Service": "db",
              "Tags": []
            },
            "web-2": {
              "Address": "10.0.9.9",
              "CreateIndex": "N",
              "ID": "web-2",
              "Meta": {},
              "ModifyIndex": "N",
              "Port": 8080,
              "Service": "web",
              "Tags": [
                "v2"
              ]
            }
          }
        }
    "#]],
    );
    check(
        &cluster,
        "GET",
        "/v1/health/service/web?passing",
        "",
        expect![[r#"
        200 X-Consul-Index: N
        [
          {
            "Checks": [
              {
                "CheckID": "serfHealth",
                "CreateIndex": "N",
                "ModifyIndex": "N",
                "Name": "Serf Health Status",
                "Node": "n1",
                "Notes": "",
                "Output": "",
                "ServiceID": "",
                "ServiceName": "",
                "ServiceTags": [],
                "Status": "passing",
                "Type": ""
              },
              {
                "CheckID": "web-http",
                "CreateIndex": "N",
                "ModifyIndex": "N",
                "Name": "HTTP on 80",
                "Node": "n1",
                "Notes": "",
                "Output": "",
                "ServiceID": "web-1",
                "ServiceName": "web",
                "ServiceTags": [
                  "v1",
                  "primary"
                ],
                "Status": "passing",
                "Type": ""
              }
            ],
            "Node": {
              "Address": "10.0.0.1",
              "CreateIndex": "N",
              "Datacenter": "dc1",
              "ID": "",
              "Meta": {
                "rack": "r1"
              },
              "ModifyIndex": "N",
              "Node": "n1",
              "TaggedAddresses": {}
            },
            "Service": {
              "Address": "",
              "CreateIndex": "N",
              "ID": "web-1",
              "Meta": {},
              "ModifyIndex": "N",
              "Port": 80,
              "Service": "web",
              "Tags": [
                "v1",
                "primary"
              ]
            }
          }
        ]
    "#]],
    );
    check(
        &cluster,
        "GET",
        "/v1/health/state/critical",
        "",
        expect![[r#"
        200 X-Consul-Index: N
        [
          {
            "CheckID": "web-http",
            "CreateIndex": "N",
            "ModifyIndex": "N",
            "Name": "HTTP on 8080",
            "Node": "n2",
            "Notes": "",
            "Output": "connection refused",
            "ServiceID": "web-2",
            "ServiceName": "web",
            "ServiceTags": [
              "v2"
            ],
            "Status": "critical",
            "Type": ""
          }
        ]
    "#]],
    );
    check(
        &cluster,
        "GET",
        "/v1/health/checks/web",
        "",
        expect![[r#"
        200 X-Consul-Index: N
        [
          {
            "CheckID": "web-http",
            "CreateIndex": "N",
            "ModifyIndex": "N",
            "Name": "HTTP on 80",
            "Node": "n1",
            "Notes": "",
            "Output": "",
            "ServiceID": "web-1",
            "ServiceName": "web",
            "ServiceTags": [
              "v1",
              "primary"
            ],
            "Status": "passing",
            "Type": ""
          },
          {
            "CheckID": "web-http",
            "CreateIndex": "N",
            "ModifyIndex": "N",
            "Name": "HTTP on 8080",
            "Node": "n2",
            "Notes": "",
            "Output": "connection refused",
            "ServiceID": "web-2",
            "ServiceName": "web",
            "ServiceTags": [
              "v2"
            ],
            "Status": "critical",
            "Type": ""
          }
        ]
    "#]],
    );
    check(
        &cluster,
        "PUT",
        "/v1/catalog/deregister",
        r#"{"Node":"n2","ServiceID":"web-2"}"#,
        expect![[r#"
        200
        true
    "#]],
    );
    check(
        &cluster,
        "GET",
        "/v1/health/node/n2",
        "",
        expect![[r#"
        200 X-Consul-Index: N
        []
    "#]],
    );
    check(
        &cluster,
        "PUT",
        "/v1/catalog/register",
        r#"{"Node":"n3","Address":"10.0.0.3","Check":{"CheckID":"c","ServiceID":"ghost"}}"#,
        expect![[r#"
        400
        Unknown service ID "ghost" for check "c"
    "#]],
    );
    check(
        &cluster,
        "PUT",
        "/v1/txn",
        r#"[{"KV":{"Verb":"set","Key":"t/a","Value":"MQ=="}},{"KV":{"Verb":"set","Key":"t/b","Value":"Mg==","Flags":7}},{"KV":{"Verb":"get-tree","Key":"t/"}}]"#,
        expect![[r#"
        200 X-Consul-Index: N
        {
          "Errors": null,
          "Results": [
            {
              "KV": {
                "CreateIndex": "N",
                "Flags": 0,
                "Key": "t/a",
                "LockIndex": 0,
                "ModifyIndex": "N",
                "Value": null
              }
            },
            {
              "KV": {
                "CreateIndex": "N",
                "Flags": 7,
                "Key": "t/b",
                "LockIndex": 0,
                "ModifyIndex": "N",
                "Value": null
              }
            },
            {
              "KV": {
                "CreateIndex": "N",
                "Flags": 0,
                "Key": "t/a",
                "LockIndex": 0,
                "ModifyIndex": "N",
                "Value": "MQ=="
              }
            },
            {
              "KV": {
                "CreateIndex": "N",
                "Flags": 7,
                "Key": "t/b",
                "LockIndex": 0,
                "ModifyIndex": "N",
                "Value": "Mg=="
              }
            }
          ]
        }
    "#]],
    );
    check(
        &cluster,
        "PUT",
        "/v1/txn",
        r#"[{"KV":{"Verb":"delete","Key":"t/a"}},{"KV":{"Verb":"check-not-exists","Key":"t/b"}}]"#,
        expect![[r#"
        409 X-Consul-Index: N
        {
          "Errors": [
            {
              "OpIndex": 1,
              "What": "key \"t/b\" exists"
            }
          ],
          "Results": null
        }
    "#]],
    );
    check(
        &cluster,
        "GET",
        "/v1/kv/t/?keys",
        "",
        expect![[r#"
        200 X-Consul-Index: N
        [
          "t/a",
          "t/b"
        ]
    "#]],
    );
    check(
        &cluster,
        "GET",
        "/v1/catalog/datacenters",
        "",
        expect![[r#"
        200 X-Consul-Index: N
        [
          "dc1"
        ]
    "#]],
    );
    let peers: Vec<String> = cluster
        .request(0, "GET", "/v1/status/peers", b"")
        .json()
        .expect("peers");
    assert_eq!(peers, ["127.78.0.1:8300"]);
    let metrics = cluster
        .request(0, "GET", "/v1/agent/metrics?format=prometheus", b"")
        .text();
    for name in [
        "consul_kvs_apply",
        "consul_raft_commitTime",
        "consul_server_isLeader",
        "consul_raft_state_leader",
        "isthmus_raft_applied_index",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
}

/// Every metric the shipped Grafana dashboard and alert rules use is exported by a server.
#[test]
fn the_dashboards_and_alerts_use_only_exported_metrics() {
    let mut cluster = Cluster::start(81, 1);
    cluster.wait_for_leader();
    assert_eq!(
        cluster.request(0, "PUT", "/v1/kv/warm", b"up").text(),
        "true"
    );
    let exported = cluster
        .request(0, "GET", "/v1/agent/metrics?format=prometheus", b"")
        .text();
    // The WAN dashboard and the gateway alerts are checked with gateways running
    // (tests/federation.rs); here, what a lone server exports.
    let missing = support::metrics_not_exported(
        &["dashboards/leader-health.json", "isthmus-alerts.yml"],
        Some("  - name: isthmus-wan"),
        &exported,
    );
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\n{exported}"
    );
}

/// The CLI verbs not covered by the KV tutorial session.
#[test]
fn catalog_info_and_kv_input_from_the_cli() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let mut cluster = Cluster::start(82, 1);
    cluster.wait_for_leader();
    let http = cluster.agents[0].http();
    let register = br#"{"Node":"web-node","Address":"10.3.0.1","Service":{"Service":"web","Tags":["v1","blue"],"Port":80}}"#;
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/catalog/register", register)
            .text(),
        "true"
    );

    let (code, services, _) = support::cli(&http, &["catalog", "services", "-tags"]);
    assert_eq!(code, 0);
    // The server's own `consul` service may be listed too (the leader adds it).
    let rows: Vec<Vec<&str>> = services
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|row: &Vec<&str>| row.first() != Some(&"consul"))
        .collect();
    assert_eq!(rows, [vec!["web", "blue,v1"]], "{services}");
    let (_, nodes, _) = support::cli(&http, &["catalog", "nodes"]);
    let rows: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["Node", "ID", "Address", "DC"], "{nodes}");
    assert!(
        rows.contains(&vec!["web-node", "10.3.0.1", "dc1"]),
        "{nodes}"
    );
    let (_, datacenters, _) = support::cli(&http, &["catalog", "datacenters"]);
    assert_eq!(datacenters, "dc1\n");
    let (code, info, _) = support::cli(&http, &["info"]);
    assert_eq!(code, 0);
    assert!(
        info.contains("raft:\n")
            && info.contains("\tstate = Leader\n")
            && info.contains("\tleader = true\n"),
        "{info}"
    );

    // `-` reads stdin, `@file` reads a file; ?raw returns the bytes as stored.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .args(["-http-addr", &http, "kv", "put", "from/stdin", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"line one\nline two\n")
        .expect("write stdin");
    assert!(child.wait().expect("wait").success());
    let file = cluster.dir.path().join("value.bin");
    std::fs::write(&file, [0u8, 159, 146, 150]).expect("write value");
    let at_file = format!("@{}", file.display());
    assert_eq!(
        support::cli(&http, &["kv", "put", "from/file", &at_file]).0,
        0
    );
    assert_eq!(
        cluster.request(0, "GET", "/v1/kv/from/stdin?raw", b"").body,
        b"line one\nline two\n"
    );
    assert_eq!(
        cluster.request(0, "GET", "/v1/kv/from/file?raw", b"").body,
        [0u8, 159, 146, 150]
    );
    let (_, keys, _) = support::cli(&http, &["kv", "get", "-keys", "from/"]);
    assert_eq!(keys, "from/file\nfrom/stdin\n");
    let (code, _, error) = support::cli(&http, &["kv", "put", "-cas", "x", "y"]);
    assert_eq!(
        (code, error.as_str()),
        (1, "Error! Must specify -modify-index with -cas\n")
    );
    let (code, _, error) = support::cli("127.82.0.99:8500", &["kv", "get", "x"]);
    assert_eq!(code, 1);
    assert!(
        error.starts_with("Error! Could not reach the agent at 127.82.0.99:8500"),
        "{error}"
    );
}

/// A blocking health query wakes when its service's health changes, not on other writes.
#[test]
fn a_blocking_health_query_wakes_on_its_service() {
    let mut cluster = Cluster::start(83, 1);
    cluster.wait_for_leader();
    let register = |status: &str| {
        format!(
            r#"{{"Node":"n1","Address":"10.4.0.1","Service":{{"ID":"api-1","Service":"api","Port":9000}},"Check":{{"CheckID":"api-http","ServiceID":"api-1","Status":"{status}"}}}}"#
        )
    };
    assert_eq!(
        cluster
            .request(
                0,
                "PUT",
                "/v1/catalog/register",
                register("passing").as_bytes()
            )
            .text(),
        "true"
    );
    let first = cluster.request(0, "GET", "/v1/health/service/api?passing", b"");
    let index: u64 = first
        .header("x-consul-index")
        .and_then(|i| i.parse().ok())
        .expect("index");
    assert_eq!(
        first
            .json::<Vec<serde_json::Value>>()
            .expect("entries")
            .len(),
        1
    );

    let client = cluster.agents[0].client();
    let waiting = std::thread::spawn(move || {
        client.get(&format!(
            "/v1/health/service/api?passing&index={index}&wait=60s"
        ))
    });
    // Unrelated writes do not wake it; the check turning critical does.
    assert_eq!(
        cluster.request(0, "PUT", "/v1/kv/unrelated", b"x").text(),
        "true"
    );
    let other = r#"{"Node":"n2","Address":"10.4.0.2","Service":{"Service":"web","Port":80}}"#;
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/catalog/register", other.as_bytes())
            .text(),
        "true"
    );
    assert_eq!(
        cluster
            .request(
                0,
                "PUT",
                "/v1/catalog/register",
                register("critical").as_bytes()
            )
            .text(),
        "true"
    );
    let woken = waiting.join().expect("thread").expect("response");
    let new_index: u64 = woken
        .header("x-consul-index")
        .and_then(|i| i.parse().ok())
        .expect("index");
    assert!(new_index > index);
    assert!(
        woken
            .json::<Vec<serde_json::Value>>()
            .expect("entries")
            .is_empty(),
        "the only instance is critical now"
    );
}

/// Runs `dig` against a server; dig is installed by scripts/test.sh.
fn dig(server: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .args([&format!("@{server}"), "-p", "8600", "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is missing: install Debian's dnsutils (scripts/test.sh does)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn dns_answers_from_the_catalog_over_udp_and_tcp() {
    let mut cluster = Cluster::start(84, 1);
    cluster.wait_for_leader();
    let server = "127.84.0.1";
    for registration in [
        r#"{"Node":"n1","Address":"10.5.0.1","NodeMeta":{"rack":"r1"},"Service":{"ID":"web-1","Service":"web","Tags":["v1"],"Port":8080},"Check":{"CheckID":"c1","ServiceID":"web-1","Status":"passing"}}"#,
        r#"{"Node":"n2","Address":"10.5.0.2","Service":{"ID":"web-2","Service":"web","Tags":["v2"],"Port":8080},"Check":{"CheckID":"c2","ServiceID":"web-2","Status":"critical"}}"#,
    ] {
        assert_eq!(
            cluster
                .request(0, "PUT", "/v1/catalog/register", registration.as_bytes())
                .text(),
            "true"
        );
    }
    let short = |args: &[&str]| dig(server, &[args, &["+short"]].concat());
    assert_eq!(
        short(&["web.service.consul"]),
        "10.5.0.1\n",
        "the critical instance is left out"
    );
    assert_eq!(
        short(&["web.service.consul", "SRV"]),
        "1 1 8080 n1.node.dc1.consul.\n"
    );
    assert_eq!(
        short(&["_web._v1.service.dc1.consul", "SRV"]),
        "1 1 8080 n1.node.dc1.consul.\n"
    );
    assert_eq!(short(&["v2.web.service.consul"]), "");
    assert_eq!(short(&["n1.node.consul", "TXT"]), "\"rack=r1\"\n");
    assert_eq!(short(&["+tcp", "n2.node.consul"]), "10.5.0.2\n");
    let srv = dig(
        server,
        &["web.service.consul", "SRV", "+noall", "+additional"],
    );
    assert!(
        srv.contains("n1.node.dc1.consul.\t0\tIN\tA\t10.5.0.1"),
        "{srv}"
    );
    let missing = dig(server, &["nosuch.service.consul"]);
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    assert!(
        missing.contains("SOA\tns.consul. hostmaster.consul."),
        "{missing}"
    );
    let outside = dig(server, &["example.com"]);
    assert!(outside.contains("status: REFUSED"), "{outside}");

    // Many instances: a 512-byte UDP answer is truncated (TC), TCP carries them all.
    for n in 0..60 {
        let registration = format!(
            r#"{{"Node":"bulk{n}","Address":"10.6.0.{n}","Service":{{"Service":"bulk","Port":80}}}}"#
        );
        assert_eq!(
            cluster
                .request(0, "PUT", "/v1/catalog/register", registration.as_bytes())
                .text(),
            "true"
        );
    }
    let udp = dig(
        server,
        &["bulk.service.consul", "SRV", "+noedns", "+ignore"],
    );
    assert!(udp.contains(" tc"), "expected the TC flag:\n{udp}");
    let tcp = dig(server, &["bulk.service.consul", "SRV", "+tcp", "+short"]);
    assert_eq!(tcp.lines().count(), 60, "{tcp}");
}

/// Services and checks registered on the agent (API and config file) reach the catalog and
/// DNS, follow their checks, and anti-entropy repairs drift.
#[test]
fn agent_services_and_checks_sync_to_the_catalog() {
    // A TCP listener for the config file's check and an HTTP server for the API's.
    let tcp = std::net::TcpListener::bind("127.85.0.50:0").expect("bind tcp");
    let tcp_addr = tcp.local_addr().expect("addr").to_string();
    let http = std::net::TcpListener::bind("127.85.0.51:0").expect("bind http");
    let http_url = format!("http://{}/health", http.local_addr().expect("addr"));
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in http.incoming().flatten() {
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });

    let mut cluster = Cluster::render(85, 1, "");
    let tcp_for_config = tcp_addr.clone();
    cluster.agents[0].edit_config(|config| {
        config["services"] = serde_json::json!([{"name": "db", "port": 5432, "check": {"tcp": tcp_for_config, "interval": "1s"}}]);
    });
    cluster.agents[0].start();
    cluster.wait_for_leader();
    let health = |c: &Cluster, service: &str| -> Option<Vec<String>> {
        let entries: Vec<serde_json::Value> = c
            .request(0, "GET", &format!("/v1/health/service/{service}"), b"")
            .json()
            .ok()?;
        Some(
            entries
                .iter()
                .flat_map(|e| e["Checks"].as_array().cloned().unwrap_or_default())
                // Only the service checks: the node-level serfHealth is the leader's.
                .filter(|c| c["CheckID"] != "serfHealth")
                .map(|c| {
                    format!(
                        "{}={}",
                        c["CheckID"].as_str().unwrap_or(""),
                        c["Status"].as_str().unwrap_or("")
                    )
                })
                .collect(),
        )
    };
    cluster.wait_for(
        "the config file's service to pass its TCP check",
        Duration::from_secs(20),
        |c| (health(c, "db")? == ["service:db=passing"]).then_some(()),
    );

    let registration = format!(
        r#"{{"Name":"web","ID":"web-1","Port":8080,"Tags":["v1"],"Checks":[{{"HTTP":"{http_url}","Interval":"1s"}},{{"CheckID":"web-ttl","TTL":"30s"}}]}}"#
    );
    assert_eq!(
        cluster
            .request(
                0,
                "PUT",
                "/v1/agent/service/register",
                registration.as_bytes()
            )
            .status,
        200
    );
    cluster.wait_for(
        "web's HTTP check to pass and its TTL check to be critical",
        Duration::from_secs(20),
        |c| (health(c, "web")? == ["service:web-1:1=passing", "web-ttl=critical"]).then_some(()),
    );
    let dns = |name: &str| dig("127.85.0.1", &[name, "+short"]);
    assert_eq!(
        dns("web.service.consul"),
        "",
        "a critical check keeps web out of DNS"
    );
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/agent/check/pass/web-ttl?note=ready", b"")
            .status,
        200
    );
    cluster.wait_for("web to be in DNS", Duration::from_secs(20), |_| {
        (dns("web.service.consul") == "127.85.0.1\n").then_some(())
    });

    // The TCP check fails once its listener is gone.
    drop(tcp);
    cluster.wait_for("db's TCP check to fail", Duration::from_secs(20), |c| {
        (health(c, "db")? == ["service:db=critical"]).then_some(())
    });

    // Maintenance takes the node out of DNS, and back.
    assert_eq!(
        cluster
            .request(
                0,
                "PUT",
                "/v1/agent/maintenance?enable=true&reason=upgrading",
                b""
            )
            .status,
        200
    );
    cluster.wait_for("maintenance to hide web", Duration::from_secs(20), |_| {
        dns("web.service.consul").is_empty().then_some(())
    });
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/agent/maintenance?enable=false", b"")
            .status,
        200
    );
    cluster.wait_for("web to come back", Duration::from_secs(20), |_| {
        (dns("web.service.consul") == "127.85.0.1\n").then_some(())
    });

    // Drift: the catalog loses web behind the agent's back; the next sync (here, after a
    // check update; otherwise the minute's full pass) puts it back.
    let drift = r#"{"Node":"s1","ServiceID":"web-1"}"#;
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/catalog/deregister", drift.as_bytes())
            .text(),
        "true"
    );
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/agent/check/pass/web-ttl", b"")
            .status,
        200
    );
    cluster.wait_for(
        "anti-entropy to restore web",
        Duration::from_secs(20),
        |c| (health(c, "web")?.len() == 2).then_some(()),
    );

    // Deregistering on the agent removes it from the catalog.
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/agent/service/deregister/web-1", b"")
            .status,
        200
    );
    cluster.wait_for("web to leave the catalog", Duration::from_secs(20), |c| {
        health(c, "web")?.is_empty().then_some(())
    });
    let unknown = cluster.request(0, "PUT", "/v1/agent/service/deregister/nope", b"");
    assert_eq!(
        (unknown.status, unknown.text()),
        (404, "Unknown service ID \"nope\"".to_owned())
    );
    let script = cluster.request(
        0,
        "PUT",
        "/v1/agent/check/register",
        br#"{"Name":"s","Args":["true"],"Interval":"5s"}"#,
    );
    assert_eq!(
        script.status,
        400,
        "script checks are off unless enable_script_checks: {}",
        script.text()
    );
}

/// `reload` (CLI or SIGHUP) applies the config file's services without touching the rest.
#[test]
fn reload_applies_config_services_and_keeps_the_rest() {
    let mut cluster = Cluster::render(86, 1, "");
    let set_services = |agent: &support::Agent, names: &[&str]| {
        let services: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"name": n, "port": 80, "check": {"ttl": "1h"}}))
            .collect();
        agent.edit_config(|config| config["services"] = serde_json::json!(services));
    };
    set_services(&cluster.agents[0], &["alpha", "beta"]);
    cluster.agents[0].start();
    cluster.wait_for_leader();
    let names = |c: &Cluster| -> Option<Vec<String>> {
        let services: std::collections::BTreeMap<String, serde_json::Value> = c
            .request(0, "GET", "/v1/catalog/services", b"")
            .json()
            .ok()?;
        // The server's own `consul` service is the leader's, not the config's.
        Some(
            services
                .keys()
                .filter(|k| *k != "consul")
                .cloned()
                .collect(),
        )
    };
    cluster.wait_for(
        "alpha and beta in the catalog",
        Duration::from_secs(20),
        |c| (names(c)? == ["alpha", "beta"]).then_some(()),
    );
    // An API registration and a TTL status that must survive reloads.
    assert_eq!(
        cluster
            .request(
                0,
                "PUT",
                "/v1/agent/service/register",
                br#"{"Name":"gamma","Check":{"TTL":"1h"}}"#
            )
            .status,
        200
    );
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/agent/check/pass/service:alpha", b"")
            .status,
        200
    );

    set_services(&cluster.agents[0], &["alpha", "delta"]);
    let (code, stdout, stderr) = support::cli(&cluster.agents[0].http(), &["reload"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "Configuration reload triggered\n"),
        "{stderr}"
    );
    cluster.wait_for("beta gone, delta in", Duration::from_secs(20), |c| {
        (names(c)? == ["alpha", "delta", "gamma"]).then_some(())
    });
    let alpha: Vec<serde_json::Value> = cluster
        .request(0, "GET", "/v1/health/checks/alpha", b"")
        .json()
        .expect("checks");
    assert_eq!(
        alpha[0]["Status"], "passing",
        "an unchanged service keeps its check state"
    );

    set_services(&cluster.agents[0], &["alpha"]);
    cluster.agents[0].signal(libc::SIGHUP);
    cluster.wait_for("delta gone after SIGHUP", Duration::from_secs(20), |c| {
        (names(c)? == ["alpha", "gamma"]).then_some(())
    });

    // A broken config is refused and changes nothing.
    cluster.agents[0].edit_config(|config| {
        config["services"] = serde_json::json!([{"name": "bad", "check": {"http": "http://x"}}])
    });
    let (code, _, stderr) = support::cli(&cluster.agents[0].http(), &["reload"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("Interval is required"), "{stderr}");
    assert_eq!(
        names(&cluster),
        Some(vec!["alpha".to_owned(), "gamma".to_owned()])
    );
}

/// `check/update` (the Go client's `UpdateTTL`) and maintenance checks as Consul shapes them.
#[test]
fn ttl_updates_and_maintenance_checks_look_like_consuls() {
    let mut cluster = Cluster::start(87, 1);
    cluster.wait_for_leader();
    assert_eq!(
        cluster
            .request(
                0,
                "PUT",
                "/v1/agent/check/register",
                br#"{"Name":"heartbeat","TTL":"1h"}"#
            )
            .status,
        200
    );
    let update = cluster.request(
        0,
        "PUT",
        "/v1/agent/check/update/heartbeat",
        br#"{"Status":"passing","Output":"all good"}"#,
    );
    assert_eq!(update.status, 200, "{}", update.text());
    let checks: serde_json::Value = cluster
        .request(0, "GET", "/v1/agent/checks", b"")
        .json()
        .expect("checks");
    assert_eq!(
        (
            checks["heartbeat"]["Status"].as_str(),
            checks["heartbeat"]["Output"].as_str()
        ),
        (Some("passing"), Some("all good"))
    );
    let bad = cluster.request(
        0,
        "PUT",
        "/v1/agent/check/update/heartbeat",
        br#"{"Status":"sideways"}"#,
    );
    assert_eq!(bad.status, 400);

    assert_eq!(
        cluster
            .request(
                0,
                "PUT",
                "/v1/agent/maintenance?enable=1&reason=kernel+upgrade",
                b""
            )
            .status,
        200
    );
    cluster.wait_for(
        "the maintenance check in the catalog",
        Duration::from_secs(20),
        |c| {
            let critical: Vec<serde_json::Value> = c
                .request(0, "GET", "/v1/health/state/critical", b"")
                .json()
                .ok()?;
            critical
                .iter()
                .find(|check| check["CheckID"] == "_node_maintenance")
                .filter(|check| {
                    check["Type"] == "maintenance"
                        && check["Notes"] == "kernel upgrade"
                        && check["Name"] == "Node Maintenance Mode"
                })
                .map(|_| ())
        },
    );
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/agent/maintenance?enable=maybe", b"")
            .status,
        400
    );
}

/// Names outside the domain go to the recursors in order: a silent one is given up after
/// `recursor_timeout`, a closed port at once, and the first answer (NXDOMAIN included) is
/// passed back over the client's protocol. With no recursor answering: SERVFAIL. The
/// `dns_config` TTLs apply to the agent's own answers.
#[test]
fn dns_sends_other_names_to_the_recursors() {
    // The upstream: a server answering the domain `example` (no TLS: an ephemeral identity).
    let mut upstream = Cluster::render(93, 1, "");
    upstream.agents[0].edit_config(|config| {
        if let Some(config) = config.as_object_mut() {
            config.remove("tls");
            config.insert("domain".into(), "example".into());
        }
    });
    upstream.agents[0].start();
    upstream.wait_for_leader();
    let registration =
        r#"{"Node":"far","Address":"10.93.0.7","Service":{"Service":"web","Port":80}}"#;
    assert_eq!(
        upstream
            .request(0, "PUT", "/v1/catalog/register", registration.as_bytes())
            .text(),
        "true"
    );

    // A recursor that never answers, one with nothing listening, then the upstream.
    let silent = std::net::UdpSocket::bind("127.92.0.98:5353").expect("bind the silent recursor");
    // One that answers SERVFAIL to everything: passed over, as Consul does.
    let failing = std::net::UdpSocket::bind("127.92.0.97:5353").expect("bind the failing one");
    let servfails = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let servfails = servfails.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while let Ok((n, from)) = failing.recv_from(&mut buffer) {
                if n < 12 {
                    continue;
                }
                let mut answer = buffer[..n].to_vec();
                answer[2] |= 0x80; // QR: a response
                answer[3] = (answer[3] & 0xf0) | 2; // RCODE: SERVFAIL
                let _ = failing.send_to(&answer, from);
                servfails.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let mut cluster = Cluster::render(92, 1, "");
    cluster.agents[0].edit_config(|config| {
        config["recursors"] = serde_json::json!([
            "127.92.0.98:5353",
            "127.92.0.97:5353",
            "127.92.0.99",
            "127.93.0.1:8600"
        ]);
        config["dns_config"] = serde_json::json!({
            "recursor_timeout": "500ms",
            "node_ttl": "10s",
            "service_ttl": {"*": "5s", "web*": "30s"},
            "use_cache": true,
        });
    });
    cluster.agents[0].start();
    cluster.wait_for_leader();
    for registration in [
        r#"{"Node":"n1","Address":"10.92.0.1","Service":{"Service":"web","Port":80}}"#,
        r#"{"Node":"n1","Address":"10.92.0.1","Service":{"Service":"db","Port":5432}}"#,
    ] {
        assert_eq!(
            cluster
                .request(0, "PUT", "/v1/catalog/register", registration.as_bytes())
                .text(),
            "true"
        );
    }
    let server = "127.92.0.1";
    let short = |args: &[&str]| dig(server, &[args, &["+short"]].concat());
    let forwarded = dig(server, &["web.service.example"]);
    assert!(
        forwarded.contains("\tIN\tA\t10.93.0.7"),
        "{forwarded}\n{}\n{}",
        cluster.logs(),
        upstream.logs()
    );
    // The silent recursor was asked first.
    silent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("read timeout");
    let mut buffer = [0u8; 512];
    assert!(
        silent.recv_from(&mut buffer).is_ok(),
        "the first recursor was not asked"
    );
    assert!(
        servfails.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the failing recursor was not asked"
    );
    assert_eq!(short(&["+tcp", "web.service.example"]), "10.93.0.7\n");
    assert_eq!(short(&["web.service.consul"]), "10.92.0.1\n");
    let missing = dig(server, &["nosuch.service.example"]);
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    assert!(missing.contains(" ra"), "recursion available: {missing}");

    let ttls = |name: &str| dig(server, &[name, "+noall", "+answer"]);
    assert!(
        ttls("web.service.consul").contains("\t30\tIN\tA\t10.92.0.1"),
        "{}",
        ttls("web.service.consul")
    );
    assert!(ttls("db.service.consul").contains("\t5\tIN\tA\t10.92.0.1"));
    assert!(ttls("n1.node.consul").contains("\t10\tIN\tA\t10.92.0.1"));

    assert!(
        cluster
            .logs()
            .contains("the Consul option `dns_config.use_cache` (in /"),
        "{}",
        cluster.logs()
    );

    upstream.agents[0].kill();
    let failed = dig(server, &["web.service.example"]);
    assert!(failed.contains("status: SERVFAIL"), "{failed}");
    assert_eq!(short(&["web.service.consul"]), "10.92.0.1\n");
    let metrics = cluster
        .request(0, "GET", "/v1/agent/metrics?format=prometheus", b"")
        .text();
    for label in ["recursed", "recursor_failed"] {
        assert!(
            metrics.contains(&format!("isthmus_dns_queries_total{{rcode=\"{label}\"}}")),
            "{label} missing from the metrics"
        );
    }
}

/// Services and checks registered through `/v1/agent` survive a restart of the agent (as
/// in Consul); deregistered ones stay gone; an unreadable file is skipped, not fatal, and a
/// config-file service wins over a persisted one with its ID.
#[test]
fn api_registrations_survive_a_restart() {
    let mut cluster = Cluster::render(94, 1, "");
    cluster.agents[0].edit_config(|config| {
        config["services"] = serde_json::json!([{"name": "db", "port": 5432}]);
    });
    cluster.agents[0].start();
    cluster.wait_for_leader();
    for (path, body) in [
        (
            "/v1/agent/service/register",
            r#"{"ID":"web/1","Name":"web","Port":80,"Check":{"CheckID":"web-ttl","TTL":"1h"},"Checks":[{"Name":"extra","TTL":"1h"}]}"#,
        ),
        (
            "/v1/agent/service/register",
            r#"{"Name":"cache","Port":6379}"#,
        ),
        // Same ID as the config file's service: the file wins at restart.
        ("/v1/agent/service/register", r#"{"Name":"db","Port":9999}"#),
        (
            "/v1/agent/check/register",
            r#"{"ID":"disk","Name":"disk space","TTL":"1h"}"#,
        ),
        (
            "/v1/agent/check/register",
            r#"{"ID":"cache-ttl","Name":"cache","TTL":"1h","ServiceID":"cache"}"#,
        ),
    ] {
        let response = cluster.request(0, "PUT", path, body.as_bytes());
        assert_eq!(response.status, 200, "{path} {body}: {}", response.text());
    }
    // Deregistering the service takes its checks with it, on disk too; a service's own
    // check deregistered alone stays gone.
    let response = cluster.request(0, "PUT", "/v1/agent/service/deregister/cache", b"");
    assert_eq!(response.status, 200, "{}", response.text());
    let response = cluster.request(
        0,
        "PUT",
        "/v1/agent/check/deregister/service:web%2F1:2",
        b"",
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let data = cluster.dir.path().join("dc1/s1/data/agent/services");
    std::fs::write(data.join("zz.json"), b"{not json").expect("write a broken file");
    // Maintenance mode turned on before the restart is still on after it.
    let response = cluster.request(
        0,
        "PUT",
        "/v1/agent/maintenance?enable=true&reason=upgrading",
        b"",
    );
    assert_eq!(response.status, 200, "{}", response.text());
    // A TTL status set before the restart holds after it (its TTL has not run out).
    let response = cluster.request(0, "PUT", "/v1/agent/check/warn/disk?note=85%25%20full", b"");
    assert_eq!(response.status, 200, "{}", response.text());

    cluster.agents[0].stop();
    cluster.agents[0].start();
    cluster.wait_for_leader();
    let listing = |cluster: &Cluster, path: &str| -> Vec<String> {
        let value: serde_json::Value = cluster
            .request(0, "GET", path, b"")
            .json()
            .unwrap_or_default();
        value
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(id, entry)| format!("{id}:{}", entry["Port"]))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        listing(&cluster, "/v1/agent/services"),
        ["db:5432", "web/1:80"]
    );
    assert_eq!(
        listing(&cluster, "/v1/agent/checks"),
        ["_node_maintenance:null", "disk:null", "web-ttl:null"]
    );
    assert!(
        cluster.logs().contains("skipping a persisted service"),
        "{}",
        cluster.logs()
    );
    let checks: serde_json::Value = cluster
        .request(0, "GET", "/v1/agent/checks", b"")
        .json()
        .unwrap_or_default();
    assert_eq!(checks["disk"]["Status"], "warning", "{checks}");
    assert_eq!(checks["disk"]["Output"], "85% full", "{checks}");
    assert_eq!(checks["web-ttl"]["Status"], "critical", "{checks}");
    assert_eq!(
        checks["_node_maintenance"]["Status"], "critical",
        "{checks}"
    );
    assert_eq!(
        checks["_node_maintenance"]["Notes"], "upgrading",
        "{checks}"
    );
    // Turned off, it stays off across the next restart.
    let response = cluster.request(0, "PUT", "/v1/agent/maintenance?enable=false", b"");
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(!cluster
        .dir
        .path()
        .join("dc1/s1/data/agent/maintenance")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));
    // And they reach the catalog again.
    cluster.wait_for("web in the catalog", Duration::from_secs(10), |c| {
        let entries: Vec<serde_json::Value> = c
            .request(0, "GET", "/v1/catalog/service/web", b"")
            .json()
            .ok()?;
        (entries.len() == 1).then_some(())
    });
}

/// `check_update_interval`: a check whose output changes on every run but whose status does
/// not is not rewritten in the catalog each time (the agent shows the new output at once);
/// a status change is written at once with its output.
#[test]
fn output_only_check_changes_wait_for_the_update_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let code = dir.path().join("code");
    std::fs::write(&code, "0").expect("write the exit code");
    let script = format!("date +%s%N; exit $(cat {})", code.display());
    let mut cluster = Cluster::render(95, 1, "");
    cluster.agents[0].edit_config(|config| {
        config["enable_script_checks"] = true.into();
        config["check_update_interval"] = "1h".into();
        config["services"] = serde_json::json!([{"name": "clock", "port": 1,
            "check": {"id": "tick", "args": ["sh", "-c", script], "interval": "200ms"}}]);
    });
    cluster.agents[0].start();
    cluster.wait_for_leader();
    let catalog = |c: &Cluster| -> Option<(String, String, u64)> {
        let checks: Vec<serde_json::Value> = c
            .request(0, "GET", "/v1/health/checks/clock", b"")
            .json()
            .ok()?;
        let check = checks.iter().find(|c| c["CheckID"] == "tick")?;
        Some((
            check["Status"].as_str()?.to_owned(),
            check["Output"].as_str()?.to_owned(),
            check["ModifyIndex"].as_u64()?,
        ))
    };
    let agent_output = |c: &Cluster| -> Option<String> {
        let checks: serde_json::Value = c.request(0, "GET", "/v1/agent/checks", b"").json().ok()?;
        checks["tick"]["Output"].as_str().map(str::to_owned)
    };
    let first = cluster.wait_for(
        "a passing check in the catalog",
        Duration::from_secs(10),
        |c| catalog(c).filter(|(status, _, _)| status == "passing"),
    );
    // The agent sees new outputs while the catalog keeps the first one.
    cluster.wait_for(
        "the agent to see a new output",
        Duration::from_secs(10),
        |c| agent_output(c).filter(|output| *output != first.1),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(catalog(&cluster), Some(first.clone()));

    std::fs::write(&code, "2").expect("write the exit code");
    let (status, output, index) = cluster.wait_for(
        "the critical status in the catalog",
        Duration::from_secs(10),
        |c| catalog(c).filter(|(status, _, _)| status == "critical"),
    );
    assert_eq!(status, "critical");
    assert_ne!(output, first.1);
    assert!(index > first.2);
}

/// The leader reaps KV tombstones once they are older than the tombstone TTL, through Raft,
/// and counts them; a deleted key's index never falls when its tombstone goes.
#[test]
fn the_leader_reaps_old_tombstones() {
    let mut cluster = Cluster::render(96, 1, "");
    cluster.agents[0].edit_config(|config| {
        config["isthmus"]["tombstone_ttl"] = "1s".into();
    });
    cluster.agents[0].start();
    cluster.wait_for_leader();
    let index_of = |c: &Cluster, path: &str| -> Option<u64> {
        c.request(0, "GET", path, b"")
            .header("x-consul-index")?
            .parse()
            .ok()
    };
    let reaped = |c: &Cluster| -> Option<u64> {
        c.request(0, "GET", "/v1/agent/metrics?format=prometheus", b"")
            .text()
            .lines()
            .find_map(|line| line.strip_prefix("isthmus_kv_tombstones_reaped_total "))?
            .trim()
            .parse()
            .ok()
    };
    assert_eq!(reaped(&cluster), Some(0));
    for key in ["a", "b"] {
        let put = format!("/v1/kv/gone/{key}");
        assert_eq!(cluster.request(0, "PUT", &put, b"x").text(), "true");
    }
    let response = cluster.request(0, "DELETE", "/v1/kv/gone?recurse", b"");
    assert_eq!(response.text(), "true");
    let deleted_at = index_of(&cluster, "/v1/kv/gone/a").expect("an index for a deleted key");
    assert_eq!(cluster.request(0, "GET", "/v1/kv/gone/a", b"").status, 404);
    cluster.wait_for("both tombstones reaped", Duration::from_secs(15), |c| {
        reaped(c).filter(|n| *n == 2)
    });
    let after = index_of(&cluster, "/v1/kv/gone/a").expect("an index after the reap");
    assert!(
        after >= deleted_at,
        "the index fell from {deleted_at} to {after}"
    );
    let prefix = index_of(&cluster, "/v1/kv/gone/?recurse").expect("a prefix index");
    assert!(prefix >= deleted_at, "the prefix index fell to {prefix}");
}

/// A DNS query for `labels` (type A, class IN), as raw bytes: id 0x1234, recursion desired.
fn raw_query(name: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    packet.extend_from_slice(name);
    packet.extend_from_slice(&[0, 1, 0, 1]);
    packet
}

/// Sends `packet` over UDP and returns the answer's response code, or `None` when there was
/// no answer within a second.
fn udp_rcode(server: &str, packet: &[u8]) -> Option<u8> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    socket
        .send_to(packet, format!("{server}:8600"))
        .expect("send");
    let mut buffer = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buffer).ok()?;
    assert!(n >= 4, "a DNS answer has a header, got {n} bytes");
    Some(buffer[3] & 0x0f)
}

#[test]
fn malformed_dns_packets_get_formerr_or_nothing_and_never_a_crash() {
    let mut cluster = Cluster::start(99, 1);
    cluster.wait_for_leader();
    let server = "127.99.0.1";
    let registered = cluster.request(
        0,
        "PUT",
        "/v1/catalog/register",
        br#"{"Node":"n1","Address":"10.99.0.1","Service":{"Service":"web","Port":80}}"#,
    );
    assert_eq!(registered.status, 200);
    let formerr = Some(1);

    // A well-formed raw query is answered (NOERROR), so the silence below means something.
    let mut web = Vec::new();
    for label in ["web", "service", "consul"] {
        web.push(label.len() as u8);
        web.extend_from_slice(label.as_bytes());
    }
    web.push(0);
    assert_eq!(udp_rcode(server, &raw_query(&web)), Some(0));

    // Shorter than a header, random bytes, a header promising a question that is not there.
    for garbage in [
        vec![0x12],
        vec![0xff; 3],
        (0..600u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<u8>>(),
        vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0],
    ] {
        let rcode = udp_rcode(server, &garbage);
        assert!(
            rcode.is_none() || rcode == formerr,
            "{garbage:?} got rcode {rcode:?}"
        );
    }
    // A name longer than 255 bytes (five 63-byte labels).
    let mut long = Vec::new();
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'a'; 63]);
    }
    long.push(0);
    // A compression pointer to itself, and a label with the reserved 0x40 type bits.
    for name in [long, vec![0xc0, 0x0c], vec![0x41, b'a', 0]] {
        let rcode = udp_rcode(server, &raw_query(&name));
        assert!(
            rcode.is_none() || rcode == formerr,
            "{name:?} got rcode {rcode:?}"
        );
    }
    // Over TCP: a length prefix with nothing after it, then garbage, then a closed stream.
    for bytes in [&[0xff, 0xff][..], &[0x00, 0x04, 1, 2, 3, 4][..]] {
        use std::io::Write;
        let mut stream =
            std::net::TcpStream::connect(format!("{server}:8600")).expect("connect over TCP");
        let _ = stream.write_all(bytes);
        drop(stream);
    }

    // The agent still runs and answers, over both protocols.
    assert!(cluster.agents[0].is_running(), "{}", cluster.logs());
    assert_eq!(
        dig(server, &["web.service.consul", "+short"]),
        "10.99.0.1\n"
    );
    assert_eq!(
        dig(server, &["web.service.consul", "+tcp", "+short"]),
        "10.99.0.1\n"
    );
}

/// Coordinates sent by agents land in the catalog, and `?near=` sorts by them.
#[test]
fn near_sorts_by_the_coordinates_agents_send() {
    let mut cluster = Cluster::start(118, 1);
    cluster.wait_for_leader();
    // Three nodes running `web`, placed 300, 100 and 200 ms away from the origin, where
    // this lone server's own coordinate stays (it has no one to probe).
    for (node, x) in [("far", 0.3), ("near", 0.1), ("middle", 0.2)] {
        let register = format!(
            r#"{{"Node":"{node}","Address":"10.118.0.9","Service":{{"Service":"web","Port":80}}}}"#
        );
        assert_eq!(
            cluster
                .request(0, "PUT", "/v1/catalog/register", register.as_bytes())
                .text(),
            "true"
        );
        let update = format!(
            r#"{{"Node":"{node}","Segment":"","Coord":{{"Vec":[{x},0,0,0,0,0,0,0],"Error":0.2,"Adjustment":0,"Height":0.00001}}}}"#
        );
        let r = cluster.request(0, "PUT", "/v1/coordinate/update", update.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Written by the leader's next batch (every 5 s), with the server's own.
    cluster.wait_for("the coordinates written", Duration::from_secs(60), |c| {
        let rows: Vec<serde_json::Value> = c
            .request(0, "GET", "/v1/coordinate/nodes", b"")
            .json()
            .ok()?;
        (rows.len() == 4).then_some(())
    });
    let order = |path: &str, field: fn(&serde_json::Value) -> Option<&str>| -> Vec<String> {
        let rows: Vec<serde_json::Value> = cluster
            .request(0, "GET", path, b"")
            .json()
            .unwrap_or_default();
        rows.iter()
            .filter_map(|r| field(r).map(str::to_owned))
            .collect()
    };
    fn service_node(r: &serde_json::Value) -> Option<&str> {
        r["Node"].as_str()
    }
    fn health_node(r: &serde_json::Value) -> Option<&str> {
        r["Node"]["Node"].as_str()
    }
    assert_eq!(
        order("/v1/catalog/service/web?near=_agent", service_node),
        ["near", "middle", "far"]
    );
    assert_eq!(
        order("/v1/health/service/web?near=far", health_node),
        ["far", "middle", "near"]
    );
    // Nodes: the server itself (at the origin) first, the others by distance.
    let nodes = order("/v1/catalog/nodes?near=_agent", service_node);
    assert_eq!(nodes[1..], ["near", "middle", "far"], "{nodes:?}");
    // No coordinate for the node named: the catalog's own order (by name).
    assert_eq!(
        order("/v1/catalog/service/web?near=nobody", service_node),
        ["far", "middle", "near"]
    );
}
