//! The pool's sans-IO core: foca, goodbyes, coordinate probes, keyring operations and
//! Lifeguard's local health, driven only by what it is handed. Time comes in as [`Now`],
//! randomness from one RNG seeded at construction, datagrams through [`PoolCore::
//! handle_datagram`], operator requests through [`PoolCore::handle_input`], and deadlines
//! through [`PoolCore::handle_timeout`]; what it wants sent comes out of
//! [`PoolCore::poll_transmit`], what happened out of [`PoolCore::poll_event`], and when to
//! wake it next out of [`PoolCore::poll_timeout`]. The same core runs under the tokio
//! driver and under the virtual-time simulation in `tests/sim.rs`.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

mod keys;
mod probes;
mod user;

/// The time of a call: the monotonic clock for every timer, the wall clock only for the
/// age of keyring queries (which must mean the same on every member).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time.
    pub at: Instant,
    /// Unix milliseconds.
    pub unix_ms: u64,
}

/// What an operator (through the [`Pool`] handle) asks of the pool.
#[derive(Debug, Clone)]
pub enum Input {
    /// Announce to these identities.
    Join(Vec<NodeId>),
    /// Say goodbye on behalf of these members, across the pool.
    ForceLeave(Vec<MemberKey>),
    /// Apply a keyring operation here and on every live member; answered by
    /// [`Event::KeyOutcome`] with the same token.
    Key {
        /// The operation.
        op: KeyOp,
        /// Names the answer.
        token: u64,
    },
    /// Say goodbye and leave; [`Event::Left`] once the goodbyes are out.
    Leave,
    /// Spread an application message (at most [`MAX_USER_PAYLOAD`] bytes) to every member:
    /// sent to each live member, and passed on by each to a few others when first heard,
    /// so a lost datagram rarely keeps it from anyone. Not delivered here.
    Broadcast(Vec<u8>),
}

/// A datagram to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// To whom.
    pub to: NodeId,
    /// The sealed datagram.
    pub packet: Vec<u8>,
}

