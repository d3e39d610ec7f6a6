//! The Raft state machine: a [`State`] plus what Raft needs to know about it (last applied
//! log ID, membership), with the current snapshot kept in one file written atomically.
//!
//! Readers (the HTTP API, DNS) take short read locks through [`StateMachineStore::read`] and
//! wait for changes on [`StateMachineStore::watch_applied`].

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use wire::command::CommandResult;
use wire::raft::RaftNode;
use wire::snapshot::StateSnapshot;

use super::{Entry, LogId, NodeId, StorageError, StoredMembership, TypeConfig};
use crate::state::State;

/// What the state machine holds.
#[derive(Debug, Default)]
pub struct StateMachineData {
    /// Catalog, health and KV.
    pub state: State,
    /// The last log entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub membership: StoredMembership,
}

/// The snapshot file: openraft's metadata and the encoded [`StateSnapshot`].
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, RaftNode>,
    data: Vec<u8>,
}

struct Shared {
    data: RwLock<StateMachineData>,
    applied: watch::Sender<u64>,
    snapshot_path: PathBuf,
    current: Mutex<Option<SnapshotFile>>,
}

/// The state machine; cheap to clone.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

fn io_error(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

fn lock_poisoned() -> std::io::Error {
    io_error("state machine lock poisoned by a panic in another thread")
}

/// Writes `bytes` to `path` through a temporary file, an fsync and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl StateMachineStore {
    /// Opens the state machine, restoring the snapshot at `snapshot_path` if there is one.
    pub fn open(snapshot_path: &Path) -> Result<StateMachineStore, std::io::Error> {
        let mut data = StateMachineData::default();
        let mut current = None;
        match std::fs::read(snapshot_path) {
            Ok(bytes) => {
                let file: SnapshotFile = wire::frame::decode(&bytes)
                    .map_err(|e| io_error(format!("{}: {e}", snapshot_path.display())))?;
                let snapshot = StateSnapshot::decode(&file.data)
                    .map_err(|e| io_error(format!("{}: {e}", snapshot_path.display())))?;
                data.state = State::from_snapshot(snapshot);
                data.last_applied = file.meta.last_log_id;
                data.membership = file.meta.last_membership.clone();
                current = Some(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let applied_index = data.last_applied.map_or(0, |id| id.index);
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                data: RwLock::new(data),
                applied: watch::channel(applied_index).0,
                snapshot_path: snapshot_path.to_owned(),
                current: Mutex::new(current),
            }),
        })
    }

    /// Runs `f` under a read lock of the state. Never await inside `f`.
    pub fn read<T>(&self, f: impl FnOnce(&StateMachineData) -> T) -> Result<T, std::io::Error> {
        let data = self.shared.data.read().map_err(|_| lock_poisoned())?;
        Ok(f(&data))
    }

    /// The index of the last applied entry, updated after each batch.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }

    /// Makes `file` the current snapshot, on disk and in memory, unless a snapshot at least
    /// as recent is already current. openraft may build a snapshot while it installs a newer
    /// one from the leader; holding the lock across the write keeps the two from interleaving
    /// and keeps an older build from replacing the newer snapshot (whose log is purged).
    fn save_snapshot(&self, file: SnapshotFile) -> Result<(), std::io::Error> {
        let mut current = self.shared.current.lock().map_err(|_| lock_poisoned())?;
        if let Some(existing) = current.as_ref() {
            if existing.meta.last_log_id >= file.meta.last_log_id {
                tracing::debug!(kept = ?existing.meta.last_log_id, skipped = ?file.meta.last_log_id, "a newer snapshot is already current");
                return Ok(());
            }
        }
        let bytes = wire::frame::to_bytes(&file).map_err(io_error)?;
        write_atomically(&self.shared.snapshot_path, &bytes)?;
        *current = Some(file);
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (snapshot, last_applied, membership) = self
            .read(|data| {
                (
                    data.state.to_snapshot(),
                    data.last_applied,
                    data.membership.clone(),
                )
            })
            .map_err(|e| StorageIOError::read_state_machine(&e))?;
        let data = wire::frame::to_bytes(&snapshot)
            .map_err(|e| StorageIOError::read_state_machine(&io_error(e)))?;
        let snapshot_id = match last_applied {
            Some(id) => format!(
                "{}-{}-{}",
                id.leader_id.term, id.leader_id.node_id, id.index
            ),
            None => "empty".to_owned(),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let store = self.clone();
        let file = SnapshotFile {
            meta: meta.clone(),
            data: data.clone(),
        };
        tokio::task::spawn_blocking(move || store.save_snapshot(file))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &io_error(e)))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.read(|data| (data.last_applied, data.membership.clone()))
            .map_err(|e| StorageIOError::read_state_machine(&e).into())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut results = Vec::new();
        let last_index = {
            let mut data = self
                .shared
                .data
                .write()
                .map_err(|_| StorageIOError::write_state_machine(&lock_poisoned()))?;
            // Dates lock delays only (not replicated state): the wall clock is fine here.
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            for entry in entries {
                let index = entry.log_id.index;
                data.last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => CommandResult::Nothing,
                    EntryPayload::Normal(command) => data.state.apply(index, now_ms, &command),
                    EntryPayload::Membership(membership) => {
                        data.membership = StoredMembership::new(Some(entry.log_id), membership);
                        CommandResult::Nothing
                    }
                };
                results.push(result);
            }
            data.last_applied.map_or(0, |id| id.index)
        };
        self.shared.applied.send_replace(last_index);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, RaftNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let state_snapshot = StateSnapshot::decode(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io_error(e)))?;
        {
            let mut current = self
                .shared
                .data
                .write()
                .map_err(|_| StorageIOError::write_state_machine(&lock_poisoned()))?;
            current.state = State::from_snapshot(state_snapshot);
            current.last_applied = meta.last_log_id;
            current.membership = meta.last_membership.clone();
        }
        let store = self.clone();
        let file = SnapshotFile {
            meta: meta.clone(),
            data,
        };
        let signature = meta.signature();
        tokio::task::spawn_blocking(move || store.save_snapshot(file))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(signature.clone()), &io_error(e)))?
            .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
        self.shared
            .applied
            .send_replace(meta.last_log_id.map_or(0, |id| id.index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self
            .shared
            .current
            .lock()
            .map_err(|_| StorageIOError::read_snapshot(None, &lock_poisoned()))?;
        Ok(current.as_ref().map(|file| Snapshot {
            meta: file.meta.clone(),
            snapshot: Box::new(Cursor::new(file.data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(index: u64) -> SnapshotFile {
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        let meta = SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: Default::default(),
            snapshot_id: format!("s{index}"),
        };
        SnapshotFile {
            meta,
            data: wire::frame::to_bytes(&StateSnapshot {
                version: wire::snapshot::SNAPSHOT_VERSION,
                ..StateSnapshot::default()
            })
            .expect("encodes"),
        }
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.bin");
        let store = StateMachineStore::open(&path).expect("open");
        store.save_snapshot(file(20)).expect("save newer");
        store
            .save_snapshot(file(10))
            .expect("an older one is skipped, not an error");
        let reopened = StateMachineStore::open(&path).expect("reopen");
        let current = reopened.shared.current.lock().expect("lock");
        assert_eq!(
            current
                .as_ref()
                .and_then(|f| f.meta.last_log_id)
                .map(|id| id.index),
            Some(20)
        );
    }
}
