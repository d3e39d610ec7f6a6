//! The KV store: Consul's semantics (CAS, flags, trees, transactions) and the indexes that
//! blocking queries wait on.
//!
//! Index of a key or prefix: the highest Raft index that changed anything under it, deletes
//! included (kept as tombstones), never below `floor` nor 1. So a blocking query on `a/`
//! wakes when something under `a/` changes and not when `b` changes, and an index never goes
//! backwards.

use std::collections::BTreeMap;
use std::ops::Bound;

use wire::command::{TxnError, TxnOp};
use wire::records::KvEntry;

/// The KV half of a datacenter's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    entries: BTreeMap<String, KvEntry>,
    /// Index at which a key was deleted; what makes a delete visible to blocking queries.
    tombstones: BTreeMap<String, u64>,
    /// No key or prefix reports an index below this (raised when tombstones are reaped).
    floor: u64,
}

/// Entries under `prefix` of a map keyed by string, in key order.
fn under<'a, V>(
    map: &'a BTreeMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(key, _)| key.starts_with(prefix))
}

impl Kv {
    /// Rebuilds from a snapshot's parts.
    pub fn from_parts(entries: Vec<KvEntry>, tombstones: Vec<(String, u64)>, floor: u64) -> Kv {
        Kv {
            entries: entries
                .into_iter()
                .map(|entry| (entry.key.clone(), entry))
                .collect(),
            tombstones: tombstones.into_iter().collect(),
            floor,
        }
    }

    /// The parts a snapshot stores.
    pub fn to_parts(&self) -> (Vec<KvEntry>, Vec<(String, u64)>, u64) {
        (
            self.entries.values().cloned().collect(),
            self.tombstones
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            self.floor,
        )
    }

    /// One entry.
    pub fn get(&self, key: &str) -> Option<&KvEntry> {
        self.entries.get(key)
    }

