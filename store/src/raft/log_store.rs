//! The Raft log and vote, in a redb file, with group commit.
//!
//! Every mutation goes, in call order, to one writer thread. Appends queued while a commit
//! is in flight are merged into the next redb transaction, and commit-index updates ride
//! along; openraft's `LogFlushed` callback fires only after that commit. (openraft 0.9 waits
//! for each flush before its next append, so appends rarely merge here: the batching that
//! matters happens before Raft, in `crate::proposer`.) Until then the entries sit
//! in `pending`, where readers see them (openraft replicates entries before they are durable
//! locally, as Raft allows). Votes, truncations and purges wait for their own commit.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Entry, LogId, NodeId, StorageError, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";
const COMMITTED: &str = "committed";

type Reply = tokio::sync::oneshot::Sender<Result<(), std::io::Error>>;

/// A mutation, in the order openraft asked for it.
enum Op {
    Append(Vec<Entry>, LogFlushed<TypeConfig>),
    Truncate(u64, Reply),
    Purge(LogId, Reply),
    Meta(&'static str, Vec<u8>, Reply),
    /// The commit index: a restart hint, written without an fsync of its own. It becomes
    /// durable with the next log commit, and is never ahead of the durable log because
    /// operations are applied in order.
    Committed(Vec<u8>),
}

struct Shared {
    db: Database,
    /// Appended but not yet committed; readers see these.
    pending: Mutex<BTreeMap<u64, Entry>>,
    writer: Mutex<mpsc::Sender<Op>>,
}

/// The log store; cheap to clone (one database and one writer shared).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

fn io_error(error: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

/// A log that cannot be opened, with what the operator can do about it.
fn damaged(path: &Path, error: impl std::fmt::Display) -> std::io::Error {
    io_error(format!(
        "{}: {error}. The Raft log is damaged: move the data directory's raft/ aside and \
         start again; this server rejoins and copies the log from its leader (the only server \
         of a datacenter restores from a snapshot: `dc-agent snapshot restore`)",
        path.display()
    ))
}

/// How much of a torn tail is cut at most, looking for the length the log had.
const MAX_TORN_TAIL: u64 = 16 * 1024 * 1024;

/// Cuts a log file whose growth a crash interrupted back to the last length redb accepts
/// and whose contents pass its integrity check. The file as found is kept next to it
/// (`log.redb.torn-<unix seconds>`); nothing the log had committed is cut (redb commits only
/// what lies inside its layout, and a length that misses a committed page does not open).
fn recover_torn_tail(path: &Path, why: &str) -> Result<Database, std::io::Error> {
    let length = std::fs::metadata(path)?.len();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let kept = path.with_extension(format!("redb.torn-{stamp}"));
    std::fs::copy(path, &kept)?;
    let page = 4096;
    let mut candidate = (length / page) * page;
    if candidate == length {
        candidate = candidate.saturating_sub(page);
    }
    let floor = length.saturating_sub(MAX_TORN_TAIL);
    while candidate >= floor && candidate > 0 {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(candidate)?;
        if let Ok(mut db) = Database::create(path) {
            if matches!(db.check_integrity(), Ok(true)) {
                tracing::warn!(
                    file = %path.display(),
                    cut = length - candidate,
                    kept = %kept.display(),
                    "the Raft log ended in a torn write ({why}); cut it back to its last valid length"
                );
                return Ok(db);
            }
        }
        candidate -= page;
    }
    std::fs::copy(&kept, path)?;
    Err(damaged(path, why))
}

fn poisoned() -> std::io::Error {
    io_error("log store lock poisoned by a panic in another thread")
}

impl LogStore {
    /// Opens (or creates) the log at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<LogStore, std::io::Error> {
        let db = match Database::create(path) {
            Ok(db) => db,
            // redb only grows its file to lengths that map onto its region layout: any other
            // length is a growth the crash interrupted (a torn write at the end of the log).
            Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)))
                if why.contains("valid region layout") =>
            {
                recover_torn_tail(path, &why)?
            }
            Err(e) => return Err(damaged(path, e)),
        };
        // The log holds every write: readable by this user only (as Consul's raft.db).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        let txn = db.begin_write().map_err(io_error)?;
        txn.open_table(LOG).map_err(io_error)?;
        txn.open_table(META).map_err(io_error)?;
        txn.commit().map_err(io_error)?;
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared {
            db,
            pending: Mutex::new(BTreeMap::new()),
            writer: Mutex::new(sender),
        });
        let for_writer = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("raft-log-writer".to_owned())
            .spawn(move || writer_loop(for_writer, receiver))?;
        Ok(LogStore { shared })
    }

    fn send(&self, op: Op) -> Result<(), std::io::Error> {
        let writer = self.shared.writer.lock().map_err(|_| poisoned())?;
        writer
            .send(op)
            .map_err(|_| io_error("the log writer thread has stopped"))
    }

    async fn send_and_wait(&self, make: impl FnOnce(Reply) -> Op) -> Result<(), std::io::Error> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(make(reply))?;
        done.await
            .map_err(|_| io_error("the log writer thread has stopped"))?
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, std::io::Error> {
        let txn = self.shared.db.begin_read().map_err(io_error)?;
        let table = txn.open_table(META).map_err(io_error)?;
        match table.get(key).map_err(io_error)? {
            Some(bytes) => wire::frame::decode(bytes.value())
                .map(Some)
                .map_err(io_error),
            None => Ok(None),
        }
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), std::io::Error> {
        let bytes = wire::frame::to_bytes(value).map_err(io_error)?;
        self.send_and_wait(|reply| Op::Meta(key, bytes, reply))
            .await
    }

    fn stored_entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
    ) -> Result<BTreeMap<u64, Entry>, std::io::Error> {
        let txn = self.shared.db.begin_read().map_err(io_error)?;
        let table = txn.open_table(LOG).map_err(io_error)?;
        let mut entries = BTreeMap::new();
        for item in table.range(range).map_err(io_error)? {
            let (index, bytes) = item.map_err(io_error)?;
            entries.insert(
                index.value(),
                wire::frame::decode(bytes.value()).map_err(io_error)?,
            );
        }
        Ok(entries)
    }

    fn last_stored_id(&self) -> Result<Option<LogId>, std::io::Error> {
        let txn = self.shared.db.begin_read().map_err(io_error)?;
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
}

