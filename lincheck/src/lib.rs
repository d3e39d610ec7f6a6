//! Linearizability of a key-value store's history, checked key by key.
//!
//! Each key is a register: writes set (or delete) its value, reads return it. A history of
//! a whole store is linearizable if and only if each key's history is (linearizability is
//! local, Herlihy and Wing), so [`check`] splits by key and searches each one with Wing and
//! Gong's algorithm, with Lowe's memoization of (operations linearized, value) pairs.
//!
//! What a caller records: every operation it began, when it began, and when it returned if
//! it is known to have happened ([`Entry`]). A write whose outcome is unknown (a timeout, a
//! connection cut, a 5xx after the request may have been sent) is recorded with no return
//! time: it may have taken effect at any moment after it began, or never. A read that did
//! not answer tells nothing and is left out; so is an operation known to have failed.
//! Written values must be unique per key for a violation to say much (the checker is
//! correct either way).
//!
//! Times are in any monotonic unit, taken by the client: a call is timed before its request
//! is sent, a return after its answer arrived, so the real interval is inside the recorded
//! one (the check only gets more permissive).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// One operation on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Set the value (`None`: delete the key).
    Write(Option<u64>),
    /// A read, and what it saw (`None`: no such key).
    Read(Option<u64>),
}

/// An operation as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// What was asked, and for a read what came back.
    pub op: Op,
    /// When the call began.
    pub invoked: u64,
    /// When it returned, known to have happened; `None` for a write of unknown outcome.
    pub returned: Option<u64>,
}

/// A key whose history has no linearization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// The operation that could not be placed: it returned before any order of the
    /// operations before it could include it.
    pub stuck_at: Entry,
    /// Operations of the key that overlap it in time, for the report.
    pub concurrent: Vec<Entry>,
    /// Operations of the key in the history.
    pub operations: usize,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?}: no linearization of its {} operations; stuck at {:?} [{}..{}]",
            self.key,
            self.operations,
            self.stuck_at.op,
            self.stuck_at.invoked,
            self.stuck_at
                .returned
                .map_or_else(|| "?".to_owned(), |r| r.to_string())
        )?;
        for entry in &self.concurrent {
            writeln!(
                f,
                "  overlapping: {:?} [{}..{}]",
                entry.op,
                entry.invoked,
                entry
                    .returned
                    .map_or_else(|| "?".to_owned(), |r| r.to_string())
            )?;
        }
        Ok(())
    }
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked.
    pub operations: usize,
    /// Writes of unknown outcome among them.
    pub unknown: usize,
}

/// Checks every key's history, each starting from `initial`; the first violation found (in
/// key order) is returned.
pub fn check(history: &[Entry], initial: Option<u64>) -> Result<Summary, Box<Violation>> {
    let mut by_key: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for entry in history {
        by_key.entry(entry.key.as_str()).or_default().push(entry);
    }
    let mut summary = Summary {
        keys: by_key.len(),
        operations: history.len(),
        unknown: history.iter().filter(|e| e.returned.is_none()).count(),
    };
    for (key, entries) in &by_key {
        // A write of unknown outcome whose value no read saw may as well never have
        // happened: leaving it out changes no verdict, and each one left in doubles the
        // search where no order exists.
        let seen: HashSet<Option<u64>> = entries
            .iter()
            .filter_map(|e| match e.op {
                Op::Read(value) => Some(value),
                Op::Write(_) => None,
            })
            .collect();
        let entries: Vec<&Entry> = entries
            .iter()
            .copied()
            .filter(|e| match e.op {
                Op::Write(value) if e.returned.is_none() => seen.contains(&value),
                _ => true,
            })
            .collect();
        check_key(key, &entries, initial)?;
    }
    summary.keys = by_key.len();
    Ok(summary)
}

/// A call or a return, in time order.
#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// Wing and Gong's search over one key's operations.
fn check_key(key: &str, entries: &[&Entry], initial: Option<u64>) -> Result<(), Box<Violation>> {
    let n = entries.len();
    // Calls before returns at the same instant: such operations count as overlapping.
    let mut events: Vec<(u64, u8, Event)> = Vec::with_capacity(2 * n);
    for (i, entry) in entries.iter().enumerate() {
        events.push((
            entry.invoked,
            0,
            Event {
                op: i,
                is_call: true,
            },
        ));
        events.push((
            entry.returned.unwrap_or(u64::MAX),
            1,
            Event {
                op: i,
                is_call: false,
            },
        ));
    }
    events.sort_by_key(|(time, order, event)| (*time, *order, event.op));
    let events: Vec<Event> = events.into_iter().map(|(_, _, e)| e).collect();
    // Positions of each operation's call and return.
    let mut call_at = vec![0usize; n];
    let mut return_at = vec![0usize; n];
    for (position, event) in events.iter().enumerate() {
        if event.is_call {
            call_at[event.op] = position;
        } else {
            return_at[event.op] = position;
        }
    }
    let mut removed = vec![false; events.len()];
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    // (operation, value before it) for each operation linearized so far.
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut state = initial;
    let mut cursor = 0usize;
    let mut remaining = n;
    // The operation at which the search got furthest before it had to back up: the one
    // reported (the first return with nothing left to undo says less).
    let mut deepest: Option<(usize, usize)> = None;
    while remaining > 0 {
        while cursor < events.len() && removed[cursor] {
            cursor += 1;
        }
        // Every operation left returns after the end: it may never have happened (only
        // writes of unknown outcome get there).
        let unknown_only = cursor >= events.len()
            || (!events[cursor].is_call && entries[events[cursor].op].returned.is_none());
        if unknown_only {
            return Ok(());
        }
        let event = events[cursor];
        if event.is_call {
            let entry = entries[event.op];
            let next = match entry.op {
                Op::Write(value) => Some(value),
                Op::Read(value) => (value == state).then_some(state),
            };
            if let Some(next) = next {
                let mut bits = linearized.clone();
                bits[event.op / 64] |= 1 << (event.op % 64);
                if seen.insert((bits.clone(), next)) {
                    linearized = bits;
                    stack.push((event.op, state));
                    state = next;
                    removed[call_at[event.op]] = true;
                    removed[return_at[event.op]] = true;
                    remaining -= 1;
                    cursor = 0;
                    continue;
                }
            }
            cursor += 1;
        } else {
            // An operation returned before it could be placed: undo the last choice.
            if deepest.is_none_or(|(depth, _)| stack.len() > depth) {
                deepest = Some((stack.len(), event.op));
            }
            let Some((op, before)) = stack.pop() else {
                let stuck = deepest.map_or(event.op, |(_, op)| op);
                return Err(Box::new(violation(key, entries, entries[stuck])));
            };
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            removed[call_at[op]] = false;
            removed[return_at[op]] = false;
            remaining += 1;
            cursor = call_at[op] + 1;
        }
    }
    Ok(())
}

fn violation(key: &str, entries: &[&Entry], stuck: &Entry) -> Violation {
    let end = stuck.returned.unwrap_or(u64::MAX);
    let concurrent = entries
        .iter()
        .filter(|e| **e != stuck)
        .filter(|e| e.invoked <= end && e.returned.unwrap_or(u64::MAX) >= stuck.invoked)
        .take(12)
        .map(|e| (*e).clone())
        .collect();
    Violation {
        key: key.to_owned(),
        stuck_at: stuck.clone(),
        concurrent,
        operations: entries.len(),
    }
}

#[cfg(test)]
mod tests;