/// What happened inside the pool, for the shell to mirror and report.
#[derive(Debug, Clone)]
pub enum Event {
    /// A member's entry is now this (joined, failed, left, renamed).
    Member(MemberKey, Member),
    /// A node's coordinate is now this (`None`: forget it; it left).
    Coordinate(MemberKey, Option<NodeCoordinate>),
    /// A datagram was dropped, and why (for the metric).
    Dropped(&'static str),
    /// A member joined, failed or left (for the metric).
    Membership(&'static str),
    /// The local health score is now this.
    Health(u32),
    /// A keyring operation is complete (or timed out).
    KeyOutcome(u64, KeyOutcome),
    /// The goodbyes are out and foca has left: nothing more will happen.
    Left,
    /// An application message another member broadcast (each one once).
    Broadcast(Vec<u8>),
}

/// The periodic duties besides foca's own timers, each with when it is next due.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    /// Announce to the seeds, while alone.
    announce: Instant,
    /// Ask a random member for its members, while syncing after a join.
    join_sync: Instant,
    /// A coordinate probe to a random member; goodbyes repeated.
    probe: Instant,
    /// Keyring operations sent again, finished ones answered.
    key: Instant,
    /// The local health score decays.
    decay: Instant,
}

const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
const JOIN_SYNC_EVERY: Duration = Duration::from_millis(250);
const KEY_TICK_EVERY: Duration = Duration::from_millis(200);
/// Goodbyes of a leaving node go out three times this far apart.
const LEAVE_ROUND_GAP: Duration = Duration::from_millis(100);

/// A node saying goodbye: the packet, and how many more rounds are due when.
struct Leaving {
    packet: Vec<u8>,
    peers: Vec<NodeId>,
    rounds_left: u8,
    next: Instant,
}

/// One node's view of one pool (see the module documentation).
pub struct PoolCore {
    local: NodeId,
    keyring: Option<SharedKeyring>,
    seeds: Vec<NodeId>,
    rng: StdRng,
    swim: Swim,
    members: BTreeMap<MemberKey, Member>,
    vivaldi: Vivaldi,
    /// Coordinate probes sent and not answered yet: nonce -> (when, to whom).
    probes: HashMap<u64, (Instant, MemberKey)>,
    /// Force-leave goodbyes still to be sent again, and how many more times.
    byes: Vec<(Vec<u8>, u8)>,
    /// Keyring operations waiting for answers, by id.
    key_ops: HashMap<u64, PendingKeyOp>,
    /// Keyring queries applied here lately, by (sender, id), with their answer.
    key_ops_seen: HashMap<(MemberKey, u64), (Instant, KeyAnswer)>,
    /// User messages seen lately, by ID, with when.
    user_seen: HashMap<u64, Instant>,
    timers: BinaryHeap<Reverse<(Instant, Timer<NodeId>)>>,
    ticks: Ticks,
    /// Members that said goodbye: their next MemberDown means left, not failed.
    departed: HashSet<MemberKey>,
    /// Per drop reason: when it was last logged, and drops since.
    logged: HashMap<&'static str, (Instant, u64)>,
    /// The time of the call being handled (for rate-limited logs).
    clock: Instant,
    /// A member went down since the last flush: spread the news at once.
    news_of_down: bool,
    leaving: Option<Leaving>,
    left: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

/// A drop reason is logged at most this often.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// The tag every packet of the WAN pool carries (not a DNS label, so never a datacenter).
pub(super) const WAN_TAG: &str = "*wan";

impl PoolCore {
    /// A node of the pool `local.pool` that knows nobody yet and announces to `seeds`
    /// until it has members. Every random choice it makes comes from `seed`.
    pub fn new(
        local: NodeId,
        keyring: Option<SharedKeyring>,
        seeds: Vec<NodeId>,
        now: Now,
        seed: u64,
    ) -> PoolCore {
        let mut rng = StdRng::seed_from_u64(seed);
        let swim = Swim::new(local.clone(), now.at, StdRng::seed_from_u64(rng.random()));
        let vivaldi = Vivaldi::new(rng.random());
        let mut core = PoolCore {
            local,
            keyring,
            seeds,
            rng,
            swim,
            members: BTreeMap::new(),
            vivaldi,
            probes: HashMap::new(),
            byes: Vec::new(),
            key_ops: HashMap::new(),
            key_ops_seen: HashMap::new(),
            user_seen: HashMap::new(),
            timers: BinaryHeap::new(),
            // Each duty is first due at once, as a tokio interval's first tick.
            ticks: Ticks {
                announce: now.at,
                join_sync: now.at,
                probe: now.at,
                key: now.at,
                decay: now.at,
            },
            departed: HashSet::new(),
            logged: HashMap::new(),
            clock: now.at,
            news_of_down: false,
            leaving: None,
            left: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        core.store_own_coordinate();
        core.events.push_back(Event::Health(0));
        core
    }

    /// This node's identity.
    pub fn local(&self) -> &NodeId {
        &self.local
    }

    /// The members this node knows of (itself not included), in any state.
    pub fn members(&self) -> &BTreeMap<MemberKey, Member> {
        &self.members
    }

    /// This node's own network coordinate.
    pub fn coordinate(&self) -> &Coordinate {
        self.vivaldi.coordinate()
    }

    /// The local health score (0 is healthy).
    pub fn health(&self) -> u32 {
        self.swim.health.score()
    }

    /// Whether this node has left (it then ignores everything).
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`PoolCore::handle_timeout`] is next due (none once left).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        let ticks = &self.ticks;
        if let Some(leaving) = &self.leaving {
            return Some(leaving.next);
        }
        let foca = self.timers.peek().map(|Reverse((at, _))| *at);
        let announce = self.lonely().then_some(ticks.announce);
        let join_sync = self.syncing().then_some(ticks.join_sync);
        let key = (!self.key_ops.is_empty()).then_some(ticks.key);
        [foca, announce, join_sync, key]
            .into_iter()
            .flatten()
            .chain([ticks.probe, ticks.decay])
            .min()
    }

    fn lonely(&self) -> bool {
        self.swim.foca.num_members() == 0 && !self.seeds.is_empty()
    }

    fn syncing(&self) -> bool {
        // The window is measured against the last deadline handled (a core has no clock).
        self.swim.syncing_until > self.ticks.join_sync && self.swim.foca.num_members() > 0
    }

