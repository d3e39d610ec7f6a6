//! The one task that owns foca: datagrams, timers, commands, goodbyes, probes and keyring
//! operations.

use super::*;

pub(super) struct Driver {
    pub(super) local: NodeId,
    pub(super) keyring: Option<SharedKeyring>,
    pub(super) seeds: Vec<NodeId>,
    pub(super) events: Arc<dyn PoolEvents>,
    pub(super) members: Arc<RwLock<BTreeMap<MemberKey, Member>>>,
    pub(super) coordinates: Coordinates,
    pub(super) vivaldi: Vivaldi,
    /// Coordinate probes sent and not answered yet: nonce -> (when, to whom).
    pub(super) probes: HashMap<u64, (Instant, MemberKey)>,
    /// Force-leave goodbyes still to be sent again, and how many more times.
    pub(super) byes: Vec<(Vec<u8>, u8)>,
    /// Keyring operations waiting for answers, by id.
    pub(super) key_ops: HashMap<u64, PendingKeyOp>,
    /// Keyring queries applied here lately, by (sender, id), with their answer.
    pub(super) key_ops_seen: HashMap<(MemberKey, u64), (Instant, KeyAnswer)>,
    pub(super) transport: Transport,
    pub(super) timers: BinaryHeap<Reverse<(Instant, Timer<NodeId>)>>,
    /// Members that said goodbye: their next MemberDown means left, not failed.
    pub(super) departed: HashSet<MemberKey>,
    pub(super) logged: HashSet<&'static str>,
    /// A member went down since the last flush: spread the news at once.
    pub(super) news_of_down: bool,
}

/// The tag every packet of the WAN pool carries (not a DNS label, so never a datacenter).
pub(super) const WAN_TAG: &str = "*wan";

impl Driver {
    /// The pool's tag: the datacenter on the LAN.
    pub(super) fn tag(&self) -> &str {
        match self.local.pool {
            PoolKind::Lan => &self.local.dc,
            PoolKind::Wan => WAN_TAG,
        }
    }

    pub(super) fn seal(&self, kind: u8, payload: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let mut plain = Vec::with_capacity(payload.len() + 5 + tag.len());
        plain.extend_from_slice(MAGIC);
        plain.push(kind);
        plain.push(tag.len() as u8);
        plain.extend_from_slice(tag.as_bytes());
        plain.extend_from_slice(payload);
        match self.keyring.as_ref().and_then(|k| k.read()) {
            Some(keyring) => {
                let mut nonce = [0u8; NONCE_LEN];
                rand::fill(&mut nonce);
                keyring.seal(nonce, &plain)
            }
            None => plain,
        }
    }

