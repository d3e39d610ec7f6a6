//! Load with every operation recorded, for the fault tests: clients writing unique values
//! and reading with `?consistent`, each operation kept as a `lincheck::Entry` with when it
//! was invoked and when (if ever) it was acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dc_agent::client::ApiClient;
use lincheck::{Entry, Op};

/// A tiny deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Keys a client works on: asked of one of `addresses`, with `?dc=DC` when `dc` is set,
/// recorded under `label` + the key.
#[derive(Clone)]
pub struct Target {
    /// HTTP addresses of the agents to ask.
    pub addresses: Vec<String>,
    /// The datacenter named in `?dc=`, if any.
    pub dc: Option<String>,
    /// What the history calls these keys (the datacenter that holds them).
    pub label: String,
    /// Writes to these keys acknowledged (shared by the target's clones).
    pub acknowledged: Arc<AtomicU64>,
}

/// What every client shares.
#[derive(Clone)]
pub struct Shared {
    /// When the run started (entries are dated from it).
    pub started: Instant,
    /// The next value to write (each is written once).
    pub values: Arc<AtomicU64>,
    /// Set when the clients must stop.
    pub stop: Arc<AtomicBool>,
    /// Every operation.
    pub history: Arc<Mutex<Vec<Entry>>>,
    /// Every operation with the agent it was asked of and its answer, a line each (for
    /// reading a failure).
    pub trail: Arc<Mutex<Vec<String>>>,
}

impl Shared {
    /// A new run, starting now.
    pub fn new() -> Shared {
        Shared {
            started: Instant::now(),
            values: Arc::new(AtomicU64::new(1)),
            stop: Arc::new(AtomicBool::new(false)),
            history: Arc::new(Mutex::new(Vec::new())),
            trail: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }
}

/// One client: random writes of unique values and `?consistent` reads of `keys` keys of
/// random targets, until `shared.stop`.
pub fn client(id: u64, targets: Vec<Target>, keys: u64, shared: Shared) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
    while !shared.stop.load(Ordering::Relaxed) {
        let target = &targets[rng.below(targets.len() as u64) as usize];
        let address = &target.addresses[rng.below(target.addresses.len() as u64) as usize];
        let client = ApiClient::new(address, Duration::from_secs(3));
        let k = rng.below(keys);
        let key = format!("{}lin/{k}", target.label);
        let dc = target
            .dc
            .as_ref()
            .map(|dc| format!("dc={dc}&"))
            .unwrap_or_default();
        let invoked = shared.now();
        let (entry, answered) = if rng.below(2) == 0 {
            let value = shared.values.fetch_add(1, Ordering::Relaxed);
            let answer = client.put(
                &format!("/v1/kv/lin/{k}?{dc}"),
                value.to_string().as_bytes(),
            );
            let returned = shared.now();
            let returned = match &answer {
                Ok(r) if r.status == 200 && r.text() == "true" => {
                    target.acknowledged.fetch_add(1, Ordering::Relaxed);
                    Some(returned)
                }
                // Refused before anything was sent: it did not happen.
                Err(e) if e.contains("refused") => continue,
                Ok(r) if r.status == 400 || r.status == 403 || r.status == 413 => continue,
                // A timeout, a 5xx, a cut connection: it may have happened.
                _ => None,
            };
            let answered = describe(&answer);
            let entry = Entry {
                key,
                op: Op::Write(Some(value)),
                invoked,
                returned,
            };
            (entry, answered)
        } else {
            let answer = client.get(&format!("/v1/kv/lin/{k}?{dc}consistent&raw"));
            let returned = shared.now();
            let answered = describe(&answer);
            let seen = match answer {
                Ok(r) if r.status == 200 => match r.text().parse::<u64>() {
                    Ok(value) => Some(value),
                    Err(_) => continue,
                },
                Ok(r) if r.status == 404 => None,
                // No answer, no information.
                _ => continue,
            };
            let entry = Entry {
                key,
                op: Op::Read(seen),
                invoked,
                returned: Some(returned),
            };
            (entry, answered)
        };
        let line = format!(
            "{:>14} {:>14} client {id} {} {:?} asked of {address}{}: {answered}",
            entry.invoked,
            entry.returned.map_or("?".to_owned(), |r| r.to_string()),
            entry.key,
            entry.op,
            target
                .dc
                .as_ref()
                .map(|dc| format!(" for {dc}"))
                .unwrap_or_default(),
        );
        shared.trail.lock().expect("trail").push(line);
        shared.history.lock().expect("history").push(entry);
    }
}

/// An answer in a line: the status and the headers that tell who answered, or the error.
fn describe(answer: &Result<dc_agent::client::ApiResponse, String>) -> String {
    match answer {
        Ok(r) => format!(
            "{} {} index {} lastcontact {} knownleader {}",
            r.status,
            r.text().chars().take(80).collect::<String>(),
            r.header("x-consul-index").unwrap_or("-"),
            r.header("x-consul-lastcontact").unwrap_or("-"),
            r.header("x-consul-knownleader").unwrap_or("-"),
        ),
        Err(e) => format!("error {e}"),
    }
}

/// Writes the trail of `key` (every line naming it) to a file and returns its path.
pub fn dump_trail(shared: &Shared, key: &str) -> std::path::PathBuf {
    let mut lines: Vec<String> = shared
        .trail
        .lock()
        .expect("trail")
        .iter()
        .filter(|l| l.contains(&format!(" {key} ")))
        .cloned()
        .collect();
    lines.sort();
    let path = std::env::temp_dir().join(format!(
        "trail-{}-{}.txt",
        std::process::id(),
        key.replace('/', "_")
    ));
    let _ = std::fs::write(&path, lines.join("\n"));
    path
}

/// A final `?consistent` read of `path` (`/v1/kv/KEY?...&consistent&raw`) through `client`,
/// asked again until an answer (200 or 404) comes; `None` when none came in `limit`.
pub fn final_read(client: &ApiClient, path: &str, limit: Duration) -> Option<Option<u64>> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(response) = client.get(path) {
            match response.status {
                200 => return response.text().parse::<u64>().ok().map(Some),
                404 => return Some(None),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Checks `history` for linearizability and prints the run's figures on a line starting
/// with `label` (the lines `scripts/soak.sh` keeps); on a violation, panics with the key's
/// every operation written to a file and `logs()`. Returns the acknowledged writes.
pub fn verdict(
    label: &str,
    shared: &Shared,
    history: &[Entry],
    faults: &[&str],
    seconds: u64,
    logs: impl FnOnce() -> String,
) -> usize {
    let (acknowledged, reads) = counts(history);
    match lincheck::check(history, None) {
        Ok(summary) => println!(
            "{label}: {} ({}); operations checked: {} ({} acknowledged writes, {} writes of unknown outcome, {} reads) over {} keys in {seconds} s: linearizable",
            faults.len(),
            faults.join(", "),
            summary.operations,
            acknowledged,
            summary.unknown,
            reads,
            summary.keys,
        ),
        Err(violation) => {
            let trail = dump_trail(shared, &violation.key);
            panic!(
                "not linearizable after faults {faults:?}:\n{violation}\n(every operation on the key: {}){}",
                trail.display(),
                logs()
            )
        }
    }
    acknowledged
}

/// Counts of a history: (acknowledged writes, reads).
pub fn counts(history: &[Entry]) -> (usize, usize) {
    let acknowledged = history
        .iter()
        .filter(|e| matches!(e.op, Op::Write(_)) && e.returned.is_some())
        .count();
    let reads = history
        .iter()
        .filter(|e| matches!(e.op, Op::Read(_)))
        .count();
    (acknowledged, reads)
}
