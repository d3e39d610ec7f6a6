//! The QUIC endpoint of an agent: it accepts (servers) and dials, caching one connection per
//! peer and protocol, dropping it on any error so the next call reconnects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pki::{NodeTls, PeerPolicy};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{read_frame, write_frame, FrameIoError, ALPN_RAFT, ALPN_RPC};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made, or no stream opened on it: nothing was sent.
    #[error("connecting to {addr}: {reason}")]
    Connect {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    /// The stream broke or carried garbage.
    #[error("talking to {addr}: {source}")]
    Stream {
        /// The peer.
        addr: SocketAddr,
        /// What went wrong.
        source: FrameIoError,
    },
}

/// The longest wait for a QUIC handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The agent's QUIC endpoint and its outgoing connections.
pub struct Transport {
    endpoint: quinn::Endpoint,
    raft_client: quinn::ClientConfig,
    rpc_client: quinn::ClientConfig,
    server_name: String,
    /// One slot per (peer, protocol). The map lock is held only to find a slot; a slot's
    /// own lock is held while dialling, so a dead peer never delays calls to live ones.
    connections: parking_lot::Mutex<HashMap<(SocketAddr, &'static [u8]), Slot>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

impl Transport {
    /// Binds the endpoint. With `listen`, it also accepts connections (servers); the TLS
    /// layer admits servers and clients of `datacenter`, and each protocol then checks the
    /// peer's role (`server::handlers`: Raft and membership changes only from servers).
    pub fn bind(
        bind: SocketAddr,
        listen: bool,
        tls: &NodeTls,
        datacenter: &str,
        domain: &str,
    ) -> Result<Transport, anyhow::Error> {
        let expect_servers = PeerPolicy::servers_of(domain, datacenter);
        let client = |alpn: &[u8]| -> Result<quinn::ClientConfig, anyhow::Error> {
            link::client_config(tls.client_config(expect_servers.clone(), &[alpn])?)
        };
        let endpoint = if listen {
            let rustls_config = tls.server_config(
                PeerPolicy::servers_or_clients_of(domain, datacenter),
                &[ALPN_RAFT, ALPN_RPC],
            )?;
            link::server_endpoint(bind, rustls_config, tls)?
        } else {
            quinn::Endpoint::client(bind)?
        };
        Ok(Transport {
            endpoint,
            raft_client: client(ALPN_RAFT)?,
            rpc_client: client(ALPN_RPC)?,
            server_name: format!("server.{datacenter}.{domain}"),
            connections: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// The endpoint, for the accept loop.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    fn slot(&self, addr: SocketAddr, alpn: &'static [u8]) -> Slot {
        let mut connections = self.connections.lock();
        connections.entry((addr, alpn)).or_default().clone()
    }

    async fn connection(
        &self,
        addr: SocketAddr,
        alpn: &'static [u8],
        timeout: Duration,
    ) -> Result<quinn::Connection, CallError> {
        let slot = self.slot(addr, alpn);
        let mut cached = slot.lock().await;
        if let Some(connection) = cached.as_ref() {
            if connection.close_reason().is_none() {
                return Ok(connection.clone());
            }
        }
        *cached = None;
        let config = if alpn == ALPN_RAFT {
            self.raft_client.clone()
        } else {
            self.rpc_client.clone()
        };
        let connecting = self
            .endpoint
            .connect_with(config, addr, &self.server_name)
            .map_err(|e| CallError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| CallError::Connect {
                addr,
                reason: format!("no QUIC handshake within {timeout:?}"),
            })?
            .map_err(|e| CallError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        *cached = Some(connection.clone());
        Ok(connection)
    }

    /// Sends one request and waits for its answer, within `timeout` in all.
    pub async fn call<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        addr: SocketAddr,
        alpn: &'static [u8],
        request: &Req,
        timeout: Duration,
    ) -> Result<Rep, CallError> {
        let attempt = async {
            // A long call (a blocking query) must not wait as long for a dead peer.
            let connection = self
                .connection(addr, alpn, timeout.min(CONNECT_TIMEOUT))
                .await?;
            // A stream that cannot be opened carried nothing: as good as no connection.
            let (mut send, mut recv) =
                connection.open_bi().await.map_err(|e| CallError::Connect {
                    addr,
                    reason: e.to_string(),
                })?;
            write_frame(&mut send, request)
                .await
                .map_err(|source| CallError::Stream { addr, source })?;
            read_frame(&mut recv)
                .await
                .map_err(|source| CallError::Stream { addr, source })
        };
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(addr)),
        };
        // A failed call drops only its own stream (with the future). The connection, which
        // other requests share, stays: `connection` replaces it once QUIC reports it closed
        // (a restarted peer resets it at once; a dead one after the idle timeout).
        result
    }

    /// Closes every connection and waits (briefly) for peers to be told.
    pub async fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

// Who the peer is: the shared QUIC shell's (`link`).
pub use link::{negotiated_alpn, peer_certificate};
