//! A client agent's DNS view of the catalog. A client holds no state machine, and a server
//! round trip per query would make DNS as slow as the link to the servers; instead the first
//! query for a name fetches it (`/v1/health/service/NAME` or `/v1/catalog/node/NAME`; for a
//! reverse name the nodes at that address, for the domain's NS the `consul` service; through
//! the API, which forwards to a server), and a task per name then keeps it current with
//! blocking queries, so later queries are answered locally. A name nobody asks for in
//! [`IDLE`] is dropped.
//!
//! Staleness is bounded by `dns_config.max_stale`: while the blocking query is in flight
//! the view is current (a change returns it at once); once a refresh fails, the view ages
//! from its last success, and an answer older than `max_stale` is not given (SERVFAIL). With
//! `allow_stale` (the default) any server answers the refresh; a server whose own contact
//! with the leader is older than `max_stale` is asked again through the leader, as Consul.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wire::records::HealthStatus;

use super::answer::{CatalogView, Instance, NodeInfo};
use super::names::Query;
use crate::internal::{LocalApi, ReadOptions};
use crate::rpc::messages::HttpHandler;

/// A name nobody asked for in this long is no longer kept current.
pub const IDLE: Duration = Duration::from_secs(3600);
/// Most names kept current at once (each holds a blocking query on the link to the
/// servers); the least recently asked one makes room for a new one.
pub const MAX_NAMES: usize = 512;
/// How long a blocking refresh waits on the server.
const WAIT: Duration = Duration::from_secs(60);
/// How long a blocking refresh of a name with no answer waits: such a name is also looked
/// up in another case each round, which a blocking query on this spelling would not see.
const EMPTY_WAIT: Duration = Duration::from_secs(2);
/// How long a query waits for a name's first fetch (less than a resolver's usual timeout).
const FIRST_FETCH: Duration = Duration::from_millis(1500);
/// Longest pause between failed refreshes.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a name refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Service(String),
    Node(String),
    /// The nodes at an address (PTR).
    Address(std::net::IpAddr),
}

/// A name of a datacenter (`None`: this one).
type Slot = (Option<String>, Key);

/// What was fetched for a name.
#[derive(Debug)]
enum Data {
    Instances(Vec<Instance>),
    Node(Option<NodeInfo>),
    Nodes(Vec<String>),
}

#[derive(Debug, Default)]
struct Snapshot {
    data: Option<Arc<Data>>,
    /// When a refresh last succeeded.
    confirmed: Option<Instant>,
    /// Whether the last refresh failed.
    failing: bool,
}

struct Entry {
    state: watch::Sender<Snapshot>,
    last_used: Mutex<Instant>,
    /// Stops the entry's refresh task (idle, evicted, or the view stopping).
    cancel: CancellationToken,
}

impl Entry {
    fn touch(&self) {
        *self.last_used.lock() = Instant::now();
    }

    fn last_used(&self) -> Instant {
        *self.last_used.lock()
    }

    fn idle(&self) -> bool {
        self.last_used().elapsed() > IDLE
    }
}

/// Settings of the view.
#[derive(Debug, Clone)]
pub struct ViewSettings {
    /// This agent's datacenter (names under it are local).
    pub datacenter: String,
    /// Refresh through any server (`?stale`).
    pub allow_stale: bool,
    /// How old an answer may be.
    pub max_stale: Duration,
}

impl ViewSettings {
    /// How long a blocking refresh waits on the server: at most half of `max_stale`, so that
    /// a refresh confirms the view before it grows too old.
    fn wait(&self) -> Duration {
        WAIT.min(self.max_stale / 2).max(Duration::from_millis(10))
    }
}

struct Inner {
    api: LocalApi,
    names: prometheus::IntGauge,
    refreshes: prometheus::IntCounterVec,
    settings: ViewSettings,
    /// By datacenter (`None`: this one) and name.
    entries: Mutex<HashMap<Slot, Arc<Entry>>>,
    cancel: CancellationToken,
}

