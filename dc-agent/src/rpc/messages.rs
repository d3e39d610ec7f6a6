//! Messages between servers (and from client agents to servers). They carry openraft's own
//! RPC types, so they live here rather than in `wire`; the framing is `wire::frame`.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use wire::raft::RaftNode;

use crate::raft::{NodeId, TypeConfig};

/// Version of the RPC protocol, exchanged in [`RpcRequest::Hello`].
pub const PROTOCOL_VERSION: u32 = 2;

/// A Raft RPC.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// Replication and heartbeats.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Elections.
    Vote(VoteRequest<NodeId>),
    /// A snapshot chunk.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer to a [`RaftRequest`], exactly as the local Raft returned it.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    /// To `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To `Vote`.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To `InstallSnapshot`.
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

/// An RPC between agents of a datacenter.
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    /// Who are you, and what do you know of the cluster?
    Hello {
        /// The caller's protocol version.
        version: u32,
    },
    /// Add the caller to the Raft cluster (sent to the leader).
    Join {
        /// The new server's node ID.
        id: NodeId,
        /// Its name and address.
        node: RaftNode,
    },
    /// Remove a server from the Raft cluster (sent to the leader).
    Leave {
        /// The server leaving.
        id: NodeId,
    },
    /// An HTTP request forwarded to the leader.
    Http(HttpRequest),
    /// From the leader of `term`: stand for election as soon as the leader lease runs out
    /// (leadership transfer, see `server::transfer`).
    TimeoutNow {
        /// The leader asking.
        leader: NodeId,
        /// Its term.
        term: u64,
    },
    /// To the leader: confirm your leadership with a quorum and give the index a reader must
    /// have applied to be as recent as you (a restarted server catching up, see
    /// `server::read_gate`).
    ReadIndex,
}

/// What a server says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version.
    pub version: u32,
    /// Node ID.
    pub id: NodeId,
    /// Name and address.
    pub node: RaftNode,
    /// Datacenter.
    pub datacenter: String,
    /// Whether it belongs to an initialized Raft cluster.
    pub initialized: bool,
    /// The leader it knows of.
    pub leader: Option<(NodeId, RaftNode)>,
    /// Its `bootstrap_expect`.
    pub bootstrap_expect: u32,
    /// The uninitialized servers it would bootstrap with now (itself included), sorted: a
    /// server bootstraps only once every one of them names the same set.
    pub candidates: Vec<NodeId>,
    /// It is leaving the cluster (`leave`): not to be added back.
    pub leaving: bool,
}

/// The answer to an [`RpcRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RpcReply {
    /// To `Hello`.
    Hello(Hello),
    /// To `Join`, `Leave` and `TimeoutNow`.
    Done(Result<(), String>),
    /// To `Http`.
    Http(HttpResponse),
    /// To `ReadIndex`.
    Index(Result<u64, String>),
}

/// An HTTP request, as forwarded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers worth forwarding.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body.
    pub body: Vec<u8>,
}

/// An HTTP response, as forwarded back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Something that answers a forwarded HTTP request (the local API router).
pub type HttpHandler = std::sync::Arc<
    dyn Fn(HttpRequest) -> std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send>>
        + Send
        + Sync,
>;

/// A GET through `handler`; anything but a 200 is an error naming the URI and the answer.
pub async fn get(handler: &HttpHandler, uri: String) -> Result<HttpResponse, String> {
    let response = handler(HttpRequest {
        method: "GET".to_owned(),
        uri: uri.clone(),
        headers: Vec::new(),
        body: Vec::new(),
    })
    .await;
    if response.status != 200 {
        return Err(format!(
            "{uri} answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body).trim()
        ));
    }
    Ok(response)
}
