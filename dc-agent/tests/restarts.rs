//! Servers that restart: a killed leader must answer no read from a state it has not rebuilt,
//! stale answers carry true `LastContact`/`KnownLeader`, and a server that left and starts
//! again rejoins the Raft configuration as a voter (as Consul's does).

mod support;

use std::time::{Duration, Instant};

use support::Cluster;

/// What a read of `key` answered: `(status, value or error text)`.
fn read(cluster: &Cluster, agent: usize, key: &str, mode: &str) -> (u16, String) {
    let answer = read_with_meta(cluster, agent, key, mode);
    (answer.0, answer.1)
}

/// A read with its `X-Consul-KnownLeader` and `X-Consul-LastContact`.
fn read_with_meta(
    cluster: &Cluster,
    agent: usize,
    key: &str,
    mode: &str,
) -> (u16, String, Option<String>, Option<u64>) {
    let path = format!("/v1/kv/{key}?raw{mode}");
    match cluster.agents[agent].client().get(&path) {
        Ok(response) => (
            response.status,
            response.text(),
            response.header("x-consul-knownleader").map(str::to_owned),
            response
                .header("x-consul-lastcontact")
                .and_then(|v| v.parse().ok()),
        ),
        Err(e) => (0, e, None, None),
    }
}

fn put(cluster: &Cluster, agent: usize, key: &str, value: &str) {
    let response = cluster.request(agent, "PUT", &format!("/v1/kv/{key}"), value.as_bytes());
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "true"),
        "PUT {key} on {}",
        cluster.agents[agent].name
    );
}

#[test]
fn a_restarted_leader_answers_no_read_before_it_catches_up() {
    let mut cluster = Cluster::start(166, 3);
    let old = cluster.wait_for_leader();
    put(&cluster, old, "k", "v1");
    cluster.agents[old].kill();
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let new_leader = cluster.wait_for_leader_among(&others);
    put(&cluster, new_leader, "k", "v2");
    put(&cluster, new_leader, "fresh", "x");

    // The others stop answering: openraft restores the old leader as leader at its old term,
    // and nobody tells it otherwise. It must not answer from what it had persisted.
    for i in &others {
        cluster.agents[*i].signal(libc::SIGSTOP);
    }
    cluster.agents[old].start();
    cluster.wait_for(
        "the restarted server's HTTP API",
        Duration::from_secs(20),
        |c| {
            c.agents[old]
                .client()
                .get("/v1/status/leader")
                .ok()
                .filter(|r| r.status == 200)
        },
    );
    // Default-mode reads need a leader that confirmed its term: refused. A `?stale` read may
    // be answered from what it has (everything it had applied before it stopped), saying
    // that it knows no leader and never heard from one.
    let mut answers = Vec::new();
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        for mode in ["", "&stale"] {
            for key in ["k", "fresh"] {
                answers.push((mode, key, read_with_meta(&cluster, old, key, mode)));
            }
        }
    }
    let refused = |status: u16, text: &str| status == 500 && text == "No cluster leader";
    let wrong: Vec<_> = answers
        .iter()
        .filter(|(mode, key, (status, value, known, contact))| {
            let current = if *key == "k" { "v2" } else { "x" };
            let honest_stale = *mode == "&stale"
                && known.as_deref() == Some("false")
                && contact.is_some_and(|ms| ms > 1_000_000_000)
                && (*status == 200 || *status == 404);
            let right = refused(*status, value)
                || (*status == 200 && value == current && *mode == "&stale")
                || honest_stale;
            !right
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "a restarted server answered {} of {} reads wrongly, as {:?}{}",
        wrong.len(),
        answers.len(),
        wrong.iter().take(4).collect::<Vec<_>>(),
        cluster.logs()
    );
    // It had acknowledged k=v1 before it was killed: it never answers that k is missing.
    assert!(
        answers
            .iter()
            .all(|(_, key, (status, ..))| !(*key == "k" && *status == 404)),
        "k, applied before the restart, was answered as missing"
    );

    // The others come back: the restarted server catches up and answers the current values.
    for i in &others {
        cluster.agents[*i].signal(libc::SIGCONT);
    }
    cluster.wait_for(
        "the restarted server to answer stale reads again",
        Duration::from_secs(30),
        |c| (read(c, old, "k", "&stale") == (200, "v2".to_owned())).then_some(()),
    );
    // Paused servers come back with election timers long run out: let an election settle
    // (it may take more than one round under load), then every mode answers the current
    // values, and never an older one.
    cluster.wait_for_leader();
    for mode in ["", "&stale", "&consistent"] {
        for (key, current) in [("k", "v2"), ("fresh", "x")] {
            cluster.wait_for(
                "a read of the current value",
                Duration::from_secs(30),
                |c| {
                    let answer = read(c, old, key, mode);
                    assert!(
                        answer.0 != 200 || answer.1 == current,
                        "{key}{mode} answered {answer:?}"
                    );
                    (answer == (200, current.to_owned())).then_some(())
                },
            );
        }
    }
    let leader = cluster.wait_for_leader();
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let stale = cluster.request(follower, "GET", "/v1/kv/k?stale", b"");
    assert_eq!(stale.header("x-consul-knownleader"), Some("true"));
    let contact: u64 = stale
        .header("x-consul-lastcontact")
        .and_then(|v| v.parse().ok())
        .expect("X-Consul-LastContact");
    assert!(contact < 5_000, "a follower of a live leader: {contact} ms");

    // Alone, the follower keeps answering stale reads, and says how stale they are.
    for i in (0..3).filter(|i| *i != follower) {
        cluster.agents[i].signal(libc::SIGSTOP);
    }
    let paused = Instant::now();
    // Once it gives up on its leader (an election timeout, then it stands), it says so; the
    // whole time, LastContact grows with the silence.
    cluster.wait_for(
        "a lone follower to say it knows no leader",
        Duration::from_secs(15),
        |c| {
            let alone = c.request(follower, "GET", "/v1/kv/k?stale", b"");
            assert_eq!(alone.status, 200, "{}", alone.text());
            let contact: u64 = alone
                .header("x-consul-lastcontact")
                .and_then(|v| v.parse().ok())
                .expect("X-Consul-LastContact");
            let silent = paused.elapsed().as_millis() as u64;
            assert!(
                contact + 1_000 >= silent.saturating_sub(1_000),
                "no leader for {silent} ms, yet LastContact {contact} ms"
            );
            (alone.header("x-consul-knownleader") == Some("false") && contact >= 2_000)
                .then_some(())
        },
    );
    for i in (0..3).filter(|i| *i != follower) {
        cluster.agents[i].signal(libc::SIGCONT);
    }
}