/// Applies operations in order; merges consecutive appends into one transaction.
fn writer_loop(shared: std::sync::Weak<Shared>, receiver: mpsc::Receiver<Op>) {
    let mut carry: Option<Op> = None;
    loop {
        let first = match carry.take() {
            Some(op) => op,
            None => match receiver.recv() {
                Ok(op) => op,
                Err(_) => return,
            },
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match first {
            Op::Append(entries, callback) => {
                let mut batch = vec![(entries, callback)];
                // Commit-index updates ride along in the same transaction: openraft sends
                // one after nearly every commit, and letting them split batches would cost
                // one fsync per write.
                let mut committed = None;
                while let Ok(next) = receiver.try_recv() {
                    match next {
                        Op::Append(entries, callback) => batch.push((entries, callback)),
                        Op::Committed(bytes) => committed = Some(bytes),
                        other => {
                            carry = Some(other);
                            break;
                        }
                    }
                }
                let result = commit_appends(&shared.db, &batch, committed.as_deref());
                if result.is_ok() {
                    if let Ok(mut pending) = shared.pending.lock() {
                        for entry in batch.iter().flat_map(|(entries, _)| entries) {
                            if pending
                                .get(&entry.log_id.index)
                                .is_some_and(|p| p.log_id == entry.log_id)
                            {
                                pending.remove(&entry.log_id.index);
                            }
                        }
                    }
                }
                for (_, callback) in batch {
                    callback.log_io_completed(result.as_ref().map(|_| ()).map_err(io_error));
                }
            }
            Op::Truncate(from, reply) => {
                let _ = reply.send(remove_range(
                    &shared.db,
                    (Bound::Included(from), Bound::Unbounded),
                    None,
                ));
            }
            Op::Purge(upto, reply) => {
                let _ = reply.send(remove_range(
                    &shared.db,
                    (Bound::Unbounded, Bound::Included(upto.index)),
                    Some(upto),
                ));
            }
            Op::Meta(key, bytes, reply) => {
                let _ = reply.send(write_meta(
                    &shared.db,
                    key,
                    &bytes,
                    redb::Durability::Immediate,
                ));
            }
            Op::Committed(bytes) => {
                if let Err(e) = write_meta(&shared.db, COMMITTED, &bytes, redb::Durability::None) {
                    tracing::warn!(error = %e, "could not record the commit index");
                }
            }
        }
    }
}

fn commit_appends(
    db: &Database,
    batch: &[(Vec<Entry>, LogFlushed<TypeConfig>)],
    committed: Option<&[u8]>,
) -> Result<(), std::io::Error> {
    let txn = db.begin_write().map_err(io_error)?;
    {
        if let Some(committed) = committed {
            let mut meta = txn.open_table(META).map_err(io_error)?;
            meta.insert(COMMITTED, committed).map_err(io_error)?;
        }
        let mut table = txn.open_table(LOG).map_err(io_error)?;
        for entry in batch.iter().flat_map(|(entries, _)| entries) {
            let bytes = wire::frame::to_bytes(entry).map_err(io_error)?;
            table
                .insert(entry.log_id.index, bytes.as_slice())
                .map_err(io_error)?;
        }
    }
    txn.commit().map_err(io_error)
}

fn write_meta(
    db: &Database,
    key: &str,
    bytes: &[u8],
    durability: redb::Durability,
) -> Result<(), std::io::Error> {
    let mut txn = db.begin_write().map_err(io_error)?;
    txn.set_durability(durability).map_err(io_error)?;
    {
        let mut table = txn.open_table(META).map_err(io_error)?;
        table.insert(key, bytes).map_err(io_error)?;
    }
    txn.commit().map_err(io_error)
}

fn remove_range(
    db: &Database,
    range: (Bound<u64>, Bound<u64>),
    purged: Option<LogId>,
) -> Result<(), std::io::Error> {
    let txn = db.begin_write().map_err(io_error)?;
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

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let read = || -> Result<Vec<Entry>, std::io::Error> {
            // Pending first: an entry leaves `pending` only after it is in redb, so reading
            // in this order never misses one.
            let pending: Vec<(u64, Entry)> = {
                let pending = self.shared.pending.lock().map_err(|_| poisoned())?;
                pending
                    .range(bounds)
                    .map(|(i, e)| (*i, e.clone()))
                    .collect()
            };
            let mut entries = self.stored_entries(bounds)?;
            entries.extend(pending);
            Ok(entries.into_values().collect())
        };
        read().map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let read = || -> Result<LogState<TypeConfig>, std::io::Error> {
            let pending_last = self
                .shared
                .pending
                .lock()
                .map_err(|_| poisoned())?
                .values()
                .next_back()
                .map(|e| e.log_id);
            let last_purged: Option<LogId> = self.read_meta(LAST_PURGED)?;
            let last = pending_last.or(self.last_stored_id()?).or(last_purged);
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        };
        read().map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE)
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes =
            wire::frame::to_bytes(&committed).map_err(|e| StorageIOError::write(&io_error(e)))?;
        self.send(Op::Committed(bytes))
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_meta::<Option<LogId>>(COMMITTED)
            .map(Option::flatten)
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
        let queue = || -> Result<(), std::io::Error> {
            let mut pending = self.shared.pending.lock().map_err(|_| poisoned())?;
            for entry in &entries {
                pending.insert(entry.log_id.index, entry.clone());
            }
            drop(pending);
            self.send(Op::Append(entries, callback))
        };
        queue().map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let dropped = || -> Result<(), std::io::Error> {
            let mut pending = self.shared.pending.lock().map_err(|_| poisoned())?;
            let _ = pending.split_off(&log_id.index);
            Ok(())
        };
        dropped().map_err(|e| StorageIOError::write_logs(&e))?;
        self.send_and_wait(|reply| Op::Truncate(log_id.index, reply))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.send_and_wait(|reply| Op::Purge(log_id, reply))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_torn_tail_is_cut_back_and_the_log_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.redb");
        {
            let log = LogStore::open(&path).expect("open");
            log.write_meta(VOTE, &"kept".to_owned())
                .await
                .expect("write");
        }
        // The crash left half a growth behind.
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend(std::iter::repeat_n(0xA5u8, 3000));
        std::fs::write(&path, bytes).expect("write");
        let log = LogStore::open(&path).expect("recovered");
        assert_eq!(
            log.read_meta::<String>(VOTE).expect("read"),
            Some("kept".to_owned())
        );
        let kept = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("log.redb.torn-")
            });
        assert!(kept, "the torn file is kept for a look");
    }

    #[test]
    fn a_log_that_is_not_one_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.redb");
        std::fs::write(&path, vec![0x42u8; 10_000]).expect("write");
        let error = LogStore::open(&path).err().expect("refused");
        let text = error.to_string();
        assert!(
            text.contains("log.redb") && text.contains("move the data directory"),
            "{text}"
        );
    }
}
