//! Two datacenters joined by their gateways, end to end: real `dc-agent` servers and real
//! `wan-gateway` processes on loopback (dc1 on 127.104.0.0/24, dc2 on 127.105.0.0/24).
//! Requests with `?dc=` leave through the local server's dc-link, cross the WAN link between
//! the gateways and are answered by a server of the other datacenter.

mod support;

use std::time::Duration;

use support::Cluster;

const FILE: &str = r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.104.0.1" }]
clients = [{ name = "c1", address = "127.104.0.4" }]
gateways = [{ name = "gw1", address = "127.104.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.105.0.1" }, { name = "s2", address = "127.105.0.2" }, { name = "s3", address = "127.105.0.3" }]
gateways = [{ name = "gw1", address = "127.105.0.100" }]
"#;

use support::federation_nodes as nodes;

/// Renders the file and returns its nodes, not started: dc1/s1, dc1/gw1, dc2/s1..s3, dc2/gw1,
/// dc1/c1.
fn render() -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    support::render_topology(FILE, dir.path());
    nodes(
        dir,
        &[
            ("dc1", "s1", "127.104.0.1"),
            ("dc1", "gw1", "127.104.0.100"),
            ("dc2", "s1", "127.105.0.1"),
            ("dc2", "s2", "127.105.0.2"),
            ("dc2", "s3", "127.105.0.3"),
            ("dc2", "gw1", "127.105.0.100"),
            ("dc1", "c1", "127.104.0.4"),
        ],
    )
}

const DC1_S1: usize = 0;
const DC2_S1: usize = 2;
const DC2_GW: usize = 5;
const DC1_C1: usize = 6;