#[test]
fn a_server_that_left_and_restarts_rejoins_as_a_voter() {
    let mut cluster = Cluster::start(167, 3);
    let leader = cluster.wait_for_leader();
    // The leader leaves: it hands over leadership, and its log may end in the joint
    // configuration that still names it a voter.
    let leaver = leader;
    let response = cluster.request(leaver, "PUT", "/v1/agent/leave", b"");
    assert_eq!(response.status, 200, "{}", response.text());
    cluster.wait_for(
        "the server to leave and stop",
        Duration::from_secs(30),
        |c| {
            let voters = (0..3)
                .filter(|i| *i != leaver)
                .filter_map(|i| {
                    c.agents[i]
                        .client()
                        .get("/v1/operator/raft/configuration")
                        .ok()
                        .filter(|r| r.status == 200)
                })
                .find_map(|r| r.json::<serde_json::Value>().ok())?["Servers"]
                .as_array()?
                .len();
            (voters == 2).then_some(())
        },
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.agents[leaver].is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !cluster.agents[leaver].is_running(),
        "leave stops the agent"
    );
    let others: Vec<usize> = (0..3).filter(|i| *i != leaver).collect();
    let leader = cluster.wait_for_leader_among(&others);
    put(&cluster, leader, "while-away", "1");

    cluster.agents[leaver].start();
    let name = cluster.agents[leaver].name.clone();
    cluster.wait_for(
        "the server back in the Raft configuration as a voter",
        Duration::from_secs(60),
        |c| {
            let configuration: serde_json::Value = (0..3)
                .filter(|i| *i != leaver)
                .filter_map(|i| {
                    c.agents[i]
                        .client()
                        .get("/v1/operator/raft/configuration")
                        .ok()
                        .filter(|r| r.status == 200)
                })
                .find_map(|r| r.json().ok())?;
            let servers = configuration["Servers"].as_array()?;
            (servers.len() == 3
                && servers
                    .iter()
                    .any(|s| s["Node"] == name.as_str() && s["Voter"] == true))
            .then_some(())
        },
    );
    // It knows the leader, takes writes and has the data written while it was away.
    put(&cluster, leaver, "back", "1");
    cluster.wait_for("its own stale read", Duration::from_secs(20), |c| {
        (read(c, leaver, "while-away", "&stale") == (200, "1".to_owned())).then_some(())
    });
    cluster.wait_for_leader();
    let status = cluster.request(leaver, "GET", "/v1/status/peers", b"");
    let peers: Vec<String> = status.json().expect("peers");
    assert_eq!(peers.len(), 3, "{peers:?}");
}
