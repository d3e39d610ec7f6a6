//! What a pool reports (metrics), and Lifeguard's local health awareness (pure).

use super::*;

/// What the pool reports to metrics.
pub trait PoolEvents: Send + Sync + 'static {
    /// A datagram was dropped (`no_key`, `foreign_dc`, `malformed`, ...).
    fn dropped(&self, reason: &'static str);
    /// A member joined, failed or left.
    fn member(&self, status: &'static str);
    /// The local health score changed (0 is healthy; see [`LocalHealth`]).
    fn health(&self, score: u32);
}

/// Highest local health score: suspicions then last nine times as long.
pub const MAX_HEALTH_SCORE: u32 = 8;
/// A timer firing this late means this node, not its peers, was slow.
pub(super) const LAG_THRESHOLD: Duration = Duration::from_millis(200);
/// How long after starting (or a `join`) a node keeps asking random members for theirs.
pub(super) const JOIN_SYNC: Duration = Duration::from_secs(5);
/// The score falls by one per this long without new evidence of slowness.
pub(super) const HEALTH_DECAY: Duration = Duration::from_secs(2);

/// Lifeguard's local health awareness, as far as foca allows: a node that finds itself slow
/// (its timers fire late: CPU starvation, a paused process, an overloaded host) raises its
/// score, and its suspicions of others then take `1 + score` times as long to become
/// "failed", so that its own slowness does not get healthy peers declared dead while they
/// refute. The score decays once the node keeps time again. (foca fixes the probe timeouts
/// at start, so only the suspicion timeout scales.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalHealth {
    score: u32,
    last_change: Instant,
}

impl LocalHealth {
    /// A healthy node.
    pub fn new(now: Instant) -> LocalHealth {
        LocalHealth {
            score: 0,
            last_change: now,
        }
    }

    /// The score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// A timer due at `due` fired at `now`: raise the score if that was late. Returns
    /// whether the score changed.
    pub fn timer_fired(&mut self, due: Instant, now: Instant) -> bool {
        if now.saturating_duration_since(due) <= LAG_THRESHOLD {
            return false;
        }
        self.last_change = now;
        if self.score >= MAX_HEALTH_SCORE {
            return false;
        }
        self.score += 1;
        true
    }

    /// Lowers the score by one per [`HEALTH_DECAY`] without new evidence. Returns whether
    /// the score changed.
    pub fn decay(&mut self, now: Instant) -> bool {
        let mut changed = false;
        while self.score > 0 && now.saturating_duration_since(self.last_change) >= HEALTH_DECAY {
            self.score -= 1;
            self.last_change += HEALTH_DECAY;
            changed = true;
        }
        changed
    }

    /// The suspicion timeout for a base of `base`.
    pub fn suspicion(&self, base: Duration) -> Duration {
        base * (1 + self.score)
    }
}
