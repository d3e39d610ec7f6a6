//! `dc-agent lock` as `consul lock`: leader election and a semaphore among client agents,
//! checked from a log the children write (start and stop, with nanosecond timestamps).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{wait_until, Cluster};

/// `dc-agent lock` processes, stopped (SIGTERM, then SIGKILL) when dropped.
struct Lockers(Vec<Child>);

impl Drop for Lockers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // SAFETY: a process this test started.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A lock child: logs `start NAME T`, then on SIGTERM `stop NAME T`, in nanoseconds.
fn script(log: &Path, name: &str) -> String {
    let log = log.display();
    format!(
        "echo start {name} $(date +%s%N) >> {log}; trap 'echo stop {name} $(date +%s%N) >> {log}; exit 0' TERM; while true; do sleep 0.05; done"
    )
}

fn start_locker(http: &str, args: &[&str], log: &Path, name: &str, out: &Path) -> Child {
    let output = std::fs::File::create(out.join(format!("{name}.out"))).expect("output file");
    Command::new(env!("CARGO_BIN_EXE_dc-agent"))
        .arg("lock")
        .arg(format!("-http-addr={http}"))
        .args(args)
        .arg(script(log, name))
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("clone"))
        .stderr(output)
        .spawn()
        .expect("dc-agent lock starts")
}

/// The log's events, in time order: (nanoseconds, started?, name).
fn events(log: &Path) -> Vec<(u128, bool, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut events: Vec<(u128, bool, String)> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let kind = words.next()?;
            let name = words.next()?.to_owned();
            let at: u128 = words.next()?.parse().ok()?;
            Some((at, kind == "start", name))
        })
        .collect();
    events.sort();
    events
}

/// The most children that ran at once, and who runs now.
fn concurrency(log: &Path) -> (usize, Vec<String>) {
    let mut running: Vec<String> = Vec::new();
    let mut most = 0;
    for (_, started, name) in events(log) {
        if started {
            running.push(name);
        } else {
            running.retain(|n| *n != name);
        }
        most = most.max(running.len());
    }
    (most, running)
}

fn outputs(dir: &Path) -> String {
    let mut all = String::new();
    for name in ["a", "b", "c"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap_or_default();
        all.push_str(&format!("\n--- {name} ---\n{text}"));
    }
    all
}

#[test]
fn one_holder_at_a_time_and_the_lock_moves_when_its_agent_dies() {
    let mut cluster = Cluster::render_with_clients(152, 3, 3, "");
    for agent in &mut cluster.agents {
        agent.start();
    }
    cluster.wait_for_leader_among(&[0, 1, 2]);
    for c in 1..=3 {
        let path = format!("/v1/health/node/c{c}");
        cluster.wait_for("clients in the catalog", Duration::from_secs(30), |cl| {
            let text = cl.agents[0].client().get(&path).ok()?.text();
            text.contains("\"passing\"").then_some(())
        });
    }
    let work = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = work.path().to_owned();

    // A semaphore of 2 among three: never more than two run; one leaving lets the third in.
    let slots = dir.join("slots.log");
    let mut lockers = Lockers(Vec::new());
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let http = cluster.agents[3 + i].http();
        lockers
            .0
            .push(start_locker(&http, &["-n=2", "jobs"], &slots, name, &dir));
    }
    wait_until("two holders", Duration::from_secs(20), || {
        concurrency(&slots).1.len() == 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let (most, running) = concurrency(&slots);
    assert_eq!((most, running.len()), (2, 2), "{}", outputs(&dir));
    let (out, waiting): (Vec<usize>, Vec<usize>) =
        (0..3).partition(|i| running.contains(&["a", "b", "c"][*i].to_owned()));
    // SIGTERM one holder's `lock`: its child stops, its slot is given back.
    let leaving = out[0];
    // SAFETY: a process this test started.
    unsafe {
        libc::kill(lockers.0[leaving].id() as i32, libc::SIGTERM);
    }
    let third = ["a", "b", "c"][waiting[0]].to_owned();
    wait_until("the third to get the slot", Duration::from_secs(20), || {
        concurrency(&slots).1.contains(&third)
    });
    let (most, running) = concurrency(&slots);
    assert!(
        most <= 2,
        "{most} held the semaphore at once{}",
        outputs(&dir)
    );
    assert_eq!(running.len(), 2);
    drop(lockers);

    // A lock: exactly one runs.
    let leader_log = dir.join("leader.log");
    let mut lockers = Lockers(Vec::new());
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let http = cluster.agents[3 + i].http();
        lockers.0.push(start_locker(
            &http,
            &["service/leader"],
            &leader_log,
            name,
            &dir,
        ));
    }
    wait_until("a leader", Duration::from_secs(20), || {
        !concurrency(&leader_log).1.is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    let (most, running) = concurrency(&leader_log);
    assert_eq!((most, running.len()), (1, 1), "{}", outputs(&dir));
    let holder = ["a", "b", "c"]
        .iter()
        .position(|n| *n == running[0])
        .expect("a known name");
    // The holder's agent dies: its `lock` loses the agent and stops its child; the servers
    // see the node fail, invalidate its session and, after the lock delay (15 s), another
    // takes over.
    let killed = Instant::now();
    cluster.agents[3 + holder].kill();
    let handed = wait_until("another leader", Duration::from_secs(60), || {
        concurrency(&leader_log).1.iter().any(|n| *n != running[0])
    });
    let (most, now) = concurrency(&leader_log);
    assert_eq!(most, 1, "two ran at once{}", outputs(&dir));
    assert_eq!(now.len(), 1);
    println!(
        "lock handed over {:?} after its holder's agent was killed (serfHealth failure + 15 s lock delay)",
        killed.elapsed().min(handed + Duration::from_secs(1))
    );
    // The old holder's child was stopped when its `lock` lost the agent.
    assert!(
        events(&leader_log)
            .iter()
            .any(|(_, started, name)| !started && *name == running[0]),
        "{}",
        outputs(&dir)
    );
}
