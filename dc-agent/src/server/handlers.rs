//! What a server answers on its QUIC endpoint.

use std::sync::Arc;

use pki::{NodeTls, PeerPolicy};
use tokio_util::sync::CancellationToken;

use super::{Server, RPC_TIMEOUT};
use crate::rpc::messages::{
    Hello, HttpResponse, RaftReply, RaftRequest, RpcReply, RpcRequest, PROTOCOL_VERSION,
};
use crate::rpc::transport::{negotiated_alpn, peer_certificate};
use crate::rpc::{write_frame, ALPN_RAFT, ALPN_RPC};

/// Accepts connections until cancelled.
pub async fn accept_loop(
    server: Arc<Server>,
    tls: NodeTls,
    domain: String,
    cancel: CancellationToken,
) {
    let endpoint = server.transport.endpoint().clone();
    let tls = Arc::new(tls);
    loop {
        let incoming = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { break };
        crate::tasks::spawn(handle_connection(
            server.clone(),
            incoming,
            tls.clone(),
            domain.clone(),
            cancel.child_token(),
        ));
    }
}

async fn handle_connection(
    server: Arc<Server>,
    incoming: quinn::Incoming,
    tls: Arc<NodeTls>,
    domain: String,
    cancel: CancellationToken,
) {
    let peer_addr = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(e) => {
            tracing::debug!(peer = %peer_addr, error = %e, "handshake failed");
            return;
        }
    };
    let alpn = negotiated_alpn(&connection).unwrap_or_default();
    // Servers and client agents of this datacenter reach the RPC protocol; only servers may
    // change the Raft membership through it. (Without TLS material the role is the one the
    // peer's certificate claims: the same trust as the rest of that mode.)
    let peer_is_server = peer_certificate(&connection)
        .and_then(|cert| {
            tls.peer_identity(
                &cert,
                &PeerPolicy::servers_or_clients_of(&domain, &server.datacenter),
            )
            .ok()
        })
        .is_some_and(|identity| identity.role == wire::Role::Server);
    if alpn == ALPN_RAFT && !peer_is_server {
        tracing::warn!(peer = %peer_addr, "refused a Raft connection from a peer that is not a server");
        connection.close(1u32.into(), b"raft is for servers of this datacenter");
        return;
    }
    if alpn == ALPN_RAFT {
        // The TLS layer admits clients too; Raft is for servers of this datacenter only.
        let policy = PeerPolicy::servers_of(&domain, &server.datacenter);
        let allowed = peer_certificate(&connection).map(|cert| tls.peer_identity(&cert, &policy));
        match allowed {
            Some(Ok(_)) => {}
            Some(Err(rejection)) => {
                tracing::warn!(peer = %peer_addr, %rejection, "refused a Raft connection");
                connection.close(1u32.into(), b"raft is for servers of this datacenter");
                return;
            }
            None => {
                connection.close(1u32.into(), b"no peer certificate");
                return;
            }
        }
    }
    // What this peer's streams may hold in frames being read, together.
    let budget = Arc::new(tokio::sync::Semaphore::new(link::PEER_BUDGET));
    loop {
        let stream = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            stream = connection.accept_bi() => stream,
        };
        let Ok((send, recv)) = stream else { break };
        let server = server.clone();
        let budget = budget.clone();
        if alpn == ALPN_RAFT {
            crate::tasks::spawn(handle_raft(server, budget, send, recv));
        } else if alpn == ALPN_RPC {
            crate::tasks::spawn(handle_rpc(server, peer_is_server, budget, send, recv));
        } else {
            break;
        }
    }
}

/// Frames up to this size leave the peer's budget as soon as they are decoded.
const SMALL_FRAME: usize = 64 * 1024;

/// How long a peer has to send a whole request frame once it opened a stream.
const REQUEST_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn handle_raft(
    server: Arc<Server>,
    budget: Arc<tokio::sync::Semaphore>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let (request, _held): (RaftRequest, _) =
        match link::read_frame_budgeted(&mut recv, &budget, REQUEST_READ_TIMEOUT).await {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!(error = %e, "bad raft request");
                return;
            }
        };
    let reply = match request {
        RaftRequest::AppendEntries(rpc) => {
            let reply = server.raft.append_entries(rpc).await;
            // A deposed leader's entries (answered with a higher vote) are no contact.
            if matches!(&reply, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)))
            {
                server.heard_from_leader();
            }
            RaftReply::AppendEntries(reply)
        }
        RaftRequest::Vote(rpc) => RaftReply::Vote(server.raft.vote(rpc).await),
        RaftRequest::InstallSnapshot(rpc) => {
            let reply = server.raft.install_snapshot(rpc).await;
            if reply.is_ok() {
                server.heard_from_leader();
            }
            RaftReply::InstallSnapshot(reply)
        }
    };
    if let Err(e) = write_frame(&mut send, &reply).await {
        tracing::debug!(error = %e, "could not answer a raft request");
    }
}

