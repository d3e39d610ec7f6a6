//! A client agent's blocking queries to its servers.
//!
//! - **Shared**: the same blocking query (same URI, `?index` included, same token) asked by
//!   many clients at once (a consul-template fleet, a thousand watches of one key) travels
//!   to the server once; every asker gets that one answer.
//! - **Bounded**: blocking queries together hold at most [`MAX_UPSTREAM`] of the streams of
//!   the connection to the server (QUIC allows 4,096), so ordinary requests always find one.
//!   A query that finds none free waits for one until its own wait runs out, then is asked
//!   without `?index`: it gets the current state, as if its wait had passed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared, WeakShared};
use tokio::sync::Semaphore;

use crate::rpc::messages::{HttpRequest, HttpResponse};
use crate::servers::ServerLink;

/// Streams blocking queries may hold at once on the connection to a server.
pub const MAX_UPSTREAM: usize = 3_072;

/// Entries past which finished ones are first swept from the table (then twice what was
/// left, so a table of many live queries is not rescanned on every new one).
const SWEEP_AT: usize = 1_024;

type Answer = Result<HttpResponse, String>;
type Upstream = Shared<BoxFuture<'static, Answer>>;

/// What makes two blocking queries the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
}

/// The queries on their way, and the size at which finished ones are next swept.
struct Table {
    queries: HashMap<Key, WeakShared<BoxFuture<'static, Answer>>>,
    sweep_at: usize,
}

/// The blocking queries in flight to the servers.
pub struct Coalescer {
    inflight: parking_lot::Mutex<Table>,
    upstream: Arc<Semaphore>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Coalescer {
    /// An empty table.
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> Coalescer {
        Coalescer {
            inflight: parking_lot::Mutex::new(Table {
                queries: HashMap::new(),
                sweep_at: SWEEP_AT,
            }),
            upstream: Arc::new(Semaphore::new(MAX_UPSTREAM)),
            metrics,
        }
    }

    /// Sends the blocking query `request` (its wait is `wait`, its whole deadline `timeout`)
    /// through `link`, or joins the same query already on its way.
    pub async fn call(
        &self,
        link: &Arc<ServerLink>,
        request: HttpRequest,
        wait: Duration,
        timeout: Duration,
    ) -> Answer {
        let mut headers = request.headers.clone();
        headers.sort();
        let key = Key {
            uri: request.uri.clone(),
            headers,
        };
        let upstream = {
            let mut inflight = self.inflight.lock();
            match inflight.queries.get(&key).and_then(WeakShared::upgrade) {
                Some(shared) => {
                    self.metrics.blocking_coalesced.inc();
                    shared
                }
                None => {
                    let shared = self.start(link.clone(), request, wait, timeout);
                    if inflight.queries.len() >= inflight.sweep_at {
                        inflight.queries.retain(|_, weak| weak.upgrade().is_some());
                        inflight.sweep_at = (2 * inflight.queries.len()).max(SWEEP_AT);
                    }
                    if let Some(weak) = shared.downgrade() {
                        inflight.queries.insert(key, weak);
                    }
                    shared
                }
            }
        };
        upstream.await
    }

    fn start(
        &self,
        link: Arc<ServerLink>,
        request: HttpRequest,
        wait: Duration,
        timeout: Duration,
    ) -> Upstream {
        let slots = self.upstream.clone();
        let gauge = self.metrics.blocking_upstream.clone();
        async move {
            let asked = tokio::time::Instant::now();
            match tokio::time::timeout(wait, slots.acquire_owned()).await {
                Ok(Ok(_slot)) => {
                    let _counted = Counted::new(gauge);
                    // The time spent waiting for a stream comes off the query's own wait.
                    let waited = asked.elapsed();
                    let request = if waited >= Duration::from_millis(100) {
                        HttpRequest {
                            uri: with_wait(&request.uri, wait.saturating_sub(waited)),
                            ..request
                        }
                    } else {
                        request
                    };
                    link.http(request, timeout).await
                }
                // No stream came free within the wait: the state as it is now.
                _ => {
                    let request = HttpRequest {
                        uri: without_blocking(&request.uri),
                        ..request
                    };
                    link.http(request, Duration::from_secs(15)).await
                }
            }
        }
        .boxed()
        .shared()
    }
}

/// Counts one upstream query in a gauge while it lives (a query whose askers all left is
/// dropped mid-way).
struct Counted(prometheus::IntGauge);

impl Counted {
    fn new(gauge: prometheus::IntGauge) -> Counted {
        gauge.inc();
        Counted(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `uri` with its `wait` set to `wait` (in milliseconds, at least 1).
fn with_wait(uri: &str, wait: Duration) -> String {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split_once('=').map_or(*pair, |(name, _)| name) != "wait")
        .map(str::to_owned)
        .collect();
    pairs.push(format!("wait={}ms", wait.as_millis().max(1)));
    format!("{path}?{}", pairs.join("&"))
}

/// `uri` without its `index` and `wait` parameters.
fn without_blocking(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            name != "index" && name != "wait"
        })
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_waits_only_what_is_left_of_its_wait() {
        assert_eq!(
            with_wait("/v1/kv/a?index=5&wait=5m&recurse", Duration::from_secs(240)),
            "/v1/kv/a?index=5&recurse&wait=240000ms"
        );
        assert_eq!(
            with_wait("/v1/kv/a?index=5", Duration::ZERO),
            "/v1/kv/a?index=5&wait=1ms"
        );
    }

    #[test]
    fn a_query_loses_only_its_blocking_parameters() {
        assert_eq!(
            without_blocking("/v1/kv/a?index=5&wait=5m&recurse"),
            "/v1/kv/a?recurse"
        );
        assert_eq!(without_blocking("/v1/kv/a?index=5"), "/v1/kv/a");
        assert_eq!(without_blocking("/v1/kv/a"), "/v1/kv/a");
        assert_eq!(
            without_blocking("/v1/health/service/web?passing&index=9&tag=v1"),
            "/v1/health/service/web?passing&tag=v1"
        );
    }
}
