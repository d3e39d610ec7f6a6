//! The HTTP(S) server: an accept loop of our own, so that every connection is bounded.
//!
//! - A client IP address holds at most `limits.http_max_conns_per_client` connections
//!   (Consul's, default 200); past it a new connection is answered `429 Too Many Requests`
//!   and closed, as Consul's `connlimit` does, and counted.
//! - A request's head must arrive whole within [`HEADER_READ_TIMEOUT`] of the connection
//!   waiting for it: a slowloris client (a header line every few seconds) and an idle
//!   keep-alive connection are both closed then.
//! - Each connection is served by `http::h1` (a request head must fit in 128 KiB; a
//!   waiting request holds no buffer), which hands what it does not take to hyper.
//! - Once hundreds of connections have closed, the memory they freed is given back to the
//!   system (glibc's `malloc_trim`), so RSS falls after a burst of clients.
//!
//! On shutdown, the loop stops accepting and asks every connection to finish its request
//! and close; the caller bounds how long that may take.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a connection may take to send a request's head, counted from when it starts
/// waiting for one (so also how long an idle keep-alive connection stays open).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Consul's answer past the per-client limit.
const TOO_MANY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 81\r\nConnection: close\r\n\r\nYour IP is issuing too many concurrent connections, please rate limit your calls\n";

/// What bounds the server's connections.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections one client IP may hold (`None`: no limit).
    pub per_client: Option<usize>,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
}

/// Open connections per client IP, shared by the HTTP and HTTPS listeners (Consul counts
/// both against the one limit).
#[derive(Debug, Default, Clone)]
pub struct ConnCounts(Arc<parking_lot::Mutex<HashMap<IpAddr, usize>>>);

/// One open connection's place in [`ConnCounts`], given back on drop.
struct Slot {
    counts: ConnCounts,
    ip: IpAddr,
    gauge: prometheus::IntGauge,
}

impl ConnCounts {
    fn take(&self, ip: IpAddr, limit: Option<usize>, gauge: &prometheus::IntGauge) -> Option<Slot> {
        let mut counts = self.0.lock();
        let count = counts.entry(ip).or_insert(0);
        if limit.is_some_and(|limit| *count >= limit) {
            return None;
        }
        *count += 1;
        gauge.inc();
        Some(Slot {
            counts: self.clone(),
            ip,
            gauge: gauge.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.dec();
        let mut counts = self.counts.0.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// What the API's listeners share: the router, the limits and one count of each client's
/// connections across HTTP and HTTPS (Consul counts both against the one limit).
#[derive(Clone)]
pub struct Served {
    /// The API.
    pub router: axum::Router,
    /// The connection limits.
    pub limits: ConnLimits,
    /// Each client's open connections.
    pub counts: ConnCounts,
    /// Metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Stops serving.
    pub cancel: CancellationToken,
}

impl Served {
    /// Serves on `listener` until cancelled (without one, only waits to be cancelled).
    pub async fn on<L>(self, listener: Option<L>)
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        match listener {
            Some(listener) => {
                serve(
                    listener,
                    self.router,
                    self.limits,
                    self.counts,
                    self.metrics,
                    self.cancel,
                )
                .await
            }
            None => self.cancel.cancelled().await,
        }
    }
}

/// Serves `router` on `listener` until `cancel`, then waits for the connections to finish.
pub async fn serve<L>(
    mut listener: L,
    router: axum::Router,
    limits: ConnLimits,
    counts: ConnCounts,
    metrics: Arc<crate::metrics::Metrics>,
    cancel: CancellationToken,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let connections = TaskTracker::new();
    let mut logged_limit = false;
    let mut trim = tokio::time::interval(TRIM_EVERY);
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peak = 0i64;
    loop {
        let (io, peer) = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = trim.tick() => {
                let open = metrics.http_connections.get();
                if peak - open >= TRIM_AFTER_CLOSED {
                    give_back_memory().await;
                    peak = open;
                }
                peak = peak.max(open);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let Some(slot) = counts.take(peer.ip(), limits.per_client, &metrics.http_connections)
        else {
            metrics.http_connections_rejected.inc();
            if !logged_limit {
                tracing::warn!(client = %peer.ip(), limit = ?limits.per_client, "a client holds too many HTTP connections; answering 429 (limits.http_max_conns_per_client; further refusals are counted in isthmus_http_connections_rejected_total)");
                logged_limit = true;
            }
            connections.spawn(refuse(io));
            continue;
        };
        let router = router.clone();
        let timeout = limits.header_read_timeout;
        let cancel = cancel.clone();
        connections.spawn(async move {
            let _slot = slot;
            super::h1::connection(io, peer, router, timeout, cancel).await;
        });
    }
    // Refuse new connections at once while the open ones finish (as axum's serve does).
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// How often the accept loop looks at how many connections closed.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Connections closed since the last peak after which the allocator is asked to give their
/// memory back to the system.
const TRIM_AFTER_CLOSED: i64 = 500;

/// Gives freed heap memory back to the system. glibc keeps what thousands of closed
/// connections freed in its arenas (RSS stayed at its peak after they closed); Go's
/// runtime returns it by itself. Elsewhere this does nothing.
async fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let trimmed = tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim only walks the allocator's own free lists; it touches no
            // memory of ours.
            unsafe { libc::malloc_trim(0) }
        })
        .await;
        tracing::debug!(
            released = matches!(trimmed, Ok(1)),
            "gave freed memory back"
        );
    }
}

/// Answers 429 and closes, within a second.
async fn refuse<Io>(mut io: Io)
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(TOO_MANY).await?;
        io.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_response() {
        let text = std::str::from_utf8(TOO_MANY).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse().ok())
            .expect("a length");
        assert_eq!(length, body.len());
    }

    #[test]
    fn slots_count_per_client_and_come_back() {
        let counts = ConnCounts::default();
        let gauge = prometheus::IntGauge::new("g", "g").expect("gauge");
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let b: IpAddr = "127.0.0.2".parse().expect("ip");
        let first = counts.take(a, Some(2), &gauge).expect("first");
        let _second = counts.take(a, Some(2), &gauge).expect("second");
        assert!(
            counts.take(a, Some(2), &gauge).is_none(),
            "a third is refused"
        );
        assert!(
            counts.take(b, Some(2), &gauge).is_some(),
            "another client is not"
        );
        drop(first);
        assert!(
            counts.take(a, Some(2), &gauge).is_some(),
            "a closed one frees its slot"
        );
        assert!(counts.take(a, None, &gauge).is_some(), "no limit");
    }
}
