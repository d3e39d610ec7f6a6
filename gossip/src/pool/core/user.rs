//! Application messages (user events) spread to every member.

use super::*;

impl PoolCore {
    /// Sends a new user message to every live member.
    pub(super) fn broadcast(&mut self, at: Instant, payload: Vec<u8>) {
        if payload.len() > MAX_USER_PAYLOAD {
            tracing::warn!(
                bytes = payload.len(),
                "a user message too large to gossip was not sent"
            );
            return;
        }
        let message = UserMessage {
            id: self.rng.random(),
            payload,
        };
        self.remember_user(at, message.id);
        let Ok(encoded) = postcard::to_stdvec(&message) else {
            return;
        };
        let packet = self.seal(KIND_USER, &encoded);
        for member in self.swim.members() {
            self.send(member, packet.clone());
        }
    }

    /// A user message: delivered and passed on the first time, ignored after.
    pub(super) fn user_message(&mut self, at: Instant, message: UserMessage) {
        if self.user_seen.contains_key(&message.id) {
            return;
        }
        self.remember_user(at, message.id);
        if let Ok(encoded) = postcard::to_stdvec(&message) {
            let packet = self.seal(KIND_USER, &encoded);
            // 2 log2(N) random members (at least USER_FANOUT): each member then hears it
            // about that many times over, so one lost datagram rarely matters.
            let n = self.swim.foca.num_members() as f64 + 1.0;
            let fanout = ((2.0 * n.log2()).ceil() as usize).max(USER_FANOUT);
            for _ in 0..fanout {
                if let Some(member) = self.random_member() {
                    self.send(member, packet.clone());
                }
            }
        }
        self.events.push_back(Event::Broadcast(message.payload));
    }

    pub(super) fn remember_user(&mut self, at: Instant, id: u64) {
        if self.user_seen.len() >= USER_SEEN_MAX {
            self.user_seen
                .retain(|_, seen| at.saturating_duration_since(*seen) < USER_SEEN_FOR);
        }
        if self.user_seen.len() >= USER_SEEN_MAX {
            // Still full within the window: forget the oldest.
            if let Some(oldest) = self
                .user_seen
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| *id)
            {
                self.user_seen.remove(&oldest);
            }
        }
        self.user_seen.insert(id, at);
    }
}
