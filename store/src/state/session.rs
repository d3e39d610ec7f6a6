//! Sessions: who may hold KV locks. Pure data; the invalidation that releases their keys
//! lives in [`super::State`], which sees the KV store and the catalog too.

use std::collections::BTreeMap;

use wire::records::Session;

/// A datacenter's sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    by_id: BTreeMap<String, Session>,
    /// Index of the last change to any session (blocking queries on sessions wait on it).
    pub index: u64,
}

impl Sessions {
    /// Rebuilds from a snapshot's parts.
    pub fn from_parts(sessions: Vec<Session>, index: u64) -> Sessions {
        Sessions {
            by_id: sessions.into_iter().map(|s| (s.id.clone(), s)).collect(),
            index,
        }
    }

    /// The parts a snapshot stores.
    pub fn to_parts(&self) -> (Vec<Session>, u64) {
        (self.by_id.values().cloned().collect(), self.index)
    }

    /// One session.
    pub fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id)
    }

    /// Every session, by ID.
    pub fn list(&self) -> impl Iterator<Item = &Session> {
        self.by_id.values()
    }

    /// The sessions of `node`.
    pub fn of_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Session> + 'a {
        self.by_id.values().filter(move |s| s.node == node)
    }

    /// The sessions of `node` that a check of that node (by ID) invalidates.
    pub fn watching(&self, node: &str, check_id: &str) -> Vec<String> {
        self.of_node(node)
            .filter(|s| {
                s.node_checks.iter().any(|c| c == check_id)
                    || s.service_checks.iter().any(|c| c == check_id)
            })
            .map(|s| s.id.clone())
            .collect()
    }

    pub(super) fn insert(&mut self, index: u64, session: Session) {
        self.by_id.insert(session.id.clone(), session);
        self.index = index;
    }

    pub(super) fn remove(&mut self, index: u64, id: &str) -> Option<Session> {
        let removed = self.by_id.remove(id)?;
        self.index = index;
        Some(removed)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// When keys released by an invalidated session may be acquired again (Consul's lock
/// delay), in Unix milliseconds. Kept by each server as it applies the invalidation, and
/// consulted only by the leader before it proposes an acquire (as Consul's): it is not
/// replicated state, so it takes no part in comparisons of states and is not in snapshots.
#[derive(Debug, Clone, Default)]
pub struct LockDelays(BTreeMap<String, u64>);

impl PartialEq for LockDelays {
    fn eq(&self, _: &LockDelays) -> bool {
        true
    }
}

impl Eq for LockDelays {}

impl LockDelays {
    /// Until when `key` may not be acquired, if that is after `now_ms`.
    pub fn until(&self, key: &str, now_ms: u64) -> Option<u64> {
        self.0.get(key).copied().filter(|until| *until > now_ms)
    }

    pub(super) fn start(&mut self, key: &str, now_ms: u64, delay_ms: u64) {
        if delay_ms == 0 {
            return;
        }
        // Forget delays that ran out, so the map stays as small as the keys in delay.
        self.0.retain(|_, until| *until > now_ms);
        let until = now_ms.saturating_add(delay_ms);
        let entry = self.0.entry(key.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }
}
