//! Sessions' TTLs, on the leader (as Consul's): each TTL session has a deadline twice its
//! TTL after it was created or last renewed; a session past its deadline is invalidated
//! through Raft ([`Command::SessionDestroy`]), which releases its locks. A new leader arms
//! every TTL session afresh (it cannot know when the old leader last saw a renewal), so a
//! session never dies early across a failover; it may then live up to 2 x TTL after the
//! election.
//!
//! [`SessionTimers`] is pure (time passed in); [`SessionReaper`] is the leader's duty that
//! drives it, and `PUT /v1/session/renew` renews through [`Server::session_timers`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wire::command::Command;

use super::Server;

/// How often the leader looks for expired sessions.
pub const REAP_EVERY: Duration = Duration::from_millis(250);

/// A deadline falls this much before 2 x TTL, so that with the reaper's period and the
/// Raft commit the session is gone within Consul's bound of twice its TTL (TTLs are at
/// least 10 s, so it still outlives its TTL by far).
const MARGIN: Duration = Duration::from_millis(600);

/// The TTL of a session's `TTL` text (`"30s"`); none when empty or unreadable.
pub fn ttl_of(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    text.parse::<wire::GoDuration>().ok().map(|d| d.0)
}

/// When each TTL session expires, on the leader.
#[derive(Debug, Default)]
pub struct SessionTimers {
    deadlines: HashMap<String, Instant>,
    /// The Raft term these timers were armed in (a new term re-arms them all).
    term: Option<u64>,
}

impl SessionTimers {
    /// Arms (or renews) `id`'s timer: it expires 2 x `ttl` (less a margin) after `now`.
    pub fn renew(&mut self, id: &str, ttl: Duration, now: Instant) {
        let deadline = now + (ttl * 2).saturating_sub(MARGIN).max(ttl);
        self.deadlines.insert(id.to_owned(), deadline);
    }

    /// Whether `id` has a timer.
    pub fn armed(&self, id: &str) -> bool {
        self.deadlines.contains_key(id)
    }

    /// Brings the timers in line with the sessions in the state (`sessions`: ID and TTL of
    /// each TTL session) at `now` in Raft term `term`: in a new term every timer is armed
    /// afresh; otherwise sessions created since are armed and gone ones forgotten.
    pub fn sync(&mut self, term: u64, sessions: &[(String, Duration)], now: Instant) {
        if self.term != Some(term) {
            self.deadlines.clear();
            self.term = Some(term);
        }
        self.deadlines
            .retain(|id, _| sessions.iter().any(|(live, _)| live == id));
        for (id, ttl) in sessions {
            if !self.deadlines.contains_key(id) {
                self.renew(id, *ttl, now);
            }
        }
    }

    /// The sessions past their deadline at `now` (their timers are dropped).
    pub fn expired(&mut self, now: Instant) -> Vec<String> {
        let due: Vec<String> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            self.deadlines.remove(id);
        }
        due
    }

    /// Forgets everything (leadership was lost).
    pub fn clear(&mut self) {
        self.deadlines.clear();
        self.term = None;
    }
}

/// The leader's duty: invalidates sessions whose TTL ran out.
pub struct SessionReaper {
    /// Where `consul_session_ttl_active` and `consul_session_ttl_invalidate` go.
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[async_trait::async_trait]
impl super::leader::Duty for SessionReaper {
    fn name(&self) -> &'static str {
        "session_ttl"
    }

    fn every(&self) -> Duration {
        REAP_EVERY
    }

    async fn run(&mut self, server: &Arc<Server>) {
        let term = server.raft.metrics().borrow().current_term;
        let Ok(sessions) = server.state.read(|data| {
            data.state
                .sessions
                .list()
                .filter_map(|s| ttl_of(&s.ttl).map(|ttl| (s.id.clone(), ttl)))
                .collect::<Vec<_>>()
        }) else {
            return;
        };
        let expired = {
            let mut timers = server.session_timers.lock();
            let now = Instant::now();
            timers.sync(term, &sessions, now);
            timers.expired(now)
        };
        let metrics = &self.metrics.coordination;
        metrics
            .session_ttl_active
            .set(i64::try_from(sessions.len()).unwrap_or(i64::MAX));
        for id in expired {
            tracing::info!(session = %id, "session TTL expired; invalidating it");
            let started = Instant::now();
            let result = server
                .proposer
                .propose(Command::SessionDestroy { id: id.clone() })
                .await;
            metrics
                .session_ttl_invalidate
                .observe(started.elapsed().as_secs_f64() * 1000.0);
            if let Err(e) = result {
                // Armed again at the next run if the session is still there.
                tracing::warn!(session = %id, error = %e, "could not invalidate an expired session");
            }
        }
    }

    fn not_leading(&mut self) {
        self.metrics.coordination.session_ttl_active.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_expire_between_ttl_and_twice_ttl_and_renewals_push_them_back() {
        let start = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut timers = SessionTimers::default();
        timers.sync(1, &[("a".into(), ttl), ("b".into(), ttl)], start);
        assert!(timers.expired(start + ttl).is_empty());
        timers.renew("b", ttl, start + Duration::from_secs(15));
        let a_dies = start + ttl * 2 - MARGIN;
        assert_eq!(timers.expired(a_dies), ["a"]);
        assert!(!timers.armed("a"));
        assert!(timers.expired(start + Duration::from_secs(30)).is_empty());
        assert_eq!(timers.expired(start + Duration::from_secs(35)), ["b"]);
    }

    #[test]
    fn a_new_term_rearms_every_session_and_gone_ones_are_forgotten() {
        let start = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut timers = SessionTimers::default();
        timers.sync(1, &[("a".into(), ttl)], start);
        // A new leader 15 s later: `a` gets a full 2 x TTL from the election.
        let later = start + Duration::from_secs(15);
        timers.sync(2, &[("a".into(), ttl)], later);
        assert!(timers.expired(start + ttl * 2).is_empty());
        assert_eq!(timers.expired(later + ttl * 2), ["a"]);
        timers.sync(2, &[("c".into(), ttl)], later);
        timers.sync(2, &[], later);
        assert!(!timers.armed("c"));
    }

    #[test]
    fn ttl_text_as_consul_writes_it() {
        assert_eq!(ttl_of("30s"), Some(Duration::from_secs(30)));
        assert_eq!(ttl_of("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(ttl_of(""), None);
    }
}