fn dig(server: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .args([&format!("@{server}"), "-p", "8600", "+time=3", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is missing: install Debian's dnsutils (scripts/test.sh does)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The names of the WAN pool's members with `status`, as `agent` lists them.
fn wan_members(cluster: &Cluster, agent: usize, status: &str) -> Vec<String> {
    let code = match status {
        "alive" => 1,
        "left" => 3,
        _ => 4,
    };
    let members: Vec<serde_json::Value> = cluster
        .request(agent, "GET", "/v1/agent/members?wan=1", b"")
        .json()
        .unwrap_or_default();
    let mut names: Vec<String> = members
        .iter()
        .filter(|m| m["Status"] == code)
        .filter_map(|m| m["Name"].as_str().map(str::to_owned))
        .collect();
    names.sort_unstable();
    names
}

fn gateway_metrics(address: &str) -> String {
    ureq::get(format!("http://{address}:9100/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default()
}

/// A rogue: a gateway certificate for a datacenter nobody declared (dc7, issued by the
/// federation's CA, as a stolen CA key or a careless operator would), which tells the
/// gateway at `gateway` to forget `dc`; what the gateway answered, or how the link failed.
fn rogue_forget(out: &std::path::Path, gateway: &str, dc: &str) -> Result<String, String> {
    forged_forget(out, "dc7", gateway, dc)
}

/// A gateway certificate of `cert_dc` (issued with the federation's CA) that tells the
/// gateway at `gateway` to forget `dc`; what the gateway answered, or how the link failed.
fn forged_forget(
    out: &std::path::Path,
    cert_dc: &str,
    gateway: &str,
    dc: &str,
) -> Result<String, String> {
    let ca_pem = std::fs::read_to_string(out.join("ca/ca.pem")).expect("CA");
    let ca_key = std::fs::read_to_string(out.join("ca/ca-key.pem")).expect("CA key");
    let ca = pki::CertificateAuthority::from_pem(&ca_pem, &ca_key).expect("CA");
    let request = pki::CertRequest {
        role: wire::Role::Gateway,
        datacenter: cert_dc.into(),
        domain: "consul".into(),
        node: Some("rogue".into()),
        ips: vec![],
        dns_names: vec![],
    };
    let validity = pki::Validity::days_from(time::OffsetDateTime::now_utc(), 1).expect("validity");
    let issued = ca.issue(&request, validity).expect("a certificate");
    let tls = pki::NodeTls::from_pem(
        ca_pem.as_bytes(),
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .expect("TLS");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let rustls = tls
            .client_config(
                pki::PeerPolicy::gateways("consul"),
                &[wire::route::ALPN_WAN],
            )
            .expect("client config");
        let client = link::client_config(rustls).expect("quinn config");
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        endpoint.set_default_client_config(client);
        let connection = endpoint
            .connect(gateway.parse().expect("addr"), "gateway.dc1.consul")
            .expect("connect")
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        let open = wire::route::StreamOpen::new(wire::route::StreamKind::Forget(dc.into()));
        link::write_frame(&mut send, &open)
            .await
            .map_err(|e| e.to_string())?;
        let status: wire::route::RouteStatus = link::read_frame(&mut recv)
            .await
            .map_err(|e| format!("{e}: {:?}", connection.close_reason()))?;
        Ok(format!("{status:?}"))
    })
}

#[test]
fn requests_for_another_datacenter_cross_the_gateways() {
    let mut cluster = render();
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[DC1_S1]);
    cluster.wait_for_leader_among(&[2, 3, 4]);

    // A write from dc1 lands in dc2 and only there.
    let put = cluster.wait_for("a write into dc2 from dc1", Duration::from_secs(60), |c| {
        let r = c.request(DC1_S1, "PUT", "/v1/kv/greeting?dc=dc2", b"hello from dc1");
        (r.status == 200).then_some(r)
    });
    assert_eq!(put.text(), "true");
    let remote = cluster.request(DC1_S1, "GET", "/v1/kv/greeting?dc=dc2&raw", b"");
    assert_eq!(remote.status, 200, "{}", remote.text());
    assert_eq!(remote.text(), "hello from dc1");
    assert!(remote.header("x-consul-index").is_some());
    let there = cluster.request(DC2_S1, "GET", "/v1/kv/greeting?raw", b"");
    assert_eq!(there.text(), "hello from dc1");
    assert_eq!(
        cluster
            .request(DC1_S1, "GET", "/v1/kv/greeting", b"")
            .status,
        404
    );
    // The consistency mode asked for applies in dc2; a missing key is dc2's 404.
    let stale = cluster.request(DC1_S1, "GET", "/v1/kv/greeting?dc=dc2&stale", b"");
    assert_eq!(stale.status, 200);
    assert_eq!(
        cluster
            .request(DC1_S1, "GET", "/v1/kv/absent?dc=dc2", b"")
            .status,
        404
    );
    // Sessions and events belong to a datacenter: created or fired with `?dc=dc2` from dc1,
    // they are dc2's; a dc2 session cannot lock a dc1 key.
    let session = cluster.wait_for(
        "a dc2 session made from dc1",
        Duration::from_secs(60),
        |c| {
            let r = c.request(
                DC1_S1,
                "PUT",
                "/v1/session/create?dc=dc2",
                br#"{"Node": "s1", "Name": "cross"}"#,
            );
            let answer: serde_json::Value = r.json().ok()?;
            (r.status == 200)
                .then(|| answer["ID"].as_str().map(str::to_owned))
                .flatten()
        },
    );
    let acquired = cluster.request(
        DC1_C1,
        "PUT",
        &format!("/v1/kv/cross/lock?dc=dc2&acquire={session}"),
        b"x",
    );
    assert_eq!((acquired.status, acquired.text().as_str()), (200, "true"));
    let held = cluster.request(DC2_S1, "GET", "/v1/kv/cross/lock", b"");
    assert!(held.text().contains(&session), "{}", held.text());
    let refused = cluster.request(
        DC1_S1,
        "PUT",
        &format!("/v1/kv/cross/lock?acquire={session}"),
        b"x",
    );
    assert_eq!(
        refused.status,
        500,
        "a dc2 session in dc1: {}",
        refused.text()
    );
    let info = cluster.request(
        DC1_S1,
        "GET",
        &format!("/v1/session/info/{session}?dc=dc2"),
        b"",
    );
    assert!(
        info.text().contains("\"Name\":\"cross\""),
        "{}",
        info.text()
    );
    let fired = cluster.request(DC1_C1, "PUT", "/v1/event/fire/cross-dc?dc=dc2", b"hi");
    assert_eq!(fired.status, 200, "{}", fired.text());
    cluster.wait_for("the event in dc2", Duration::from_secs(20), |c| {
        let r = c.request(DC2_S1 + 1, "GET", "/v1/event/list?name=cross-dc", b"");
        r.text().contains("cross-dc").then_some(())
    });
    for dc1_agent in [DC1_S1, DC1_C1] {
        let r = cluster.request(dc1_agent, "GET", "/v1/event/list?name=cross-dc", b"");
        assert_eq!(r.text(), "[]", "dc1 must not see dc2's event");
    }

    // Catalog reads cross too: dc2's servers are dc2's nodes.
    // (each server registers itself once it runs; wait for all three).
    let nodes = cluster.wait_for(
        "dc2's three servers, seen from dc1",
        Duration::from_secs(60),
        |c| {
            let nodes: Vec<wire::api::CatalogNode> = c
                .request(DC1_S1, "GET", "/v1/catalog/nodes?dc=dc2", b"")
                .json()
                .ok()?;
            (nodes.len() == 3).then_some(nodes)
        },
    );
    let mut names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["s1", "s2", "s3"]);
    assert!(nodes.iter().all(|n| n.datacenter == "dc2"));

    // The CLI, as Consul's: `-datacenter`.
    let http = cluster.agents[DC1_S1].http();
    assert_eq!(
        support::cli(&http, &["kv", "get", "-datacenter=dc2", "greeting"]),
        (0, "hello from dc1\n".to_owned(), String::new())
    );
    let (code, listed, _) = support::cli(&http, &["catalog", "nodes", "-datacenter", "dc2"]);
    assert_eq!(code, 0, "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("s3 ")), "{listed}");
    // `info` reports the datacenters it knows, as Consul's.
    cluster.wait_for(
        "info to know both datacenters",
        Duration::from_secs(30),
        |_| {
            let (code, info, _) = support::cli(&http, &["info"]);
            (code == 0 && info.contains("\tknown_datacenters = 2\n")).then_some(())
        },
    );

    // The round trip between the datacenters, as the gateways measure it.
    let (code, rtt, _) = support::cli(&http, &["rtt", "-wan", "dc2"]);
    assert_eq!(code, 0, "{rtt}");
    let millis: f64 = rtt
        .strip_prefix("Estimated dc1 <-> dc2 rtt: ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{rtt}"));
    assert!(millis > 0.0 && millis < 1000.0, "{rtt}");
    assert_eq!(support::cli(&http, &["rtt", "-wan", "dc9"]).0, 1);

    // Both datacenters know each other, this one first.
    let listed: Vec<String> = cluster
        .request(DC1_S1, "GET", "/v1/catalog/datacenters", b"")
        .json()
        .unwrap_or_default();
    assert_eq!(listed, ["dc1", "dc2"]);
    let listed: Vec<String> = cluster
        .request(DC2_S1, "GET", "/v1/catalog/datacenters", b"")
        .json()
        .unwrap_or_default();
    assert_eq!(listed, ["dc2", "dc1"]);

    // A datacenter nobody knows: Consul's error, at once.
    let unknown = cluster.request(DC1_S1, "GET", "/v1/kv/greeting?dc=dc9", b"");
    assert_eq!(unknown.status, 500);
    assert!(
        unknown.text().starts_with("No path to datacenter \"dc9\""),
        "{}",
        unknown.text()
    );

    // DNS: dc2's service asked of dc1's server, answered from dc2's catalog.
    let registered = cluster.request(
        DC2_S1,
        "PUT",
        "/v1/catalog/register",
        br#"{"Node":"web-node","Address":"10.105.0.9","Service":{"Service":"web","Tags":["v2"],"Port":8080}}"#,
    );
    assert_eq!(registered.status, 200, "{}", registered.text());
    cluster.wait_for(
        "web.service.dc2 answered in dc1",
        Duration::from_secs(45),
        |_| {
            (dig("127.104.0.1", &["web.service.dc2.consul", "+short"]) == "10.105.0.9\n")
                .then_some(())
        },
    );
    assert_eq!(
        dig(
            "127.104.0.1",
            &["v2.web.service.dc2.consul", "SRV", "+short"]
        ),
        "1 1 8080 web-node.node.dc2.consul.\n"
    );
    assert_eq!(
        dig("127.104.0.1", &["web-node.node.dc2.consul", "+short"]),
        "10.105.0.9\n"
    );
    // dc1's client agent answers dc2's names too (through a server, cached in its view).
    cluster.wait_for(
        "web.service.dc2 answered by dc1's client agent",
        Duration::from_secs(45),
        |_| {
            (dig("127.104.0.4", &["web.service.dc2.consul", "+short"]) == "10.105.0.9\n")
                .then_some(())
        },
    );
    let through_client = cluster.request(DC1_C1, "GET", "/v1/kv/greeting?dc=dc2&raw", b"");
    assert_eq!(through_client.text(), "hello from dc1");
    // Health, transactions, status and coordinates cross too.
    let health: Vec<serde_json::Value> = cluster
        .request(DC1_S1, "GET", "/v1/health/service/web?dc=dc2", b"")
        .json()
        .unwrap_or_default();
    assert_eq!(health.len(), 1, "{health:?}");
    assert_eq!(health[0]["Node"]["Datacenter"], "dc2");
    let txn = cluster.request(
        DC1_S1,
        "PUT",
        "/v1/txn?dc=dc2",
        br#"[{"KV":{"Verb":"set","Key":"txn-key","Value":"dHhu"}}]"#,
    );
    assert_eq!(txn.status, 200, "{}", txn.text());
    assert_eq!(
        cluster
            .request(DC2_S1, "GET", "/v1/kv/txn-key?raw", b"")
            .text(),
        "txn"
    );
    let leader: String = cluster
        .request(DC1_S1, "GET", "/v1/status/leader?dc=dc2", b"")
        .json()
        .unwrap_or_default();
    assert!(leader.starts_with("127.105.0."), "{leader}");
    let peers: Vec<String> = cluster
        .request(DC1_S1, "GET", "/v1/status/peers?dc=dc2", b"")
        .json()
        .unwrap_or_default();
    assert_eq!(peers.len(), 3, "{peers:?}");
    // Every agent sends its LAN coordinate to the leader, which writes them in batches:
    // dc2's three servers, asked from dc1.
    cluster.wait_for(
        "dc2's coordinates, seen from dc1",
        Duration::from_secs(60),
        |c| {
            let rows: Vec<serde_json::Value> = c
                .request(DC1_S1, "GET", "/v1/coordinate/nodes?dc=dc2", b"")
                .json()
                .ok()?;
            let mut nodes: Vec<&str> = rows.iter().filter_map(|r| r["Node"].as_str()).collect();
            nodes.sort_unstable();
            (nodes == ["s1", "s2", "s3"]).then_some(())
        },
    );
    let one = cluster.request(DC2_S1, "GET", "/v1/coordinate/node/s2", b"");
    assert_eq!(one.status, 200, "{}", one.text());
    assert!(one.header("x-consul-index").is_some());
    assert_eq!(
        cluster
            .request(DC2_S1, "GET", "/v1/coordinate/node/nobody", b"")
            .status,
        404
    );
    let (code, rtt, err) = support::cli(&cluster.agents[DC2_S1].http(), &["rtt", "s2", "s3"]);
    assert_eq!(code, 0, "{rtt}{err}");
    assert!(rtt.starts_with("Estimated s2 <-> s3 rtt: "), "{rtt}");
    assert!(rtt.ends_with("ms (using LAN coordinates)\n"), "{rtt}");
    // A bad update is Consul's 400, and stores nothing.
    for bad in [
        &br#"{"Node":"s1","Coord":{"Vec":[0.0],"Error":1.5,"Adjustment":0,"Height":0.00001}}"#[..],
        br#"{"Node":"","Coord":{"Vec":[0,0,0,0,0,0,0,0],"Error":1.5,"Adjustment":0,"Height":0}}"#,
        b"{not json",
    ] {
        let r = cluster.request(DC2_S1, "PUT", "/v1/coordinate/update", bad);
        assert_eq!(r.status, 400, "{}", r.text());
    }

    // Not a dc1 name, and an unknown datacenter is SERVFAIL, promptly.
    assert!(dig("127.104.0.1", &["web.service.consul"]).contains("status: NXDOMAIN"));
    assert!(dig("127.104.0.1", &["web.service.dc9.consul"]).contains("status: SERVFAIL"));

    // The WAN pool: every server of both datacenters, `node.dc`, joined through the
    // gateways (the servers have no other way to each other), seen alike from both sides.
    let expected = ["s1.dc1", "s1.dc2", "s2.dc2", "s3.dc2"];
    for agent in [DC1_S1, DC2_S1] {
        cluster.wait_for("the WAN pool, whole", Duration::from_secs(60), |c| {
            let names = wan_members(c, agent, "alive");
            (names == expected).then_some(())
        });
    }
    let (code, table, _) = support::cli(&http, &["members", "-wan"]);
    assert_eq!(code, 0, "{table}");
    let header = table.lines().next().unwrap_or_default();
    assert!(header.starts_with("Node    Address"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("s2.dc2  127.105.0.2:8300  alive   server")),
        "{table}"
    );
    // A client agent is in no WAN pool (as Consul's): an empty list, not an error.
    let (code, table, _) = support::cli(&cluster.agents[DC1_C1].http(), &["members", "-wan"]);
    assert_eq!(code, 0, "{table}");
    assert_eq!(table.lines().count(), 1, "{table}");
    // The LAN pool is still only this datacenter's.
    let (_, lan, _) = support::cli(&http, &["members"]);
    assert!(!lan.contains("dc2"), "{lan}");
    // WAN gossip rides the gateways as datagrams.
    let routed = gateway_metrics("127.104.0.100")
        .lines()
        .find(|l| l.starts_with("isthmus_gateway_datagrams_total{outcome=\"routed\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(routed > 0, "no WAN gossip datagram routed");

    // Agent endpoints are about the agent asked: never sent to another datacenter.
    let own: serde_json::Value = cluster
        .request(DC1_S1, "GET", "/v1/agent/self?dc=dc2", b"")
        .json()
        .unwrap_or_default();
    assert_eq!(own["Config"]["Datacenter"], "dc1", "{own}");

    // The gateways count what they routed and show their links.
    let metrics = gateway_metrics("127.104.0.100");
    assert!(
        metrics.contains("isthmus_gateway_link_up{dst_dc=\"dc2\",peer=\"gw1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("isthmus_cross_dc_requests_total{dst_dc=\"dc2\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("isthmus_wan_rtt_seconds{"), "{metrics}");
    // The WAN dashboard and alerts use only what servers and gateways export.
    let exported = format!(
        "{}{metrics}",
        cluster
            .request(DC1_S1, "GET", "/v1/agent/metrics?format=prometheus", b"")
            .text()
    );
    let missing = support::metrics_not_exported(
        &["dashboards/wan.json", "isthmus-alerts.yml"],
        None,
        &exported,
    );
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
    // A name in a request's header is not a label: an unknown datacenter counts as such.
    assert!(
        metrics
            .contains("isthmus_cross_dc_requests_total{dst_dc=\"unknown\",outcome=\"no_route\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("dc9"), "{metrics}");

    // dc2's gateway dies: no path, promptly; it comes back: the links re-form by themselves.
    cluster.agents[DC2_GW].kill();
    cluster.wait_for(
        "no path to dc2 without its gateway",
        Duration::from_secs(45),
        |c| {
            let r = c.request(DC1_S1, "GET", "/v1/kv/greeting?dc=dc2&raw", b"");
            (r.status == 500 && r.text().starts_with("No path to datacenter \"dc2\"")).then_some(())
        },
    );
    cluster.agents[DC2_GW].start();
    cluster.wait_for("dc2 reachable again", Duration::from_secs(60), |c| {
        let r = c.request(DC1_S1, "GET", "/v1/kv/greeting?dc=dc2&raw", b"");
        (r.status == 200 && r.text() == "hello from dc1").then_some(())
    });
    // And the other way round, from dc2 into dc1.
    let back = cluster.wait_for("a write into dc1 from dc2", Duration::from_secs(60), |c| {
        let r = c.request(DC2_S1, "PUT", "/v1/kv/reply?dc=dc1", b"hello from dc2");
        (r.status == 200).then_some(r)
    });
    assert_eq!(back.text(), "true");
    assert_eq!(
        cluster
            .request(DC1_S1, "GET", "/v1/kv/reply?raw", b"")
            .text(),
        "hello from dc2"
    );

    // After dc2's gateway came back, every dc2 server has its dc-link again (a server's
    // WAN gossip rides it) and the WAN pool is whole again.
    cluster.wait_for(
        "dc2's servers linked to the restarted gateway",
        Duration::from_secs(60),
        |_| {
            gateway_metrics("127.105.0.100")
                .contains("isthmus_gateway_servers 3")
                .then_some(())
        },
    );
    cluster.wait_for("the WAN pool whole again", Duration::from_secs(60), |c| {
        (wan_members(c, DC1_S1, "alive") == expected).then_some(())
    });
    // A server that leaves (dc2's leader, the hardest case) shows as left in the WAN pool,
    // not failed, and dc2 goes on with the other two.
    let leader = cluster.wait_for_leader_among(&[2, 3, 4]);
    let left = format!("s{}.dc2", leader - 1);
    let (code, out, err) = support::cli(&cluster.agents[leader].http(), &["leave"]);
    assert_eq!(code, 0, "{out}{err}");
    cluster.wait_for(
        "the server that left is left in the WAN pool",
        Duration::from_secs(45),
        |c| (wan_members(c, DC1_S1, "left") == [left.clone()]).then_some(()),
    );
    assert!(wan_members(&cluster, DC1_S1, "failed").is_empty());
    let others: Vec<usize> = [2, 3, 4].into_iter().filter(|i| *i != leader).collect();
    cluster.wait_for_leader_among(&others);

    // A gateway restarted at once: its servers' links to the old process are reset by the
    // new one (the same stateless reset key, from the gateway's private key), not left to
    // time out.
    cluster.agents[DC2_GW].kill();
    cluster.agents[DC2_GW].start();
    let log = cluster
        .dir
        .path()
        .join(format!("dc2-s{}.log", others[0] - 1));
    cluster.wait_for(
        "the dc-link reset by the restarted gateway",
        Duration::from_secs(20),
        |_| {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("dc-link down; redialling gateway=127.105.0.100:8443 reason=Some(Reset)")
                .then_some(())
        },
    );

    // A gateway certificate of a datacenter nobody declared (the federation's CA signed
    // it) does not join: its link is refused, counted and logged once, so its forged
    // Forget of dc2 never arrives; dc2 stays reachable.
    let answer = rogue_forget(cluster.dir.path(), "127.104.0.100:8443", "dc2");
    let refusal = answer.expect_err("the rogue's link is refused");
    assert!(
        refusal.contains("not a datacenter of this federation"),
        "{refusal}"
    );
    let again = rogue_forget(cluster.dir.path(), "127.104.0.100:8443", "dc2");
    assert!(again.is_err(), "{again:?}");
    assert!(gateway_metrics("127.104.0.100")
        .lines()
        .any(|l| l.starts_with("isthmus_gateway_refused_total") && !l.ends_with(" 0")));
    let log = std::fs::read_to_string(cluster.dir.path().join("dc1-gw1.log")).unwrap_or_default();
    assert_eq!(
        log.matches("refused a WAN link").count(),
        1,
        "logged once: {log}"
    );
    assert!(!log.contains("WAN link accepted dc=dc7"), "{log}");
    // A gateway certificate of a declared datacenter links, but cannot make dc1's gateway
    // forget a datacenter that is linked and alive.
    let answer = forged_forget(cluster.dir.path(), "dc2", "127.104.0.100:8443", "dc2");
    let answer = answer.expect("a declared datacenter's gateway links");
    assert!(answer.contains("linked and alive"), "{answer}");
    // (dc2's gateway was restarted above: its servers may still be relinking.)
    cluster.wait_for(
        "dc2 reachable after the forged Forget",
        Duration::from_secs(30),
        |c| {
            let still = c.request(DC1_S1, "GET", "/v1/kv/greeting?dc=dc2&raw", b"");
            (still.text() == "hello from dc1").then_some(())
        },
    );
}

const TWO_GATEWAYS: &str = r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.106.0.1" }]
gateways = [{ name = "gw1", address = "127.106.0.100" }, { name = "gw2", address = "127.106.0.101" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.107.0.1" }, { name = "s2", address = "127.107.0.2" }, { name = "s3", address = "127.107.0.3" }]
gateways = [{ name = "gw1", address = "127.107.0.100" }]
"#;

#[test]
fn a_gateway_or_a_leader_dying_does_not_stop_cross_dc_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    support::render_topology(TWO_GATEWAYS, dir.path());
    let mut cluster = nodes(
        dir,
        &[
            ("dc1", "s1", "127.106.0.1"),
            ("dc1", "gw1", "127.106.0.100"),
            ("dc1", "gw2", "127.106.0.101"),
            ("dc2", "s1", "127.107.0.1"),
            ("dc2", "s2", "127.107.0.2"),
            ("dc2", "s3", "127.107.0.3"),
            ("dc2", "gw1", "127.107.0.100"),
        ],
    );
    // dc1's server starts knowing only gw1: gw2 is added to its config later, by reload.
    let gateways = |c: &Cluster| {
        let text =
            std::fs::read_to_string(c.dir.path().join("dc1/s1/agent.json")).unwrap_or_default();
        let config: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        config["isthmus"]["gateways"].clone()
    };
    let both = gateways(&cluster);
    assert_eq!(both.as_array().map(Vec::len), Some(2), "{both}");
    cluster.agents[0].edit_config(|c| {
        c["isthmus"]["gateways"] = serde_json::json!(["127.106.0.100:8443"]);
    });
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0]);
    cluster.wait_for_leader_among(&[3, 4, 5]);
    let write = |c: &Cluster, key: &str| {
        let r = c.request(0, "PUT", &format!("/v1/kv/{key}?dc=dc2"), b"v");
        r.status == 200 && r.text() == "true"
    };
    cluster.wait_for("a cross-DC write", Duration::from_secs(60), |c| {
        write(c, "first").then_some(())
    });
    assert!(gateway_metrics("127.106.0.101").contains("isthmus_gateway_servers 0"));
    // A new gateway needs no restart: the server links to it on `reload`.
    cluster.agents[0].edit_config(|c| c["isthmus"]["gateways"] = both.clone());
    let (code, out, err) = support::cli(&cluster.agents[0].http(), &["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    cluster.wait_for("the server linked to gw2", Duration::from_secs(45), |_| {
        gateway_metrics("127.106.0.101")
            .contains("isthmus_gateway_servers 1")
            .then_some(())
    });
    // Both of dc1's gateways carry traffic: each has a link to dc2.
    for gateway in ["127.106.0.100", "127.106.0.101"] {
        cluster.wait_for(
            "both dc1 gateways linked to dc2",
            Duration::from_secs(45),
            |_| {
                gateway_metrics(gateway)
                    .contains("isthmus_gateway_link_up{dst_dc=\"dc2\",peer=\"gw1\"} 1")
                    .then_some(())
            },
        );
    }

    // The server spreads its cross-DC requests over both gateways.
    for _ in 0..20 {
        let r = cluster.request(0, "GET", "/v1/kv/first?dc=dc2&raw", b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for gateway in ["127.106.0.100", "127.106.0.101"] {
        let metrics = gateway_metrics(gateway);
        let routed: u64 = metrics
            .lines()
            .find(|l| {
                l.starts_with("isthmus_cross_dc_requests_total{dst_dc=\"dc2\",outcome=\"ok\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(routed >= 5, "{gateway} routed {routed} of 20+: {metrics}");
    }

    // One of dc1's two gateways dies: reads and writes to dc2 go on through the other.
    cluster.agents[1].kill();
    cluster.wait_for(
        "cross-DC traffic through the other gateway",
        Duration::from_secs(45),
        |c| write(c, "second").then_some(()),
    );
    for _ in 0..10 {
        let r = cluster.request(0, "GET", "/v1/kv/second?dc=dc2&raw", b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // dc2's leader dies: dc2 elects another and cross-DC writes resume.
    let leader = cluster.wait_for_leader_among(&[3, 4, 5]);
    cluster.agents[leader].kill();
    let others: Vec<usize> = [3, 4, 5].into_iter().filter(|i| *i != leader).collect();
    cluster.wait_for_leader_among(&others);
    cluster.wait_for(
        "cross-DC writes after dc2's failover",
        Duration::from_secs(60),
        |c| write(c, "third").then_some(()),
    );
    let read = cluster.request(0, "GET", "/v1/kv/third?dc=dc2&raw", b"");
    assert_eq!(read.text(), "v");

    // The WAN pool saw it too: the killed leader is failed, from dc1 (through the
    // remaining gateway) as from dc2.
    let killed = format!("s{}.dc2", leader - 2);
    for agent in [0, others[0]] {
        cluster.wait_for(
            "the killed leader failed in the WAN pool",
            Duration::from_secs(90),
            |c| (wan_members(c, agent, "failed") == [killed.clone()]).then_some(()),
        );
    }
    // An operator gives up on it: `force-leave -wan` makes it left across the pool.
    let http = cluster.agents[0].http();
    let (code, out, err) = support::cli(&http, &["force-leave", "-wan", &killed]);
    assert_eq!(code, 0, "{out}{err}");
    cluster.wait_for(
        "the force-left server is left in dc2's view too",
        Duration::from_secs(45),
        |c| (wan_members(c, others[0], "left") == [killed.clone()]).then_some(()),
    );
    assert!(wan_members(&cluster, 0, "failed").is_empty());
    assert_eq!(
        support::cli(&http, &["force-leave", "-wan", "nobody.dc2"]).0,
        1
    );
}

const THREE_DCS: &str = r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.108.0.1" }]
gateways = [{ name = "gw1", address = "127.108.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.109.0.1" }]
gateways = [{ name = "gw1", address = "127.109.0.100" }]

[[datacenters]]
name = "dc3"
servers = [{ name = "s1", address = "127.110.0.1" }]
gateways = [{ name = "gw1", address = "127.110.0.100" }]
"#;

/// Drops the `[[remote_gateways]]` entries of `dc` from a rendered gateway.toml.
fn forget_datacenter(gateway_toml: &std::path::Path, dc: &str) {
    let text = std::fs::read_to_string(gateway_toml).expect("read gateway.toml");
    let mut blocks = text.split("[[remote_gateways]]");
    let mut kept = blocks.next().unwrap_or_default().to_owned();
    for block in blocks {
        if !block.contains(&format!("datacenter = \"{dc}\"")) {
            kept.push_str("[[remote_gateways]]");
            kept.push_str(block);
        }
    }
    std::fs::write(gateway_toml, kept).expect("write gateway.toml");
}

#[test]
fn gateways_learn_the_rest_of_the_federation_from_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    support::render_topology(THREE_DCS, dir.path());
    let out = dir.path().to_owned();
    // dc1 and dc3 are configured to know only dc2's gateway; dc2's knows both.
    forget_datacenter(&out.join("dc1/gw1/gateway.toml"), "dc3");
    forget_datacenter(&out.join("dc3/gw1/gateway.toml"), "dc1");
    let dc1_gateway = std::fs::read_to_string(out.join("dc1/gw1/gateway.toml")).unwrap_or_default();
    assert!(
        dc1_gateway.contains("\"dc2\"") && !dc1_gateway.contains("\"dc3\""),
        "{dc1_gateway}"
    );
    let mut cluster = nodes(
        dir,
        &[
            ("dc1", "s1", "127.108.0.1"),
            ("dc1", "gw1", "127.108.0.100"),
            ("dc2", "s1", "127.109.0.1"),
            ("dc2", "gw1", "127.109.0.100"),
            ("dc3", "s1", "127.110.0.1"),
            ("dc3", "gw1", "127.110.0.100"),
        ],
    );
    for agent in &mut cluster.agents {
        agent.start();
    }
    for server in [0, 2, 4] {
        cluster.wait_for_leader_among(&[server]);
    }
    // dc1 reaches dc3 through a link its gateway learned of, with no restart anywhere.
    cluster.wait_for("dc1 writing into dc3", Duration::from_secs(40), |c| {
        let r = c.request(0, "PUT", "/v1/kv/from-dc1?dc=dc3", b"hi");
        (r.status == 200 && r.text() == "true").then_some(())
    });
    assert!(gateway_metrics("127.108.0.100")
        .contains("isthmus_gateway_link_up{dst_dc=\"dc3\",peer=\"gw1\"} 1"));
    let log = std::fs::read_to_string(out.join("dc1-gw1.log")).unwrap_or_default();
    assert!(
        log.contains("learned a gateway from the federation") && log.contains("dc=dc3"),
        "{log}"
    );
    // dc3 lists all three (its gateway's view is at most a second old).
    let listed: Vec<String> = cluster.wait_for("dc3 listing three", Duration::from_secs(20), |c| {
        let listed: Vec<String> = c
            .request(4, "GET", "/v1/catalog/datacenters", b"")
            .json()
            .ok()?;
        (listed.len() == 3).then_some(listed)
    });
    assert!(listed.contains(&"dc1".to_owned()), "{listed:?}");

    // The WAN pool spans all three, dc1 and dc3 joined through a link learned at run time.
    for agent in [0, 2, 4] {
        cluster.wait_for("a WAN pool of three", Duration::from_secs(60), |c| {
            (wan_members(c, agent, "alive") == ["s1.dc1", "s1.dc2", "s1.dc3"]).then_some(())
        });
    }

    // dc3 is retired. While it runs, removing it is refused, saying why.
    let http = cluster.agents[0].http();
    let remove = |dc: &str| support::cli(&http, &["operator", "federation", "remove-dc", dc]);
    let (code, _, err) = remove("dc3");
    assert_eq!(code, 1);
    assert!(err.contains("dc3 still has live servers (s1.dc3)"), "{err}");
    assert_eq!(remove("dc1").0, 1);
    let (code, _, err) = remove("dc9");
    assert_eq!(code, 1);
    assert!(err.contains("No datacenter \"dc9\""), "{err}");
    // Once its server and gateway are stopped (failed in the pool, the link down), it goes.
    cluster.agents[4].kill();
    cluster.agents[5].kill();
    let (_, out, _) = cluster.wait_for("dc3 removable", Duration::from_secs(60), |_| {
        let outcome = remove("dc3");
        (outcome.0 == 0).then_some(outcome)
    });
    assert_eq!(
        out,
        "Removed datacenter dc3 from the federation (1 servers marked left, 1 gateways told to forget it)\n"
    );
    // dc1's gateway forgot dc3 and passed it on to dc2's: neither dials it any more, and
    // no "link down" series is left to alert on.
    for (log, gateway) in [
        ("dc1-gw1.log", "127.108.0.100"),
        ("dc2-gw1.log", "127.109.0.100"),
    ] {
        cluster.wait_for("the gateways forgot dc3", Duration::from_secs(10), |c| {
            std::fs::read_to_string(c.dir.path().join(log))
                .ok()?
                .contains("datacenter removed from the federation: its gateways are forgotten")
                .then_some(())
        });
        cluster.wait_for(
            "no dc3 series on the gateway",
            Duration::from_secs(10),
            |_| {
                let metrics = gateway_metrics(gateway);
                let stale = metrics.lines().any(|l| {
                    (l.starts_with("isthmus_gateway_link_up{")
                        || l.starts_with("isthmus_wan_rtt_seconds{"))
                        && l.contains("dst_dc=\"dc3\"")
                });
                (!stale).then_some(())
            },
        );
    }
    // Gone from every datacenter's list; its server is left, not failed, everywhere.
    for (agent, expected) in [(0, ["dc1", "dc2"]), (2, ["dc2", "dc1"])] {
        cluster.wait_for("dc3 gone from the list", Duration::from_secs(45), |c| {
            let listed: Vec<String> = c
                .request(agent, "GET", "/v1/catalog/datacenters", b"")
                .json()
                .ok()?;
            (listed == expected).then_some(())
        });
        assert_eq!(wan_members(&cluster, agent, "left"), ["s1.dc3"]);
    }
}

const MOVING: &str = r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.114.0.1" }]
gateways = [{ name = "gw1", address = "127.114.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.115.0.1" }]
gateways = [{ name = "gw1", address = "127.115.0.100" }]
"#;

#[test]
fn a_gateway_back_on_a_new_address_is_found_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    support::render_topology(MOVING, dir.path());
    let out = dir.path().to_owned();
    // dc2's server may find its gateway at either address (as after a planned move).
    let dc2_server = out.join("dc2/s1/agent.json");
    let text = std::fs::read_to_string(&dc2_server).expect("read agent.json");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("agent.json is JSON");
    config["isthmus"]["gateways"] = serde_json::json!(["127.115.0.100:8443", "127.115.0.101:8443"]);
    std::fs::write(&dc2_server, config.to_string()).expect("write agent.json");
    let mut cluster = nodes(
        dir,
        &[
            ("dc1", "s1", "127.114.0.1"),
            ("dc1", "gw1", "127.114.0.100"),
            ("dc2", "s1", "127.115.0.1"),
            ("dc2", "gw1", "127.115.0.100"),
        ],
    );
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0]);
    cluster.wait_for_leader_among(&[2]);
    let read_dc2 = |c: &Cluster| c.request(0, "GET", "/v1/catalog/nodes?dc=dc2", b"").status == 200;
    cluster.wait_for("dc2 through its gateway", Duration::from_secs(60), |c| {
        read_dc2(c).then_some(())
    });

    // dc2's gateway stops and comes back on another address; dc1's gateway is configured
    // with the old one and must find the new one by itself.
    cluster.agents[3].kill();
    let moved = out.join("dc2/gw1/gateway.toml");
    let text = std::fs::read_to_string(&moved).expect("read gateway.toml");
    std::fs::write(
        &moved,
        text.replace(
            "bind_addr = \"127.115.0.100\"",
            "bind_addr = \"127.115.0.101\"",
        ),
    )
    .expect("write gateway.toml");
    cluster.agents[3].start();
    cluster.wait_for(
        "dc2 through its moved gateway",
        Duration::from_secs(60),
        |c| read_dc2(c).then_some(()),
    );
    cluster.wait_for(
        "dc1's gateway dialling the new address",
        Duration::from_secs(60),
        |_| {
            let log = std::fs::read_to_string(out.join("dc1-gw1.log")).unwrap_or_default();
            log.lines()
                .any(|l| l.contains("learned a gateway") && l.contains("127.115.0.101:8443"))
                .then_some(())
        },
    );
}

const RELAYED: &str = r#"
[[datacenters]]
name = "dc1"
servers = [{ name = "s1", address = "127.116.0.1" }]
gateways = [{ name = "gw1", address = "127.116.0.100" }]

[[datacenters]]
name = "dc2"
servers = [{ name = "s1", address = "127.117.0.1" }]
gateways = [{ name = "gw1", address = "127.117.0.100" }]
"#;

/// A UDP relay that holds every datagram for a fixed delay, each way: what a WAN adds
/// between two gateways, without netem. Datagrams to `listen` go to `target` from a socket
/// per sender; answers go back to that sender. It stops when dropped.
struct DelayRelay {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

type Delayed = (
    std::time::Instant,
    std::sync::Arc<std::net::UdpSocket>,
    std::net::SocketAddr,
    Vec<u8>,
);

impl DelayRelay {
    fn start(listen: &str, target: &str, delay: Duration) -> DelayRelay {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let target: std::net::SocketAddr = target.parse().expect("target address");
        let listen = Arc::new(std::net::UdpSocket::bind(listen).expect("bind the relay"));
        let tick = Some(Duration::from_millis(50));
        listen.set_read_timeout(tick).expect("read timeout");
        let upstream_ip = listen.local_addr().expect("relay address").ip();
        let stop = Arc::new(AtomicBool::new(false));
        let (queue, delayed) = std::sync::mpsc::channel::<Delayed>();
        // One sender, in order: every datagram waits the same delay, so FIFO is due order.
        let sender = std::thread::spawn(move || {
            for (due, socket, to, data) in delayed {
                std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
                let _ = socket.send_to(&data, to);
            }
        });
        let receiver = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut upstreams: std::collections::HashMap<
                    std::net::SocketAddr,
                    Arc<std::net::UdpSocket>,
                > = std::collections::HashMap::new();
                let mut readers = Vec::new();
                let mut buffer = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, client)) = listen.recv_from(&mut buffer) else {
                        continue;
                    };
                    let upstream = upstreams.entry(client).or_insert_with(|| {
                        let socket = Arc::new(
                            std::net::UdpSocket::bind((upstream_ip, 0)).expect("bind upstream"),
                        );
                        socket.set_read_timeout(tick).expect("read timeout");
                        let (socket_in, listen, queue, stop) =
                            (socket.clone(), listen.clone(), queue.clone(), stop.clone());
                        readers.push(std::thread::spawn(move || {
                            let mut buffer = vec![0u8; 65536];
                            while !stop.load(Ordering::Relaxed) {
                                if let Ok((n, _)) = socket_in.recv_from(&mut buffer) {
                                    let due = std::time::Instant::now() + delay;
                                    let back = (due, listen.clone(), client, buffer[..n].to_vec());
                                    if queue.send(back).is_err() {
                                        return;
                                    }
                                }
                            }
                        }));
                        socket
                    });
                    let due = std::time::Instant::now() + delay;
                    let _ = queue.send((due, upstream.clone(), target, buffer[..n].to_vec()));
                }
                drop(queue);
                for reader in readers {
                    let _ = reader.join();
                }
            })
        };
        DelayRelay {
            stop,
            threads: vec![receiver, sender],
        }
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Points a rendered gateway.toml's remote gateways at `remote` and makes it advertise
/// `advertise`.
fn relay_gateway(gateway_toml: &std::path::Path, advertise: &str, remote: &str) {
    let text = std::fs::read_to_string(gateway_toml).expect("read gateway.toml");
    let mut config: toml::Table = toml::from_str(&text).expect("parse gateway.toml");
    config.insert("advertise_addr".to_owned(), advertise.into());
    if let Some(toml::Value::Array(remotes)) = config.get_mut("remote_gateways") {
        for entry in remotes.iter_mut() {
            if let Some(table) = entry.as_table_mut() {
                table.insert("address".to_owned(), remote.into());
            }
        }
    }
    std::fs::write(gateway_toml, toml::to_string(&config).expect("toml")).expect("write");
}

#[test]
fn gateways_and_servers_measure_the_delay_a_wan_adds() {
    // 30 ms each way through each relay: every WAN round trip takes 60 ms more.
    let one_way = Duration::from_millis(30);
    let expected = 0.060;
    let dir = tempfile::tempdir().expect("tempdir");
    support::render_topology(RELAYED, dir.path());
    let out = dir.path().to_owned();
    // Each gateway is reached only through a relay in front of it, and says so.
    relay_gateway(
        &out.join("dc1/gw1/gateway.toml"),
        "127.116.0.200:8443",
        "127.117.0.200:8443",
    );
    relay_gateway(
        &out.join("dc2/gw1/gateway.toml"),
        "127.117.0.200:8443",
        "127.116.0.200:8443",
    );
    let _relays = [
        DelayRelay::start("127.116.0.200:8443", "127.116.0.100:8443", one_way),
        DelayRelay::start("127.117.0.200:8443", "127.117.0.100:8443", one_way),
    ];
    let mut cluster = nodes(
        dir,
        &[
            ("dc1", "s1", "127.116.0.1"),
            ("dc1", "gw1", "127.116.0.100"),
            ("dc2", "s1", "127.117.0.1"),
            ("dc2", "gw1", "127.117.0.100"),
        ],
    );
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0]);
    cluster.wait_for_leader_among(&[2]);
    cluster.wait_for("a write across the relays", Duration::from_secs(60), |c| {
        let r = c.request(0, "PUT", "/v1/kv/far?dc=dc2", b"away");
        (r.status == 200 && r.text() == "true").then_some(())
    });

    // The gateways' WAN links see the injected delay: no round trip through the relays can
    // be shorter than it. How close the measures come is a benchmark (`bench/wan_rtt.py`),
    // not a test: a loaded machine only adds to them.
    let at_least = |measured: f64| measured >= expected * 0.95;
    for (gateway, dst) in [("127.116.0.100", "dc2"), ("127.117.0.100", "dc1")] {
        let rtt = cluster.wait_for(
            "the gateway's RTT to reach the delay",
            Duration::from_secs(60),
            |_| {
                let metrics = gateway_metrics(gateway);
                let rtt: f64 = metrics
                    .lines()
                    .find(|l| {
                        l.starts_with("isthmus_wan_rtt_seconds{")
                            && l.contains(&format!("dst_dc=\"{dst}\""))
                    })
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|n| n.parse().ok())?;
                at_least(rtt).then_some(rtt)
            },
        );
        eprintln!("{gateway} -> {dst}: WAN link RTT {:.1} ms", rtt * 1000.0);
    }
    // `rtt -wan dc2` reads one of the two WAN links (each gateway dials the other): each
    // settles on its own, so ask until the one read has.
    let http = cluster.agents[0].http();
    cluster.wait_for(
        "rtt -wan dc2 past the delay",
        Duration::from_secs(60),
        |_| {
            let (code, rtt, _) = support::cli(&http, &["rtt", "-wan", "dc2"]);
            let millis: f64 = rtt
                .strip_prefix("Estimated dc1 <-> dc2 rtt: ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())?;
            (code == 0 && at_least(millis / 1000.0)).then_some(())
        },
    );

    // The servers' WAN coordinates, learned from their own probes across both gateways,
    // place the other datacenter's server further away than the local hop: an estimate
    // longer than a loopback round trip (Vivaldi converges loosely; the figure is in the
    // benchmark).
    let estimate = cluster.wait_for(
        "the servers' WAN coordinates to grow past a loopback hop",
        Duration::from_secs(60),
        |_| {
            let (code, out, _) = support::cli(&http, &["rtt", "-wan", "s1.dc1", "s1.dc2"]);
            let millis: f64 = out
                .strip_prefix("Estimated s1.dc1 <-> s1.dc2 rtt: ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())?;
            (code == 0 && millis / 1000.0 >= expected / 4.0).then_some(out)
        },
    );
    eprintln!("{}", estimate.trim());
    // And the other datacenter's server agrees, asked with one name (its own is implied).
    let (code, out, _) = support::cli(&cluster.agents[2].http(), &["rtt", "-wan", "s1.dc1"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("Estimated s1.dc1 <-> s1.dc2 rtt: "),
        "{out}"
    );
}
