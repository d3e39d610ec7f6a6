//! The Raft log and vote, in a redb file. Every write commits durably (fsync) before it is
//! acknowledged: `append` calls openraft's callback only after the commit.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Entry, LogId, NodeId, StorageError, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

/// The log store; cheap to clone (one database shared).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

fn io_error(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

impl LogStore {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: &Path) -> Result<LogStore, std::io::Error> {
        let db = Database::create(path).map_err(io_error)?;
        let txn = db.begin_write().map_err(io_error)?;
        txn.open_table(LOG).map_err(io_error)?;
        txn.open_table(META).map_err(io_error)?;
        txn.commit().map_err(io_error)?;
        Ok(LogStore { db: Arc::new(db) })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io_error)?;
        let table = txn.open_table(META).map_err(io_error)?;
        match table.get(key).map_err(io_error)? {
            Some(bytes) => wire::frame::decode(bytes.value())
                .map(Some)
                .map_err(io_error),
            None => Ok(None),
        }
    }

    fn write_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), std::io::Error> {
        let bytes = wire::frame::to_bytes(value).map_err(io_error)?;
        let txn = self.db.begin_write().map_err(io_error)?;
        {
            let mut table = txn.open_table(META).map_err(io_error)?;
            table.insert(key, bytes.as_slice()).map_err(io_error)?;
        }
        txn.commit().map_err(io_error)
    }

    fn entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io_error)?;
        let table = txn.open_table(LOG).map_err(io_error)?;
        let mut entries = Vec::new();
        for item in table.range(range).map_err(io_error)? {
            let (_, bytes) = item.map_err(io_error)?;
            entries.push(wire::frame::decode(bytes.value()).map_err(io_error)?);
        }
        Ok(entries)
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, std::io::Error> {
        let txn = self.db.begin_read().map_err(io_error)?;
        let table = txn.open_table(LOG).map_err(io_error)?;
        let last = match table.last().map_err(io_error)? {
            Some((_, bytes)) => Some(
                wire::frame::decode::<Entry>(bytes.value())
                    .map_err(io_error)?
                    .log_id,
            ),
            None => None,
        };
        Ok(last)
    }

    fn append_blocking(&self, entries: Vec<Entry>) -> Result<(), std::io::Error> {
        let txn = self.db.begin_write().map_err(io_error)?;
        {
            let mut table = txn.open_table(LOG).map_err(io_error)?;
            for entry in &entries {
                let bytes = wire::frame::to_bytes(entry).map_err(io_error)?;
                table
                    .insert(entry.log_id.index, bytes.as_slice())
                    .map_err(io_error)?;
            }
        }
        txn.commit().map_err(io_error)
    }

    fn remove_range(
        &self,
        range: (Bound<u64>, Bound<u64>),
        purged: Option<LogId>,
    ) -> Result<(), std::io::Error> {
        let txn = self.db.begin_write().map_err(io_error)?;
        {
            if let Some(purged) = purged {
                let bytes = wire::frame::to_bytes(&purged).map_err(io_error)?;
                let mut meta = txn.open_table(META).map_err(io_error)?;
                meta.insert(LAST_PURGED, bytes.as_slice())
                    .map_err(io_error)?;
            }
            let mut table = txn.open_table(LOG).map_err(io_error)?;
            table
                .retain_in::<u64, _>(range, |_, _| false)
                .map_err(io_error)?;
        }
        txn.commit().map_err(io_error)
    }
}

/// Runs a blocking storage call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, std::io::Error> + Send + 'static,
) -> Result<T, std::io::Error> {
    tokio::task::spawn_blocking(f).await.map_err(io_error)?
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let store = self.clone();
        blocking(move || store.entries(bounds))
            .await
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let store = self.clone();
        blocking(move || {
            let last_purged: Option<LogId> = store.read_meta(LAST_PURGED)?;
            let last = store.last_entry_id()?.or(last_purged);
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let store = self.clone();
        let vote = *vote;
        blocking(move || store.write_meta(VOTE, &vote))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        let store = self.clone();
        blocking(move || store.read_meta(VOTE))
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let store = self.clone();
        blocking(move || store.write_meta(COMMITTED, &committed))
            .await
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let store = self.clone();
        blocking(move || Ok(store.read_meta::<Option<LogId>>(COMMITTED)?.flatten()))
            .await
            .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let store = self.clone();
        let result = blocking(move || store.append_blocking(entries)).await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io_error(&e)));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let store = self.clone();
        blocking(move || {
            store.remove_range((Bound::Included(log_id.index), Bound::Unbounded), None)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let store = self.clone();
        blocking(move || {
            store.remove_range(
                (Bound::Unbounded, Bound::Included(log_id.index)),
                Some(log_id),
            )
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
