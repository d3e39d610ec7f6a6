//! The leader's KV tombstone GC, as Consul's: a deleted key leaves a tombstone so that a
//! blocking query on it (or on its prefix) sees the delete's index; after the tombstone TTL
//! (Consul: 15 minutes) nobody waiting can still need it, and the leader proposes
//! [`Command::KvReapTombstones`] through Raft so every server forgets it at the same index.
//!
//! The leader notes the applied index every `granularity` (TTL / 30, at most 30 s); a note
//! older than the TTL bounds the deletes that are old enough. A new leader starts with no
//! notes, so a tombstone lives at most about twice the TTL across a change of leader.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wire::command::Command;

use crate::metrics::Metrics;
use crate::server::Server;

/// Consul's tombstone TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

/// How often the leader notes the applied index for a tombstone TTL of `ttl`.
pub fn granularity(ttl: Duration) -> Duration {
    (ttl / 30).clamp(Duration::from_millis(100), Duration::from_secs(30))
}

/// Notes of (when, applied index); answers which index is old enough to reap up to.
#[derive(Debug, Default)]
pub struct Notes {
    notes: VecDeque<(Instant, u64)>,
}

impl Notes {
    /// Notes `index` as applied at `now`.
    pub fn note(&mut self, now: Instant, index: u64) {
        self.notes.push_back((now, index));
    }

    /// The highest noted index at least `ttl` old at `now`, dropping the notes it covers.
    pub fn expired(&mut self, now: Instant, ttl: Duration) -> Option<u64> {
        let mut up_to = None;
        while let Some((at, index)) = self.notes.front().copied() {
            if now.duration_since(at) < ttl {
                break;
            }
            up_to = Some(index);
            self.notes.pop_front();
        }
        up_to
    }

    /// Forgets everything (leadership was lost).
    pub fn clear(&mut self) {
        self.notes.clear();
    }
}

/// The leader's duty: reaps tombstones older than `ttl`.
pub struct TombstoneGc {
    metrics: Arc<Metrics>,
    ttl: Duration,
    notes: Notes,
}

impl TombstoneGc {
    /// A GC of tombstones older than `ttl`.
    pub fn new(metrics: Arc<Metrics>, ttl: Duration) -> TombstoneGc {
        TombstoneGc {
            metrics,
            ttl,
            notes: Notes::default(),
        }
    }
}

#[async_trait::async_trait]
impl super::leader::Duty for TombstoneGc {
    fn name(&self) -> &'static str {
        "tombstone_gc"
    }

    fn every(&self) -> Duration {
        granularity(self.ttl)
    }

    async fn run(&mut self, server: &Arc<Server>) {
        let now = Instant::now();
        let Ok(applied) = server
            .state
            .read(|data| data.last_applied.map_or(0, |id| id.index))
        else {
            return;
        };
        self.notes.note(now, applied);
        let Some(up_to) = self.notes.expired(now, self.ttl) else {
            return;
        };
        let count = server
            .state
            .read(|data| data.state.kv.tombstones_up_to(up_to))
            .unwrap_or(0);
        if count == 0 {
            return;
        }
        match server
            .proposer
            .propose(Command::KvReapTombstones { up_to })
            .await
        {
            Ok(_) => {
                self.metrics.tombstones_reaped.inc_by(count as u64);
                tracing::debug!(up_to, count, "reaped KV tombstones");
            }
            Err(e) => tracing::debug!(error = %e, "tombstone reap not committed; retrying later"),
        }
    }

    fn not_leading(&mut self) {
        self.notes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_notes_older_than_the_ttl_bound_the_reap() {
        let start = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut notes = Notes::default();
        notes.note(start, 10);
        notes.note(start + Duration::from_secs(30), 20);
        notes.note(start + Duration::from_secs(61), 30);
        assert_eq!(notes.expired(start + Duration::from_secs(59), ttl), None);
        assert_eq!(
            notes.expired(start + Duration::from_secs(60), ttl),
            Some(10)
        );
        assert_eq!(
            notes.expired(start + Duration::from_secs(95), ttl),
            Some(20)
        );
        assert_eq!(notes.expired(start + Duration::from_secs(95), ttl), None);
        notes.clear();
        assert_eq!(notes.expired(start + Duration::from_secs(999), ttl), None);
        assert_eq!(granularity(DEFAULT_TTL), Duration::from_secs(30));
        assert_eq!(
            granularity(Duration::from_secs(1)),
            Duration::from_millis(100)
        );
    }
}
