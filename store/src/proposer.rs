//! Proposing writes to Raft, in batches when writes arrive faster than Raft commits them.
//!
//! openraft 0.9 handles every proposal as one message of its core task, and replicates the
//! next batch to a follower only after the core has handled the previous answer; under load
//! those answers wait behind thousands of proposals. So KV sets and deletes that arrive while
//! earlier proposals are in flight are proposed together as one [`Command::KvBatch`]. A batch
//! holds each key at most once, so every key still gets its own modify index for each change
//! and a CAS sees exactly what it would see proposed alone; keys of one batch share a Raft
//! index, as the keys of one Consul transaction do. Anything else is proposed alone.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use wire::command::{Command, CommandResult};

use crate::raft::Raft;

/// Batches in flight at once; more proposals wait and join the next batch.
const IN_FLIGHT: usize = 4;
/// Most commands per batch.
const MAX_COMMANDS: usize = 512;
/// Most value bytes per batch (values are at most 512 KiB each). A Raft AppendEntries of 64
/// such entries stays near the 64 MiB frame limit; larger ones make the network ask openraft
/// for smaller batches (`PayloadTooLarge`).
const MAX_BYTES: usize = 1024 * 1024;

/// Why a proposal failed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This server is not (or no longer) the leader.
    #[error("No cluster leader")]
    NotLeader,
    /// Raft failed otherwise.
    #[error("raft write failed: {0}")]
    Raft(String),
}

type Reply = oneshot::Sender<Result<(u64, CommandResult), ProposeError>>;

/// Hands writes to Raft.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<(Command, Reply)>,
}

impl Proposer {
    /// Starts the batching task for `raft`.
    pub fn start(raft: Raft) -> Proposer {
        let (queue, receiver) = mpsc::channel(8192);
        tokio::spawn(run(raft, receiver));
        Proposer { queue }
    }

    /// Proposes one command; returns the Raft index it was applied at and its result.
    pub async fn propose(&self, command: Command) -> Result<(u64, CommandResult), ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((command, reply))
            .await
            .map_err(|_| ProposeError::Raft("the proposer has stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| ProposeError::Raft("the proposer dropped the write".to_owned()))?
    }
}

/// The key a batchable command writes, and the bytes it carries.
fn batchable(command: &Command) -> Option<(&str, usize)> {
    match command {
        Command::KvSet { key, value, .. } => Some((key, value.len())),
        Command::KvDelete { key, .. } => Some((key, 0)),
        _ => None,
    }
}

async fn run(raft: Raft, mut receiver: mpsc::Receiver<(Command, Reply)>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<(Command, Reply)> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(first) => first,
            None => match receiver.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = vec![first];
        if let Some((key, bytes)) = batchable(&batch[0].0) {
            let mut keys: HashSet<String> = HashSet::from([key.to_owned()]);
            let mut total = bytes;
            while batch.len() < MAX_COMMANDS {
                let Ok(next) = receiver.try_recv() else { break };
                match batchable(&next.0) {
                    Some((key, bytes)) if !keys.contains(key) && total + bytes <= MAX_BYTES => {
                        keys.insert(key.to_owned());
                        total += bytes;
                        batch.push(next);
                    }
                    _ => {
                        carried = Some(next);
                        break;
                    }
                }
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            propose_batch(&raft, batch).await;
            drop(permit);
        });
    }
}

async fn propose_batch(raft: &Raft, mut batch: Vec<(Command, Reply)>) {
    let command = if batch.len() == 1 {
        batch[0].0.clone()
    } else {
        Command::KvBatch(batch.iter().map(|(command, _)| command.clone()).collect())
    };
    let outcome = raft.client_write(command).await;
    match outcome {
        Ok(response) => {
            let index = response.log_id.index;
            match response.data {
                CommandResult::Batch(results) if results.len() == batch.len() => {
                    for ((_, reply), result) in batch.into_iter().zip(results) {
                        let _ = reply.send(Ok((index, result)));
                    }
                }
                result if batch.len() == 1 => {
                    if let Some((_, reply)) = batch.pop() {
                        let _ = reply.send(Ok((index, result)));
                    }
                }
                other => {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(ProposeError::Raft(format!(
                            "unexpected result {other:?}"
                        ))));
                    }
                }
            }
        }
        Err(error) => {
            let not_leader = matches!(
                error,
                openraft::error::RaftError::APIError(
                    openraft::error::ClientWriteError::ForwardToLeader(_)
                )
            );
            for (_, reply) in batch {
                let _ = reply.send(Err(if not_leader {
                    ProposeError::NotLeader
                } else {
                    ProposeError::Raft(error.to_string())
                }));
            }
        }
    }
}
