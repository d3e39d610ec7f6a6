//! Sessions and KV locks on real `dc-agent` processes (three servers and client agents),
//! with Consul's documented bodies and answers.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::Cluster;

/// Starts three servers and `clients` client agents on `127.<subnet>.0.*` and waits until
/// every client's node is in the catalog (sessions need it).
fn cluster(subnet: u8, clients: usize) -> Cluster {
    let mut cluster = Cluster::render_with_clients(subnet, 3, clients, "");
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0, 1, 2]);
    for c in 1..=clients {
        let path = format!("/v1/health/node/c{c}");
        cluster.wait_for(
            "client nodes in the catalog",
            Duration::from_secs(30),
            |cl| {
                let checks: Value = cl.agents[0].client().get(&path).ok()?.json().ok()?;
                let passing = checks
                    .as_array()?
                    .iter()
                    .any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing");
                passing.then_some(())
            },
        );
    }
    cluster
}

fn json(cluster: &Cluster, agent: usize, method: &str, path: &str, body: &str) -> (u16, Value) {
    let response = cluster.request(agent, method, path, body.as_bytes());
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, value)
}

/// Creates a session through `agent`; its ID.
fn create(cluster: &Cluster, agent: usize, body: &str) -> String {
    let (status, answer) = json(cluster, agent, "PUT", "/v1/session/create", body);
    assert_eq!(status, 200, "{answer}{}", cluster.logs());
    answer["ID"].as_str().expect("an ID").to_owned()
}

fn kv(cluster: &Cluster, agent: usize, key: &str) -> Value {
    let (status, answer) = json(cluster, agent, "GET", &format!("/v1/kv/{key}"), "");
    assert_eq!(status, 200, "{answer}");
    answer[0].clone()
}

