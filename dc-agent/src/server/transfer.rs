//! Leadership transfer (`operator raft transfer-leader`), built on openraft 0.9, which has
//! no transfer of its own.
//!
//! The leader stops its heartbeats and tells the target to stand (`RpcRequest::TimeoutNow`,
//! Raft's name for it). Voters refuse any candidate while the leader lease they granted runs
//! (election_timeout_max after the last heartbeat); a follower stands on its own only a random
//! election timeout after that. The target stands as soon as the lease has run out, so it is
//! first, and its log is the leader's: the leader sends `TimeoutNow` only once the target
//! has matched its last entry. Whatever happens, the old leader turns its heartbeats back
//! on before it answers.

use std::time::{Duration, Instant};

use crate::raft::NodeId;
use crate::rpc::messages::{RpcReply, RpcRequest};

use super::{Server, RPC_TIMEOUT};

/// How long a transfer may take before the leader gives up (and keeps leading).
const TRANSFER_DEADLINE: Duration = Duration::from_secs(10);

/// A little past the lease, so that every voter's lease has run out when the target asks.
const LEASE_MARGIN: Duration = Duration::from_millis(50);

/// Heartbeats off while it lives.
struct HeartbeatsPaused<'a>(&'a crate::raft::Raft);

impl<'a> HeartbeatsPaused<'a> {
    fn new(raft: &'a crate::raft::Raft) -> Self {
        raft.runtime_config().heartbeat(false);
        HeartbeatsPaused(raft)
    }
}

impl Drop for HeartbeatsPaused<'_> {
    fn drop(&mut self) {
        self.0.runtime_config().heartbeat(true);
    }
}

/// Elections the target starts at most for one transfer: a failed transfer must not keep
/// raising the term.
const MAX_STANDS: u32 = 3;

impl Server {
    /// On the leader: hands leadership to `target` (any up-to-date voter when `None`) and
    /// waits until the target leads. Returns the new leader's ID.
    pub async fn transfer_leadership(&self, target: Option<NodeId>) -> Result<NodeId, String> {
        if !self.is_leader() {
            return Err("not the leader".to_owned());
        }
        let voters: Vec<(NodeId, wire::raft::RaftNode)> = self
            .members()
            .into_iter()
            .filter(|(id, _, voter)| *voter && *id != self.id)
            .map(|(id, node, _)| (id, node))
            .collect();
        let (target, node) = match target {
            Some(target) if target == self.id => {
                return Err("cannot transfer leadership to itself".to_owned())
            }
            Some(target) => voters
                .into_iter()
                .find(|(id, _)| *id == target)
                .ok_or_else(|| format!("cannot find peer {}", wire::names::node_uuid(target)))?,
            None => self
                .most_caught_up(voters)
                .ok_or_else(|| "cannot find a voter to transfer leadership to".to_owned())?,
        };
        tracing::info!(target = %node.name, id = target, "transferring leadership");
        let deadline = Instant::now() + TRANSFER_DEADLINE;
        // Heartbeats come back on however this ends, a dropped request (the client went
        // away) included.
        let _paused = HeartbeatsPaused::new(&self.raft);
        let result = self.hand_over(target, &node.addr, deadline).await;
        match &result {
            Ok(_) => tracing::info!(target = %node.name, "leadership transferred"),
            Err(e) => tracing::warn!(target = %node.name, error = %e, "leadership transfer failed"),
        }
        result
    }

    /// The voter whose log matches the most of the leader's.
    fn most_caught_up(
        &self,
        voters: Vec<(NodeId, wire::raft::RaftNode)>,
    ) -> Option<(NodeId, wire::raft::RaftNode)> {
        let replication = self.raft.metrics().borrow().replication.clone()?;
        voters.into_iter().max_by_key(|(id, _)| {
            replication
                .get(id)
                .and_then(|log| log.as_ref().map(|l| l.index))
                .unwrap_or(0)
        })
    }

    async fn hand_over(
        &self,
        target: NodeId,
        addr: &str,
        deadline: Instant,
    ) -> Result<NodeId, String> {
        let mut metrics = self.raft.metrics();
        // The target's log must be the leader's, or the voters refuse it.
        loop {
            let (last, matched, term) = {
                let m = metrics.borrow();
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&target).cloned().flatten());
                (m.last_log_index, matched.map(|l| l.index), m.current_term)
            };
            if matched >= last {
                let request = RpcRequest::TimeoutNow {
                    leader: self.id,
                    term,
                };
                match self.call(addr, &request, RPC_TIMEOUT).await {
                    Ok(RpcReply::Done(Ok(()))) => break,
                    Ok(RpcReply::Done(Err(e))) => return Err(format!("the target refused: {e}")),
                    Ok(_) => return Err("the target answered another kind of RPC".to_owned()),
                    Err(e) => return Err(format!("reaching the target: {e:#}")),
                }
            }
            if Instant::now() >= deadline {
                return Err("the target did not catch up with the leader's log".to_owned());
            }
            if !self.is_leader() {
                return Err("this server stopped leading before the target caught up".to_owned());
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), metrics.changed()).await;
        }
        loop {
            let leader = metrics.borrow().current_leader;
            match leader {
                Some(leader) if leader == target => return Ok(target),
                Some(leader) if leader != self.id => {
                    return Err(format!("another server ({leader}) was elected"))
                }
                _ => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("the target was not elected in time".to_owned());
            }
            if tokio::time::timeout(left, metrics.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return Err("raft stopped".to_owned());
            }
        }
    }

    /// On the target: `leader` (of `term`) asks this server to stand now. Stands once the
    /// lease the voters granted has run out, a few times if a write refreshed it, until
    /// someone leads in a later term.
    pub(super) fn timeout_now(
        self: &std::sync::Arc<Self>,
        leader: NodeId,
        term: u64,
    ) -> Result<(), String> {
        let (current_leader, current_term) = {
            let m = self.raft.metrics().borrow().clone();
            (m.current_leader, m.current_term)
        };
        if current_leader != Some(leader) || current_term != term {
            return Err(format!(
                "this server follows {current_leader:?} in term {current_term}, not {leader} in term {term}"
            ));
        }
        if !self
            .members()
            .iter()
            .any(|(id, _, voter)| *id == self.id && *voter)
        {
            return Err("this server is not a voter".to_owned());
        }
        let server = self.clone();
        let lease = Duration::from_millis(self.raft.config().election_timeout_max) + LEASE_MARGIN;
        crate::tasks::spawn(async move {
            let deadline = Instant::now() + TRANSFER_DEADLINE;
            tokio::time::sleep(lease).await;
            let mut stands = 0;
            while Instant::now() < deadline && stands < MAX_STANDS {
                stands += 1;
                let m = server.raft.metrics().borrow().clone();
                if m.current_term > term && m.current_leader.is_some() {
                    return;
                }
                if let Err(e) = server.raft.trigger().elect().await {
                    tracing::warn!(error = %e, "could not stand for election");
                    return;
                }
                tokio::time::sleep(lease / 2).await;
            }
        });
        Ok(())
    }
}