    /// The kind and payload of a datagram, or why it is dropped.
    pub(super) fn open(&self, datagram: &[u8]) -> Result<(u8, Vec<u8>), &'static str> {
        let plain = match self.keyring.as_ref().and_then(|k| k.read()) {
            Some(keyring) => keyring.open(datagram).map_err(|e| e.as_label())?,
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

    pub(super) fn drop_packet(&mut self, from: Option<SocketAddr>, reason: &'static str) {
        self.events.dropped(reason);
        if self.logged.insert(reason) {
            let peer = from.map_or_else(|| "a gateway".to_owned(), |a| a.to_string());
            tracing::warn!(peer = %peer, reason, "dropped a gossip packet (further drops for this reason are only counted in isthmus_gossip_dropped_packets_total)");
        }
    }

    /// A member said goodbye (or was force-left): a failed one becomes left at once; a live
    /// one becomes left when SWIM declares it down, which the caller asks foca to do at
    /// once (the returned identity) rather than wait for probes to fail. Only a member at
    /// the incarnation the goodbye names is touched.
    pub(super) fn departed(&mut self, bye: &Bye) -> Option<NodeId> {
        let mut members = self.members.write();
        let member = members.get_mut(&bye.key)?;
        // A goodbye from an older incarnation is stale (a replay); one from a newer
        // incarnation than this node has heard of still ends the member.
        if bye.bump < member.id.bump {
            return None;
        }
        match member.status {
            MemberStatus::Failed => {
                tracing::info!(node = %member.id.display_name(), "member force-left");
                member.status = MemberStatus::Left;
                self.events.member("left");
                {
                    let mut coordinates = self.coordinates.write();
                    coordinates.remove(&bye.key);
                }
                self.vivaldi.forget(&member.id.display_name());
            }
            MemberStatus::Alive => {
                self.departed.insert(bye.key.clone());
                return Some(member.id.clone());
            }
            MemberStatus::Left => {}
        }
        None
    }

    /// Sends the goodbyes still to be repeated to every member.
    pub(super) async fn repeat_byes(&mut self, peers: &[NodeId]) {
        let mut byes = std::mem::take(&mut self.byes);
        for (packet, left) in &mut byes {
            for peer in peers {
                self.transport.send(peer, packet.clone()).await;
            }
            *left = left.saturating_sub(1);
        }
        byes.retain(|(_, left)| *left > 0);
        self.byes = byes;
    }

    pub(super) async fn flush(&mut self, runtime: &mut AccumulatingRuntime<NodeId>) {
        while let Some((to, data)) = runtime.to_send() {
            let sealed = self.seal(KIND_FOCA, &data);
            self.transport.send(&to, sealed).await;
        }
        while let Some((after, timer)) = runtime.to_schedule() {
            self.timers.push(Reverse((Instant::now() + after, timer)));
        }
        while let Some(notification) = runtime.to_notify() {
            self.notified(notification);
        }
    }

    pub(super) fn notified(&mut self, notification: OwnedNotification<NodeId>) {
        let mut members = self.members.write();
        match notification {
            OwnedNotification::MemberUp(id) => {
                tracing::info!(node = %id.name, addr = %id.addr, "member joined");
                self.events.member("join");
                self.departed.remove(&id.addr());
                members.insert(
                    id.addr(),
                    Member {
                        id,
                        status: MemberStatus::Alive,
                    },
                );
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
                    {
                        let mut coordinates = self.coordinates.write();
                        coordinates.remove(&id.addr());
                    }
                    self.vivaldi.forget(&format!("{}.{}", id.name, id.dc));
                }
                self.events.member(if status == MemberStatus::Left {
                    "left"
                } else {
                    "failed"
                });
                members.insert(id.addr(), Member { id, status });
            }
            OwnedNotification::Rename(_, new) => {
                if let Some(member) = members.get_mut(&new.addr()) {
                    member.id = new;
                }
            }
            _ => {}
        }
    }

    pub(super) fn probe_for(&self, nonce: u64) -> Probe {
        Probe {
            nonce,
            from: self.local.addr(),
            coordinate: self.vivaldi.coordinate().clone(),
        }
    }

    /// Sends a coordinate probe to `to`.
    pub(super) async fn send_probe(&mut self, to: &NodeId) {
        let now = Instant::now();
        self.probes
            .retain(|_, (sent, _)| now.saturating_duration_since(*sent) < PROBE_TIMEOUT);
        let nonce = rand::random::<u64>();
        let Ok(payload) = postcard::to_stdvec(&self.probe_for(nonce)) else {
            return;
        };
        self.probes.insert(nonce, (now, to.addr()));
        let packet = self.seal(KIND_PING, &payload);
        self.transport.send(to, packet).await;
    }