    /// Every entry under `prefix`, in key order.
    pub fn list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a KvEntry> + 'a {
        under(&self.entries, prefix).map(|(_, entry)| entry)
    }

    /// Keys under `prefix`; with a separator, each key is cut after the first separator that
    /// follows the prefix and duplicates are dropped (Consul's `?keys&separator=/`).
    pub fn keys(&self, prefix: &str, separator: Option<&str>) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for (key, _) in under(&self.entries, prefix) {
            let cut = match separator.filter(|s| !s.is_empty()) {
                Some(separator) => match key[prefix.len()..].find(separator) {
                    Some(at) => &key[..prefix.len() + at + separator.len()],
                    None => key.as_str(),
                },
                None => key.as_str(),
            };
            if keys.last().map(String::as_str) != Some(cut) {
                keys.push(cut.to_owned());
            }
        }
        keys
    }

    /// The index a blocking query on one key waits on.
    pub fn key_index(&self, key: &str) -> u64 {
        let entry = self.entries.get(key).map_or(0, |e| e.modify_index);
        let tombstone = self.tombstones.get(key).copied().unwrap_or(0);
        entry.max(tombstone).max(self.floor).max(1)
    }

    /// The index a blocking query on a prefix (`?recurse`, `?keys`) waits on.
    pub fn prefix_index(&self, prefix: &str) -> u64 {
        let entries = under(&self.entries, prefix)
            .map(|(_, e)| e.modify_index)
            .max()
            .unwrap_or(0);
        let tombstones = under(&self.tombstones, prefix)
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        entries.max(tombstones).max(self.floor).max(1)
    }

    /// Sets a key at Raft index `index`. With `cas`: only if the key's modify index is `cas`
    /// (0: only if the key does not exist). Returns whether it was written.
    pub fn set(
        &mut self,
        index: u64,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
    ) -> bool {
        if !self.cas_holds(key, cas) {
            return false;
        }
        self.write(index, key, value, flags);
        true
    }

    fn cas_holds(&self, key: &str, cas: Option<u64>) -> bool {
        match (cas, self.entries.get(key)) {
            (None, _) => true,
            (Some(0), existing) => existing.is_none(),
            (Some(expected), Some(entry)) => entry.modify_index == expected,
            (Some(_), None) => false,
        }
    }

    fn write(&mut self, index: u64, key: &str, value: Vec<u8>, flags: u64) {
        self.tombstones.remove(key);
        match self.entries.get_mut(key) {
            Some(entry) => {
                entry.value = value;
                entry.flags = flags;
                entry.modify_index = index;
            }
            None => {
                self.entries.insert(
                    key.to_owned(),
                    KvEntry {
                        key: key.to_owned(),
                        value,
                        flags,
                        create_index: index,
                        modify_index: index,
                        lock_index: 0,
                        session: None,
                    },
                );
            }
        }
    }

    /// `?acquire`: sets the key and takes its lock for `session`, unless another session
    /// holds it or `cas` does not hold. The caller checked that the session exists.
    pub fn lock(&mut self, index: u64, write: &LockWrite<'_>, cas: Option<u64>) -> bool {
        if !self.cas_holds(write.key, cas) {
            return false;
        }
        match locked(self.entries.get(write.key).cloned(), index, write) {
            Ok(entry) => {
                self.tombstones.remove(write.key);
                self.entries.insert(write.key.to_owned(), entry);
                true
            }
            Err(_) => false,
        }
    }

    /// `?release`: sets the key and releases its lock, if `session` holds it.
    pub fn unlock(&mut self, index: u64, write: &LockWrite<'_>, cas: Option<u64>) -> bool {
        if !self.cas_holds(write.key, cas) {
            return false;
        }
        match unlocked(self.entries.get(write.key).cloned(), index, write) {
            Ok(entry) => {
                self.entries.insert(write.key.to_owned(), entry);
                true
            }
            Err(_) => false,
        }
    }

    /// The keys `session` holds (a scan: invalidations are rare).
    pub fn held_by(&self, session: &str) -> Vec<String> {
        self.entries
            .values()
            .filter(|e| e.session.as_deref() == Some(session))
            .map(|e| e.key.clone())
            .collect()
    }

    /// Releases a key's lock whoever holds it (an invalidated session's).
    pub fn release(&mut self, index: u64, key: &str) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.session = None;
            entry.modify_index = index;
        }
    }

    /// Deletes a key. With `cas`: only if its modify index is `cas`. Deleting a missing key
    /// succeeds (as in Consul) unless a CAS index was given.
    pub fn delete(&mut self, index: u64, key: &str, cas: Option<u64>) -> bool {
        match (cas, self.entries.get(key)) {
            (Some(expected), Some(entry)) if entry.modify_index != expected => return false,
            (Some(expected), None) if expected != 0 => return false,
            _ => {}
        }
        if self.entries.remove(key).is_some() {
            self.tombstones.insert(key.to_owned(), index);
        }
        true
    }

    /// Deletes every key under `prefix`; returns how many.
    pub fn delete_tree(&mut self, index: u64, prefix: &str) -> usize {
        let doomed: Vec<String> = under(&self.entries, prefix)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            self.entries.remove(key);
            self.tombstones.insert(key.clone(), index);
        }
        doomed.len()
    }

    /// How many tombstones are at or below `up_to`.
    pub fn tombstones_up_to(&self, up_to: u64) -> usize {
        self.tombstones.values().filter(|at| **at <= up_to).count()
    }

    /// Forgets tombstones at or below `up_to`, raising the floor so no index goes backwards.
    pub fn reap_tombstones(&mut self, up_to: u64) {
        self.tombstones.retain(|_, deleted_at| *deleted_at > up_to);
        self.floor = self.floor.max(up_to);
    }

    /// Applies a transaction: every operation or none. Returns the entries the operations
    /// return (gets return the entry; writes return the entry without its value, as Consul).
    /// `live` says whether a session exists (for `lock`); session verbs are applied by
    /// the caller once the KV operations went through.
    pub fn txn(
        &mut self,
        index: u64,
        ops: &[TxnOp],
        live: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<KvEntry>, Vec<TxnError>> {
        let mut staged = Staged {
            base: self,
            changes: BTreeMap::new(),
        };
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (op_index, op) in ops.iter().enumerate() {
            let mut fail = |what: String| errors.push(TxnError { op_index, what });
            match op {
                TxnOp::Set { key, value, flags } => {
                    results.push(staged.write(index, key, value, *flags));
                }
                TxnOp::Cas {
                    key,
                    value,
                    flags,
                    index: expected,
                } => {
                    if staged.cas_holds(key, *expected) {
                        results.push(staged.write(index, key, value, *flags));
                    } else {
                        fail(format!("failed to set key {key:?}, index is stale"));
                    }
                }
                TxnOp::Get { key } => match staged.get(key) {
                    Some(entry) => results.push(entry),
                    None => fail(format!("key {key:?} doesn't exist")),
                },
                TxnOp::GetTree { prefix } => results.extend(staged.list(prefix)),
                TxnOp::CheckIndex {
                    key,
                    index: expected,
                } => match staged.get(key) {
                    Some(entry) if entry.modify_index == *expected => {
                        results.push(without_value(entry))
                    }
                    Some(entry) => fail(format!(
                        "current modify index {} != {expected}",
                        entry.modify_index
                    )),
                    None => fail(format!("key {key:?} doesn't exist")),
                },
                TxnOp::CheckNotExists { key } => {
                    if staged.get(key).is_some() {
                        fail(format!("key {key:?} exists"));
                    }
                }
                TxnOp::Delete { key } => staged.remove(key),
                TxnOp::DeleteTree { prefix } => {
                    for entry in staged.list(prefix) {
                        staged.remove(&entry.key);
                    }
                }
                TxnOp::DeleteCas {
                    key,
                    index: expected,
                } => match staged.get(key) {
                    Some(entry) if entry.modify_index == *expected => staged.remove(key),
                    _ => fail(format!("failed to delete key {key:?}, index is stale")),
                },
                TxnOp::Lock { .. } | TxnOp::Unlock { .. } | TxnOp::CheckSession { .. } => {
                    match staged.session_op(index, op, live) {
                        Ok(entry) => results.push(entry),
                        Err(why) => fail(why),
                    }
                }
                TxnOp::SessionDelete { .. } => {}
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let changes = staged.changes;
        for (key, change) in changes {
            match change {
                Some(entry) => {
                    self.tombstones.remove(&key);
                    self.entries.insert(key, entry);
                }
                None => {
                    // Removals are staged only for keys the transaction saw, so each one
                    // leaves a tombstone (even for a key created earlier in the same txn).
                    self.entries.remove(&key);
                    self.tombstones.insert(key, index);
                }
            }
        }
        Ok(results)
    }
}

/// A write that takes or releases a lock.
#[derive(Debug, Clone, Copy)]
pub struct LockWrite<'a> {
    /// The key.
    pub key: &'a str,
    /// The value.
    pub value: &'a [u8],
    /// Client flags.
    pub flags: u64,
    /// The session.
    pub session: &'a str,
}

/// The key after `write` takes its lock: refused while another session holds it. Taking a
/// lock counts in `LockIndex`; the holder writing again does not.
fn locked(existing: Option<KvEntry>, index: u64, write: &LockWrite<'_>) -> Result<KvEntry, String> {
    let key = write.key;
    match existing {
        Some(entry) if entry.session.as_deref().is_some_and(|s| s != write.session) => {
            Err(format!("failed to lock key {key:?}, lock is already held"))
        }
        Some(entry) => {
            let relock = entry.session.as_deref() == Some(write.session);
            Ok(KvEntry {
                value: write.value.to_vec(),
                flags: write.flags,
                modify_index: index,
                lock_index: entry.lock_index + u64::from(!relock),
                session: Some(write.session.to_owned()),
                ..entry
            })
        }
        None => Ok(KvEntry {
            key: key.to_owned(),
            value: write.value.to_vec(),
            flags: write.flags,
            create_index: index,
            modify_index: index,
            lock_index: 1,
            session: Some(write.session.to_owned()),
        }),
    }
}

/// The key after `write` releases its lock: only its holder may.
fn unlocked(
    existing: Option<KvEntry>,
    index: u64,
    write: &LockWrite<'_>,
) -> Result<KvEntry, String> {
    match existing {
        Some(entry) if entry.session.as_deref() == Some(write.session) => Ok(KvEntry {
            value: write.value.to_vec(),
            flags: write.flags,
            modify_index: index,
            session: None,
            ..entry
        }),
        _ => Err(format!(
            "failed to unlock key {:?}, lock isn't held, or is held by another session",
            write.key
        )),
    }
}

fn without_value(entry: KvEntry) -> KvEntry {
    KvEntry {
        value: Vec::new(),
        ..entry
    }
}

/// A transaction's view: the store plus the changes made so far.
struct Staged<'a> {
    base: &'a Kv,
    changes: BTreeMap<String, Option<KvEntry>>,
}

