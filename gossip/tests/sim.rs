//! The gossip pool's core under a simulated network with virtual time: nodes are
//! `PoolCore`s, the network a queue of datagrams with latency, loss and partitions, and the
//! clock jumps from one deadline or delivery to the next. Everything is seeded, so a run is
//! the same every time; each scenario runs minutes of virtual time in well under a second.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip::keyfile::{KeyOp, SharedKeyring};
use gossip::keyring::Keyring;
use gossip::pool::{
    Event, Input, KeyOutcome, MemberKey, MemberStatus, NodeId, Now, PoolCore, PoolKind,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const KEY_A: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
const KEY_B: &str = "zKVOJYyBVsbPeUN+HsgpP9kT7kcXHkZDkqGPI+2jhM4=";

/// One simulated node: its core while it runs, and what it has reported.
struct SimNode {
    core: Option<PoolCore>,
    id: NodeId,
    keyring: Option<SharedKeyring>,
    left: bool,
    outcomes: BTreeMap<u64, KeyOutcome>,
    dropped: BTreeMap<&'static str, u32>,
    broadcasts: Vec<Vec<u8>>,
}

/// A datagram in flight: when it arrives, an order for ties, to and from whom.
type Flight = Reverse<(Duration, u64, usize, usize, Vec<u8>)>;

struct Net {
    start: Instant,
    now: Duration,
    nodes: Vec<SimNode>,
    flights: BinaryHeap<Flight>,
    seq: u64,
    rng: StdRng,
    latency: Duration,
    loss: f64,
    /// Pairs of nodes (by index) that cannot reach each other.
    cut: HashSet<(usize, usize)>,
    /// Every member status any node ever recorded, per (observer, subject).
    seen: BTreeMap<(usize, usize), Vec<MemberStatus>>,
}

fn lan_id(i: usize, bump: u64) -> NodeId {
    NodeId {
        pool: PoolKind::Lan,
        addr: SocketAddr::from(([127, 0, 0, u8::try_from(i + 1).expect("few nodes")], 8301)),
        bump,
        name: format!("node{i}"),
        server: i < 3,
        rpc_port: 0,
        dc: "dc1".to_owned(),
        build: "sim".to_owned(),
    }
}

fn wan_id(dc: &str, i: usize, bump: u64) -> NodeId {
    NodeId {
        pool: PoolKind::Wan,
        addr: SocketAddr::from(([127, 0, 0, u8::try_from(i + 1).expect("few nodes")], 8300)),
        bump,
        name: format!("server{i}"),
        server: true,
        rpc_port: 8300,
        dc: dc.to_owned(),
        build: "sim".to_owned(),
    }
}

fn keyring(keys: &[&str]) -> SharedKeyring {
    let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    SharedKeyring::new(Keyring::new(&keys).expect("valid keys"), None)
}

impl Net {
    fn new(seed: u64) -> Net {
        Net {
            start: Instant::now(),
            now: Duration::ZERO,
            nodes: Vec::new(),
            flights: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            latency: Duration::from_millis(2),
            loss: 0.0,
            cut: HashSet::new(),
            seen: BTreeMap::new(),
        }
    }

    fn clock(&self) -> Now {
        Now {
            at: self.start + self.now,
            unix_ms: 1_800_000_000_000 + u64::try_from(self.now.as_millis()).expect("short run"),
        }
    }

    /// Adds a node (or replaces a crashed one at the same index) and starts it.
    fn start_node(
        &mut self,
        index: Option<usize>,
        id: NodeId,
        keyring: Option<SharedKeyring>,
        seeds: Vec<NodeId>,
    ) -> usize {
        let seed = self.rng.random();
        let core = PoolCore::new(id.clone(), keyring.clone(), seeds, self.clock(), seed);
        let node = SimNode {
            core: Some(core),
            id,
            keyring,
            left: false,
            outcomes: BTreeMap::new(),
            dropped: BTreeMap::new(),
            broadcasts: Vec::new(),
        };
        let i = match index {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.drain(i);
        i
    }

    /// A LAN pool of `n` nodes, each seeded with node 0.
    fn lan(seed: u64, n: usize, keys: Option<&[&str]>) -> Net {
        let mut net = Net::new(seed);
        for i in 0..n {
            let seeds = if i == 0 {
                Vec::new()
            } else {
                vec![NodeId::lan_seed(lan_id(0, 0).addr)]
            };
            net.start_node(None, lan_id(i, 1), keys.map(keyring), seeds);
        }
        net
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].core = None;
    }

    fn index_of(&self, to: &NodeId) -> Option<usize> {
        match to.pool {
            PoolKind::Lan => self.nodes.iter().position(|n| n.id.addr == to.addr),
            PoolKind::Wan => self.nodes.iter().position(|n| {
                n.id.dc == to.dc
                    && (to.name.is_empty() || n.id.name == to.name)
                    && (!to.name.is_empty() || n.core.is_some())
            }),
        }
    }

    /// Sends what node `i` wants sent and records what it reported.
    fn drain(&mut self, i: usize) {
        let mut transmits = Vec::new();
        let mut events = Vec::new();
        if let Some(core) = self.nodes[i].core.as_mut() {
            while let Some(t) = core.poll_transmit() {
                transmits.push(t);
            }
            while let Some(e) = core.poll_event() {
                events.push(e);
            }
        }
        for t in transmits {
            let Some(to) = self.index_of(&t.to) else {
                continue;
            };
            if self.cut.contains(&(i.min(to), i.max(to))) || self.rng.random::<f64>() < self.loss {
                continue;
            }
            let jitter = Duration::from_micros(self.rng.random_range(0..500));
            self.seq += 1;
            self.flights.push(Reverse((
                self.now + self.latency + jitter,
                self.seq,
                to,
                i,
                t.packet,
            )));
        }
        for e in events {
            match e {
                Event::Member(key, member) => {
                    if let Some(subject) = self.nodes.iter().position(|n| n.id.addr_key() == key) {
                        self.seen
                            .entry((i, subject))
                            .or_default()
                            .push(member.status);
                    }
                }
                Event::KeyOutcome(token, outcome) => {
                    self.nodes[i].outcomes.insert(token, outcome);
                }
                Event::Dropped(reason) => *self.nodes[i].dropped.entry(reason).or_default() += 1,
                Event::Left => self.nodes[i].left = true,
                Event::Broadcast(payload) => self.nodes[i].broadcasts.push(payload),
                _ => {}
            }
        }
    }

    /// Moves virtual time to the next delivery or deadline and handles it; false when
    /// nothing is left to happen before `until`.
    fn step(&mut self, until: Duration) -> bool {
        let next_flight = self.flights.peek().map(|Reverse((at, ..))| *at);
        let next_timer = self
            .nodes
            .iter()
            .filter_map(|n| n.core.as_ref()?.poll_timeout())
            .min()
            .map(|at| at.saturating_duration_since(self.start));
        let Some(next) = [next_flight, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if next > until {
            self.now = until;
            return false;
        }
        self.now = self.now.max(next);
        let now = self.clock();
        if next_flight == Some(next) {
            if let Some(Reverse((_, _, to, from, packet))) = self.flights.pop() {
                let source = match self.nodes[from].id.pool {
                    PoolKind::Lan => Some(self.nodes[from].id.addr),
                    PoolKind::Wan => None,
                };
                if let Some(core) = self.nodes[to].core.as_mut() {
                    core.handle_datagram(now, &packet, source);
                    self.drain(to);
                }
            }
            return true;
        }
        for i in 0..self.nodes.len() {
            let due = self.nodes[i]
                .core
                .as_ref()
                .and_then(PoolCore::poll_timeout)
                .is_some_and(|at| at <= now.at);
            if due {
                if let Some(core) = self.nodes[i].core.as_mut() {
                    core.handle_timeout(now);
                }
                self.drain(i);
            }
        }
        true
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
    }

    /// Runs until `done` holds (checked after every step) or `limit` of virtual time has
    /// passed; returns how long it took.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Net) -> bool) -> Option<Duration> {
        let from = self.now;
        let until = from + limit;
        loop {
            if done(self) {
                return Some(self.now - from);
            }
            if !self.step(until) {
                return done(self).then(|| self.now - from);
            }
        }
    }

    fn input(&mut self, i: usize, input: Input) {
        let now = self.clock();
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.handle_input(now, input);
        }
        self.drain(i);
    }

    /// What node `i` thinks of node `j` (none: never heard of it).
    fn status(&self, i: usize, j: usize) -> Option<MemberStatus> {
        let key = self.nodes[j].id.addr_key();
        let core = self.nodes[i].core.as_ref()?;
        core.members().get(&key).map(|m| m.status)
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].core.is_some())
            .collect()
    }

    /// Every running node sees every other running node alive.
    fn converged(&self) -> bool {
        let running = self.running();
        running.iter().all(|&i| {
            running
                .iter()
                .all(|&j| i == j || self.status(i, j) == Some(MemberStatus::Alive))
        })
    }

    /// Every running node other than `j` sees `j` as `status`.
    fn all_see(&self, j: usize, status: MemberStatus) -> bool {
        self.running()
            .iter()
            .all(|&i| i == j || self.status(i, j) == Some(status))
    }

    fn ever_failed(&self) -> Vec<(usize, usize)> {
        self.seen
            .iter()
            .filter(|(_, s)| s.contains(&MemberStatus::Failed))
            .map(|(pair, _)| *pair)
            .collect()
    }
}