    /// A coordinate probe or its answer arrived (over UDP, from `source`).
    pub(super) async fn probed(&mut self, kind: u8, probe: Probe, source: Option<SocketAddr>) {
        if !probe.coordinate.is_valid() {
            return;
        }
        // Over UDP a probe must come from the address it claims (no reflection); routed
        // probes are vouched for by the keyring's seal.
        if let (Some(source), MemberKey::Lan(claimed)) = (source, &probe.from) {
            if source != *claimed {
                self.drop_packet(Some(source), "spoofed");
                return;
            }
        }
        // Who it is comes from the pool, not from the probe.
        let member = Some(self.members.read()).and_then(|m| {
            m.get(&probe.from)
                .filter(|m| m.status != MemberStatus::Left)
                .map(|m| (m.id.name.clone(), m.id.dc.clone(), m.id.display_name()))
        });
        if kind == KIND_PING {
            let to = match &probe.from {
                MemberKey::Lan(addr) => NodeId::lan_seed(*addr),
                MemberKey::Wan(dc, node) => NodeId::wan_seed(dc, node),
            };
            if let Ok(payload) = postcard::to_stdvec(&self.probe_for(probe.nonce)) {
                let packet = self.seal(KIND_ACK, &payload);
                self.transport.send(&to, packet).await;
            }
        } else {
            let Some((sent, key)) = self.probes.remove(&probe.nonce) else {
                return;
            };
            if key != probe.from {
                return;
            }
            let Some((_, _, peer)) = &member else {
                return;
            };
            let rtt = sent.elapsed().as_secs_f64();
            if self.vivaldi.observe(peer, &probe.coordinate, rtt) {
                self.store_own_coordinate();
            }
        }
        // Only members' coordinates are kept: a probe from outside the pool is answered
        // (it may be joining) but not remembered.
        if let Some((node, dc, _)) = member {
            {
                let mut coordinates = self.coordinates.write();
                coordinates.insert(
                    probe.from,
                    NodeCoordinate {
                        node,
                        dc,
                        coordinate: probe.coordinate,
                    },
                );
            }
        }
    }

    /// Applies a keyring operation here and says how the keyring looks now.
    pub(super) fn apply_key_op(&self, op: &KeyOp) -> KeyAnswer {
        let node = self.local.display_name();
        match &self.keyring {
            None => KeyAnswer {
                node,
                error: Some("gossip encryption is not enabled on this agent".to_owned()),
                keys: Vec::new(),
            },
            Some(keyring) => KeyAnswer {
                node,
                error: keyring.apply(op).err(),
                keys: keyring.keys(),
            },
        }
    }

    /// Starts a keyring operation: here at once, then on every live member.
    pub(super) async fn start_key_op(&mut self, op: KeyOp, reply: oneshot::Sender<KeyOutcome>) {
        let own = self.apply_key_op(&op);
        if self.keyring.is_none() {
            let _ = reply.send(KeyOutcome {
                answers: vec![own],
                silent: Vec::new(),
            });
            return;
        }
        let waiting: BTreeMap<MemberKey, NodeId> = self
            .members
            .read()
            .iter()
            .filter(|(_, m)| m.status == MemberStatus::Alive)
            .map(|(key, m)| (key.clone(), m.id.clone()))
            .collect();
        let id = rand::random::<u64>();
        let now = Instant::now();
        let pending = PendingKeyOp {
            op,
            sent_ms: crate::unix_ms(),
            waiting,
            outcome: KeyOutcome {
                answers: vec![own],
                silent: Vec::new(),
            },
            deadline: now + KEY_OP_TIMEOUT,
            resend: now + KEY_OP_RESEND,
            reply,
        };
        self.send_key_op(id, &pending).await;
        self.key_ops.insert(id, pending);
        self.finish_key_ops(now);
    }

    /// Sends a keyring operation to the members that have not answered it.
    pub(super) async fn send_key_op(&self, id: u64, pending: &PendingKeyOp) {
        let query = KeyQuery {
            id,
            from: self.local.addr(),
            sent_ms: pending.sent_ms,
            op: pending.op.clone(),
        };
        let Ok(payload) = postcard::to_stdvec(&query) else {
            return;
        };
        let packet = self.seal(KIND_KEY_OP, &payload);
        for member in pending.waiting.values() {
            self.transport.send(member, packet.clone()).await;
        }
    }

    /// Sends again what is due, and answers the operations that are complete or timed out.
    pub(super) fn finish_key_ops(&mut self, now: Instant) {
        let done: Vec<u64> = self
            .key_ops
            .iter()
            .filter(|(_, p)| p.waiting.is_empty() || now >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(mut pending) = self.key_ops.remove(&id) {
                pending.outcome.silent =
                    pending.waiting.values().map(NodeId::display_name).collect();
                let _ = pending.reply.send(pending.outcome);
            }
        }
    }

