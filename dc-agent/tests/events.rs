//! User events on real agents: fired with `dc-agent event` (Consul's CLI) and
//! `/v1/event/fire`, spread by gossip to every agent, filtered by node, service and tag,
//! listed with Consul's blocking index.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{cli, Cluster};

fn list(cluster: &Cluster, agent: usize, name: &str) -> Vec<Value> {
    let response = cluster.request(agent, "GET", &format!("/v1/event/list?name={name}"), b"");
    assert_eq!(response.status, 200, "{}", response.text());
    response.json::<Vec<Value>>().expect("a list")
}

fn holders(cluster: &Cluster, name: &str) -> Vec<String> {
    (0..cluster.agents.len())
        .filter(|i| !list(cluster, *i, name).is_empty())
        .map(|i| cluster.agents[i].name.clone())
        .collect()
}

#[test]
fn events_reach_every_agent_that_matches_their_filters() {
    let mut cluster = Cluster::render_with_clients(153, 3, 3, "");
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0, 1, 2]);
    cluster.wait_for(
        "every agent in the LAN pool",
        Duration::from_secs(30),
        |cl| {
            let members: Vec<Value> = cl.agents[3]
                .client()
                .get("/v1/agent/members")
                .ok()?
                .json()
                .ok()?;
            let alive = members.iter().filter(|m| m["Status"] == 1).count();
            (alive == 6).then_some(())
        },
    );
    let web = br#"{"Name": "web", "Tags": ["v2"], "Port": 80}"#;
    let registered = cluster.request(4, "PUT", "/v1/agent/service/register", web);
    assert_eq!(registered.status, 200, "{}", registered.text());

    // Consul's CLI and output, fired at a client agent.
    let (code, out, err) = cli(
        &cluster.agents[3].http(),
        &["event", "-name=deploy", "v1.2.3"],
    );
    assert_eq!(code, 0, "{err}");
    let id = out
        .trim()
        .strip_prefix("Event ID: ")
        .unwrap_or_else(|| panic!("Consul's output: {out}"))
        .to_owned();
    let fired = Instant::now();
    let spread = cluster.wait_for("the event on every agent", Duration::from_secs(10), |cl| {
        (holders(cl, "deploy").len() == 6).then(|| fired.elapsed())
    });
    println!("event seen by all 6 agents within {spread:?}");
    let metrics = cluster
        .request(5, "GET", "/v1/agent/metrics?format=prometheus", b"")
        .text();
    let kept = metrics
        .lines()
        .find_map(|l| l.strip_prefix("consul_serf_events "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(kept, Some(1.0), "consul_serf_events on c3");
    let event = &list(&cluster, 5, "deploy")[0];
    assert_eq!(event["ID"], id.as_str());
    assert_eq!(event["Name"], "deploy");
    assert_eq!(event["Payload"], "djEuMi4z"); // base64 of v1.2.3
    assert_eq!(
        (event["NodeFilter"].as_str(), event["Version"].as_u64()),
        (Some(""), Some(1))
    );
    assert!(event["LTime"].as_u64().is_some());
    // The index is Consul's: made from the last event's ID.
    let response = cluster.request(5, "GET", "/v1/event/list?name=deploy", b"");
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    let expected = u64::from_str_radix(&hex[..16], 16).expect("hex")
        ^ u64::from_str_radix(&hex[16..], 16).expect("hex");
    assert_eq!(
        response.header("x-consul-index"),
        Some(expected.to_string().as_str())
    );

    // A blocking list wakes when the next event comes.
    let waiter = {
        let client = cluster.agents[2].client();
        std::thread::spawn(move || {
            client.get(&format!(
                "/v1/event/list?name=deploy&index={expected}&wait=20s"
            ))
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let second = cluster.request(0, "PUT", "/v1/event/fire/deploy", b"v1.2.4");
    assert_eq!(second.status, 200, "{}", second.text());
    let woke: Vec<Value> = waiter
        .join()
        .expect("thread")
        .expect("answer")
        .json()
        .expect("json");
    assert_eq!(woke.len(), 2);

    // Filters: a node, and a service with a tag.
    let (code, _, err) = cli(
        &cluster.agents[0].http(),
        &["event", "-name=only-c3", "-node=^c3$"],
    );
    assert_eq!(code, 0, "{err}");
    let fired = cluster.request(3, "PUT", "/v1/event/fire/web-v2?service=web&tag=v2", b"");
    assert_eq!(fired.status, 200, "{}", fired.text());
    cluster.wait_for("the filtered events", Duration::from_secs(10), |cl| {
        (holders(cl, "only-c3") == ["c3"] && holders(cl, "web-v2") == ["c2"]).then_some(())
    });
    // Long enough for any stray copy to have arrived.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(holders(&cluster, "only-c3"), ["c3"]);
    assert_eq!(holders(&cluster, "web-v2"), ["c2"]);

    // Refusals.
    let big = vec![b'x'; 600];
    assert_eq!(
        cluster.request(0, "PUT", "/v1/event/fire/big", &big).status,
        413
    );
    assert_eq!(
        cluster
            .request(0, "PUT", "/v1/event/fire/bad?node=(", b"")
            .status,
        400
    );
    let (code, _, err) = cli(&cluster.agents[0].http(), &["event"]);
    assert_eq!(code, 1);
    assert!(err.contains("Event name must be specified"), "{err}");
}
