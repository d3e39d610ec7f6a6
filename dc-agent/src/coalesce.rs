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

/// Entries past which finished ones are swept from the table.
const SWEEP_AT: usize = 1_024;

type Answer = Result<HttpResponse, String>;
type Upstream = Shared<BoxFuture<'static, Answer>>;

/// What makes two blocking queries the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uri: String,
    headers: Vec<(String, Vec<u8>)>,
}

/// The blocking queries in flight to the servers.
pub struct Coalescer {
    inflight: parking_lot::Mutex<HashMap<Key, WeakShared<BoxFuture<'static, Answer>>>>,
    upstream: Arc<Semaphore>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Coalescer {
    /// An empty table.
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> Coalescer {
        Coalescer {
            inflight: parking_lot::Mutex::new(HashMap::new()),
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
            match inflight.get(&key).and_then(WeakShared::upgrade) {
                Some(shared) => {
                    self.metrics.blocking_coalesced.inc();
                    shared
                }
                None => {
                    let shared = self.start(link.clone(), request, wait, timeout);
                    if inflight.len() >= SWEEP_AT {
                        inflight.retain(|_, weak| weak.upgrade().is_some());
                    }
                    if let Some(weak) = shared.downgrade() {
                        inflight.insert(key, weak);
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
            match tokio::time::timeout(wait, slots.acquire_owned()).await {
                Ok(Ok(_slot)) => {
                    let _counted = Counted::new(gauge);
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