    /// A keyring operation from another member, or an answer to one of ours.
    pub(super) async fn key_message(
        &mut self,
        kind: u8,
        payload: &[u8],
        source: Option<SocketAddr>,
    ) {
        if kind == KIND_KEY_OP {
            let Ok(query) = postcard::from_bytes::<KeyQuery>(payload) else {
                self.drop_packet(source, "malformed");
                return;
            };
            // Only from a live member of the pool (whose packets the keyring opened).
            let to = Some(self.members.read()).and_then(|m| {
                m.get(&query.from)
                    .filter(|m| m.status == MemberStatus::Alive)
                    .map(|m| m.id.clone())
            });
            let Some(to) = to else { return };
            // A replayed query (sealed packets can be recorded) is never applied again.
            let now_ms = crate::unix_ms();
            let max_age = u64::try_from(KEY_OP_MAX_AGE.as_millis()).unwrap_or(u64::MAX);
            if now_ms.abs_diff(query.sent_ms) > max_age {
                self.drop_packet(source, "stale_key_op");
                return;
            }
            if let (Some(source), MemberKey::Lan(claimed)) = (source, &query.from) {
                if source != *claimed {
                    self.drop_packet(Some(source), "spoofed");
                    return;
                }
            }
            let now = Instant::now();
            self.key_ops_seen
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < KEY_OP_MAX_AGE);
            let seen = (query.from.clone(), query.id);
            let answer = match self.key_ops_seen.get(&seen) {
                // Sent again because our answer was lost: the same answer, not applied twice.
                Some((_, answer)) => answer.clone(),
                None => {
                    if self.key_ops_seen.len() >= KEY_OPS_SEEN {
                        self.drop_packet(source, "key_op_flood");
                        return;
                    }
                    let answer = self.apply_key_op(&query.op);
                    if let Some(error) = &answer.error {
                        tracing::warn!(op = ?redacted(&query.op), error = %error, "a keyring operation failed here");
                    } else if query.op != KeyOp::List {
                        tracing::info!(op = ?redacted(&query.op), "keyring changed by an operator's request");
                    }
                    self.key_ops_seen.insert(seen, (now, answer.clone()));
                    answer
                }
            };
            let ack = KeyAck {
                id: query.id,
                from: self.local.addr(),
                answer,
            };
            if let Ok(payload) = postcard::to_stdvec(&ack) {
                let packet = self.seal(KIND_KEY_ACK, &payload);
                self.transport.send(&to, packet).await;
            }
        } else {
            let Ok(ack) = postcard::from_bytes::<KeyAck>(payload) else {
                self.drop_packet(source, "malformed");
                return;
            };
            if let Some(pending) = self.key_ops.get_mut(&ack.id) {
                if pending.waiting.remove(&ack.from).is_some() {
                    pending.outcome.answers.push(ack.answer);
                }
            }
            self.finish_key_ops(Instant::now());
        }
    }

    pub(super) fn store_own_coordinate(&self) {
        {
            let mut coordinates = self.coordinates.write();
            coordinates.insert(
                self.local.addr(),
                NodeCoordinate {
                    node: self.local.name.clone(),
                    dc: self.local.dc.clone(),
                    coordinate: self.vivaldi.coordinate().clone(),
                },
            );
        }
    }

    /// Scales foca's suspicion timeout with the local health score.
    pub(super) fn apply_health(
        &self,
        foca: &mut Foca<NodeId, PostcardCodec, rand::rngs::StdRng, foca::NoCustomBroadcast>,
        config: &mut Config,
        health: &LocalHealth,
        base: Duration,
    ) {
        config.suspect_to_down_after = health.suspicion(base);
        if let Err(e) = foca.set_config(config.clone()) {
            tracing::warn!(error = %e, "could not change the suspicion timeout");
        }
        self.events.health(health.score());
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) {
        let mut swim = Swim::new(self.local.clone());
        let mut buffer = vec![0u8; 2048];
        let mut announce = tokio::time::interval(Duration::from_secs(1));
        let mut join_sync = tokio::time::interval(Duration::from_millis(250));
        join_sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One coordinate probe per probe period, to a random member (as Serf piggybacks
        // its coordinates on memberlist's probes).
        let mut probe = tokio::time::interval(swim.config.probe_period);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.store_own_coordinate();
        let mut key_tick = tokio::time::interval(Duration::from_millis(200));
        key_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut decay = tokio::time::interval(HEALTH_DECAY / 2);
        decay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.events.health(0);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let syncing = swim.syncing_until > Instant::now() && swim.foca.num_members() > 0;
            let lonely = swim.foca.num_members() == 0 && !self.seeds.is_empty();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                received = self.transport.recv(&mut buffer) => {
                    let Some((packet, from)) = received else { continue };
                    self.on_packet(&mut swim, &packet, from).await;
                }
                _ = async { match next_timer { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    self.on_timers(&mut swim);
                }
                _ = probe.tick() => self.on_probe_period(&mut swim).await,
                _ = key_tick.tick(), if !self.key_ops.is_empty() => self.on_key_tick().await,
                _ = decay.tick() => {
                    if swim.health.decay(Instant::now()) {
                        swim.apply_health(&self);
                    }
                }
                _ = announce.tick(), if lonely => {
                    for seed in self.seeds.clone() {
                        if seed.addr() != self.local.addr() {
                            let _ = swim.foca.announce(seed, &mut swim.runtime);
                        }
                    }
                }
                _ = join_sync.tick(), if syncing => {
                    // An announce is answered with the active members that fit in one packet,
                    // chosen at random: a node joining a larger pool, or with many others at
                    // once, asks a random member again every 250 ms for a while, instead of
                    // learning the rest only as they happen to probe it (memberlist's
                    // push-pull sync at join plays this part).
                    if let Some(pick) = swim.random_member() {
                        let _ = swim.foca.announce(pick, &mut swim.runtime);
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    if !self.on_command(&mut swim, command).await {
                        return;
                    }
                }
            }
            self.after_event(&mut swim).await;
        }
    }

    /// A datagram arrived: foca's, a goodbye, a keyring message or a coordinate probe.
    async fn on_packet(&mut self, swim: &mut Swim, packet: &[u8], from: Option<SocketAddr>) {
        match self.open(packet) {
            Ok((KIND_FOCA, payload)) => {
                if let Err(e) = swim.foca.handle_data(&payload, &mut swim.runtime) {
                    tracing::trace!(peer = ?from, error = %e, "foca refused a packet");
                }
            }
            Ok((KIND_BYE, payload)) => match postcard::from_bytes::<Bye>(&payload) {
                Ok(bye) => {
                    if let Some(id) = self.departed(&bye) {
                        // It is leaving: down now (and gossiped), not after a suspicion
                        // timeout.
                        let _ = swim.foca.apply_many(
                            std::iter::once(foca::Member::down(id)),
                            true,
                            &mut swim.runtime,
                        );
                    }
                }
                Err(_) => self.drop_packet(from, "malformed"),
            },
            Ok((kind @ (KIND_KEY_OP | KIND_KEY_ACK), payload)) => {
                self.key_message(kind, &payload, from).await;
            }
            Ok((kind @ (KIND_PING | KIND_ACK), payload)) => {
                match postcard::from_bytes::<Probe>(&payload) {
                    Ok(probe) => self.probed(kind, probe, from).await,
                    Err(_) => self.drop_packet(from, "malformed"),
                }
            }
            Ok(_) => self.drop_packet(from, "malformed"),
            Err(reason) => self.drop_packet(from, reason),
        }
    }

    /// foca's timers that are due; a late wake-up is evidence that this node is slow.
    fn on_timers(&mut self, swim: &mut Swim) {
        let now = Instant::now();
        // One wake-up is one piece of evidence, however many timers were due.
        let mut earliest = None;
        while self
            .timers
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now)
        {
            if let Some(Reverse((at, timer))) = self.timers.pop() {
                earliest.get_or_insert(at);
                let _ = swim.foca.handle_timer(timer, &mut swim.runtime);
            }
        }
        let slow = earliest.is_some_and(|due| swim.health.timer_fired(due, now));
        if slow {
            tracing::info!(
                score = swim.health.score(),
                "this node is running late; suspicions of others take longer to confirm"
            );
            swim.apply_health(self);
        }
    }

    /// Each probe period: a coordinate probe to a random member, goodbyes sent again.
    async fn on_probe_period(&mut self, swim: &mut Swim) {
        let members: Vec<NodeId> = swim.members();
        if let Some(pick) = members.get(rand::random_range(0..members.len().max(1))) {
            self.send_probe(pick).await;
        }
        if !self.byes.is_empty() {
            self.repeat_byes(&members).await;
        }
    }

    /// Keyring operations: queries sent again while unanswered, finished ones reported.
    async fn on_key_tick(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .key_ops
            .iter()
            .filter(|(_, p)| now >= p.resend && now < p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(mut pending) = self.key_ops.remove(&id) {
                self.send_key_op(id, &pending).await;
                pending.resend = now + KEY_OP_RESEND;
                self.key_ops.insert(id, pending);
            }
        }
        self.finish_key_ops(now);
    }

    /// A command from the `Pool` handle; false once the pool has left.
    async fn on_command(&mut self, swim: &mut Swim, command: Command) -> bool {
        match command {
            Command::Join(seeds) => {
                swim.syncing_until = Instant::now() + JOIN_SYNC;
                for seed in seeds {
                    if seed.addr() != self.local.addr() {
                        let _ = swim.foca.announce(seed, &mut swim.runtime);
                    }
                }
            }
            Command::Key(op, reply) => self.start_key_op(op, reply).await,
            Command::ForceLeave(keys) => {
                // A goodbye on the member's behalf, to every member and to us, sent again
                // over the next probe periods.
                let peers = swim.members();
                for key in keys {
                    let bump = self.members.read().get(&key).map(|m| m.id.bump);
                    let Some(bump) = bump else { continue };
                    let bye = Bye { key, bump };
                    let Ok(payload) = postcard::to_stdvec(&bye) else {
                        continue;
                    };
                    let packet = self.seal(KIND_BYE, &payload);
                    for peer in &peers {
                        self.transport.send(peer, packet.clone()).await;
                    }
                    self.byes.push((packet, BYE_REPEATS));
                    let _ = self.departed(&bye);
                }
            }
            Command::Leave(done) => {
                let bye = Bye {
                    key: self.local.addr(),
                    bump: swim.foca.identity().bump,
                };
                let payload = postcard::to_stdvec(&bye).unwrap_or_default();
                let packet = self.seal(KIND_BYE, &payload);
                let peers = swim.members();
                // Three times, a little apart: a lost goodbye would leave this node failed,
                // not left, wherever it was lost.
                for round in 0..3 {
                    if round > 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    for peer in &peers {
                        self.transport.send(peer, packet.clone()).await;
                    }
                }
                let _ = swim.foca.leave_cluster(&mut swim.runtime);
                self.flush(&mut swim.runtime).await;
                let _ = done.send(());
                return false;
            }
        }
        true
    }

    /// After every event: what foca wants sent and scheduled goes out, news of a failure is
    /// passed on at once, and foca is resized with the pool.
    async fn after_event(&mut self, swim: &mut Swim) {
        self.flush(&mut swim.runtime).await;
        if std::mem::take(&mut self.news_of_down) {
            // foca starts a suspicion timer only on the member whose probe failed; the
            // others learn the verdict from it. Each member that learns it passes it on at
            // once instead of at its next gossip round, so that the whole pool knows within
            // a few hops (memberlist reaches the same end with a timer on every member that
            // heard the suspicion).
            let _ = swim.foca.gossip(&mut swim.runtime);
            self.flush(&mut swim.runtime).await;
        }
        let size = swim.foca.num_members() + 1;
        if size != swim.cluster_size {
            swim.cluster_size = size;
            let pool = self.local.pool;
            let sized = pool_config(pool, size);
            swim.base_suspicion = sized.suspect_to_down_after;
            // A joining pool grows from one: never send updates fewer times than a
            // 16-member pool would, or news of the later joiners spreads slowly.
            swim.config.max_transmissions = sized
                .max_transmissions
                .max(pool_config(pool, 16).max_transmissions);
            swim.apply_health(self);
        }
    }
}
