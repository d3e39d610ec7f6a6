//! A client agent's link to the servers of its datacenter: it learns them from LAN gossip
//! (members that are servers, alive, of this datacenter, at the RPC port they announce) or,
//! until gossip has named one, from `retry_join`. Requests go over QUIC with the client's
//! certificate to the server that answered last; a server that cannot be reached is passed
//! over for the next. A read that broke halfway is tried on the next server too; a write is
//! not (it may have committed), and the caller sees the error.

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::time::Duration;

use crate::gossip::pool::{MemberStatus, Pool as LanPool};
use crate::rpc::messages::{HttpRequest, HttpResponse, RpcReply, RpcRequest};
use crate::rpc::transport::{CallError, Transport};

/// A client agent's way to its servers.
pub struct ServerLink {
    transport: Transport,
    lan: LanPool,
    datacenter: String,
    /// `retry_join` hosts at the server port: used while gossip knows no server.
    seeds: Vec<SocketAddr>,
    /// The server that answered last.
    preferred: Mutex<Option<SocketAddr>>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Blocking queries on their way to a server, shared and bounded.
    pub blocking: crate::coalesce::Coalescer,
}

impl ServerLink {
    /// A link over `transport` (a client endpoint with the agent's certificate).
    pub fn new(
        transport: Transport,
        lan: LanPool,
        datacenter: String,
        seeds: Vec<SocketAddr>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> ServerLink {
        ServerLink {
            transport,
            lan,
            datacenter,
            seeds,
            preferred: Mutex::new(None),
            blocking: crate::coalesce::Coalescer::new(metrics.clone()),
            metrics,
        }
    }

    /// The servers' RPC addresses: alive servers of this datacenter in the gossip pool, or
    /// the `retry_join` addresses while there are none.
    pub fn known_servers(&self) -> Vec<SocketAddr> {
        let from_gossip: Vec<SocketAddr> = self
            .lan
            .members()
            .into_iter()
            .filter(|m| {
                m.id.server
                    && m.id.rpc_port != 0
                    && m.id.dc == self.datacenter
                    && m.status == MemberStatus::Alive
            })
            .map(|m| SocketAddr::new(m.id.addr.ip(), m.id.rpc_port))
            .collect();
        if from_gossip.is_empty() {
            self.seeds.clone()
        } else {
            from_gossip
        }
    }

    /// The servers in the order to try them: the one that answered last first, then the
    /// others from a rotating start, so that clients spread over the servers.
    fn order(&self) -> Vec<SocketAddr> {
        let mut servers = self.known_servers();
        let preferred = *self.preferred.lock();
        if let Some(position) = preferred.and_then(|p| servers.iter().position(|s| *s == p)) {
            servers.swap(0, position);
        } else if !servers.is_empty() {
            let start = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as usize)
                % servers.len();
            servers.rotate_left(start);
        }
        servers
    }

    /// Sends an HTTP request to a server and returns its answer.
    pub async fn http(
        &self,
        request: HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, String> {
        self.metrics.client_rpc.inc();
        let answer = self.try_servers(request, timeout).await;
        if answer.is_err() {
            self.metrics.client_rpc_failed.inc();
        }
        answer
    }

    async fn try_servers(
        &self,
        request: HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, String> {
        let servers = self.order();
        if servers.is_empty() {
            return Err("no server is known yet (none in the gossip pool, no retry_join)".into());
        }
        let retry_reads = request.method == "GET";
        let request = RpcRequest::Http(request);
        let mut failures = Vec::new();
        for addr in servers {
            match self
                .transport
                .call(addr, crate::rpc::ALPN_RPC, &request, timeout)
                .await
            {
                Ok(RpcReply::Http(response)) => {
                    *self.preferred.lock() = Some(addr);
                    return Ok(response);
                }
                Ok(_) if retry_reads => {
                    failures.push(format!("{addr} answered another kind of RPC"))
                }
                Ok(_) => return Err(format!("{addr} answered another kind of RPC")),
                Err(e @ CallError::Connect { .. }) => failures.push(e.to_string()),
                Err(e) if retry_reads => failures.push(e.to_string()),
                Err(e) => {
                    self.forget(addr);
                    return Err(e.to_string());
                }
            }
            self.forget(addr);
            tracing::debug!(server = %addr, error = ?failures.last(), "server did not answer; trying the next");
        }
        Err(failures.join("; "))
    }

    /// Stops preferring `addr` once it failed.
    fn forget(&self, addr: SocketAddr) {
        let mut preferred = self.preferred.lock();
        if *preferred == Some(addr) {
            *preferred = None;
        }
    }

    /// Closes the connections to the servers.
    pub async fn close(&self) {
        self.transport.close().await;
    }
}
