//! One datacenter of three real `dc-agent` servers, driven over HTTP and the CLI.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use expect_test::expect;
use support::{cli, Cluster};
use wire::api::KvPair;

/// Replaces the numbers after `Index` fields, which depend on how many elections happened.
fn redact_indexes(text: &str) -> String {
    text.lines()
        .map(|line| {
            // The first line of a command's output carries its exit code: `[0] CreateIndex 4`.
            let (code, rest) = match line.split_once("] ") {
                Some((code, rest)) if code.starts_with('[') => (format!("{code}] "), rest),
                _ => (String::new(), line),
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            if words.len() == 2 && words[0].ends_with("Index") && words[0] != "LockIndex" {
                // Raft indexes depend on how many entries (serfHealth, autopilot) came first.
                return format!("{code}{:<17}N", words[0]);
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn run_cli(addr: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = cli(addr, args);
    format!("$ kv {}\n[{code}] {stdout}{stderr}", args[1..].join(" "))
}

#[test]
fn three_servers_elect_one_leader_and_serve_the_tutorial_kv_session() {
    let mut cluster = Cluster::start(71, 3);
    let leader = cluster.wait_for_leader();
    let follower = cluster.agents[(leader + 1) % 3].http();

    let (code, peers, _) = cli(&follower, &["operator", "raft", "list-peers"]);
    assert_eq!(code, 0, "{peers}");
    assert_eq!(peers.lines().count(), 4, "{peers}");
    assert_eq!(peers.matches("leader").count(), 1, "{peers}");
    assert_eq!(peers.matches("follower").count(), 2, "{peers}");

    // The KV session of the seed tutorial, through a follower (writes are forwarded).
    let mut transcript = String::new();
    for args in [
        &["kv", "put", "redis/config/minconns", "1"][..],
        &["kv", "put", "redis/config/maxconns", "25"],
        &[
            "kv",
            "put",
            "-flags=42",
            "redis/config/users/admin",
            "abcd1234",
        ],
        &["kv", "get", "redis/config/minconns"],
        &["kv", "get", "-detailed", "redis/config/users/admin"],
        &["kv", "get", "-recurse", "redis"],
        &["kv", "delete", "redis/config/minconns"],
        &["kv", "get", "redis/config/minconns"],
        &["kv", "delete", "-recurse", "redis"],
        &["kv", "get", "-recurse", "redis"],
        &["kv", "put", "foo", "bar"],
    ] {
        transcript.push_str(&run_cli(&follower, args));
    }
    expect![[r#"
        $ kv put redis/config/minconns 1
        [0] Success! Data written to: redis/config/minconns
        $ kv put redis/config/maxconns 25
        [0] Success! Data written to: redis/config/maxconns
        $ kv put -flags=42 redis/config/users/admin abcd1234
        [0] Success! Data written to: redis/config/users/admin
        $ kv get redis/config/minconns
        [0] 1
        $ kv get -detailed redis/config/users/admin
        [0] CreateIndex      N
        Flags            42
        Key              redis/config/users/admin
        LockIndex        0
        ModifyIndex      N
        Session          -
        Value            abcd1234
        $ kv get -recurse redis
        [0] redis/config/maxconns:25
        redis/config/minconns:1
        redis/config/users/admin:abcd1234
        $ kv delete redis/config/minconns
        [0] Success! Deleted key: redis/config/minconns
        $ kv get redis/config/minconns
        [1] Error! No key exists at: redis/config/minconns
        $ kv delete -recurse redis
        [0] Success! Deleted keys with prefix: redis
        $ kv get -recurse redis
        [0] $ kv put foo bar
        [0] Success! Data written to: foo
    "#]]
    .assert_eq(&redact_indexes(&transcript));

    // CAS: succeeds at the current index, fails once the index has moved.
    let (_, detailed, _) = cli(&follower, &["kv", "get", "-detailed", "foo"]);
    let index: u64 = detailed
        .lines()
        .find_map(|l| l.strip_prefix("ModifyIndex"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ModifyIndex in {detailed}"));
    let modify_index = format!("-modify-index={index}");
    assert_eq!(
        cli(
            &follower,
            &["kv", "put", "-cas", &modify_index, "foo", "zip"]
        ),
        (0, "Success! Data written to: foo\n".into(), String::new())
    );
    assert_eq!(
        cli(
            &follower,
            &[
                "kv",
                "put",
                "--cas",
                "--modify-index",
                &index.to_string(),
                "foo",
                "zap"
            ]
        ),
        (
            1,
            String::new(),
            "Error! Did not write to foo: CAS failed\n".into()
        )
    );
    assert_eq!(cli(&follower, &["kv", "get", "foo"]).1, "zip\n");
}

#[test]
fn a_leader_killed_with_sigkill_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(72, 3);
    let leader = cluster.wait_for_leader();
    let writer_agent = (leader + 1) % 3;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let client = cluster.agents[writer_agent].client();
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("acked/{n:05}");
                if let Ok(response) = client.put(&format!("/v1/kv/{key}"), n.to_string().as_bytes())
                {
                    if response.status == 200 && response.text() == "true" {
                        acknowledged.lock().expect("not poisoned").push(key);
                    }
                }
                n += 1;
            }
        })
    };
    cluster.wait_for("some acknowledged writes", Duration::from_secs(20), |_| {
        (acknowledged.lock().expect("not poisoned").len() >= 30).then_some(())
    });
    cluster.agents[leader].kill();
    let new_leader = cluster.wait_for_leader();
    assert_ne!(new_leader, leader);
    let before = acknowledged.lock().expect("not poisoned").len();
    cluster.wait_for(
        "writes acknowledged by the new leader",
        Duration::from_secs(20),
        |_| (acknowledged.lock().expect("not poisoned").len() >= before + 20).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");

    let response = cluster.request(new_leader, "GET", "/v1/kv/acked/?recurse&consistent", b"");
    assert_eq!(response.status, 200);
    let stored: BTreeSet<String> = response
        .json::<Vec<KvPair>>()
        .expect("kv list")
        .into_iter()
        .map(|p| p.key)
        .collect();
    let acknowledged = acknowledged.lock().expect("not poisoned");
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|key| !stored.contains(*key))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

#[test]
fn data_survives_a_restart_of_every_server() {
    let mut cluster = Cluster::start(73, 3);
    let leader = cluster.wait_for_leader();
    for n in 0..20 {
        let response = cluster.request(
            leader,
            "PUT",
            &format!("/v1/kv/keep/{n}"),
            format!("value-{n}").as_bytes(),
        );
        assert_eq!(response.text(), "true");
    }
    let register = br#"{"Node":"web-1","Address":"10.1.2.3","Service":{"Service":"web","Port":80,"Tags":["v1"]}}"#;
    assert_eq!(
        cluster
            .request(leader, "PUT", "/v1/catalog/register", register)
            .text(),
        "true"
    );
    for agent in &mut cluster.agents {
        agent.stop();
    }
    for agent in &mut cluster.agents {
        agent.start();
    }
    let leader = cluster.wait_for_leader();
    let entries: Vec<KvPair> = cluster
        .request(leader, "GET", "/v1/kv/keep/?recurse", b"")
        .json()
        .expect("kv list");
    assert_eq!(entries.len(), 20);
    assert!(
        entries
            .iter()
            .all(|e| String::from_utf8_lossy(&e.value)
                == format!("value-{}", &e.key["keep/".len()..]))
    );
    let service = cluster.request(leader, "GET", "/v1/catalog/service/web", b"");
    let instances: Vec<wire::api::CatalogServiceEntry> = service.json().expect("service list");
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].address, "10.1.2.3");
}

#[test]
fn a_follower_answers_stale_reads_without_a_leader() {
    let mut cluster = Cluster::start(74, 3);
    let leader = cluster.wait_for_leader();
    assert_eq!(
        cluster
            .request(leader, "PUT", "/v1/kv/greeting", b"hello")
            .text(),
        "true"
    );
    let survivor = (leader + 1) % 3;
    cluster.wait_for(
        "the write to reach the survivor",
        Duration::from_secs(10),
        |c| {
            let response = c.request(survivor, "GET", "/v1/kv/greeting?stale", b"");
            (response.status == 200).then_some(())
        },
    );
    for i in 0..3 {
        if i != survivor {
            cluster.agents[i].kill();
        }
    }
    // No quorum: a default read has no leader to go to, a stale read is answered locally.
    cluster.wait_for(
        "the survivor to lose its leader",
        Duration::from_secs(20),
        |c| {
            let response = c.request(survivor, "GET", "/v1/kv/greeting", b"");
            (response.status == 500 && response.text() == "No cluster leader").then_some(())
        },
    );
    let stale = cluster.request(survivor, "GET", "/v1/kv/greeting?stale", b"");
    assert_eq!(stale.status, 200);
    assert_eq!(
        stale.header("x-consul-effective-consistency"),
        Some("stale")
    );
    assert_eq!(stale.header("x-consul-knownleader"), Some("false"));
    let pairs: Vec<KvPair> = stale.json().expect("kv");
    assert_eq!(pairs[0].value, b"hello");
}

#[test]
fn a_blocking_query_wakes_on_its_key_and_not_on_others() {
    let mut cluster = Cluster::start(75, 3);
    let leader = cluster.wait_for_leader();
    let follower = (leader + 1) % 3;
    assert_eq!(
        cluster
            .request(leader, "PUT", "/v1/kv/watched", b"v1")
            .text(),
        "true"
    );
    let first = cluster.request(follower, "GET", "/v1/kv/watched", b"");
    let index: u64 = first
        .header("x-consul-index")
        .and_then(|i| i.parse().ok())
        .expect("an index");

    // Writes elsewhere only: the query returns at its wait with the same index.
    let client = cluster.agents[follower].client();
    let quiet =
        std::thread::spawn(move || client.get(&format!("/v1/kv/watched?index={index}&wait=2s")));
    for n in 0..5 {
        assert_eq!(
            cluster
                .request(leader, "PUT", &format!("/v1/kv/elsewhere/{n}"), b"x")
                .text(),
            "true"
        );
    }
    let quiet = quiet.join().expect("thread").expect("response");
    assert_eq!(
        quiet.header("x-consul-index"),
        Some(index.to_string().as_str())
    );
    assert_eq!(quiet.json::<Vec<KvPair>>().expect("kv")[0].value, b"v1");

    // A write to the key wakes it with the new value and a higher index.
    let client = cluster.agents[follower].client();
    let woken =
        std::thread::spawn(move || client.get(&format!("/v1/kv/watched?index={index}&wait=60s")));
    assert_eq!(
        cluster
            .request(leader, "PUT", "/v1/kv/elsewhere/more", b"x")
            .text(),
        "true"
    );
    assert_eq!(
        cluster
            .request(leader, "PUT", "/v1/kv/watched", b"v2")
            .text(),
        "true"
    );
    let woken = woken.join().expect("thread").expect("response");
    let new_index: u64 = woken
        .header("x-consul-index")
        .and_then(|i| i.parse().ok())
        .expect("an index");
    assert!(new_index > index);
    assert_eq!(woken.json::<Vec<KvPair>>().expect("kv")[0].value, b"v2");
}

#[test]
fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let mut cluster = Cluster::start(76, 3);
    let leader = cluster.wait_for_leader();
    let follower = (leader + 1) % 3;
    let mut transcript = String::new();
    let big = vec![b'x'; 600 * 1024];
    for (method, path, body) in [
        (
            "PUT",
            "/v1/catalog/register",
            &b"{\"Node\": \"n1\", \"Address\": "[..],
        ),
        (
            "PUT",
            "/v1/txn",
            b"[{\"KV\": {\"Verb\": \"set\", \"Key\": \"t\", \"Value\": \"not base64!\"}}]",
        ),
        (
            "PUT",
            "/v1/txn",
            b"[{\"KV\": {\"Verb\": \"frobnicate\", \"Key\": \"t\"}}]",
        ),
        ("GET", "/v1/kv/foo?index=abc", b""),
        ("GET", "/v1/kv/foo?index=1&wait=forever", b""),
        ("GET", "/v1/kv/foo?stale&consistent", b""),
        ("PUT", "/v1/kv/big", &big),
        ("PUT", "/v1/kv/", b"value"),
        ("PUT", "/v1/kv/bad%01key", b"value"),
        ("PUT", "/v1/kv/flagged?flags=lots", b"value"),
        ("PUT", "/v1/kv/casd?cas=-1", b"value"),
        ("GET", "/v1/health/state/sideways", b""),
        ("GET", "/v1/kv/foo?dc=dc2", b""),
    ] {
        let response = cluster.request(follower, method, path, body);
        let shown_path = if path == "/v1/kv/big" {
            "/v1/kv/big (600 KiB)"
        } else {
            path
        };
        transcript.push_str(&format!(
            "{method} {shown_path}\n  {} {}\n",
            response.status,
            response.text().trim()
        ));
    }
    // The same limits on every path that names a key or carries a value.
    let long_key = "k".repeat(1024 * 1024);
    let big_value = "eHh4".repeat(180 * 1024);
    for (label, method, path, body) in [
        (
            "PUT /v1/txn (a 1 MiB key)",
            "PUT",
            "/v1/txn".to_owned(),
            format!(r#"[{{"KV": {{"Verb": "set", "Key": "{long_key}", "Value": "eA=="}}}}]"#),
        ),
        (
            "PUT /v1/txn (a 540 KiB value)",
            "PUT",
            "/v1/txn".to_owned(),
            format!(r#"[{{"KV": {{"Verb": "set", "Key": "t", "Value": "{big_value}"}}}}]"#),
        ),
        (
            "PUT /v1/kv/kkk... (a 20,000-byte key)",
            "PUT",
            format!("/v1/kv/{}", "k".repeat(20_000)),
            "v".to_owned(),
        ),
    ] {
        let response = cluster.request(follower, method, &path, body.as_bytes());
        transcript.push_str(&format!(
            "{label}\n  {} {}\n",
            response.status,
            response.text().trim()
        ));
    }
    expect![[r#"
        PUT /v1/catalog/register
          400 Request decode failed: EOF while parsing a value at line 1 column 26
        PUT /v1/txn
          400 Failed to parse body: Value is not valid base64: Invalid symbol 32, offset 3.
        PUT /v1/txn
          400 operation 0: unknown KV verb "frobnicate"
        GET /v1/kv/foo?index=abc
          400 Invalid index: "abc" is not a number
        GET /v1/kv/foo?index=1&wait=forever
          400 Invalid wait time: invalid duration "forever"; expected a number and a unit, such as "10s" or "1m30s"
        GET /v1/kv/foo?stale&consistent
          400 Cannot specify ?stale with ?consistent, conflicting semantics.
        PUT /v1/kv/big (600 KiB)
          413 Value of 614400 bytes exceeds the 524288-byte limit (kv_max_value_size)
        PUT /v1/kv/
          400 Missing key name
        PUT /v1/kv/bad%01key
          400 Invalid key: it contains the control character '\u{1}'
        PUT /v1/kv/flagged?flags=lots
          400 Invalid flags: "lots" is not a number
        PUT /v1/kv/casd?cas=-1
          400 Invalid cas: "-1" is not a number
        GET /v1/health/state/sideways
          400 Invalid check state "sideways": use any, passing, warning or critical
        GET /v1/kv/foo?dc=dc2
          500 No path to datacenter "dc2": this server has no gateway (isthmus.gateways)
        PUT /v1/txn (a 1 MiB key)
          413 operation 0: Key of 1048576 bytes exceeds the 16384-byte limit on key names
        PUT /v1/txn (a 540 KiB value)
          413 operation 0: value of 552960 bytes exceeds the 524288-byte limit (kv_max_value_size)
        PUT /v1/kv/kkk... (a 20,000-byte key)
          413 Key of 20000 bytes exceeds the 16384-byte limit on key names
    "#]]
    .assert_eq(&transcript);
    let everything = cluster.request(leader, "GET", "/v1/kv/?recurse", b"");
    assert_eq!(
        everything.status,
        404,
        "nothing was stored: {}",
        everything.text()
    );
    // The longest key a transaction takes reads back through /v1/kv, percent-encoded.
    let longest: String = format!("k{}", " ".repeat(wire::records::MAX_KEY_LEN - 1));
    let body = serde_json::json!([{"KV": {"Verb": "set", "Key": longest, "Value": "eA=="}}]);
    let response = cluster.request(follower, "PUT", "/v1/txn", body.to_string().as_bytes());
    assert_eq!(response.status, 200, "{}", response.text());
    let encoded = dc_agent::client::encode_key(&longest);
    let read = cluster.request(follower, "GET", &format!("/v1/kv/{encoded}?raw"), b"");
    assert_eq!((read.status, read.text().as_str()), (200, "x"));
    let response = cluster.request(follower, "DELETE", &format!("/v1/kv/{encoded}"), b"");
    assert_eq!(response.status, 200, "{}", response.text());
    let nodes: Vec<wire::api::CatalogNode> = cluster
        .request(leader, "GET", "/v1/catalog/nodes", b"")
        .json()
        .expect("nodes");
    // Only the servers themselves (they register through anti-entropy and gossip); the
    // malformed registration of n1 stored nothing.
    assert!(nodes.iter().all(|n| n.node != "n1"), "{nodes:?}");
    // The servers keep serving.
    assert_eq!(
        cluster
            .request(follower, "PUT", "/v1/kv/after", b"fine")
            .text(),
        "true"
    );
    assert!(cluster.agents.iter_mut().all(|a| a.is_running()));
}

#[test]
fn a_late_server_joins_from_a_snapshot_and_a_leaving_server_is_removed() {
    let mut cluster = Cluster::render(77, 4, "extra = { raft_snapshot_threshold = 40 }");
    for agent in &cluster.agents {
        agent.edit_config(|config| config["bootstrap_expect"] = 3.into());
    }
    for agent in &mut cluster.agents[..3] {
        agent.start();
    }
    let leader = cluster.wait_for_leader();
    for n in 0..120 {
        assert_eq!(
            cluster
                .request(leader, "PUT", &format!("/v1/kv/bulk/{n:03}"), b"data")
                .text(),
            "true"
        );
    }
    // The log was compacted into a snapshot.
    cluster.wait_for("a snapshot on the leader", Duration::from_secs(20), |c| {
        let info: serde_json::Value = c
            .request(leader, "GET", "/v1/agent/self", b"")
            .json()
            .ok()?;
        let index: u64 = info["Stats"]["raft"]["last_snapshot_index"]
            .as_str()?
            .parse()
            .ok()?;
        (index > 0).then_some(())
    });

    // s4 starts, finds the cluster through retry_join, catches up and becomes a voter.
    cluster.agents[3].start();
    cluster.wait_for("s4 to become a voter", Duration::from_secs(30), |c| {
        let configuration: wire::api::RaftConfiguration = c
            .request(leader, "GET", "/v1/operator/raft/configuration", b"")
            .json()
            .ok()?;
        configuration
            .servers
            .iter()
            .any(|s| s.node == "s4" && s.voter)
            .then_some(())
    });
    cluster.wait_for("s4 to hold the data", Duration::from_secs(20), |c| {
        let response = c.request(3, "GET", "/v1/kv/bulk/?keys&stale", b"");
        (response.json::<Vec<String>>().ok()?.len() == 120).then_some(())
    });

    // A follower leaves: it is removed from the configuration and its process stops.
    let leaving = (0..3).find(|i| *i != leader).expect("a follower");
    let (code, stdout, stderr) = cli(&cluster.agents[leaving].http(), &["leave"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "Graceful leave complete\n"),
        "{stderr}"
    );
    let leaving_name = cluster.agents[leaving].name.clone();
    cluster.wait_for("the leaver to be removed", Duration::from_secs(45), |c| {
        let configuration: wire::api::RaftConfiguration = c
            .request(leader, "GET", "/v1/operator/raft/configuration", b"")
            .json()
            .ok()?;
        (configuration.servers.len() == 3
            && configuration.servers.iter().all(|s| s.node != leaving_name))
        .then_some(())
    });
    let mut exited = false;
    for _ in 0..200 {
        if !cluster.agents[leaving].is_running() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        exited,
        "the agent should stop after leaving{}",
        cluster.logs()
    );
    assert_eq!(
        cluster
            .request(leader, "PUT", "/v1/kv/after-leave", b"ok")
            .text(),
        "true"
    );
}

#[test]
fn servers_of_another_federation_are_refused_counted_and_logged_once() {
    let mut cluster = Cluster::start(79, 3);
    let leader = cluster.wait_for_leader();
    // A server of another federation (its own CA) points its retry_join at this cluster.
    // The dialling side checks the answering server's certificate first (TLS 1.3), so the
    // intruder is the one that refuses, counts and logs; the pki handshake tests cover the
    // answering side refusing a client certificate.
    let mut intruders = Cluster::render(80, 1, "");
    intruders.agents[0].edit_config(|config| {
        config["bootstrap_expect"] = 3.into();
        config["retry_join"] = serde_json::json!(["127.79.0.1", "127.79.0.2", "127.79.0.3"]);
    });
    intruders.agents[0].start();
    intruders.wait_for("refusals to be counted", Duration::from_secs(20), |c| {
        let metrics = c.agents[0]
            .client()
            .get("/v1/agent/metrics?format=prometheus")
            .ok()?
            .text();
        metrics
            .lines()
            .find(|l| l.starts_with("isthmus_tls_rejected_total{reason=\"unknown_ca\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .filter(|count| *count >= 3)
    });
    let log = std::fs::read_to_string(&intruders.agents[0].log).expect("log");
    assert_eq!(
        log.matches("refused a peer certificate").count(),
        1,
        "logged once, then only counted:\n{log}"
    );
    assert!(log.contains("not by this federation's CA"), "{log}");
    let configuration: wire::api::RaftConfiguration = cluster
        .request(leader, "GET", "/v1/operator/raft/configuration", b"")
        .json()
        .expect("configuration");
    assert_eq!(configuration.servers.len(), 3);
    assert!(cluster.agents.iter_mut().all(|a| a.is_running()));
}

#[test]
fn lan_gossip_shows_alive_left_and_failed_members_and_drops_foreign_keys() {
    // Five servers: after one leaves and one is killed, three still make a quorum, so the
    // leader can still record what gossip saw.
    let mut cluster = Cluster::start(88, 5);
    // Another federation's server (its own CA and gossip key) gossips at this pool: its
    // packets are dropped and counted, it never becomes a member.
    let mut intruders = Cluster::render(89, 1, "");
    intruders.agents[0].edit_config(|config| {
        config["encrypt"] = wire::gossip_key::encode(&[9u8; 32]).into();
        config["retry_join"] = serde_json::json!(["127.88.0.1", "127.88.0.2", "127.88.0.3"]);
        config["bootstrap_expect"] = 3.into();
    });
    intruders.agents[0].start();
    cluster.wait_for_leader();
    let statuses = |c: &Cluster, from: usize| -> Option<Vec<String>> {
        let (code, out, _) = cli(&c.agents[from].http(), &["members"]);
        (code == 0).then(|| {
            out.lines()
                .skip(1)
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .collect()
        })
    };
    cluster.wait_for(
        "five alive servers in everyone's view",
        Duration::from_secs(20),
        |c| {
            let expected = [
                "s1 127.88.0.1:8301 alive",
                "s2 127.88.0.2:8301 alive",
                "s3 127.88.0.3:8301 alive",
                "s4 127.88.0.4:8301 alive",
                "s5 127.88.0.5:8301 alive",
            ];
            (0..5)
                .all(|i| statuses(c, i).as_deref() == Some(&expected.map(str::to_owned)[..]))
                .then_some(())
        },
    );
    cluster.wait_for(
        "s4's packets to be dropped for their key",
        Duration::from_secs(20),
        |c| {
            let metrics = c
                .request(0, "GET", "/v1/agent/metrics?format=prometheus", b"")
                .text();
            metrics
                .contains("isthmus_gossip_dropped_packets_total{pool=\"lan\",reason=\"no_key\"}")
                .then_some(())
        },
    );
    // And the log says why, in words an operator can act on.
    let log = std::fs::read_to_string(&cluster.agents[0].log).expect("log");
    assert!(
        log.contains("gossip keys (encrypt, keyring) probably differ"),
        "{log}"
    );

    // A graceful leave shows as left; a kill -9 as failed.
    let leader = cluster.wait_for_leader();
    let leaving = (0..5).find(|i| *i != leader).expect("a follower");
    let (code, _, stderr) = cli(&cluster.agents[leaving].http(), &["leave"]);
    assert_eq!(code, 0, "{stderr}");
    let leaving_name = cluster.agents[leaving].name.clone();
    cluster.wait_for("the leaver to show as left", Duration::from_secs(20), |c| {
        statuses(c, leader)?
            .iter()
            .any(|l| l.starts_with(&leaving_name) && l.ends_with(" left"))
            .then_some(())
    });
    cluster.wait_for(
        "the leaver's node to leave the catalog",
        Duration::from_secs(20),
        |c| {
            let nodes: Vec<wire::api::CatalogNode> = c
                .request(leader, "GET", "/v1/catalog/nodes", b"")
                .json()
                .ok()?;
            (!nodes.is_empty() && nodes.iter().all(|n| n.node != leaving_name)).then_some(())
        },
    );
    let victim = (0..5)
        .find(|i| *i != leader && *i != leaving)
        .expect("another server");
    // A service on the victim, in DNS while its node is alive.
    let web = cluster.request(
        victim,
        "PUT",
        "/v1/agent/service/register",
        br#"{"Name":"web","Port":80}"#,
    );
    assert_eq!(web.status, 200);
    let victim_ip = cluster.agents[victim].address.clone();
    let leader_ip = cluster.agents[leader].address.clone();
    let dig_web = || {
        let output = std::process::Command::new("dig")
            .args([
                &format!("@{leader_ip}"),
                "-p",
                "8600",
                "+time=2",
                "+tries=1",
                "web.service.consul",
                "+short",
            ])
            .output()
            .expect("dig is missing: install Debian's dnsutils (scripts/test.sh does)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    cluster.wait_for("web in DNS", Duration::from_secs(20), |_| {
        (dig_web() == format!("{victim_ip}\n")).then_some(())
    });
    cluster.agents[victim].kill();
    let victim_name = cluster.agents[victim].name.clone();
    cluster.wait_for(
        "the killed server to show as failed",
        Duration::from_secs(30),
        |c| {
            statuses(c, leader)?
                .iter()
                .any(|l| l.starts_with(&victim_name) && l.ends_with(" failed"))
                .then_some(())
        },
    );
    // Its serfHealth turns critical, so its services leave DNS.
    cluster.wait_for(
        "web out of DNS once its node failed",
        Duration::from_secs(20),
        |c| {
            let checks: Vec<serde_json::Value> = c
                .request(
                    leader,
                    "GET",
                    &format!("/v1/health/node/{victim_name}"),
                    b"",
                )
                .json()
                .ok()?;
            let serf = checks
                .iter()
                .find(|check| check["CheckID"] == "serfHealth")?;
            (serf["Status"] == "critical" && dig_web().is_empty()).then_some(())
        },
    );
    let (_, failed_only, _) = cli(
        &cluster.agents[leader].http(),
        &["members", "-status=failed"],
    );
    assert_eq!(failed_only.lines().count(), 2, "{failed_only}");

    // force-leave: the failed node becomes left everywhere and leaves the catalog.
    let http = cluster.agents[leader].http();
    assert_eq!(cli(&http, &["force-leave", &victim_name]).0, 0);
    cluster.wait_for(
        "the force-left node to show as left and leave the catalog",
        Duration::from_secs(20),
        |c| {
            let left = statuses(c, leader)?
                .iter()
                .any(|l| l.starts_with(&victim_name) && l.ends_with(" left"));
            let nodes: Vec<wire::api::CatalogNode> = c
                .request(leader, "GET", "/v1/catalog/nodes", b"")
                .json()
                .ok()?;
            (left && nodes.iter().all(|n| n.node != victim_name)).then_some(())
        },
    );
    let (code, _, error) = cli(&http, &["force-leave", "s1"]);
    assert_eq!(code, 1, "an alive node cannot be force-left");
    assert!(error.contains("that has failed"), "{error}");
}
