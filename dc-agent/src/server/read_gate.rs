//! When this server may answer reads.
//!
//! A restarted server re-applies its log only up to the commit index it had persisted, which
//! lags what it had applied before it stopped; and openraft restores a server that was leader
//! as leader at once, at its old term, until a peer with a higher term answers it. Answering
//! reads in that window served keys as they were before the restart, or not at all. So:
//!
//! - Until it has **caught up** since it started, a server answers no read from its own
//!   state, `?stale` included: it forwards reads to the leader, or holds them. It has caught
//!   up once the leader gave it a read index (after confirming its leadership with a quorum)
//!   and it applied up to it, or once it confirmed its own leadership. Its own log is not
//!   enough: a leader applies entries once a quorum of followers has them, before its own
//!   copy is on disk, so a leader killed with `kill -9` can come back with less than it had
//!   applied. A server that starts with an empty log has nothing to catch up on.
//! - A leader answers default-mode reads only once it is **ready**: it confirmed its
//!   leadership with a quorum in its current term ([`openraft::Raft::ensure_linearizable`],
//!   which also waits for its state machine to apply its commit index), and the last entry it
//!   applied is of that term (openraft appends a blank entry at election), as Consul's leader
//!   waits for its barrier (`consistentReadReady`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Server, RPC_TIMEOUT};
use crate::rpc::messages::{RpcReply, RpcRequest};

/// How long a request waits for a leader, or for this server to be ready, before `No
/// cluster leader` (Consul holds RPCs up to `rpc_hold_timeout`, 7 s, during elections).
pub const HOLD: Duration = Duration::from_secs(5);

/// How long a follower waits to apply up to the leader's read index in one attempt.
const APPLY_WAIT: Duration = Duration::from_secs(30);

/// Go's `time.Since` of the zero time, in milliseconds: Consul's `X-Consul-LastContact` from a
/// server that never heard from a leader.
pub const NEVER_CONTACTED_MS: u64 = (i64::MAX as u64) / 1_000_000;

impl Server {
    /// Whether this server's state has caught up since it started (see the module).
    pub fn caught_up(&self) -> bool {
        *self.read_gate.caught_up.borrow()
    }

    /// Whether this server is a leader that may answer reads (see the module).
    pub fn leader_ready(&self) -> bool {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow();
        metrics.current_leader == Some(self.id)
            && self.caught_up()
            && self.read_gate.confirmed_term.load(Ordering::SeqCst) == metrics.current_term
            && metrics
                .last_applied
                .is_some_and(|applied| applied.leader_id.term == metrics.current_term)
    }

    /// Waits (up to `limit`) for anything that may change where a request is answered: a
    /// new leader, an entry applied, this server catching up.
    pub async fn readiness_changed(&self, limit: Duration) {
        // openraft hands out clones of its own receiver, which never marks a value seen:
        // mark the current one, or `changed` returns at once and callers spin.
        let mut metrics = self.raft.metrics();
        metrics.borrow_and_update();
        let mut caught_up = self.read_gate.caught_up.subscribe();
        caught_up.borrow_and_update();
        tokio::select! {
            _ = metrics.changed() => {}
            _ = caught_up.changed() => {}
            _ = tokio::time::sleep(limit) => {}
        }
    }

    /// Answers a follower's `ReadIndex`: confirms leadership with a quorum, then gives the
    /// index a reader must have applied to be as recent as this leader.
    pub async fn read_index(&self) -> Result<u64, String> {
        if !self.is_leader() {
            return Err("not the leader".to_owned());
        }
        let (read, _applied) = tokio::time::timeout(RPC_TIMEOUT, self.raft.get_read_log_id())
            .await
            .map_err(|_| "leadership not confirmed in time".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok(read.map_or(0, |id| id.index))
    }
}

/// What the gate knows.
pub struct ReadGate {
    /// Set once this server's state has caught up since it started.
    caught_up: tokio::sync::watch::Sender<bool>,
    /// The last term in which this server confirmed its leadership with a quorum.
    confirmed_term: AtomicU64,
}

impl ReadGate {
    /// A gate for a server whose log ended at `last_log_at_start` when it started: a server
    /// that starts with nothing has nothing to catch up on (it answers `?stale` reads from
    /// its empty state, as Consul's).
    pub fn new(last_log_at_start: u64) -> ReadGate {
        ReadGate {
            caught_up: tokio::sync::watch::channel(last_log_at_start == 0).0,
            confirmed_term: AtomicU64::new(0),
        }
    }
}

/// Runs until cancelled: catches up once, and confirms each term this server leads.
pub async fn gate_loop(server: Arc<Server>, cancel: CancellationToken) {
    let started = std::time::Instant::now();
    let mut last_error = String::new();
    loop {
        let result = match (server.caught_up(), server.leader()) {
            (_, Some((id, _))) if id == server.id => confirm_leadership(&server).await,
            (false, _) => catch_up(&server).await.map(|caught_up| {
                if let Some(index) = caught_up {
                    server.read_gate.caught_up.send_replace(true);
                    tracing::info!(
                        applied = index,
                        after_ms = started.elapsed().as_millis() as u64,
                        "caught up since start; answering reads"
                    );
                }
            }),
            (true, _) => Ok(()),
        };
        if let Err(e) = result {
            if e != last_error {
                tracing::debug!(error = %e, "read gate");
                last_error = e;
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = server.readiness_changed(Duration::from_millis(500)) => {}
        }
        // Metrics change often under load: at most twenty rounds a second.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On a leader that has not confirmed its current term: confirm it with a quorum.
async fn confirm_leadership(server: &Server) -> Result<(), String> {
    let term = server.raft.metrics().borrow().current_term;
    if server.read_gate.confirmed_term.load(Ordering::SeqCst) == term {
        return Ok(());
    }
    let read = tokio::time::timeout(RPC_TIMEOUT, server.raft.ensure_linearizable())
        .await
        .map_err(|_| "leadership not confirmed in time".to_owned())?
        .map_err(|e| e.to_string())?;
    server
        .read_gate
        .confirmed_term
        .store(term, Ordering::SeqCst);
    if !server.caught_up() {
        server.read_gate.caught_up.send_replace(true);
    }
    tracing::info!(
        term,
        applied = read.map_or(0, |id| id.index),
        "leadership confirmed; answering reads"
    );
    Ok(())
}

/// One attempt to catch up: `Ok(Some(applied))` once caught up, `Ok(None)` while not yet.
async fn catch_up(server: &Server) -> Result<Option<u64>, String> {
    let Some((_, leader)) = server.leader() else {
        return Ok(None);
    };
    let target = match server
        .call(&leader.addr, &RpcRequest::ReadIndex, RPC_TIMEOUT * 2)
        .await
        .map_err(|e| format!("asking {} for its read index: {e:#}", leader.name))?
    {
        RpcReply::Index(Ok(index)) => index,
        RpcReply::Index(Err(e)) => return Err(format!("{}: {e}", leader.name)),
        _ => return Err(format!("{} answered another kind of RPC", leader.name)),
    };
    let mut applied = server.state.watch_applied();
    let reached = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|index| *index >= target))
        .await
        .map_err(|_| format!("did not apply up to {target} in {APPLY_WAIT:?}"))?
        .map_err(|_| "the state machine stopped".to_owned())?;
    Ok(Some(*reached))
}
