//! The leader's duties, in one loop: each [`Duty`] runs on its own period while this server
//! leads, one at a time (as Consul's leader loop runs its reconciliation), and hears when
//! the server does not lead so that it can drop what only a leader may hold. The duties
//! today: `serf_health` (membership into `serfHealth` checks, autopilot's cleanup, servers
//! added back), `tombstone_gc` (KV tombstones reaped after their TTL) and `coordinates`
//! (the agents' coordinates written in batches). Sessions' TTLs will be one more.
//!
//! The schedule is pure ([`Schedule`]: periods and due times, time passed in); the loop is
//! its shell.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Server;

/// Something the leader does every [`Duty::every`].
#[async_trait::async_trait]
pub trait Duty: Send {
    /// Its name, for logs.
    fn name(&self) -> &'static str;
    /// How often it runs.
    fn every(&self) -> Duration;
    /// One run, on the leader.
    async fn run(&mut self, server: &Arc<Server>);
    /// Its period came while this server does not lead: forget what only a leader keeps.
    fn not_leading(&mut self) {}
}

/// When each duty is next due. Pure: `now` comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    periods: Vec<Duration>,
    due: Vec<Instant>,
}

impl Schedule {
    /// Every duty due at `now` (each runs once at the start, as an interval's first tick).
    pub fn new(periods: Vec<Duration>, now: Instant) -> Schedule {
        let due = vec![now; periods.len()];
        Schedule { periods, due }
    }

    /// The earliest due time.
    pub fn next(&self) -> Option<Instant> {
        self.due.iter().min().copied()
    }

    /// The duties due at `now`, each then rescheduled a period after `now` (a late run is
    /// not made up for: missed periods are skipped, as `MissedTickBehavior::Delay`).
    pub fn take_due(&mut self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        for (i, at) in self.due.iter_mut().enumerate() {
            if *at <= now {
                due.push(i);
                *at = now + self.periods[i];
            }
        }
        due
    }
}

/// Runs `duties` until `cancel`.
pub async fn run(server: Arc<Server>, mut duties: Vec<Box<dyn Duty>>, cancel: CancellationToken) {
    let mut schedule = Schedule::new(duties.iter().map(|d| d.every()).collect(), Instant::now());
    while let Some(next) = schedule.next() {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        for i in schedule.take_due(Instant::now()) {
            let Some(duty) = duties.get_mut(i) else {
                continue;
            };
            if !server.is_leader() {
                duty.not_leading();
                continue;
            }
            let span = tracing::debug_span!("leader_duty", duty = duty.name());
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tracing::Instrument::instrument(duty.run(&server), span) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duty_on_its_own_period_and_missed_periods_skipped() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut schedule = Schedule::new(vec![ms(1000), ms(300)], start);
        assert_eq!(schedule.take_due(start), [0, 1]);
        assert_eq!(schedule.next(), Some(start + ms(300)));
        assert_eq!(schedule.take_due(start + ms(299)), Vec::<usize>::new());
        assert_eq!(schedule.take_due(start + ms(300)), [1]);
        // A long pause (a slow duty): each runs once, then keeps its period from now.
        assert_eq!(schedule.take_due(start + ms(5000)), [0, 1]);
        assert_eq!(schedule.next(), Some(start + ms(5300)));
        assert_eq!(schedule.take_due(start + ms(5300)), [1]);
        assert_eq!(schedule.take_due(start + ms(6000)), [0, 1]);
    }
}