impl Staged<'_> {
    fn get(&self, key: &str) -> Option<KvEntry> {
        match self.changes.get(key) {
            Some(change) => change.clone(),
            None => self.base.entries.get(key).cloned(),
        }
    }

    fn list(&self, prefix: &str) -> Vec<KvEntry> {
        let mut merged: BTreeMap<String, KvEntry> = self
            .base
            .list(prefix)
            .map(|entry| (entry.key.clone(), entry.clone()))
            .collect();
        for (key, change) in under(&self.changes, prefix) {
            match change {
                Some(entry) => merged.insert(key.clone(), entry.clone()),
                None => merged.remove(key),
            };
        }
        merged.into_values().collect()
    }

    fn cas_holds(&self, key: &str, expected: u64) -> bool {
        match self.get(key) {
            None => expected == 0,
            Some(entry) => entry.modify_index == expected,
        }
    }

    fn write(&mut self, index: u64, key: &str, value: &[u8], flags: u64) -> KvEntry {
        let entry = match self.get(key) {
            Some(existing) => KvEntry {
                value: value.to_vec(),
                flags,
                modify_index: index,
                ..existing
            },
            None => KvEntry {
                key: key.to_owned(),
                value: value.to_vec(),
                flags,
                create_index: index,
                modify_index: index,
                lock_index: 0,
                session: None,
            },
        };
        self.changes.insert(key.to_owned(), Some(entry.clone()));
        without_value(entry)
    }

    /// `lock`, `unlock` or `check-session`: the entry it returns, or why it fails.
    fn session_op(
        &mut self,
        index: u64,
        op: &TxnOp,
        live: &dyn Fn(&str) -> bool,
    ) -> Result<KvEntry, String> {
        match op {
            TxnOp::Lock {
                key,
                value,
                flags,
                session,
            } => {
                if !live(session) {
                    return Err(format!(
                        "failed to lock key {key:?}: invalid session {session:?}"
                    ));
                }
                let write = LockWrite {
                    key,
                    value,
                    flags: *flags,
                    session,
                };
                locked(self.get(key), index, &write).map(|entry| self.put(entry))
            }
            TxnOp::Unlock {
                key,
                value,
                flags,
                session,
            } => {
                let write = LockWrite {
                    key,
                    value,
                    flags: *flags,
                    session,
                };
                unlocked(self.get(key), index, &write).map(|entry| self.put(entry))
            }
            TxnOp::CheckSession { key, session } => match self.get(key) {
                Some(entry) if entry.session.as_deref() == Some(session.as_str()) => {
                    Ok(without_value(entry))
                }
                Some(entry) => Err(format!(
                    "failed session check for key {key:?}, current session {:?} != {session:?}",
                    entry.session.unwrap_or_default()
                )),
                None => Err(format!(
                    "failed session check for key {key:?}, key doesn't exist"
                )),
            },
            other => Err(format!("not a session operation: {other:?}")),
        }
    }

    fn put(&mut self, entry: KvEntry) -> KvEntry {
        self.changes.insert(entry.key.clone(), Some(entry.clone()));
        without_value(entry)
    }

    fn remove(&mut self, key: &str) {
        if self.get(key).is_some() {
            self.changes.insert(key.to_owned(), None);
        }
    }
}
