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

use tokio_util::sync::CancellationToken;
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

/// Runs until `cancel`: while this server leads, reaps tombstones older than `ttl`.
pub async fn run(
    server: Arc<Server>,
    metrics: Arc<Metrics>,
    ttl: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(granularity(ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut notes = Notes::default();
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !server.is_leader() {
            notes.clear();
            continue;
        }
        let now = Instant::now();
        let Ok(applied) = server
            .state
            .read(|data| data.last_applied.map_or(0, |id| id.index))
        else {
            continue;
        };
        notes.note(now, applied);
        let Some(up_to) = notes.expired(now, ttl) else {
            continue;
        };
        let count = server
            .state
            .read(|data| data.state.kv.tombstones_up_to(up_to))
            .unwrap_or(0);
        if count == 0 {
            continue;
        }
        match server
            .proposer
            .propose(Command::KvReapTombstones { up_to })
            .await
        {
            Ok(_) => {
                metrics.tombstones_reaped.inc_by(count as u64);
                tracing::debug!(up_to, count, "reaped KV tombstones");
            }
            Err(e) => tracing::debug!(error = %e, "tombstone reap not committed; retrying later"),
        }
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