    /// A datagram arrived (over UDP from `from`; routed datagrams say nothing of their
    /// sender): foca's, a goodbye, a keyring message or a coordinate probe.
    pub fn handle_datagram(&mut self, now: Now, packet: &[u8], from: Option<SocketAddr>) {
        self.clock = now.at;
        // A node saying goodbye listens no more: told by others that it is down, foca would
        // renew its identity and join again.
        if self.left || self.leaving.is_some() {
            return;
        }
        match self.open(packet) {
            Ok((KIND_FOCA, payload)) => {
                if let Err(e) = self.swim.foca.handle_data(&payload, &mut self.swim.runtime) {
                    tracing::trace!(peer = ?from, error = %e, "foca refused a packet");
                }
            }
            Ok((KIND_BYE, payload)) => match postcard::from_bytes::<Bye>(&payload) {
                Ok(bye) => self.goodbye(&bye),
                Err(_) => self.drop_packet(from, "malformed"),
            },
            Ok((kind @ (KIND_KEY_OP | KIND_KEY_ACK), payload)) => {
                self.key_message(now, kind, &payload, from);
            }
            Ok((KIND_USER, payload)) => match postcard::from_bytes::<UserMessage>(&payload) {
                Ok(message) => self.user_message(now.at, message),
                Err(_) => self.drop_packet(from, "malformed"),
            },
            Ok((kind @ (KIND_PING | KIND_ACK), payload)) => {
                match postcard::from_bytes::<Probe>(&payload) {
                    Ok(probe) => self.probed(now, kind, probe, from),
                    Err(_) => self.drop_packet(from, "malformed"),
                }
            }
            Ok(_) => self.drop_packet(from, "malformed"),
            Err(reason) => self.drop_packet(from, reason),
        }
        self.after_event(now);
    }

    /// An operator's request.
    pub fn handle_input(&mut self, now: Now, input: Input) {
        self.clock = now.at;
        if self.left {
            if let Input::Key { token, .. } = input {
                // Answered, so that nobody waits on a pool that is gone.
                let outcome = KeyOutcome {
                    answers: Vec::new(),
                    silent: Vec::new(),
                };
                self.events.push_back(Event::KeyOutcome(token, outcome));
            }
            return;
        }
        match input {
            Input::Join(seeds) => {
                self.swim.syncing_until = now.at + JOIN_SYNC;
                self.ticks.join_sync = now.at;
                for seed in seeds {
                    if seed.addr() != self.local.addr() {
                        let _ = self.swim.foca.announce(seed, &mut self.swim.runtime);
                    }
                }
            }
            Input::Key { op, token } => self.start_key_op(now, op, token),
            Input::ForceLeave(keys) => self.force_leave(keys),
            Input::Leave => self.start_leaving(now),
            Input::Broadcast(payload) => self.broadcast(now.at, payload),
        }
        self.after_event(now);
    }

    /// Whatever is due at `now.at`: foca's timers, the periodic duties, the goodbyes of a
    /// leaving node.
    pub fn handle_timeout(&mut self, now: Now) {
        self.clock = now.at;
        if self.left {
            return;
        }
        let at = now.at;
        if self.leaving.is_some() {
            self.on_leaving(at);
            return;
        }
        self.on_timers(at);
        if at >= self.ticks.probe {
            self.ticks.probe = at + self.swim.config.probe_period;
            self.on_probe_period(at);
        }
        if !self.key_ops.is_empty() && at >= self.ticks.key {
            self.ticks.key = at + KEY_TICK_EVERY;
            self.on_key_tick(at);
        }
        if at >= self.ticks.decay {
            self.ticks.decay = at + HEALTH_DECAY / 2;
            if self.swim.health.decay(at) {
                self.apply_health();
            }
        }
        if self.lonely() && at >= self.ticks.announce {
            self.ticks.announce = at + ANNOUNCE_EVERY;
            for seed in self.seeds.clone() {
                if seed.addr() != self.local.addr() {
                    let _ = self.swim.foca.announce(seed, &mut self.swim.runtime);
                }
            }
        }
        if at >= self.ticks.join_sync {
            let syncing = self.swim.syncing_until > at && self.swim.foca.num_members() > 0;
            self.ticks.join_sync = at + JOIN_SYNC_EVERY;
            if syncing {
                // An announce is answered with the active members that fit in one packet,
                // chosen at random: a node joining a larger pool, or with many others at
                // once, asks a random member again every 250 ms for a while, instead of
                // learning the rest only as they happen to probe it (memberlist's
                // push-pull sync at join plays this part).
                if let Some(pick) = self.random_member() {
                    let _ = self.swim.foca.announce(pick, &mut self.swim.runtime);
                }
            }
        }
        self.after_event(now);
    }

