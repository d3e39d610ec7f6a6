//! User events, as Consul's (`/v1/event/fire`, `/v1/event/list`, `event`): fired on a
//! server (a client agent's request goes to one, `?dc=` to another datacenter's), spread by
//! LAN gossip to every agent of the datacenter, not through Raft. Each agent keeps the
//! events whose node, service and tag filters (regular expressions) match it, in a ring of
//! the last [`RING`], and answers `/v1/event/list` from it with Consul's index trick: the
//! index is made from the last event's ID.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use wire::command::ServiceRegistration;

/// Events an agent keeps (Consul's `userEventBuf`).
pub const RING: usize = 256;
/// Largest name plus payload (Serf's `UserEventSizeLimit`).
pub const MAX_EVENT_SIZE: usize = 512;

/// A user event, as it travels and as `/v1/event/list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// A UUID.
    pub id: String,
    /// The name.
    pub name: String,
    /// The payload (none: no body).
    pub payload: Option<Vec<u8>>,
    /// Node names it is for (a regular expression; empty: all).
    pub node_filter: String,
    /// Services it is for.
    pub service_filter: String,
    /// Tags of those services it is for.
    pub tag_filter: String,
    /// The format's version (1).
    pub version: u32,
    /// Lamport time of the firing.
    pub ltime: u64,
}

/// Whether `event` is for this agent: its node name, and (when a service filter is set)
/// one of its services and, with a tag filter, one of that service's tags. A filter that is
/// not a valid regular expression matches nothing.
pub fn is_for(
    event: &UserEvent,
    node: &str,
    services: &BTreeMap<String, ServiceRegistration>,
) -> bool {
    let matches = |pattern: &str, text: &str| {
        pattern.is_empty()
            || crate::http::filter::regex::Regex::new(pattern).is_ok_and(|re| re.is_match(text))
    };
    if !matches(&event.node_filter, node) {
        return false;
    }
    if event.service_filter.is_empty() {
        return true;
    }
    services.values().any(|service| {
        matches(&event.service_filter, &service.name)
            && (event.tag_filter.is_empty()
                || service
                    .tags
                    .iter()
                    .any(|tag| matches(&event.tag_filter, tag)))
    })
}

/// The index of a list of events: Consul's `uuidToUint64` of the last one's ID (the upper
/// and lower halves of the UUID XORed), at least 1.
pub fn index_of(events: &[UserEvent]) -> u64 {
    let Some(last) = events.last() else {
        return 1;
    };
    let hex: String = last.id.chars().filter(|c| *c != '-').collect();
    let half = |range: std::ops::Range<usize>| {
        hex.get(range)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0)
    };
    (half(0..16) ^ half(16..32)).max(1)
}

/// The events an agent keeps, and the clock it stamps its own with.
pub struct UserEvents {
    ring: Mutex<VecDeque<UserEvent>>,
    clock: AtomicU64,
    changed: watch::Sender<u64>,
    /// Where `exec` jobs run (the agent's HTTP API) and as which node; none: refused.
    exec: Option<(std::net::SocketAddr, String)>,
    /// The agent's tokens: a job's reads and writes carry its agent token (as Consul's).
    tokens: Option<crate::http::acl::SharedTokens>,
}

impl Default for UserEvents {
    fn default() -> Self {
        UserEvents {
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            clock: AtomicU64::new(0),
            changed: watch::channel(0).0,
            exec: None,
            tokens: None,
        }
    }
}

impl UserEvents {
    /// Events of an agent that runs `exec` jobs (the `_rexec` event) as `node` against its
    /// HTTP API at `agent` (none: `disable_remote_exec`, Consul's default).
    pub fn with_exec(
        agent: Option<std::net::SocketAddr>,
        node: &str,
        tokens: crate::http::acl::SharedTokens,
    ) -> UserEvents {
        UserEvents {
            exec: agent.map(|a| (a, node.to_owned())),
            tokens: Some(tokens),
            ..UserEvents::default()
        }
    }

    /// The next Lamport time for an event fired here.
    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Keeps `event` (once: an event heard twice is kept once), and runs it when it is an
    /// `exec` job; false when it was known.
    pub fn keep(&self, event: UserEvent) -> bool {
        self.clock.fetch_max(event.ltime, Ordering::SeqCst);
        let job = (event.name == crate::exec::EVENT).then(|| event.payload.clone());
        {
            let mut ring = self.ring.lock();
            if ring.iter().any(|e| e.id == event.id) {
                return false;
            }
            if ring.len() >= RING {
                ring.pop_front();
            }
            ring.push_back(event);
        }
        self.changed.send_modify(|n| *n += 1);
        if let Some(payload) = job {
            self.run_job(payload.unwrap_or_default());
        }
        true
    }

