//! openraft's network over [`Transport`]: each Raft RPC is one request on the `isthmus/raft`
//! protocol, bounded by the deadline openraft gives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use wire::frame::FrameError;
use wire::raft::RaftNode;

use super::messages::{RaftReply, RaftRequest};
use super::transport::{CallError, Transport};
use super::{FrameIoError, ALPN_RAFT};
use crate::raft::{NodeId, TypeConfig};

/// When each peer last answered an `AppendEntries` (replication or heartbeat): on the
/// leader, how recently it heard from each follower (autopilot's `LastContact`; openraft
/// 0.9's metrics do not carry it).
#[derive(Debug, Default)]
pub struct PeerContacts(parking_lot::Mutex<std::collections::HashMap<NodeId, Instant>>);

impl PeerContacts {
    fn heard(&self, peer: NodeId) {
        self.0.lock().insert(peer, Instant::now());
    }

    /// How long ago `peer` last answered, if it ever did.
    pub fn since(&self, peer: NodeId) -> Option<Duration> {
        self.0.lock().get(&peer).map(Instant::elapsed)
    }
}

/// Makes a client per peer.
#[derive(Clone)]
pub struct NetworkFactory {
    transport: Arc<Transport>,
    contacts: Arc<PeerContacts>,
}

impl NetworkFactory {
    /// Raft traffic over `transport`; answers noted in `contacts`.
    pub fn new(transport: Arc<Transport>, contacts: Arc<PeerContacts>) -> NetworkFactory {
        NetworkFactory {
            transport,
            contacts,
        }
    }
}

/// The Raft client of one peer.
pub struct PeerNetwork {
    transport: Arc<Transport>,
    contacts: Arc<PeerContacts>,
    target: NodeId,
    addr: Result<SocketAddr, String>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &RaftNode) -> PeerNetwork {
        let addr = node
            .addr
            .parse()
            .map_err(|_| format!("bad Raft address {:?} for {}", node.addr, node.name));
        PeerNetwork {
            transport: self.transport.clone(),
            contacts: self.contacts.clone(),
            target,
            addr,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl PeerNetwork {
    /// One Raft RPC. `n_entries` is how many log entries it carries: a frame too large to
    /// send becomes `PayloadTooLarge`, so openraft retries at once with half as many.
    async fn call<E: std::error::Error>(
        &self,
        request: RaftRequest,
        option: &RPCOption,
        n_entries: u64,
    ) -> Result<RaftReply, RPCError<NodeId, RaftNode, E>> {
        let addr = self
            .addr
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&Message(e))))?;
        self.transport
            .call(addr, ALPN_RAFT, &request, option.hard_ttl())
            .await
            .map_err(|e| match e {
                CallError::Stream {
                    source: FrameIoError::Frame(FrameError::TooLarge(_)),
                    ..
                } if n_entries > 1 => {
                    RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(n_entries / 2))
                }
                CallError::Connect { .. } | CallError::Timeout(_) => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                CallError::Stream { .. } => RPCError::Network(NetworkError::new(&e)),
            })
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, RaftNode, E> {
        RPCError::Network(NetworkError::new(&Message(format!(
            "node {} answered another kind of RPC",
            self.target
        ))))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, RaftNode, RaftError<NodeId>>> {
        let n_entries = rpc.entries.len() as u64;
        match self
            .call(RaftRequest::AppendEntries(rpc), &option, n_entries)
            .await?
        {
            RaftReply::AppendEntries(result) => {
                self.contacts.heard(self.target);
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, RaftNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(RaftRequest::InstallSnapshot(rpc), &option, 0)
            .await?
        {
            RaftReply::InstallSnapshot(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, RaftNode, RaftError<NodeId>>> {
        match self.call(RaftRequest::Vote(rpc), &option, 0).await? {
            RaftReply::Vote(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }
}