    fn random_member(&mut self) -> Option<NodeId> {
        let members = self.swim.members();
        if members.is_empty() {
            return None;
        }
        let pick = self.rng.random_range(0..members.len());
        members.get(pick).cloned()
    }

    /// The pool's tag: the datacenter on the LAN.
    fn tag(&self) -> &str {
        match self.local.pool {
            PoolKind::Lan => &self.local.dc,
            PoolKind::Wan => WAN_TAG,
        }
    }

    fn seal(&mut self, kind: u8, payload: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let mut plain = Vec::with_capacity(payload.len() + 5 + tag.len());
        plain.extend_from_slice(MAGIC);
        plain.push(kind);
        plain.push(tag.len() as u8);
        plain.extend_from_slice(tag.as_bytes());
        plain.extend_from_slice(payload);
        match &self.keyring {
            Some(keyring) if keyring.verify().outgoing => {
                let mut nonce = [0u8; NONCE_LEN];
                self.rng.fill(&mut nonce);
                keyring.read().seal(nonce, &plain)
            }
            _ => plain,
        }
    }

    fn send(&mut self, to: NodeId, packet: Vec<u8>) {
        self.transmits.push_back(Transmit { to, packet });
    }

    /// The kind and payload of a datagram, or why it is dropped.
    fn open(&self, datagram: &[u8]) -> Result<(u8, Vec<u8>), &'static str> {
        let plain = match &self.keyring {
            Some(keyring) => match keyring.read().open(datagram) {
                Ok(plain) => plain,
                // `encrypt_verify_incoming = false`: plaintext is taken too.
                Err(_) if !keyring.verify().incoming && datagram.starts_with(MAGIC) => {
                    datagram.to_vec()
                }
                Err(_) if datagram.starts_with(MAGIC) => return Err("unencrypted"),
                Err(e) => return Err(e.as_label()),
            },
            None => datagram.to_vec(),
        };
        if plain.len() < 5 || &plain[..3] != MAGIC {
            return Err("malformed");
        }
        let dc_len = usize::from(plain[4]);
        let dc = plain.get(5..5 + dc_len).ok_or("malformed")?;
        if dc != self.tag().as_bytes() {
            return Err(match self.local.pool {
                PoolKind::Lan => "foreign_dc",
                PoolKind::Wan => "foreign_pool",
            });
        }
        Ok((plain[3], plain[5 + dc_len..].to_vec()))
    }

    /// Counts a dropped datagram, and logs it at most once a minute per reason (with how
    /// many were dropped since), so a node whose key differs keeps saying so without
    /// flooding the log.
    fn drop_packet(&mut self, from: Option<SocketAddr>, reason: &'static str) {
        self.events.push_back(Event::Dropped(reason));
        let now = self.clock;
        let (last, since) = self.logged.entry(reason).or_insert((now, 0));
        *since += 1;
        let first = *since == 1 && *last == now;
        if !first && now.saturating_duration_since(*last) < DROP_LOG_EVERY {
            return;
        }
        let dropped = std::mem::take(since);
        *last = now;
        let peer = from.map_or_else(|| "a gateway".to_owned(), |a| a.to_string());
        let hint = match reason {
            "no_key" => "no installed gossip key opens its packets: the gossip keys (encrypt, keyring) probably differ",
            "unencrypted" => "an unencrypted packet: the sender has no gossip key, or encrypt_verify_outgoing = false (set encrypt_verify_incoming = false here while encryption is being turned on)",
            "foreign_dc" => "a packet of another datacenter's pool",
            "foreign_pool" => "a packet of another pool",
            _ => "see isthmus_gossip_dropped_packets_total",
        };
        tracing::warn!(peer = %peer, reason, dropped, "dropping gossip packets: {hint}");
    }

    fn set_member(&mut self, key: MemberKey, member: Member) {
        self.events
            .push_back(Event::Member(key.clone(), member.clone()));
        self.members.insert(key, member);
    }

    fn forget_coordinate(&mut self, key: &MemberKey, display_name: &str) {
        self.events.push_back(Event::Coordinate(key.clone(), None));
        self.vivaldi.forget(display_name);
    }

