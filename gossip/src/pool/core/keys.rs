//! Keyring operations across a pool: applied here, sent to every live member, sent again
//! until answered, each member's answer collected; a member applies a query once.

use super::*;

impl PoolCore {
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
    pub(super) fn start_key_op(&mut self, now: Now, op: KeyOp, token: u64) {
        let own = self.apply_key_op(&op);
        let outcome = KeyOutcome {
            answers: vec![own],
            silent: Vec::new(),
        };
        if self.keyring.is_none() {
            self.events.push_back(Event::KeyOutcome(token, outcome));
            return;
        }
        let waiting: BTreeMap<MemberKey, NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| m.status == MemberStatus::Alive)
            .map(|(key, m)| (key.clone(), m.id.clone()))
            .collect();
        let id = self.rng.random::<u64>();
        let pending = PendingKeyOp {
            op,
            sent_ms: now.unix_ms,
            waiting,
            outcome,
            deadline: now.at + KEY_OP_TIMEOUT,
            resend: now.at + KEY_OP_RESEND,
            token,
        };
        self.send_key_op(id, &pending);
        self.key_ops.insert(id, pending);
        self.ticks.key = now.at + KEY_TICK_EVERY;
        self.finish_key_ops(now.at);
    }

    /// Sends a keyring operation to the members that have not answered it.
    pub(super) fn send_key_op(&mut self, id: u64, pending: &PendingKeyOp) {
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
            self.send(member.clone(), packet.clone());
        }
    }

    /// Answers the operations that are complete or timed out.
    pub(super) fn finish_key_ops(&mut self, at: Instant) {
        let done: Vec<u64> = self
            .key_ops
            .iter()
            .filter(|(_, p)| p.waiting.is_empty() || at >= p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(mut pending) = self.key_ops.remove(&id) {
                pending.outcome.silent =
                    pending.waiting.values().map(NodeId::display_name).collect();
                self.events
                    .push_back(Event::KeyOutcome(pending.token, pending.outcome));
            }
        }
    }

    /// Keyring operations: queries sent again while unanswered, finished ones reported.
    pub(super) fn on_key_tick(&mut self, at: Instant) {
        let due: Vec<u64> = self
            .key_ops
            .iter()
            .filter(|(_, p)| at >= p.resend && at < p.deadline)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(mut pending) = self.key_ops.remove(&id) {
                self.send_key_op(id, &pending);
                pending.resend = at + KEY_OP_RESEND;
                self.key_ops.insert(id, pending);
            }
        }
        self.finish_key_ops(at);
    }

    /// A keyring operation from another member, or an answer to one of ours.
    pub(super) fn key_message(
        &mut self,
        now: Now,
        kind: u8,
        payload: &[u8],
        source: Option<SocketAddr>,
    ) {
        if kind == KIND_KEY_ACK {
            let Ok(ack) = postcard::from_bytes::<KeyAck>(payload) else {
                self.drop_packet(source, "malformed");
                return;
            };
            if let Some(pending) = self.key_ops.get_mut(&ack.id) {
                if pending.waiting.remove(&ack.from).is_some() {
                    pending.outcome.answers.push(ack.answer);
                }
            }
            self.finish_key_ops(now.at);
            return;
        }
        let Ok(query) = postcard::from_bytes::<KeyQuery>(payload) else {
            self.drop_packet(source, "malformed");
            return;
        };
        // Only from a live member of the pool (whose packets the keyring opened).
        let Some(to) = self
            .members
            .get(&query.from)
            .filter(|m| m.status == MemberStatus::Alive)
            .map(|m| m.id.clone())
        else {
            return;
        };
        // A replayed query (sealed packets can be recorded) is never applied again.
        let max_age = u64::try_from(KEY_OP_MAX_AGE.as_millis()).unwrap_or(u64::MAX);
        if now.unix_ms.abs_diff(query.sent_ms) > max_age {
            self.drop_packet(source, "stale_key_op");
            return;
        }
        if let (Some(source), MemberKey::Lan(claimed)) = (source, &query.from) {
            if source != *claimed {
                self.drop_packet(Some(source), "spoofed");
                return;
            }
        }
        let Some(answer) = self.answer_key_query(now.at, &query, source) else {
            return;
        };
        let ack = KeyAck {
            id: query.id,
            from: self.local.addr(),
            answer,
        };
        if let Ok(payload) = postcard::to_stdvec(&ack) {
            let packet = self.seal(KIND_KEY_ACK, &payload);
            self.send(to, packet);
        }
    }

    /// Applies a member's keyring query once; a query sent again (our answer was lost) gets
    /// the same answer without being applied twice. `None`: too many to remember.
    pub(super) fn answer_key_query(
        &mut self,
        at: Instant,
        query: &KeyQuery,
        source: Option<SocketAddr>,
    ) -> Option<KeyAnswer> {
        self.key_ops_seen
            .retain(|_, (seen, _)| at.saturating_duration_since(*seen) < KEY_OP_MAX_AGE);
        let seen = (query.from.clone(), query.id);
        if let Some((_, answer)) = self.key_ops_seen.get(&seen) {
            return Some(answer.clone());
        }
        if self.key_ops_seen.len() >= KEY_OPS_SEEN {
            self.drop_packet(source, "key_op_flood");
            return None;
        }
        let answer = self.apply_key_op(&query.op);
        if let Some(error) = &answer.error {
            tracing::warn!(op = ?redacted(&query.op), error = %error, "a keyring operation failed here");
        } else if query.op != KeyOp::List {
            tracing::info!(op = ?redacted(&query.op), "keyring changed by an operator's request");
        }
        self.key_ops_seen.insert(seen, (at, answer.clone()));
        Some(answer)
    }
}