impl Server {
    /// What this server says about itself.
    pub async fn hello(&self) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            id: self.id,
            node: self.node.clone(),
            datacenter: self.datacenter.clone(),
            initialized: self.raft.is_initialized().await.unwrap_or(false),
            leader: self.leader(),
            bootstrap_expect: self.bootstrap_expect,
            candidates: self.bootstrap_candidates.lock().clone(),
            leaving: self.leaving.load(std::sync::atomic::Ordering::SeqCst),
        }
    }
}

async fn handle_rpc(
    server: Arc<Server>,
    peer_is_server: bool,
    budget: Arc<tokio::sync::Semaphore>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let (request, held): (RpcRequest, _) =
        match link::read_frame_budgeted(&mut recv, &budget, REQUEST_READ_TIMEOUT).await {
            Ok(request) => request,
            Err(e) => {
                tracing::debug!(error = %e, "bad rpc request");
                return;
            }
        };
    // A forwarded blocking query may wait minutes: a small frame leaves the budget now; a
    // large one (a snapshot restore, a big write) holds its share until it is answered.
    let held = (held.num_permits() > SMALL_FRAME).then_some(held);
    let kind = match &request {
        RpcRequest::Hello { .. } => "hello",
        RpcRequest::Join { .. } => "join",
        RpcRequest::Leave { .. } => "leave",
        RpcRequest::Http(_) => "http",
        RpcRequest::TimeoutNow { .. } => "timeout_now",
        RpcRequest::ReadIndex => "read_index",
    };
    let span = tracing::debug_span!("rpc", kind, from_server = peer_is_server);
    let reply =
        tracing::Instrument::instrument(answer(server, peer_is_server, request), span).await;
    if let Err(e) = write_frame(&mut send, &reply).await {
        tracing::debug!(error = %e, "could not answer an rpc request");
    }
    drop(held);
}

async fn answer(server: Arc<Server>, peer_is_server: bool, request: RpcRequest) -> RpcReply {
    match request {
        RpcRequest::Join { .. } | RpcRequest::Leave { .. } | RpcRequest::TimeoutNow { .. }
            if !peer_is_server =>
        {
            tracing::warn!("refused a membership change from a peer that is not a server");
            RpcReply::Done(Err(
                "only servers of this datacenter may change the Raft cluster".to_owned(),
            ))
        }
        RpcRequest::Hello { .. } => RpcReply::Hello(server.hello().await),
        RpcRequest::Join { id, node } => {
            if server.is_leader() {
                RpcReply::Done(server.add_server(id, node).await)
            } else {
                forward_to_leader(&server, &RpcRequest::Join { id, node }).await
            }
        }
        RpcRequest::Leave { id } => {
            if server.is_leader() {
                RpcReply::Done(server.remove_servers(&[id]).await)
            } else {
                forward_to_leader(&server, &RpcRequest::Leave { id }).await
            }
        }
        RpcRequest::TimeoutNow { leader, term } => RpcReply::Done(server.timeout_now(leader, term)),
        RpcRequest::ReadIndex if !peer_is_server => {
            RpcReply::Index(Err("only servers ask for the read index".to_owned()))
        }
        RpcRequest::ReadIndex => RpcReply::Index(server.read_index().await),
        RpcRequest::Http(request) => match server.http_handler.get() {
            Some(handler) => RpcReply::Http(handler(request).await),
            None => RpcReply::Http(HttpResponse {
                status: 503,
                headers: vec![],
                body: b"server starting".to_vec(),
            }),
        },
    }
}

async fn forward_to_leader(server: &Server, request: &RpcRequest) -> RpcReply {
    match server.leader() {
        Some((id, leader)) if id != server.id => {
            match server.call(&leader.addr, request, RPC_TIMEOUT * 15).await {
                Ok(reply) => reply,
                Err(e) => RpcReply::Done(Err(format!(
                    "forwarding to the leader {}: {e:#}",
                    leader.name
                ))),
            }
        }
        _ => RpcReply::Done(Err("No cluster leader".to_owned())),
    }
}
