//! Gateway routing in simulation, with virtual time: three datacenters of two gateways and
//! two servers each, every gateway keeping a WAN link to every gateway of the other
//! datacenters as `link::keep_dialled` does (dial, and after a failure wait
//! `link::Backoff`'s pause), and every stream routed hop by hop with the real
//! `router::decide`. A gateway learns that a link died only after QUIC's idle timeout.
//!
//! Faults: a partition between two datacenters, a gateway restart, and lossy dials. Each
//! run is deterministic (a seeded generator) and takes milliseconds.

use std::collections::BTreeMap;

use link::Backoff;
use wan_gateway::router::{decide, Decision, Links, Side};
use wire::route::{RouteHeader, StreamKind, Target};

/// QUIC's idle timeout: how long a dead peer's link still looks up.
const DETECT: u64 = 5_000;
/// One dial's round trip when it succeeds.
const DIAL: u64 = 50;
/// The simulation's step.
const STEP: u64 = 10;

const DCS: [&str; 3] = ["dc1", "dc2", "dc3"];
const GATEWAYS: [&str; 2] = ["gw1", "gw2"];
const SERVERS: [&str; 2] = ["s1", "s2"];

/// xorshift64*: enough randomness for loss, reproducible.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// One direction of dialling: gateway `from` keeps a link to gateway `to`.
struct Dialer {
    /// When the link came up (`None`: down, as the dialler knows it).
    up_since: Option<u64>,
    /// The link broke at this time (the dialler learns it `DETECT` later).
    broken_at: Option<u64>,
    /// Next dial attempt, while down.
    next_dial: u64,
    backoff: Backoff,
}

type Gw = (&'static str, &'static str); // (datacenter, gateway)

struct World {
    now: u64,
    rng: Rng,
    /// Gateways that are running.
    running: BTreeMap<Gw, bool>,
    /// Pairs of datacenters that cannot reach each other.
    partitions: Vec<(&'static str, &'static str)>,
    /// Chance that a dial is lost.
    loss: f64,
    dialers: BTreeMap<(Gw, Gw), Dialer>,
    turn: usize,
}

impl World {
    fn new(seed: u64) -> World {
        let mut running = BTreeMap::new();
        let mut dialers = BTreeMap::new();
        for dc in DCS {
            for gw in GATEWAYS {
                running.insert((dc, gw), true);
                for other in DCS.iter().filter(|o| **o != dc) {
                    for remote in GATEWAYS {
                        dialers.insert(
                            ((dc, gw), (*other, remote)),
                            Dialer {
                                up_since: None,
                                broken_at: None,
                                next_dial: 0,
                                backoff: Backoff::new(),
                            },
                        );
                    }
                }
            }
        }
        World {
            now: 0,
            rng: Rng(seed | 1),
            running,
            partitions: Vec::new(),
            loss: 0.0,
            dialers,
            turn: 0,
        }
    }

    fn reachable(&self, a: Gw, b: Gw) -> bool {
        self.running[&a]
            && self.running[&b]
            && !self
                .partitions
                .iter()
                .any(|(x, y)| (*x == a.0 && *y == b.0) || (*x == b.0 && *y == a.0))
    }

    /// Advances virtual time by one step: links break, failures are noticed, dials happen.
    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        let keys: Vec<(Gw, Gw)> = self.dialers.keys().copied().collect();
        for (from, to) in keys {
            let reachable = self.reachable(from, to);
            let running = self.running[&from];
            let lost = self.loss > 0.0 && self.rng.chance(self.loss);
            let d = self.dialers.get_mut(&(from, to)).expect("dialer");
            if !running {
                // A stopped gateway dials nothing; it starts afresh when it restarts.
                *d = Dialer {
                    up_since: None,
                    broken_at: None,
                    next_dial: now,
                    backoff: Backoff::new(),
                };
                continue;
            }
            if d.up_since.is_some() {
                if !reachable && d.broken_at.is_none() {
                    d.broken_at = Some(now);
                }
                if d.broken_at.is_some_and(|at| now >= at + DETECT) {
                    d.up_since = None;
                    d.broken_at = None;
                    d.next_dial = now + d.backoff.next_pause().as_millis() as u64;
                }
            } else if now >= d.next_dial {
                if reachable && !lost {
                    d.up_since = Some(now + DIAL);
                    d.backoff.reset();
                } else {
                    d.next_dial = now + DIAL + d.backoff.next_pause().as_millis() as u64;
                }
            }
        }
    }

    fn run_until(&mut self, t: u64) {
        while self.now < t {
            self.step();
        }
    }

    /// A link is up for `from` (and may carry a stream) once dialled by either side.
    fn believes_up(&self, from: Gw, to: Gw) -> bool {
        let up = |a: Gw, b: Gw| {
            self.dialers
                .get(&(a, b))
                .and_then(|d| d.up_since)
                .is_some_and(|since| self.now >= since)
        };
        up(from, to) || up(to, from)
    }

    /// What gateway `gw` sees: its live WAN links and its servers.
    fn links(&self, gw: Gw) -> Links {
        let mut wan = BTreeMap::new();
        for dc in DCS.iter().filter(|d| **d != gw.0) {
            let peers: Vec<String> = GATEWAYS
                .iter()
                .filter(|remote| self.believes_up(gw, (*dc, **remote)))
                .map(|remote| remote.to_string())
                .collect();
            wan.insert(dc.to_string(), peers);
        }
        Links {
            datacenter: gw.0.to_owned(),
            node: gw.1.to_owned(),
            wan,
            servers: SERVERS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Routes one stream from a server of `src` to any server of `dst`: the first hop is
    /// a running gateway of `src` (a server's dc-links), then the router decides at each
    /// hop. A hop over a link that is believed up but broken loses the stream. Returns
    /// the gateways it crossed, or why it failed.
    fn route(&mut self, src: &'static str, dst: &'static str) -> Result<Vec<Gw>, String> {
        self.turn += 1;
        let first = GATEWAYS
            .iter()
            .map(|g| (src, *g))
            .filter(|g| self.running[g])
            .nth(0)
            .ok_or("no gateway of the source runs")?;
        let mut header = RouteHeader {
            dst_dc: dst.into(),
            src_dc: src.into(),
            target: Target::AnyServer,
            deadline_ms: 10_000,
        };
        let mut at = first;
        let mut side = Side::Server;
        let mut path = vec![at];
        for _ in 0..4 {
            wan_gateway::router::normalize(&mut header, side, Some(path[0].0), at.0);
            let kind = StreamKind::Route(header.clone());
            match decide(side, &kind, &self.links(at), self.turn) {
                Decision::ToGateway { dc, index } => {
                    let links = self.links(at);
                    let node = links.wan[&dc][index].clone();
                    let next = DCS
                        .iter()
                        .copied()
                        .find(|d| *d == dc)
                        .and_then(|d| GATEWAYS.iter().map(|g| (d, *g)).find(|g| g.1 == node))
                        .ok_or("a gateway the world does not have")?;
                    if !self.reachable(at, next) {
                        return Err(format!("lost on a dead link {at:?} -> {next:?}"));
                    }
                    at = next;
                    side = Side::Wan;
                    path.push(at);
                }
                Decision::ToServer { .. } => return Ok(path),
                Decision::NoRoute { reason, .. } => return Err(reason),
                other => return Err(format!("unexpected {other:?}")),
            }
        }
        Err("too many hops".into())
    }
}

/// Routes `n` streams from `src` to `dst`, one a step apart; how many arrived.
fn burst(world: &mut World, src: &'static str, dst: &'static str, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            world.step();
            world.route(src, dst).is_ok()
        })
        .count()
}

