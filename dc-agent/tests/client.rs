//! Client agents (`server = false`), end to end: real `dc-agent` processes on loopback, the
//! client reached over HTTP, the CLI and `dig`. The client finds the servers through gossip,
//! forwards everything outside `/v1/agent/` to one of them over QUIC with its client
//! certificate, syncs its own services to the catalog and answers DNS from a view that
//! blocking queries keep current.

mod support;

use std::time::Duration;

use support::{cli, Cluster};

fn dig(server: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .args([&format!("@{server}"), "-p", "8600", "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is missing: install Debian's dnsutils (scripts/test.sh does)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn status_of(answer: &str) -> Option<String> {
    answer
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .map(str::to_owned)
}

#[test]
fn a_client_agent_forwards_to_servers_owns_its_services_and_answers_dns() {
    let mut cluster = Cluster::render_with_clients(97, 3, 1, "");
    for agent in &mut cluster.agents {
        agent.start();
    }
    let client = 3;
    let client_ip = cluster.agents[client].address.clone();
    let client_http = cluster.agents[client].http();
    cluster.wait_for_leader_among(&[0, 1, 2]);

    // The client finds every server through gossip and shows as a client.
    let members = cluster.wait_for("four alive members", Duration::from_secs(20), |_| {
        let (code, out, _) = cli(&client_http, &["members"]);
        (code == 0 && out.lines().filter(|l| l.contains(" alive ")).count() == 4).then_some(out)
    });
    assert!(
        members
            .lines()
            .any(|l| l.starts_with("c1 ") && l.contains(" client ")),
        "{members}"
    );
    let agent_self = cluster
        .request(client, "GET", "/v1/agent/self", b"")
        .json::<serde_json::Value>();
    let agent_self = agent_self.unwrap_or_default();
    assert_eq!(agent_self["Config"]["Server"], false, "{agent_self}");
    assert_eq!(
        agent_self["Stats"]["consul"]["known_servers"], "3",
        "{agent_self}"
    );

    // KV through the client: the write goes to a server, which forwards it to the leader.
    assert_eq!(
        cli(&client_http, &["kv", "put", "app/color", "blue"]),
        (
            0,
            "Success! Data written to: app/color\n".into(),
            String::new()
        )
    );
    assert_eq!(cli(&client_http, &["kv", "get", "app/color"]).1, "blue\n");
    let stale = cluster.request(client, "GET", "/v1/kv/app/color?stale", b"");
    assert_eq!(stale.status, 200);
    assert_eq!(stale.header("x-consul-knownleader"), Some("true"));
    // Bad input is refused by the server and the answer comes back unchanged.
    let bad = cluster.request(client, "PUT", "/v1/catalog/register", b"{not json");
    assert_eq!(bad.status, 400, "{}", bad.text());

    // A service with a TTL check on the client reaches the catalog and the client's DNS.
    let registered = cluster.request(
        client,
        "PUT",
        "/v1/agent/service/register",
        br#"{"Name":"web","ID":"web-1","Tags":["v1"],"Port":8080,"Check":{"CheckID":"web-ttl","TTL":"60s"}}"#,
    );
    assert_eq!(registered.status, 200, "{}", registered.text());
    let pass = |c: &Cluster, state: &str| {
        let r = c.request(
            client,
            "PUT",
            &format!("/v1/agent/check/{state}/web-ttl"),
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    pass(&cluster, "pass");
    cluster.wait_for("web in the client's DNS", Duration::from_secs(20), |_| {
        (dig(&client_ip, &["web.service.consul", "+short"]) == format!("{client_ip}\n"))
            .then_some(())
    });
    let srv = dig(&client_ip, &["v1.web.service.consul", "SRV", "+short"]);
    assert_eq!(srv, "1 1 8080 c1.node.dc1.consul.\n");
    assert_eq!(
        dig(&client_ip, &["c1.node.consul", "+short"]),
        format!("{client_ip}\n")
    );
    // Names that spell out this datacenter, as the SRV target above does.
    assert_eq!(
        dig(&client_ip, &["c1.node.dc1.consul", "+short"]),
        format!("{client_ip}\n")
    );
    assert_eq!(
        dig(&client_ip, &["web.service.dc1.consul", "+short"]),
        format!("{client_ip}\n")
    );
    // DNS has no case; the catalog keeps the name as registered.
    let registered = cluster.request(
        client,
        "PUT",
        "/v1/agent/service/register",
        br#"{"Name":"Billing","Port":9090}"#,
    );
    assert_eq!(registered.status, 200, "{}", registered.text());
    cluster.wait_for(
        "Billing in the client's DNS",
        Duration::from_secs(20),
        |_| {
            (dig(&client_ip, &["billing.service.consul", "+short"]) == format!("{client_ip}\n"))
                .then_some(())
        },
    );
    let servers_view = cluster
        .request(0, "GET", "/v1/health/service/web?passing", b"")
        .json::<Vec<wire::api::ServiceEntry>>()
        .unwrap_or_default();
    assert_eq!(servers_view.len(), 1);
    assert_eq!(servers_view[0].node.node, "c1");

    // The check fails: web leaves the client's DNS (the view's blocking query wakes), and
    // comes back when it passes again.
    pass(&cluster, "fail");
    cluster.wait_for(
        "web out of the client's DNS",
        Duration::from_secs(10),
        |_| {
            // No healthy instance: NXDOMAIN, as Consul answers.
            let answer = dig(&client_ip, &["web.service.consul"]);
            (status_of(&answer).as_deref() == Some("NXDOMAIN")).then_some(())
        },
    );
    pass(&cluster, "pass");
    cluster.wait_for(
        "web back in the client's DNS",
        Duration::from_secs(10),
        |_| {
            (dig(&client_ip, &["web.service.consul", "+short"]) == format!("{client_ip}\n"))
                .then_some(())
        },
    );
    let metrics = cluster
        .request(client, "GET", "/v1/agent/metrics?format=prometheus", b"")
        .text();
    assert!(metrics.contains("isthmus_dns_view_names 3"), "{metrics}");
    assert!(metrics.contains("consul_client_rpc "), "{metrics}");

    // The leader dies: the client keeps answering (KV through another server, DNS).
    let leader = cluster.wait_for_leader_among(&[0, 1, 2]);
    cluster.agents[leader].kill();
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    cluster.wait_for_leader_among(&others);
    cluster.wait_for(
        "a write through the client after failover",
        Duration::from_secs(30),
        |_| {
            let (code, out, _) = cli(&client_http, &["kv", "put", "app/color", "green"]);
            (code == 0 && out.contains("Success")).then_some(())
        },
    );
    assert_eq!(cli(&client_http, &["kv", "get", "app/color"]).1, "green\n");
    assert_eq!(
        dig(&client_ip, &["web.service.consul", "+short"]),
        format!("{client_ip}\n")
    );

    // The client is killed: the leader marks its serfHealth critical and web leaves the
    // servers' DNS and `?passing`.
    cluster.agents[client].kill();
    let alive_server = others[0];
    let server_ip = cluster.agents[alive_server].address.clone();
    cluster.wait_for(
        "web critical once its client agent was killed",
        Duration::from_secs(30),
        |c| {
            let passing: Vec<serde_json::Value> = c
                .request(alive_server, "GET", "/v1/health/service/web?passing", b"")
                .json()
                .ok()?;
            (passing.is_empty() && dig(&server_ip, &["web.service.consul", "+short"]).is_empty())
                .then_some(())
        },
    );
}

#[test]
fn a_client_agents_dns_answers_are_never_older_than_max_stale() {
    let mut cluster = Cluster::render_with_clients(98, 1, 1, "");
    cluster.agents[1].edit_config(|config| {
        config["dns_config"] = serde_json::json!({"max_stale": "2s"});
    });
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0]);
    let client_ip = cluster.agents[1].address.clone();
    let registered = cluster.request(
        1,
        "PUT",
        "/v1/agent/service/register",
        br#"{"Name":"db","Port":5432}"#,
    );
    assert_eq!(registered.status, 200, "{}", registered.text());
    cluster.wait_for("db in the client's DNS", Duration::from_secs(20), |_| {
        (dig(&client_ip, &["db.service.consul", "+short"]) == format!("{client_ip}\n"))
            .then_some(())
    });

    // With the only server gone, the view can no longer be confirmed: once its last
    // confirmation is older than max_stale, the client answers SERVFAIL, not old data.
    cluster.agents[0].stop();
    cluster.wait_for(
        "SERVFAIL once the view is stale",
        Duration::from_secs(30),
        |_| {
            (status_of(&dig(&client_ip, &["db.service.consul"])).as_deref() == Some("SERVFAIL"))
                .then_some(())
        },
    );
    // The server comes back: answers resume by themselves.
    cluster.agents[0].start();
    cluster.wait_for(
        "db back once the server is",
        Duration::from_secs(30),
        |_| {
            (dig(&client_ip, &["db.service.consul", "+short"]) == format!("{client_ip}\n"))
                .then_some(())
        },
    );
}

/// `consul_serf_member_events{event="failed"}` on an agent.
fn failures_seen(cluster: &Cluster, agent: usize) -> u64 {
    let metrics = cluster
        .request(agent, "GET", "/v1/agent/metrics?format=prometheus", b"")
        .text();
    metrics
        .lines()
        .find(|l| l.starts_with("consul_serf_member_events{event=\"failed\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_paused_agent_is_not_declared_dead_and_declares_no_one_dead() {
    let mut cluster = Cluster::render_with_clients(100, 3, 1, "");
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0, 1, 2]);
    let client_http = cluster.agents[3].http();
    cluster.wait_for("four alive members", Duration::from_secs(20), |_| {
        let (_, out, _) = cli(&client_http, &["members", "-status=alive"]);
        (out.lines().count() == 5).then_some(())
    });

    // The client freezes (as under CPU starvation or a stop-the-world pause), shorter than
    // the suspicion timeout, then runs again.
    cluster.agents[3].signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2500));
    cluster.agents[3].signal(libc::SIGCONT);

    // It noticed its own lateness: its local health score went up.
    let score = cluster.wait_for("a raised health score", Duration::from_secs(5), |c| {
        let metrics = c
            .request(3, "GET", "/v1/agent/metrics?format=prometheus", b"")
            .text();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("consul_memberlist_health_score "))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|score| *score > 0)
    });
    assert!(score <= 8, "{score}");

    // For the next seconds nobody, the paused node included, sees anyone fail.
    let until = std::time::Instant::now() + Duration::from_secs(8);
    while std::time::Instant::now() < until {
        for agent in 0..4 {
            let (_, out, _) = cli(&cluster.agents[agent].http(), &["members"]);
            assert!(
                !out.contains(" failed "),
                "{} sees a failure: {out}{}",
                cluster.agents[agent].name,
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for agent in 0..4 {
        assert_eq!(failures_seen(&cluster, agent), 0, "{}", cluster.logs());
    }
    // Once it keeps time again, the score returns to 0.
    cluster.wait_for("the health score back to 0", Duration::from_secs(30), |c| {
        c.request(3, "GET", "/v1/agent/metrics?format=prometheus", b"")
            .text()
            .contains("consul_memberlist_health_score 0\n")
            .then_some(())
    });
}
