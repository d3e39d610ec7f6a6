//! The HTTPS listener: TCP connections go through a TLS handshake (in their own tasks, with
//! a deadline, at most [`MAX_HANDSHAKES`] at a time) before axum serves them like the HTTP
//! listener's. A failed handshake is counted and logged once at `warn`, then at `debug`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Consul's `limits.https_handshake_timeout` default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// A listener of TLS connections, for `axum::serve`.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener` with `config` until `cancel`.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        failures: IntCounter,
        cancel: CancellationToken,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(64);
        crate::tasks::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            sender,
            failures,
            cancel,
        ));
        Ok(TlsListener { local, ready })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    failures: IntCounter,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let warned = Arc::new(AtomicBool::new(false));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::debug!(error = %e, "accepting an HTTPS connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true); // As the HTTP listener's.
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        let failures = failures.clone();
        let warned = warned.clone();
        crate::tasks::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                outcome => {
                    failures.inc();
                    let why = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    if warned.swap(true, Ordering::Relaxed) {
                        tracing::debug!(%peer, error = %why, "HTTPS handshake failed");
                    } else {
                        tracing::warn!(%peer, error = %why, "HTTPS handshake failed (further failures are counted in isthmus_https_handshake_failures_total and logged at debug)");
                    }
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop stopped (the agent is stopping): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