    /// An `exec` job for this agent: run on a thread of its own against the agent's HTTP
    /// API, unless remote execution is off.
    fn run_job(&self, payload: Vec<u8>) {
        let Some((addr, node)) = self.exec.clone() else {
            tracing::info!("ignoring a remote exec job: disable_remote_exec is set (the default)");
            return;
        };
        let token = self.tokens.as_ref().and_then(|t| t.lock().for_agent());
        std::thread::spawn(move || {
            let client = crate::client::ApiClient::new(&addr.to_string(), Duration::from_secs(30))
                .with_token(token);
            crate::exec::handle(&client, &node, &payload);
        });
    }

    /// The events kept, oldest first; only those named `name` when given.
    pub fn list(&self, name: Option<&str>) -> Vec<UserEvent> {
        self.ring
            .lock()
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .cloned()
            .collect()
    }

    /// The events (as [`UserEvents::list`]) once their index differs from `index` (0:
    /// at once), or when `wait` runs out.
    pub async fn wait_list(
        &self,
        name: Option<&str>,
        index: u64,
        wait: Duration,
    ) -> (u64, Vec<UserEvent>) {
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            changed.borrow_and_update();
            let events = self.list(name);
            let now = index_of(&events);
            if index == 0 || now != index {
                return (now, events);
            }
            let woke = tokio::select! {
                result = changed.changed() => result.is_ok(),
                _ = tokio::time::sleep_until(deadline) => false,
            };
            if !woke {
                return (now, events);
            }
        }
    }
}

/// Keeps the events the LAN pool brings that are for this agent, until `cancel`.
pub async fn receive(
    events: std::sync::Arc<UserEvents>,
    lan: crate::gossip::pool::Pool,
    local: std::sync::Arc<crate::local::LocalAgent>,
    node: String,
    kept: prometheus::IntCounter,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut incoming = lan.subscribe();
    loop {
        let payload = tokio::select! {
            _ = cancel.cancelled() => return,
            received = incoming.recv() => match received {
                Ok(payload) => payload,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "user events came faster than they were read; some were missed");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        };
        let Ok(event) = postcard::from_bytes::<UserEvent>(&payload) else {
            tracing::debug!("a gossip broadcast that is not a user event was ignored");
            continue;
        };
        if is_for(&event, &node, &local.services()) {
            tracing::debug!(name = %event.name, id = %event.id, "user event received");
            if events.keep(event) {
                kept.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, name: &str) -> UserEvent {
        UserEvent {
            id: id.into(),
            name: name.into(),
            payload: None,
            node_filter: String::new(),
            service_filter: String::new(),
            tag_filter: String::new(),
            version: 1,
            ltime: 0,
        }
    }

    #[test]
    fn filters_as_consul_applies_them() {
        let mut services = BTreeMap::new();
        services.insert(
            "web-1".to_owned(),
            ServiceRegistration {
                id: "web-1".into(),
                name: "web".into(),
                tags: vec!["v2".into()],
                ..ServiceRegistration::default()
            },
        );
        let with = |node: &str, service: &str, tag: &str| UserEvent {
            node_filter: node.into(),
            service_filter: service.into(),
            tag_filter: tag.into(),
            ..event("x", "deploy")
        };
        assert!(is_for(&with("", "", ""), "c1", &services));
        assert!(is_for(&with("^c[0-9]$", "", ""), "c1", &services));
        assert!(!is_for(&with("^s", "", ""), "c1", &services));
        assert!(is_for(&with("", "we", ""), "c1", &services));
        assert!(is_for(&with("", "^web$", "v[0-9]"), "c1", &services));
        assert!(!is_for(&with("", "^web$", "v1"), "c1", &services));
        assert!(!is_for(&with("", "db", ""), "c1", &services));
        assert!(!is_for(&with("(", "", ""), "c1", &services));
    }

    #[test]
    fn the_ring_keeps_the_last_events_once_and_the_index_follows_the_last_id() {
        let events = UserEvents::default();
        assert_eq!(index_of(&events.list(None)), 1);
        let id = |n: usize| format!("00000000-0000-0000-0000-{n:012x}");
        for n in 0..RING + 10 {
            assert!(events.keep(event(&id(n), if n % 2 == 0 { "a" } else { "b" })));
        }
        assert!(!events.keep(event(&id(RING + 9), "b")));
        let all = events.list(None);
        assert_eq!(all.len(), RING);
        assert_eq!(all[0].id, id(10));
        assert_eq!(index_of(&all), (RING + 9) as u64);
        assert!(events.list(Some("a")).iter().all(|e| e.name == "a"));
        let uuid = UserEvent {
            id: "00000000-0000-0001-0000-000000000003".into(),
            ..event("", "a")
        };
        assert_eq!(index_of(&[uuid]), 1 ^ 3);
    }
}