#[test]
fn a_healthy_federation_delivers_everything_over_both_gateways() {
    let mut world = World::new(7);
    world.run_until(1_000);
    let mut via = BTreeMap::new();
    for _ in 0..100 {
        world.step();
        for (src, dst) in [("dc1", "dc3"), ("dc3", "dc2"), ("dc2", "dc1")] {
            let path = world.route(src, dst).expect("delivered");
            assert_eq!(path.len(), 2, "one WAN hop, no transit: {path:?}");
            assert_eq!(path[1].0, dst);
            *via.entry(path[1]).or_insert(0) += 1;
        }
    }
    // Streams take turns over the destination's gateways.
    for (gw, n) in via {
        assert!(n >= 40, "{gw:?} carried {n} of 100");
    }
}

#[test]
fn a_partition_is_no_route_never_transit_and_heals_within_the_backoff() {
    let mut world = World::new(11);
    world.run_until(1_000);
    world.partitions.push(("dc1", "dc3"));
    // Until the idle timeout notices, streams into the partition are lost...
    world.run_until(1_000 + DETECT + STEP);
    // ...then refused at the first hop, and never sent through dc2.
    for _ in 0..50 {
        world.step();
        let refused = world.route("dc1", "dc3").expect_err("partitioned");
        assert!(refused.contains("has no link to dc3"), "{refused}");
    }
    assert_eq!(burst(&mut world, "dc1", "dc2", 50), 50, "dc2 is unaffected");
    // Healed: every dialler's next attempt is at most one full backoff away.
    let healed = world.now;
    world.partitions.clear();
    world.run_until(healed + Backoff::MAX.as_millis() as u64 + 2 * DIAL);
    assert_eq!(burst(&mut world, "dc1", "dc3", 50), 50);
}

#[test]
fn a_gateway_restart_loses_only_what_the_idle_timeout_hides() {
    let mut world = World::new(13);
    world.run_until(1_000);
    let down = ("dc3", "gw1");
    world.running.insert(down, false);
    let stopped = world.now;
    // While the dead links still look up, streams that pick them are lost; the others go
    // through gw2. Once noticed, nothing is lost.
    let mut lost_while_hidden = 0;
    while world.now < stopped + DETECT + STEP {
        world.step();
        if world.route("dc1", "dc3").is_err() {
            lost_while_hidden += 1;
        }
    }
    assert!(
        lost_while_hidden > 0,
        "the idle timeout hides a dead link for a while"
    );
    assert_eq!(
        burst(&mut world, "dc1", "dc3", 200),
        200,
        "gw2 carries all once noticed"
    );
    // Back: redialled within one backoff, and both gateways carry streams again.
    world.running.insert(down, true);
    let back = world.now;
    world.run_until(back + Backoff::MAX.as_millis() as u64 + 2 * DIAL);
    let mut via = BTreeMap::new();
    for _ in 0..100 {
        world.step();
        let path = world.route("dc1", "dc3").expect("delivered");
        *via.entry(path[1]).or_insert(0) += 1;
    }
    assert_eq!(via.len(), 2, "{via:?}");
}

#[test]
fn lossy_dials_still_link_everything() {
    let mut world = World::new(17);
    world.loss = 0.3;
    // With 30% of dials lost, every link is up after a few backoffs, and stays up.
    world.run_until(30_000);
    let down: Vec<_> = world
        .dialers
        .iter()
        .filter(|(_, d)| d.up_since.is_none())
        .map(|(k, _)| *k)
        .collect();
    assert!(down.is_empty(), "still down: {down:?}");
    for (src, dst) in [("dc1", "dc2"), ("dc2", "dc3"), ("dc3", "dc1")] {
        assert_eq!(burst(&mut world, src, dst, 50), 50);
    }
}