impl Inner {
    /// Drops `entry` from the map (unless another took its place meanwhile).
    fn forget(&self, dc: &Option<String>, key: &Key, entry: &Arc<Entry>) {
        let mut entries = self.entries.lock();
        let slot = (dc.clone(), key.clone());
        if entries.get(&slot).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            entries.remove(&slot);
        }
        self.names.set(entries.len() as i64);
    }
}

/// The view: cheap to clone.
#[derive(Clone)]
pub struct RemoteView {
    inner: Arc<Inner>,
}

/// The data one query needs, as a [`CatalogView`] for the answer.
#[derive(Debug, Default)]
pub struct Prepared {
    data: Option<Arc<Data>>,
}

impl CatalogView for Prepared {
    fn instances(&self, _service: &str) -> Vec<Instance> {
        match self.data.as_deref() {
            Some(Data::Instances(instances)) => instances.clone(),
            _ => Vec::new(),
        }
    }

    fn node(&self, _name: &str) -> Option<NodeInfo> {
        match self.data.as_deref() {
            Some(Data::Node(node)) => node.clone(),
            _ => None,
        }
    }

    fn nodes_at(&self, _address: std::net::IpAddr) -> Option<Vec<String>> {
        match self.data.as_deref() {
            Some(Data::Nodes(nodes)) => Some(nodes.clone()),
            _ => None,
        }
    }
}

/// Why a query cannot be answered from the view.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(String);

impl RemoteView {
    /// A view that fetches through `fetch` (the API router, which forwards to a server).
    pub fn new(
        fetch: HttpHandler,
        settings: ViewSettings,
        metrics: &crate::metrics::Metrics,
        cancel: CancellationToken,
    ) -> Self {
        RemoteView {
            inner: Arc::new(Inner {
                api: LocalApi::new(fetch),
                names: metrics.dns_view_names.clone(),
                refreshes: metrics.dns_view_refreshes.clone(),
                settings,
                entries: Mutex::new(HashMap::new()),
                cancel,
            }),
        }
    }

    /// How many names the view keeps current.
    pub fn len(&self) -> usize {
        self.inner.entries.lock().len()
    }

    /// Whether the view keeps no name.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gets what `query` needs: a service's instances or a node, of this datacenter or
    /// (through the gateways) another.
    pub async fn prepare(&self, query: &Query) -> Result<Prepared, Unavailable> {
        let key = match query {
            Query::Service { name, .. } => Key::Service(name.to_ascii_lowercase()),
            Query::Node { name, .. } => Key::Node(name.to_ascii_lowercase()),
            Query::Addr { .. } => return Ok(Prepared::default()),
        };
        let dc = query
            .datacenter()
            .filter(|dc| !dc.eq_ignore_ascii_case(&self.inner.settings.datacenter))
            .map(str::to_ascii_lowercase);
        self.prepare_key(dc, key).await
    }

    /// The data for a name outside the `<x>.service|node|addr` forms: a reverse name (the
    /// nodes at its address) or the domain itself (its NS: the `consul` service). Anything
    /// else needs nothing.
    pub async fn prepare_other(&self, qname: &str, domain: &str) -> Result<Prepared, Unavailable> {
        let owner = format!("{}.", qname.trim_end_matches('.').to_ascii_lowercase());
        let apex = format!("{}.", domain.trim_matches('.').to_ascii_lowercase());
        let key = if let Some(address) = super::answer::reverse_address(&owner) {
            Key::Address(address)
        } else if owner == apex {
            Key::Service("consul".to_owned())
        } else {
            return Ok(Prepared::default());
        };
        self.prepare_key(None, key).await
    }

    async fn prepare_key(&self, dc: Option<String>, key: Key) -> Result<Prepared, Unavailable> {
        let entry = self.entry(dc, key);
        entry.touch();
        let mut changes = entry.state.subscribe();
        let deadline = tokio::time::Instant::now() + FIRST_FETCH;
        loop {
            {
                let snapshot = changes.borrow_and_update();
                let fresh = snapshot
                    .confirmed
                    .is_some_and(|at| at.elapsed() <= self.inner.settings.max_stale);
                match &snapshot.data {
                    Some(data) if fresh => {
                        return Ok(Prepared {
                            data: Some(data.clone()),
                        })
                    }
                    // A refresh is under way (in flight, or retrying after a failure);
                    // while it is failing the client is told now.
                    Some(_) if !snapshot.failing => {}
                    Some(_) => {
                        return Err(Unavailable(format!(
                            "the view is older than max_stale ({:?}) and no server answers",
                            self.inner.settings.max_stale
                        )))
                    }
                    None if snapshot.failing => {
                        return Err(Unavailable("no server answered".to_owned()))
                    }
                    // The first fetch is under way.
                    None => {}
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Unavailable("the view is shutting down".to_owned())),
                Err(_) => {
                    return Err(Unavailable(format!(
                        "no current answer within {FIRST_FETCH:?}"
                    )))
                }
            }
        }
    }