    /// A goodbye arrived: a live member that is leaving goes down now (and the news is
    /// gossiped), not after a suspicion timeout.
    fn goodbye(&mut self, bye: &Bye) {
        if let Some(id) = self.departed(bye) {
            let _ = self.swim.foca.apply_many(
                std::iter::once(foca::Member::down(id)),
                true,
                &mut self.swim.runtime,
            );
        }
    }

    /// A member said goodbye (or was force-left): a failed one becomes left at once; a live
    /// one becomes left when SWIM declares it down, which the caller asks foca to do at
    /// once (the returned identity) rather than wait for probes to fail. Only a member at
    /// the incarnation the goodbye names is touched.
    fn departed(&mut self, bye: &Bye) -> Option<NodeId> {
        let member = self.members.get(&bye.key)?.clone();
        // A goodbye from an older incarnation is stale (a replay); one from a newer
        // incarnation than this node has heard of still ends the member.
        if bye.bump < member.id.bump {
            return None;
        }
        match member.status {
            MemberStatus::Failed => {
                tracing::info!(node = %member.id.display_name(), "member force-left");
                self.events.push_back(Event::Membership("left"));
                self.forget_coordinate(&bye.key, &member.id.display_name());
                let left = Member {
                    status: MemberStatus::Left,
                    ..member
                };
                self.set_member(bye.key.clone(), left);
            }
            MemberStatus::Alive => {
                self.departed.insert(bye.key.clone());
                return Some(member.id);
            }
            MemberStatus::Left => {}
        }
        None
    }

    /// A goodbye on each member's behalf, to every member and to us, sent again over the
    /// next probe periods.
    fn force_leave(&mut self, keys: Vec<MemberKey>) {
        let peers = self.swim.members();
        for key in keys {
            let Some(bump) = self.members.get(&key).map(|m| m.id.bump) else {
                continue;
            };
            let bye = Bye { key, bump };
            let Ok(payload) = postcard::to_stdvec(&bye) else {
                continue;
            };
            let packet = self.seal(KIND_BYE, &payload);
            for peer in &peers {
                self.send(peer.clone(), packet.clone());
            }
            self.byes.push((packet, BYE_REPEATS));
            let _ = self.departed(&bye);
        }
    }

    /// Our own goodbye: three rounds, a little apart (a lost goodbye would leave this node
    /// failed, not left, wherever it was lost), then foca leaves.
    fn start_leaving(&mut self, now: Now) {
        if self.leaving.is_some() {
            return;
        }
        let bye = Bye {
            key: self.local.addr(),
            bump: self.swim.foca.identity().bump,
        };
        let payload = postcard::to_stdvec(&bye).unwrap_or_default();
        let packet = self.seal(KIND_BYE, &payload);
        let peers = self.swim.members();
        for peer in &peers {
            self.send(peer.clone(), packet.clone());
        }
        self.leaving = Some(Leaving {
            packet,
            peers,
            rounds_left: 2,
            next: now.at + LEAVE_ROUND_GAP,
        });
    }

    fn on_leaving(&mut self, at: Instant) {
        let Some(leaving) = self.leaving.as_mut() else {
            return;
        };
        if at < leaving.next {
            return;
        }
        leaving.rounds_left = leaving.rounds_left.saturating_sub(1);
        leaving.next = at + LEAVE_ROUND_GAP;
        let (packet, peers, last) = (
            leaving.packet.clone(),
            leaving.peers.clone(),
            leaving.rounds_left == 0,
        );
        for peer in peers {
            self.send(peer, packet.clone());
        }
        if last {
            let _ = self.swim.foca.leave_cluster(&mut self.swim.runtime);
            self.flush(at);
            self.leaving = None;
            self.left = true;
            self.events.push_back(Event::Left);
        }
    }

    /// Sends the goodbyes still to be repeated to every member.
    fn repeat_byes(&mut self, peers: &[NodeId]) {
        let mut byes = std::mem::take(&mut self.byes);
        for (packet, left) in &mut byes {
            for peer in peers {
                self.send(peer.clone(), packet.clone());
            }
            *left = left.saturating_sub(1);
        }
        byes.retain(|(_, left)| *left > 0);
        self.byes = byes;
    }

    /// What foca wants sent, scheduled and known.
    fn flush(&mut self, at: Instant) {
        while let Some((to, data)) = self.swim.runtime.to_send() {
            let sealed = self.seal(KIND_FOCA, &data);
            self.send(to, sealed);
        }
        while let Some((after, timer)) = self.swim.runtime.to_schedule() {
            self.timers.push(Reverse((at + after, timer)));
        }
        while let Some(notification) = self.swim.runtime.to_notify() {
            self.notified(notification);
        }
    }

