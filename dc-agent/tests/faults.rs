//! Faults under load, with every client operation recorded and each key's history checked
//! for linearizability (`lincheck`): three servers, four clients writing unique values and
//! reading with `?consistent` through any server, while a nemesis kills (`kill -9`) and
//! pauses (`SIGSTOP`) leaders and followers and brings them back. Acknowledged writes must
//! all be there, and no read may see the past.
//!
//! CI runs it for 25 s; `scripts/soak.sh` runs it as long as `ISTHMUS_SOAK_SECONDS` says and
//! prints the figures `RELIABILITY.md` records.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dc_agent::client::ApiClient;
use lincheck::{Entry, Op};
use support::load::{self, Rng, Shared, Target};
use support::Cluster;

const KEYS: u64 = 3;
const CLIENTS: u64 = 4;

/// The index of the leader the running servers name, if any answers.
fn leader_of(cluster: &mut Cluster) -> Option<usize> {
    let running: Vec<usize> = (0..cluster.agents.len())
        .filter(|i| cluster.agents[*i].is_running())
        .collect();
    for i in running {
        let client = ApiClient::new(&cluster.agents[i].http(), Duration::from_secs(1));
        let Ok(response) = client.get("/v1/status/leader") else {
            continue;
        };
        let leader: String = response.json().unwrap_or_default();
        if let Some(index) = cluster
            .agents
            .iter()
            .position(|a| !leader.is_empty() && leader.starts_with(&format!("{}:", a.address)))
        {
            return Some(index);
        }
    }
    None
}

#[test]
fn histories_stay_linearizable_through_kills_and_pauses() {
    let seconds: u64 = std::env::var("ISTHMUS_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let mut cluster = Cluster::start(169, 3);
    cluster.wait_for_leader();
    let addresses: Vec<String> = cluster.agents.iter().map(|a| a.http()).collect();
    let shared = Shared::new();
    let started = shared.started;
    let target = Target {
        addresses,
        dc: None,
        label: String::new(),
        acknowledged: Default::default(),
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (target, shared) = (target.clone(), shared.clone());
            std::thread::spawn(move || load::client(id, vec![target], KEYS, shared))
        })
        .collect();

    // The nemesis: one fault every few seconds, each healed before the next.
    let mut rng = Rng(0xC0FF_EE00_D15E_A5E5);
    let mut faults = Vec::new();
    let end = started + Duration::from_secs(seconds);
    while Instant::now() + Duration::from_secs(4) < end {
        std::thread::sleep(Duration::from_millis(1_000 + rng.below(1_000)));
        let Some(leader) = leader_of(&mut cluster) else {
            continue;
        };
        let follower = (leader + 1 + rng.below(2) as usize) % 3;
        let (victim, what) = match rng.below(4) {
            0 => (leader, "kill -9 the leader"),
            1 => (follower, "kill -9 a follower"),
            2 => (leader, "SIGSTOP the leader"),
            _ => (follower, "SIGSTOP a follower"),
        };
        if what.starts_with("kill") {
            cluster.agents[victim].kill();
            std::thread::sleep(Duration::from_millis(1_500 + rng.below(1_000)));
            cluster.agents[victim].start();
        } else {
            cluster.agents[victim].signal(libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(1_500 + rng.below(1_000)));
            cluster.agents[victim].signal(libc::SIGCONT);
        }
        faults.push(what);
    }
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }

    // Every key read once more, after everything healed.
    cluster.wait_for_leader();
    let mut history = shared.history.lock().expect("history").clone();
    for k in 0..KEYS {
        let key = format!("lin/{k}");
        let invoked = started.elapsed().as_nanos() as u64;
        // Only an answer is information: 200 or 404, asked again until one comes.
        let seen = cluster.wait_for("a final read", Duration::from_secs(30), |c| {
            let response = c.agents[0]
                .client()
                .get(&format!("/v1/kv/{key}?consistent&raw"))
                .ok()?;
            match response.status {
                200 => Some(Some(response.text().parse::<u64>().ok()?)),
                404 => Some(None),
                _ => None,
            }
        });
        history.push(Entry {
            key,
            op: Op::Read(seen),
            invoked,
            returned: Some(started.elapsed().as_nanos() as u64),
        });
    }
    let acknowledged = load::verdict("faults", &shared, &history, &faults, seconds, || {
        cluster.logs()
    });
    assert!(faults.len() >= 3, "the nemesis ran: {faults:?}");
    assert!(acknowledged >= 50, "the clients wrote: {acknowledged}");
}