    fn entry(&self, dc: Option<String>, key: Key) -> Arc<Entry> {
        let key = (dc, key);
        let mut entries = self.inner.entries.lock();
        if let Some(entry) = entries.get(&key) {
            return entry.clone();
        }
        if entries.len() >= MAX_NAMES {
            // The least recently asked name makes room; its refresh stops.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used())
                .map(|(key, _)| key.clone())
            {
                if let Some(evicted) = entries.remove(&oldest) {
                    evicted.cancel.cancel();
                }
            }
        }
        let entry = Arc::new(Entry {
            state: watch::Sender::new(Snapshot::default()),
            last_used: Mutex::new(Instant::now()),
            cancel: self.inner.cancel.child_token(),
        });
        entries.insert(key.clone(), entry.clone());
        self.inner.names.set(entries.len() as i64);
        crate::tasks::spawn(keep_current(
            Arc::downgrade(&self.inner),
            key.0,
            key.1,
            entry.clone(),
        ));
        entry
    }
}

/// Keeps one name current until it goes idle, is evicted, or the view stops.
async fn keep_current(view: Weak<Inner>, dc: Option<String>, key: Key, entry: Arc<Entry>) {
    let mut index = 0u64;
    let mut backoff = Duration::from_millis(250);
    // The catalog keeps names' case; DNS has none. The lower-case name is tried first, and
    // if the catalog knows the name only in another case, that spelling is used from then on.
    let mut name = match &key {
        Key::Service(name) | Key::Node(name) => name.clone(),
        Key::Address(address) => address.to_string(),
    };
    let mut empty = false;
    loop {
        let Some(inner) = view.upgrade() else { return };
        if entry.idle() {
            inner.forget(&dc, &key, &entry);
            return;
        }
        let stale = inner.settings.allow_stale;
        let fetched = tokio::select! {
            _ = entry.cancel.cancelled() => return,
            fetched = fetch(&inner, &key, dc.as_deref(), &name, index, stale, empty) => fetched,
        };
        let fetched = match fetched {
            // The server answering is itself too far behind its leader: ask the leader.
            Ok((_, _, last_contact)) if stale && last_contact > inner.settings.max_stale => {
                tokio::select! {
                    _ = entry.cancel.cancelled() => return,
                    fetched = fetch(&inner, &key, dc.as_deref(), &name, 0, false, empty) => fetched,
                }
            }
            other => other,
        };
        if let Ok((_, data, _)) = &fetched {
            // A name with no answer may exist in another case, now or later: look again on
            // every (short) round while it stays empty.
            empty = data.is_empty();
            // Addresses have no case to look for.
            if empty && !matches!(key, Key::Address(_)) {
                let found = tokio::select! {
                    _ = entry.cancel.cancelled() => return,
                    found = spelling(&inner, &key, dc.as_deref()) => found,
                };
                if let Some(found) = found.filter(|found| *found != name) {
                    name = found;
                    index = 0;
                    continue;
                }
            }
        }
        match fetched {
            Ok((new_index, data, last_contact)) => {
                inner.refreshes.with_label_values(&["ok"]).inc();
                // An index that went backwards (a restored server) starts over, as Consul.
                index = if new_index < index { 0 } else { new_index };
                backoff = Duration::from_millis(250);
                // The answer is as old as the answering server's view of its leader.
                let now = Instant::now();
                let confirmed = now.checked_sub(last_contact).unwrap_or(now);
                entry.state.send_modify(|snapshot| {
                    snapshot.data = Some(Arc::new(data));
                    snapshot.confirmed = Some(confirmed);
                    snapshot.failing = false;
                });
            }
            Err(e) => {
                inner.refreshes.with_label_values(&["error"]).inc();
                tracing::debug!(key = ?key, error = %e, "dns view refresh failed");
                entry.state.send_modify(|snapshot| snapshot.failing = true);
                // A datacenter with no path that never answered (a typo, a random name) is
                // not kept: its queries are SERVFAIL and must not crowd out real names.
                if dc.is_some()
                    && e.contains("No path to datacenter")
                    && entry.state.borrow().data.is_none()
                {
                    inner.forget(&dc, &key, &entry);
                    return;
                }
                // The next attempt must not block: a server that answers again with nothing
                // changed would otherwise hold it for the whole wait while the view stays
                // stale.
                index = 0;
                drop(inner);
                tokio::select! {
                    _ = entry.cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Data {
    fn is_empty(&self) -> bool {
        match self {
            Data::Instances(instances) => instances.is_empty(),
            Data::Node(node) => node.is_none(),
            Data::Nodes(nodes) => nodes.is_empty(),
        }
    }
}

/// The catalog's spelling of a name it knows only in another case, if any.
async fn spelling(inner: &Inner, key: &Key, dc: Option<&str>) -> Option<String> {
    let options = ReadOptions {
        dc: dc.map(str::to_owned),
        stale: true,
        ..ReadOptions::default()
    };
    match key {
        Key::Service(wanted) => {
            let names = inner.api.catalog_services(&options).await.ok()?.value;
            names.into_keys().find(|n| n.eq_ignore_ascii_case(wanted))
        }
        Key::Node(wanted) => {
            let nodes = inner.api.catalog_nodes(&options).await.ok()?.value;
            nodes
                .into_iter()
                .map(|n| n.node)
                .find(|n| n.eq_ignore_ascii_case(wanted))
        }
        Key::Address(_) => None,
    }
}

/// One fetch (from datacenter `dc` when set): blocking when `index` is set. Returns the
/// index, the data and the answering server's `X-Consul-LastContact`.
async fn fetch(
    inner: &Inner,
    key: &Key,
    dc: Option<&str>,
    name: &str,
    index: u64,
    stale: bool,
    empty: bool,
) -> Result<(u64, Data, Duration), String> {
    let mut options = ReadOptions {
        dc: dc.map(str::to_owned),
        stale,
        index,
        wait: if empty {
            EMPTY_WAIT.min(inner.settings.wait())
        } else {
            inner.settings.wait()
        },
        filter: None,
    };
    let api = &inner.api;
    Ok(match key {
        Key::Service(_) => {
            let answer = api.health_service_read(name, &options).await?;
            let instances = answer.value.into_iter().map(instance).collect();
            (
                answer.index,
                Data::Instances(instances),
                answer.last_contact,
            )
        }
        Key::Node(_) => {
            let answer = api.catalog_node_read(name, &options).await?;
            let node = answer.value.map(|n| NodeInfo {
                address: n.node.address,
                meta: n.node.meta,
            });
            (answer.index, Data::Node(node), answer.last_contact)
        }
        Key::Address(address) => {
            options.filter = Some(format!("Address == \"{address}\""));
            let answer = api.catalog_nodes(&options).await?;
            let nodes = answer.value.into_iter().map(|n| n.node).collect();
            (answer.index, Data::Nodes(nodes), answer.last_contact)
        }
    })
}

/// A health entry as DNS sees it: the worst of its checks (maintenance counts as critical).
fn instance(entry: wire::api::ServiceEntry) -> Instance {
    let status = entry
        .checks
        .iter()
        .map(|c| match c.status.parse::<HealthStatus>() {
            Ok(HealthStatus::Maintenance) | Err(_) => HealthStatus::Critical,
            Ok(status) => status,
        })
        .max()
        .unwrap_or(HealthStatus::Passing);
    Instance {
        node: entry.node.node,
        node_address: entry.node.address,
        service_address: entry.service.address,
        port: entry.service.port,
        tags: entry.service.tags,
        status,
    }
}