trait AddrKey {
    fn addr_key(&self) -> MemberKey;
}

impl AddrKey for NodeId {
    fn addr_key(&self) -> MemberKey {
        foca::Identity::addr(self)
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_pool_forms_from_one_seed_within_seconds() {
    let mut net = Net::lan(1, 8, None);
    let took = net
        .run_until(20 * SECOND, Net::converged)
        .expect("converged");
    assert!(took < 10 * SECOND, "took {took:?}");
    // And stays so: nobody is suspected to death on a quiet network.
    net.run_for(60 * SECOND);
    assert!(net.converged());
    assert_eq!(net.ever_failed(), Vec::new());
}

#[test]
fn a_crashed_node_is_declared_failed_by_everyone() {
    let mut net = Net::lan(2, 6, None);
    net.run_until(20 * SECOND, Net::converged)
        .expect("converged");
    net.crash(4);
    let took = net
        .run_until(60 * SECOND, |n| n.all_see(4, MemberStatus::Failed))
        .expect("failed everywhere");
    // Not before a probe fails and the suspicion runs out; not much after.
    assert!(took > 2 * SECOND && took < 30 * SECOND, "took {took:?}");
    // No one else was taken for dead meanwhile.
    assert!(net.ever_failed().iter().all(|(_, subject)| *subject == 4));
}

#[test]
fn a_node_that_leaves_is_left_not_failed() {
    let mut net = Net::lan(3, 5, None);
    net.run_until(20 * SECOND, Net::converged)
        .expect("converged");
    net.input(2, Input::Leave);
    net.run_until(2 * SECOND, |n| n.nodes[2].left)
        .expect("goodbyes out");
    assert!(net.nodes[2].core.as_ref().is_some_and(PoolCore::has_left));
    net.crash(2);
    net.run_until(5 * SECOND, |n| n.all_see(2, MemberStatus::Left))
        .expect("left everywhere, before any suspicion could run out");
    assert!(net.ever_failed().is_empty());
}

#[test]
fn goodbyes_get_through_a_lossy_network() {
    let mut net = Net::lan(4, 6, None);
    net.run_until(20 * SECOND, Net::converged)
        .expect("converged");
    net.loss = 0.3;
    net.input(5, Input::Leave);
    net.run_until(2 * SECOND, |n| n.nodes[5].left)
        .expect("goodbyes out");
    net.crash(5);
    net.run_until(30 * SECOND, |n| n.all_see(5, MemberStatus::Left))
        .expect("left everywhere despite 30% loss");
}

#[test]
fn a_force_left_member_becomes_left_everywhere() {
    let mut net = Net::lan(5, 5, None);
    net.run_until(20 * SECOND, Net::converged)
        .expect("converged");
    net.crash(3);
    net.run_until(60 * SECOND, |n| n.all_see(3, MemberStatus::Failed))
        .expect("failed");
    let key = net.nodes[3].id.addr_key();
    net.input(0, Input::ForceLeave(vec![key]));
    net.run_until(5 * SECOND, |n| n.all_see(3, MemberStatus::Left))
        .expect("left everywhere");
}

#[test]
fn a_restarted_node_replaces_its_old_self() {
    let mut net = Net::lan(6, 5, None);
    net.run_until(20 * SECOND, Net::converged)
        .expect("converged");
    net.crash(1);
    net.run_until(60 * SECOND, |n| n.all_see(1, MemberStatus::Failed))
        .expect("failed");
    let seeds = vec![NodeId::lan_seed(lan_id(0, 0).addr)];
    net.start_node(Some(1), lan_id(1, 2), None, seeds);
    net.run_until(10 * SECOND, Net::converged)
        .expect("alive again");
    for i in [0, 2, 3, 4] {
        let key = net.nodes[1].id.addr_key();
        let bump = net.nodes[i]
            .core
            .as_ref()
            .and_then(|c| c.members().get(&key))
            .map(|m| m.id.bump);
        assert_eq!(bump, Some(2), "node {i} knows the new incarnation");
    }
}

#[test]
fn a_partition_heals_into_one_pool() {
    let mut net = Net::lan(7, 6, None);
    net.run_until(20 * SECOND, Net::converged)
        .expect("converged");
    for a in 0..3 {
        for b in 3..6 {
            net.cut.insert((a, b));
        }
    }
    net.run_until(60 * SECOND, |n| {
        (0..3).all(|a| (3..6).all(|b| n.status(a, b) == Some(MemberStatus::Failed)))
    })
    .expect("each side takes the other for failed");
    // Each side still sees its own as alive.
    for (a, b) in [(0, 1), (1, 2), (3, 4), (4, 5)] {
        assert_eq!(net.status(a, b), Some(MemberStatus::Alive));
    }
    net.cut.clear();
    let took = net
        .run_until(300 * SECOND, Net::converged)
        .expect("one pool again");
    // foca announces to down members every 65 s.
    assert!(took < 150 * SECOND, "took {took:?}");
}

#[test]
fn keyring_rotation_reaches_every_member_and_old_keys_stop_working() {
    let mut net = Net::lan(8, 5, Some(&[KEY_A]));
    net.run_until(20 * SECOND, Net::converged)
        .expect("converged");
    net.loss = 0.2;
    for (token, op) in [
        (1, KeyOp::Install(KEY_B.to_owned())),
        (2, KeyOp::Use(KEY_B.to_owned())),
        (3, KeyOp::Remove(KEY_A.to_owned())),
    ] {
        net.input(0, Input::Key { op, token });
        net.run_until(5 * SECOND, |n| n.nodes[0].outcomes.contains_key(&token))
            .expect("answered");
        let outcome = &net.nodes[0].outcomes[&token];
        // Queries lost on the way are sent again until every member answered.
        assert_eq!(outcome.answers.len(), 5, "{outcome:?}");
        assert!(outcome.silent.is_empty(), "{outcome:?}");
        assert!(
            outcome.answers.iter().all(|a| a.error.is_none()),
            "{outcome:?}"
        );
    }
    net.loss = 0.0;
    for node in &net.nodes {
        assert_eq!(
            node.keyring.as_ref().map(SharedKeyring::keys),
            Some(vec![KEY_B.to_owned()])
        );
    }
    net.run_for(20 * SECOND);
    assert!(net.converged());
    // A node with only the old key is shut out, and says why.
    let seeds = vec![NodeId::lan_seed(lan_id(0, 0).addr)];
    let stranger = net.start_node(None, lan_id(5, 1), Some(keyring(&[KEY_A])), seeds);
    net.run_for(10 * SECOND);
    assert_eq!(net.status(0, stranger), None);
    assert!(
        net.nodes[0].dropped.contains_key("no_key"),
        "{:?}",
        net.nodes[0].dropped
    );
}

#[test]
fn a_lossy_network_takes_no_live_member_for_dead() {
    let mut net = Net::lan(9, 8, None);
    net.run_until(20 * SECOND, Net::converged)
        .expect("converged");
    net.loss = 0.1;
    net.run_for(120 * SECOND);
    net.loss = 0.0;
    net.run_until(30 * SECOND, Net::converged)
        .expect("all alive");
    assert_eq!(
        net.ever_failed(),
        Vec::new(),
        "SWIM's indirect probes and refutation"
    );
}

#[test]
fn the_wan_pool_spans_datacenters_and_survives_one_cut_off() {
    let mut net = Net::new(10);
    let dcs = ["dc1", "dc2", "dc3"];
    for (d, dc) in dcs.iter().enumerate() {
        for s in 0..2 {
            let seeds = if d == 0 && s == 0 {
                Vec::new()
            } else {
                // As the agent announces: to a server of another datacenter by name.
                vec![NodeId::wan_seed("dc1", "server0")]
            };
            net.start_node(None, wan_id(dc, s, 1), Some(keyring(&[KEY_A])), seeds);
        }
    }
    net.latency = Duration::from_millis(30);
    net.run_until(30 * SECOND, Net::converged)
        .expect("one WAN pool");
    // dc3 cut off: the others take its servers for failed, and keep each other.
    for a in 0..4 {
        for b in 4..6 {
            net.cut.insert((a, b));
        }
    }
    net.run_until(120 * SECOND, |n| {
        (0..4).all(|a| (4..6).all(|b| n.status(a, b) == Some(MemberStatus::Failed)))
    })
    .expect("dc3 failed");
    assert!((0..4).all(|a| (0..4).all(|b| a == b || net.status(a, b) == Some(MemberStatus::Alive))));
    net.cut.clear();
    net.run_until(300 * SECOND, Net::converged)
        .expect("whole again");
    // Coordinates reflect the 30 ms one-way latency: every estimated round trip is near
    // 60 ms once probes have gone round for a while.
    net.run_for(120 * SECOND);
    let coordinates: Vec<_> = net
        .nodes
        .iter()
        .map(|n| {
            n.core
                .as_ref()
                .map(|c| c.coordinate().clone())
                .expect("running")
        })
        .collect();
    for (i, a) in coordinates.iter().enumerate() {
        for (j, b) in coordinates.iter().enumerate() {
            let rtt = a.distance_to(b);
            assert!(
                i == j || (0.045..0.075).contains(&rtt),
                "{i}-{j}: estimated {rtt} s"
            );
        }
    }
}

#[test]
fn a_broadcast_reaches_every_member_once_despite_loss() {
    let mut net = Net::lan(11, 12, Some(&[KEY_A]));
    net.run_until(20 * SECOND, Net::converged)
        .expect("converged");
    net.loss = 0.15;
    for round in 0..5u8 {
        net.input(3, Input::Broadcast(vec![round; 40]));
        net.run_for(2 * SECOND);
    }
    for (i, node) in net.nodes.iter().enumerate() {
        let expected: Vec<Vec<u8>> = if i == 3 {
            Vec::new()
        } else {
            (0..5u8).map(|r| vec![r; 40]).collect()
        };
        assert_eq!(node.broadcasts, expected, "node {i}");
    }
    // Too large: not sent at all.
    net.input(0, Input::Broadcast(vec![0; 2000]));
    net.run_for(2 * SECOND);
    assert!(net.nodes.iter().all(|n| n.broadcasts.len() <= 5));
}