#[test]
fn sessions_hold_locks_as_consuls_do() {
    let mut cluster = cluster(150, 2);
    let (c1, c2) = (3, 4);

    // Consul's sample payload, and one spelled in lowercase with nulls.
    let s1 = create(
        &cluster,
        c1,
        r#"{"LockDelay": "15s", "Name": "my-service-lock", "Behavior": "release", "TTL": "30s"}"#,
    );
    let s2 = create(
        &cluster,
        c2,
        r#"{"name": "other", "lockdelay": "2s", "ttl": null, "servicechecks": null}"#,
    );
    let (_, info) = json(&cluster, 0, "GET", &format!("/v1/session/info/{s1}"), "");
    let info = &info[0];
    assert_eq!(info["ID"], s1.as_str());
    assert_eq!(info["Name"], "my-service-lock");
    assert_eq!(info["Node"], "c1", "the node of the agent asked");
    assert_eq!(info["LockDelay"], 15_000_000_000u64);
    assert_eq!(info["Behavior"], "release");
    assert_eq!(info["TTL"], "30s");
    assert_eq!(info["NodeChecks"], serde_json::json!(["serfHealth"]));
    assert_eq!(info["ServiceChecks"], Value::Null);
    assert!(info["CreateIndex"].as_u64().is_some_and(|i| i > 0));
    let (_, listed) = json(&cluster, 1, "GET", "/v1/session/list", "");
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let (_, on_c2) = json(&cluster, 2, "GET", "/v1/session/node/c2", "");
    assert_eq!(on_c2[0]["ID"], s2.as_str());
    let (status, none) = json(
        &cluster,
        0,
        "GET",
        "/v1/session/info/00000000-0000-0000-0000-000000000000",
        "",
    );
    assert_eq!((status, none), (200, serde_json::json!([])));

    // Consul's CLI: kv put -acquire / -release with -session.
    let http = cluster.agents[c1].http();
    let (code, out, err) = support::cli(
        &http,
        &[
            "kv",
            "put",
            "-acquire",
            &format!("-session={s1}"),
            "cli/lock",
            "mine",
        ],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "Success! Lock acquired on: cli/lock"),
        "{err}"
    );
    let (code, _, err) = support::cli(
        &http,
        &[
            "kv",
            "put",
            "-acquire",
            &format!("-session={s2}"),
            "cli/lock",
            "theirs",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("Did not acquire lock"), "{err}");
    let (code, out, err) = support::cli(
        &http,
        &[
            "kv",
            "put",
            "-release",
            &format!("-session={s1}"),
            "cli/lock",
            "free",
        ],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "Success! Lock released on: cli/lock"),
        "{err}"
    );

    // Refusals as Consul's.
    let (status, _) = json(&cluster, 0, "PUT", "/v1/session/create", r#"{"TTL": "5s"}"#);
    assert_eq!(status, 400);
    let response = cluster.request(0, "PUT", "/v1/session/create", br#"{"Node": "nowhere"}"#);
    assert_eq!(response.status, 500);
    assert!(
        response.text().contains("Missing node registration"),
        "{}",
        response.text()
    );
    let response = cluster.request(
        0,
        "PUT",
        "/v1/session/create",
        br#"{"NodeChecks": ["nope"]}"#,
    );
    assert!(
        response
            .text()
            .contains("Missing check 'nope' registration"),
        "{}",
        response.text()
    );
    let response = cluster.request(
        0,
        "PUT",
        "/v1/session/renew/00000000-0000-0000-0000-000000000000",
        b"",
    );
    assert_eq!(response.status, 404);
    assert!(response.text().contains("not found"));

    // One holder at a time; LockIndex counts acquisitions; Session shows the holder.
    let put = |agent: usize, query: &str, body: &str| {
        let response = cluster.request(
            agent,
            "PUT",
            &format!("/v1/kv/service/leader?{query}"),
            body.as_bytes(),
        );
        assert_eq!(response.status, 200, "{}", response.text());
        response.text()
    };
    assert_eq!(put(c1, &format!("acquire={s1}"), "c1 leads"), "true");
    assert_eq!(put(c2, &format!("acquire={s2}"), "c2 leads"), "false");
    assert_eq!(put(c2, &format!("release={s2}"), ""), "false");
    let held = kv(&cluster, 0, "service/leader");
    assert_eq!(
        (held["Session"].as_str(), held["LockIndex"].as_u64()),
        (Some(s1.as_str()), Some(1))
    );
    assert_eq!(held["Value"], "YzEgbGVhZHM="); // "c1 leads"
                                               // A blocking read wakes when the lock is released.
    let index = held["ModifyIndex"].as_u64().expect("index");
    let waiter = {
        let client = cluster.agents[1].client();
        std::thread::spawn(move || {
            client.get(&format!("/v1/kv/service/leader?index={index}&wait=20s"))
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(put(c1, &format!("release={s1}"), "c1 done"), "true");
    let woke = waiter.join().expect("thread").expect("answer");
    let entry: Value = woke.json().expect("json");
    assert_eq!(entry[0]["Session"], Value::Null);
    assert_eq!(put(c2, &format!("acquire={s2}"), "c2 leads"), "true");
    assert_eq!(kv(&cluster, 0, "service/leader")["LockIndex"], 2);

    // Destroying the holder releases the key and starts its lock delay (2 s for s2).
    let (status, destroyed) = json(&cluster, 0, "PUT", &format!("/v1/session/destroy/{s2}"), "");
    assert_eq!((status, destroyed), (200, Value::Bool(true)));
    assert_eq!(kv(&cluster, 0, "service/leader")["Session"], Value::Null);
    let released_at = Instant::now();
    assert_eq!(
        put(c1, &format!("acquire={s1}"), "c1 again"),
        "false",
        "within the lock delay"
    );
    let took = cluster.wait_for("the lock delay to end", Duration::from_secs(10), |cl| {
        let response = cl.request(
            c1,
            "PUT",
            &format!("/v1/kv/service/leader?acquire={s1}"),
            b"c1 again",
        );
        (response.text() == "true").then(|| released_at.elapsed())
    });
    assert!(
        took >= Duration::from_millis(1500),
        "acquired {took:?} after the release"
    );

    // Transactions: check-session, unlock, lock, and the session verb.
    let txn = format!(
        r#"[{{"KV": {{"Verb": "check-session", "Key": "service/leader", "Session": "{s1}"}}}},
            {{"KV": {{"Verb": "unlock", "Key": "service/leader", "Value": "", "Session": "{s1}"}}}},
            {{"KV": {{"Verb": "lock", "Key": "service/other", "Value": "eA==", "Session": "{s1}"}}}}]"#
    );
    let (status, answer) = json(&cluster, c2, "PUT", "/v1/txn", &txn);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(kv(&cluster, 0, "service/other")["Session"], s1.as_str());
    let bad = format!(
        r#"[{{"KV": {{"Verb": "check-session", "Key": "service/other", "Session": "{s2}"}}}}]"#
    );
    let (status, answer) = json(&cluster, 0, "PUT", "/v1/txn", &bad);
    assert_eq!(status, 409, "{answer}");
    let end = format!(r#"[{{"Session": {{"Verb": "delete", "Session": {{"ID": "{s1}"}}}}}}]"#);
    let (status, answer) = json(&cluster, 0, "PUT", "/v1/txn", &end);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(kv(&cluster, 0, "service/other")["Session"], Value::Null);

    // A holder whose agent dies: its serfHealth goes critical, the session is invalidated
    // and the lock released; how long that took is printed (the benchmark measures it).
    let s3 = create(&cluster, c2, r#"{"LockDelay": "0s"}"#);
    assert_eq!(put(c2, &format!("acquire={s3}"), "c2 leads"), "true");
    let killed = Instant::now();
    cluster.agents[c2].kill();
    let handed = cluster.wait_for(
        "the dead holder's lock to be released",
        Duration::from_secs(40),
        |cl| {
            let entry: Value = cl.agents[0]
                .client()
                .get("/v1/kv/service/leader")
                .ok()?
                .json()
                .ok()?;
            entry[0]["Session"].is_null().then(|| killed.elapsed())
        },
    );
    println!("lock released {handed:?} after its holder's agent was killed");
    let (_, gone) = json(&cluster, 0, "GET", &format!("/v1/session/info/{s3}"), "");
    assert_eq!(gone, serde_json::json!([]));
}

#[test]
fn ttl_sessions_die_between_ttl_and_twice_ttl_and_renewed_ones_survive_failover() {
    let mut cluster = cluster(151, 1);
    let c1 = 3;
    let idle = create(&cluster, c1, r#"{"TTL": "10s", "LockDelay": "0s"}"#);
    let kept = create(&cluster, c1, r#"{"TTL": "10s"}"#);
    let created = Instant::now();
    assert_eq!(
        cluster
            .request(c1, "PUT", &format!("/v1/kv/ttl/lock?acquire={idle}"), b"x")
            .text(),
        "true"
    );
    let renew = |cluster: &Cluster, agent: usize| {
        let response = cluster.request(agent, "PUT", &format!("/v1/session/renew/{kept}"), b"");
        assert_eq!(response.status, 200, "{}", response.text());
        let renewed: Value = response.json().expect("json");
        assert_eq!(renewed[0]["ID"], kept.as_str());
        assert_eq!(renewed[0]["TTL"], "10s");
    };
    let exists = |cluster: &Cluster, id: &str| {
        let (_, info) = json(
            cluster,
            0,
            "GET",
            &format!("/v1/session/info/{id}?stale"),
            "",
        );
        info.as_array().is_some_and(|a| !a.is_empty())
    };
    // Renew `kept` every 3 s; `idle` never.
    let mut died = None;
    while created.elapsed() < Duration::from_secs(24) {
        renew(&cluster, c1);
        if died.is_none() && !exists(&cluster, &idle) {
            died = Some(created.elapsed());
        }
        std::thread::sleep(Duration::from_millis(if died.is_some() {
            3000
        } else {
            500
        }));
    }
    let died =
        died.unwrap_or_else(|| panic!("the idle session outlived 2 x TTL{}", cluster.logs()));
    assert!(
        died >= Duration::from_secs(10),
        "died after {died:?}, before its TTL"
    );
    assert!(
        died <= Duration::from_secs(21),
        "died after {died:?}, past 2 x TTL"
    );
    assert!(exists(&cluster, &kept), "the renewed session lives");
    // Its lock was released when it died.
    let entry: Value = cluster
        .request(0, "GET", "/v1/kv/ttl/lock", b"")
        .json()
        .expect("json");
    assert_eq!(entry[0]["Session"], Value::Null);

    // The leader dies; the new one re-arms the timers: the renewed session survives.
    let leader = cluster.wait_for_leader_among(&[0, 1, 2]);
    cluster.agents[leader].kill();
    let others: Vec<usize> = [0, 1, 2].into_iter().filter(|i| *i != leader).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let response = cluster.agents[c1]
            .client()
            .put(&format!("/v1/session/renew/{kept}"), b"");
        if let Ok(response) = response {
            assert_ne!(
                response.status,
                404,
                "the session was lost in the failover: {}{}",
                response.text(),
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    cluster.wait_for_leader_among(&others);
    let (_, info) = json(
        &cluster,
        others[0],
        "GET",
        &format!("/v1/session/info/{kept}"),
        "",
    );
    assert_eq!(info[0]["ID"], kept.as_str(), "{}", cluster.logs());
    println!("idle 10 s TTL session invalidated after {died:?}");
}
