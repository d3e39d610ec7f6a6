//! Faults under load, with every client operation recorded and each key's history checked
//! for linearizability (`lincheck`): three servers, four clients writing unique values and
//! reading with `?consistent` through any server, while a nemesis kills (`kill -9`) and
//! pauses (`SIGSTOP`) leaders and followers and brings them back. Acknowledged writes must
//! all be there, and no read may see the past.
//!
//! CI runs it for 25 s; `scripts/soak.sh` runs it as long as `ISTHMUS_SOAK_SECONDS` says and
//! prints the figures `RELIABILITY.md` records.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dc_agent::client::ApiClient;
use lincheck::{Entry, Op};
use support::Cluster;

const KEYS: u64 = 3;
const CLIENTS: u64 = 4;

/// A tiny deterministic generator (xorshift64*), seeded per thread.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

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

/// One client: random writes of unique values and `?consistent` reads, through any server.
fn client(
    id: u64,
    addresses: Vec<String>,
    started: Instant,
    values: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Entry>>>,
) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
    let now = || started.elapsed().as_nanos() as u64;
    while !stop.load(Ordering::Relaxed) {
        let address = &addresses[rng.below(addresses.len() as u64) as usize];
        let client = ApiClient::new(address, Duration::from_secs(3));
        let key = format!("lin/{}", rng.below(KEYS));
        let invoked = now();
        if rng.below(2) == 0 {
            let value = values.fetch_add(1, Ordering::Relaxed);
            let answer = client.put(&format!("/v1/kv/{key}"), value.to_string().as_bytes());
            let returned = now();
            let returned = match &answer {
                Ok(r) if r.status == 200 && r.text() == "true" => Some(returned),
                // Refused before anything was sent: it did not happen.
                Err(e) if e.contains("refused") => continue,
                Ok(r) if r.status == 400 || r.status == 403 || r.status == 413 => continue,
                // A timeout, a 5xx, a cut connection: it may have happened.
                _ => None,
            };
            history.lock().expect("history").push(Entry {
                key,
                op: Op::Write(Some(value)),
                invoked,
                returned,
            });
        } else {
            let answer = client.get(&format!("/v1/kv/{key}?consistent&raw"));
            let returned = now();
            let seen = match answer {
                Ok(r) if r.status == 200 => match r.text().parse::<u64>() {
                    Ok(value) => Some(value),
                    Err(_) => continue,
                },
                Ok(r) if r.status == 404 => None,
                // No answer, no information.
                _ => continue,
            };
            history.lock().expect("history").push(Entry {
                key,
                op: Op::Read(seen),
                invoked,
                returned: Some(returned),
            });
        }
    }
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
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let values = Arc::new(AtomicU64::new(1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (addresses, values, stop, history) = (
                addresses.clone(),
                values.clone(),
                stop.clone(),
                history.clone(),
            );
            std::thread::spawn(move || client(id, addresses, started, values, stop, history))
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
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }

    // Every key read once more, after everything healed.
    cluster.wait_for_leader();
    let mut history = history.lock().expect("history").clone();
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
    let acknowledged = history
        .iter()
        .filter(|e| matches!(e.op, Op::Write(_)) && e.returned.is_some())
        .count();
    let reads = history
        .iter()
        .filter(|e| matches!(e.op, Op::Read(_)))
        .count();
    match lincheck::check(&history, None) {
        Ok(summary) => println!(
            "faults: {} ({}); operations checked: {} ({} acknowledged writes, {} writes of unknown outcome, {} reads) over {} keys in {seconds} s: linearizable",
            faults.len(),
            faults.join(", "),
            summary.operations,
            acknowledged,
            summary.unknown,
            reads,
            summary.keys,
        ),
        Err(violation) => panic!("not linearizable after faults {faults:?}:\n{violation}{}", cluster.logs()),
    }
    assert!(faults.len() >= 3, "the nemesis ran: {faults:?}");
    assert!(acknowledged >= 50, "the clients wrote: {acknowledged}");
}