    fn notified(&mut self, notification: OwnedNotification<NodeId>) {
        match notification {
            OwnedNotification::MemberUp(id) => {
                tracing::info!(node = %id.name, addr = %id.addr, "member joined");
                self.events.push_back(Event::Membership("join"));
                self.departed.remove(&id.addr());
                let member = Member {
                    id,
                    status: MemberStatus::Alive,
                };
                self.set_member(member.id.addr(), member);
            }
            OwnedNotification::MemberDown(id) => {
                self.news_of_down = true;
                let status = if self.departed.remove(&id.addr()) {
                    MemberStatus::Left
                } else {
                    MemberStatus::Failed
                };
                tracing::info!(node = %id.name, addr = %id.addr, status = status.as_str(), "member down");
                if status == MemberStatus::Left {
                    self.forget_coordinate(&id.addr(), &id.display_name());
                }
                self.events.push_back(Event::Membership(status.as_str()));
                self.set_member(id.addr(), Member { id, status });
            }
            OwnedNotification::Rename(_, new) => {
                if let Some(member) = self.members.get(&new.addr()) {
                    let renamed = Member {
                        id: new,
                        status: member.status,
                    };
                    self.set_member(renamed.id.addr(), renamed);
                }
            }
            _ => {}
        }
    }

    /// Scales foca's suspicion timeout with the local health score.
    fn apply_health(&mut self) {
        let swim = &mut self.swim;
        swim.config.suspect_to_down_after = swim.health.suspicion(swim.base_suspicion);
        if let Err(e) = swim.foca.set_config(swim.config.clone()) {
            tracing::warn!(error = %e, "could not change the suspicion timeout");
        }
        self.events.push_back(Event::Health(swim.health.score()));
    }

    /// foca's timers that are due; a late wake-up is evidence that this node is slow.
    fn on_timers(&mut self, at: Instant) {
        // One wake-up is one piece of evidence, however many timers were due.
        let mut earliest = None;
        while self
            .timers
            .peek()
            .is_some_and(|Reverse((due, _))| *due <= at)
        {
            if let Some(Reverse((due, timer))) = self.timers.pop() {
                earliest.get_or_insert(due);
                let _ = self.swim.foca.handle_timer(timer, &mut self.swim.runtime);
            }
        }
        let slow = earliest.is_some_and(|due| self.swim.health.timer_fired(due, at));
        if slow {
            tracing::info!(
                score = self.swim.health.score(),
                "this node is running late; suspicions of others take longer to confirm"
            );
            self.apply_health();
        }
    }

    /// Each probe period: a coordinate probe to a random member, goodbyes sent again.
    fn on_probe_period(&mut self, at: Instant) {
        if let Some(pick) = self.random_member() {
            self.send_probe(at, &pick);
        }
        if !self.byes.is_empty() {
            let members = self.swim.members();
            self.repeat_byes(&members);
        }
    }

    /// After every call: what foca wants sent and scheduled goes out, news of a failure is
    /// passed on at once, and foca is resized with the pool.
    fn after_event(&mut self, now: Now) {
        self.flush(now.at);
        if std::mem::take(&mut self.news_of_down) {
            // foca starts a suspicion timer only on the member whose probe failed; the
            // others learn the verdict from it. Each member that learns it passes it on at
            // once instead of at its next gossip round, so that the whole pool knows within
            // a few hops (memberlist reaches the same end with a timer on every member that
            // heard the suspicion).
            let _ = self.swim.foca.gossip(&mut self.swim.runtime);
            self.flush(now.at);
        }
        let size = self.swim.foca.num_members() + 1;
        if size != self.swim.cluster_size {
            let pool = self.local.pool;
            let sized = pool_config(pool, size);
            let swim = &mut self.swim;
            swim.cluster_size = size;
            swim.base_suspicion = sized.suspect_to_down_after;
            // A joining pool grows from one: never send updates fewer times than a
            // 16-member pool would, or news of the later joiners spreads slowly.
            swim.config.max_transmissions = sized
                .max_transmissions
                .max(pool_config(pool, 16).max_transmissions);
            self.apply_health();
        }
    }
}
