//! Network coordinates into the catalog, as Consul's `Coordinate.Update` does: agents send
//! their LAN coordinate every [`PUSH_EVERY`] (`PUT /v1/coordinate/update`, which reaches the
//! leader); the leader keeps the latest per node and writes them through Raft in one batch
//! per [`FLUSH_EVERY`], so a thousand agents cost a write every few seconds, not a write each.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wire::command::Command;
use wire::records::Coordinate;

use crate::server::Server;

/// How often the leader writes the coordinates it received.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// How often an agent sends its coordinate.
pub const PUSH_EVERY: Duration = Duration::from_secs(15);
/// How soon an agent whose coordinate was refused tries again.
pub const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Most coordinates one batch writes (Consul: 128 per batch, 5 batches per period).
pub const MAX_BATCH: usize = 640;
/// Most nodes waiting: more are refused until the next flush.
pub const MAX_PENDING: usize = 4096;

/// Coordinates received and not written yet, latest per node.
#[derive(Default)]
pub struct CoordinateQueue {
    pending: Mutex<BTreeMap<String, Coordinate>>,
    /// The last node written: the next batch starts after it, so that with more waiting
    /// than a batch holds every node gets its turn.
    cursor: Mutex<String>,
}

impl CoordinateQueue {
    /// Keeps `coordinate` as `node`'s latest; false when the queue is full.
    pub fn push(&self, node: String, coordinate: Coordinate) -> bool {
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING && !pending.contains_key(&node) {
            return false;
        }
        pending.insert(node, coordinate);
        true
    }

    /// Takes up to [`MAX_BATCH`] coordinates, starting after the last node taken.
    fn take(&self) -> Vec<(String, Coordinate)> {
        let (mut pending, mut cursor) = (self.pending.lock(), self.cursor.lock());
        let after: Vec<String> = pending
            .range::<String, _>((
                std::ops::Bound::Excluded(&*cursor),
                std::ops::Bound::Unbounded,
            ))
            .map(|(node, _)| node.clone())
            .take(MAX_BATCH)
            .collect();
        let wrapped: Vec<String> = pending
            .keys()
            .take(MAX_BATCH.saturating_sub(after.len()))
            .filter(|node| !after.contains(node))
            .cloned()
            .collect();
        let mut batch = Vec::new();
        for node in after.into_iter().chain(wrapped) {
            if let Some(coordinate) = pending.remove(&node) {
                *cursor = node.clone();
                batch.push((node, coordinate));
            }
        }
        batch
    }
}

/// The leader's duty: writes the queued coordinates once per [`FLUSH_EVERY`].
pub struct CoordinateFlush {
    /// What the agents sent.
    pub queue: Arc<CoordinateQueue>,
}

#[async_trait::async_trait]
impl super::leader::Duty for CoordinateFlush {
    fn name(&self) -> &'static str {
        "coordinates"
    }

    fn every(&self) -> Duration {
        FLUSH_EVERY
    }

    async fn run(&mut self, server: &Arc<Server>) {
        let batch = self.queue.take();
        if batch.is_empty() {
            return;
        }
        let count = batch.len();
        if let Err(e) = server
            .proposer
            .propose(Command::CoordinateBatchUpdate(batch))
            .await
        {
            tracing::debug!(error = %e, count, "coordinate update not committed; the agents send again");
        }
    }

    fn not_leading(&mut self) {
        // A former leader's queue is stale: the agents send again in PUSH_EVERY.
        drop(self.queue.take());
    }
}

/// Sends this agent's own LAN coordinate through `handler` (the local API: a server's own
/// router, which forwards to the leader, or a client agent's, which sends it to a server)
/// every [`PUSH_EVERY`], the first a few seconds after start.
pub async fn push_loop(
    lan: crate::gossip::pool::Pool,
    handler: crate::rpc::messages::HttpHandler,
    cancel: CancellationToken,
) {
    let api = crate::internal::LocalApi::new(handler);
    let node = lan.local().name.clone();
    let dc = lan.local().dc.clone();
    let first = Duration::from_millis(2000 + rand::random_range(0..2000u64));
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep(first) => {}
    }
    loop {
        let own = lan
            .coordinates()
            .into_iter()
            .find(|c| c.node == node && c.dc == dc);
        if let Some(own) = own {
            if let Err(e) = api.coordinate_update(&node, &own.coordinate).await {
                // Not in the catalog yet, no leader yet: try again soon.
                tracing::debug!(error = %e, "sending this node's coordinate failed; trying again soon");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_EVERY) => {}
                }
                continue;
            }
        }
        // A little jitter, so agents started together do not send together.
        let next = PUSH_EVERY + Duration::from_millis(rand::random_range(0..1000u64));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(next) => {}
        }
    }
}
