//! A server: Raft over QUIC, the state machine, discovery and bootstrap, and the RPCs other
//! agents send. The HTTP API sits on top ([`crate::http`]).

mod bootstrap;
pub mod coordinates;
mod handlers;
pub mod leader;
pub mod read_gate;
pub use store::proposer;
pub mod acl_init;
pub mod acl_replication;
pub mod serf_health;
pub mod sessions;
pub mod tombstone_gc;
mod transfer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use openraft::{Config, SnapshotPolicy};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::raft::RaftNode;

use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachineStore;
use crate::raft::{NodeId, Raft};
use crate::rpc::messages::{RpcReply, RpcRequest};
use crate::rpc::raft_network::NetworkFactory;
use crate::rpc::transport::Transport;

/// What a server needs to start.
pub struct ServerSettings {
    /// Node name.
    pub node_name: String,
    /// Datacenter.
    pub datacenter: String,
    /// DNS domain.
    pub domain: String,
    /// Raft/RPC address (bind address and server port).
    pub rpc_addr: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Servers to expect before bootstrapping (0: never bootstrap, only join).
    pub bootstrap_expect: u32,
    /// Addresses of other servers' Raft/RPC endpoints.
    pub retry_join: Vec<SocketAddr>,
    /// TLS material.
    pub tls: pki::NodeTls,
    /// Log entries between snapshots.
    pub snapshot_threshold: u64,
}

/// A running server.
pub struct Server {
    /// This server's Raft ID.
    pub id: NodeId,
    /// Name and Raft address.
    pub node: RaftNode,
    /// Datacenter.
    pub datacenter: String,
    /// Bootstrap setting.
    pub bootstrap_expect: u32,
    /// The Raft handle.
    pub raft: Raft,
    /// The state machine (for reads).
    pub state: StateMachineStore,
    /// The QUIC endpoint.
    pub transport: Arc<Transport>,
    /// Unix milliseconds of the last message from a leader (followers).
    last_leader_contact_ms: AtomicU64,
    /// Retry-join targets.
    retry_join: Vec<SocketAddr>,
    /// Serves HTTP requests forwarded from other servers (set once the API is up).
    pub http_handler: std::sync::OnceLock<crate::rpc::messages::HttpHandler>,
    /// Proposes writes to Raft, batching KV writes under load.
    pub proposer: proposer::Proposer,
    /// Set once this server leaves: it must not join again while it drains and stops.
    pub leaving: std::sync::atomic::AtomicBool,
    /// The LAN gossip pool (set once it runs): the servers it knows are greeted for
    /// bootstrap and joining as `retry_join` addresses are, however they joined.
    pub lan: std::sync::OnceLock<crate::gossip::pool::Pool>,
    /// The servers this one would bootstrap with now (see `bootstrap`), told in `Hello`.
    pub bootstrap_candidates: parking_lot::Mutex<Vec<NodeId>>,
    /// When each peer last answered replication (the leader's view of its followers).
    pub contacts: Arc<crate::rpc::raft_network::PeerContacts>,
    /// Autopilot: each server's health as last judged, and since when (`StableSince`).
    pub stable_since: parking_lot::Mutex<std::collections::HashMap<NodeId, (bool, SystemTime)>>,
    /// Sessions' TTL deadlines (kept by the leader).
    pub session_timers: parking_lot::Mutex<sessions::SessionTimers>,
    /// What ACL replication last did (a secondary datacenter's leader).
    pub acl_replication: parking_lot::Mutex<acl_replication::ReplicationStatus>,
    /// When this server may answer reads ([`read_gate`]).
    read_gate: read_gate::ReadGate,
    /// Why Raft stopped, if it stopped on a fatal error (a full disk): the agent then stops
    /// too, with this as its error, so that it can be started again once fixed.
    pub fatal: std::sync::OnceLock<String>,
}

/// Timeouts of RPCs between servers that are not Raft's own.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Stops the agent (`cancel`) when Raft stops on a fatal error: a full disk, a storage
/// failure. openraft's core has quit by then, so the server could only answer with that
/// error, even once the disk has room again; stopping lets a supervisor start it again,
/// from its data, once the cause is fixed.
async fn watch_fatal(server: Arc<Server>, cancel: CancellationToken) {
    let mut metrics = server.raft.metrics();
    loop {
        let fatal = match &metrics.borrow_and_update().running_state {
            Err(fatal) => Some(fatal.to_string()),
            Ok(()) => None,
        };
        if let Some(why) = fatal {
            if !cancel.is_cancelled() {
                tracing::error!(error = %why, "Raft stopped on a fatal error; the agent stops. Fix the cause (free disk space, the data directory's permissions), then start it again: it resumes from its data");
                let _ = server.fatal.set(why);
                cancel.cancel();
            }
            return;
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = cancel.cancelled() => return,
        }
    }
}

/// A server never comes back as a leader: it starts as a follower, as Raft's servers do.
/// openraft 0.9 would restore a committed vote for itself as leadership of that old term,
/// and the other servers, still in that term, would confirm it; but a leader counts an
/// entry committed once a quorum of followers holds it, before its own copy is written, so
/// it may come back without entries it committed and answer reads from the past (seen when
/// a whole datacenter was killed at once). The vote is kept, so it votes for no one else in
/// that term, but no longer marked committed: an election picks the most up-to-date log.
async fn step_down_at_start(log: &mut LogStore, id: NodeId) -> anyhow::Result<()> {
    use openraft::storage::RaftLogStorage;
    let vote = log
        .read_vote()
        .await
        .map_err(|e| anyhow::anyhow!("reading the Raft vote: {e}"))?;
    if let Some(vote) = vote.filter(|v| v.is_committed() && v.leader_id().voted_for() == Some(id)) {
        let term = vote.leader_id().get_term();
        tracing::info!(
            term,
            "this server led before it stopped; it starts as a follower"
        );
        log.save_vote(&openraft::Vote::new(term, id))
            .await
            .map_err(|e| anyhow::anyhow!("writing the Raft vote: {e}"))?;
    }
    Ok(())
}

/// Reads this agent's node ID, or makes one at first start.
pub fn node_id(data_dir: &Path) -> anyhow::Result<NodeId> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a node ID", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 8];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
            let id = u64::from_be_bytes(bytes) >> 1; // positive in every JSON reader
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl Server {
    /// Opens storage, starts Raft and the QUIC listener, and starts discovery.
    pub async fn start(
        settings: ServerSettings,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Arc<Server>> {
        let raft_dir = settings.data_dir.join("raft");
        std::fs::create_dir_all(&raft_dir)
            .with_context(|| format!("creating {}", raft_dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&raft_dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} private", raft_dir.display()))?;
        }
        let id = node_id(&settings.data_dir)?;
        let mut log = LogStore::open(&raft_dir.join("log.redb"))
            .with_context(|| format!("opening the Raft log in {}", raft_dir.display()))?;
        step_down_at_start(&mut log, id).await?;
        let state = StateMachineStore::open(&raft_dir.join("snapshot.bin"))
            .with_context(|| format!("opening the snapshot in {}", raft_dir.display()))?;
        // What this server held when it started, read from storage itself (openraft's
        // metrics are not filled in until its core runs): the read gate's starting point.
        let last_log_at_start = {
            use openraft::storage::RaftLogStorage;
            let logged = log
                .get_log_state()
                .await
                .map_err(|e| anyhow::anyhow!("reading the Raft log state: {e}"))?
                .last_log_id
                .map_or(0, |id| id.index);
            let restored = state
                .read(|data| data.last_applied.map_or(0, |id| id.index))
                .map_err(|e| anyhow::anyhow!("reading the state machine: {e}"))?;
            logged.max(restored)
        };
        let transport = Arc::new(
            Transport::bind(
                settings.rpc_addr,
                true,
                &settings.tls,
                &settings.datacenter,
                &settings.domain,
            )
            .with_context(|| format!("binding the server port {}", settings.rpc_addr))?,
        );
        let config = Config {
            cluster_name: format!("isthmus-{}", settings.datacenter),
            // openraft 0.9 waits the leader lease (election_timeout_max) plus a random
            // election timeout before a follower stands: 0.6s + 0.3..0.6s = 0.9..1.2s after
            // the last heartbeat, within etcd's randomized 1..2s.
            heartbeat_interval: 150,
            election_timeout_min: 300,
            election_timeout_max: 600,
            install_snapshot_timeout: 5000,
            max_payload_entries: 64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_threshold),
            max_in_snapshot_log_to_keep: settings.snapshot_threshold.min(1000),
            purge_batch_size: 256,
            ..Default::default()
        }
        .validate()?;
        let contacts = Arc::new(crate::rpc::raft_network::PeerContacts::default());
        let raft = Raft::new(
            id,
            Arc::new(config),
            NetworkFactory::new(transport.clone(), contacts.clone()),
            log,
            state.clone(),
        )
        .await?;
        let node = RaftNode {
            name: settings.node_name.clone(),
            addr: settings.rpc_addr.to_string(),
        };
        let server = Arc::new(Server {
            id,
            node,
            datacenter: settings.datacenter,
            bootstrap_expect: settings.bootstrap_expect,
            raft: raft.clone(),
            state,
            transport,
            last_leader_contact_ms: AtomicU64::new(0),
            retry_join: settings.retry_join,
            http_handler: std::sync::OnceLock::new(),
            proposer: proposer::Proposer::start(raft.clone()),
            leaving: std::sync::atomic::AtomicBool::new(false),
            lan: std::sync::OnceLock::new(),
            bootstrap_candidates: parking_lot::Mutex::new(Vec::new()),
            contacts,
            stable_since: parking_lot::Mutex::new(std::collections::HashMap::new()),
            session_timers: parking_lot::Mutex::new(sessions::SessionTimers::default()),
            acl_replication: parking_lot::Mutex::default(),
            read_gate: read_gate::ReadGate::new(last_log_at_start),
            fatal: std::sync::OnceLock::new(),
        });
        tracing::info!(node = %server.node.name, id = server.id, addr = %server.node.addr, dc = %server.datacenter, "server started");
        tasks.spawn(handlers::accept_loop(
            server.clone(),
            settings.tls,
            settings.domain,
            cancel.child_token(),
        ));
        tasks.spawn(watch_fatal(server.clone(), cancel.clone()));
        tasks.spawn(read_gate::gate_loop(server.clone(), cancel.child_token()));
        tasks.spawn(bootstrap::discovery_loop(
            server.clone(),
            cancel.child_token(),
        ));
        Ok(server)
    }

    /// The leader, as this server knows it.
    pub fn leader(&self) -> Option<(NodeId, RaftNode)> {
        let receiver = self.raft.metrics();
        let metrics = receiver.borrow();
        let leader = metrics.current_leader?;
        let node = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()?;
        Some((leader, node))
    }

    /// Whether this server is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Milliseconds since a leader was last heard from: 0 on a leader ready to answer, Go's
    /// longest duration when no leader was heard from since this server started (as Consul's
    /// `time.Since` of the zero time).
    pub fn last_contact_ms(&self) -> u64 {
        if self.leader_ready() {
            // A leader is in contact with itself: when it steps down, its time without a
            // leader starts then, not when it last followed one.
            self.heard_from_leader();
            return 0;
        }
        let last = self.last_leader_contact_ms.load(Ordering::Relaxed);
        if last == 0 {
            return read_gate::NEVER_CONTACTED_MS;
        }
        unix_millis().saturating_sub(last)
    }

    /// Whether a leader is known: a leader that has not confirmed its leadership since it
    /// started (openraft restores one at its old term) does not count.
    pub fn known_leader(&self) -> bool {
        match self.leader() {
            Some((id, _)) if id == self.id => self.leader_ready(),
            Some(_) => true,
            None => false,
        }
    }

    fn heard_from_leader(&self) {
        self.last_leader_contact_ms
            .store(unix_millis(), Ordering::Relaxed);
    }

    /// Voters and learners of the current membership: (id, node, voter).
    pub fn members(&self) -> Vec<(NodeId, RaftNode, bool)> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| (*id, node.clone(), voters.contains(id)))
            .collect()
    }

    /// Sends an RPC to a server.
    pub async fn call(
        &self,
        addr: &str,
        request: &RpcRequest,
        timeout: Duration,
    ) -> anyhow::Result<RpcReply> {
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("bad server address {addr:?}"))?;
        Ok(self
            .transport
            .call(addr, crate::rpc::ALPN_RPC, request, timeout)
            .await?)
    }

    /// Adds a server to the cluster (on the leader): as a learner until caught up, then as
    /// a voter. A stale member with the same name (a server rebuilt with an empty data
    /// directory) is removed first.
    pub async fn add_server(&self, id: NodeId, node: RaftNode) -> Result<(), String> {
        let members = self.members();
        if members
            .iter()
            .any(|(member, _, voter)| *member == id && *voter)
        {
            return Ok(());
        }
        let stale: Vec<NodeId> = members
            .iter()
            .filter(|(member, n, _)| *member != id && n.name == node.name)
            .map(|(m, _, _)| *m)
            .collect();
        if !stale.is_empty() {
            tracing::warn!(node = %node.name, ?stale, "removing a stale member with the same name");
            self.remove_servers(&stale).await?;
        }
        tracing::info!(node = %node.name, id, addr = %node.addr, "adding server as a learner");
        self.raft
            .add_learner(id, node.clone(), true)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(node = %node.name, id, "promoting server to voter");
        let voters = std::collections::BTreeSet::from([id]);
        self.raft
            .change_membership(openraft::ChangeMembers::AddVoterIds(voters), false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Removes servers from the cluster (on the leader).
    pub async fn remove_servers(&self, ids: &[NodeId]) -> Result<(), String> {
        let set: std::collections::BTreeSet<NodeId> = ids.iter().copied().collect();
        let voters: std::collections::BTreeSet<NodeId> = self
            .members()
            .iter()
            .filter(|(_, _, v)| *v)
            .map(|(id, _, _)| *id)
            .collect();
        let leaving_voters: std::collections::BTreeSet<NodeId> =
            set.intersection(&voters).copied().collect();
        // Learners first, then voters in one change (with `retain = false` they leave the
        // node list too). A leader removing itself is no longer a voter once that change
        // commits, and must propose nothing after it (openraft 0.9 asserts that only a
        // voter-leader appends membership entries).
        let learners: std::collections::BTreeSet<NodeId> =
            set.difference(&leaving_voters).copied().collect();
        if !learners.is_empty() {
            self.raft
                .change_membership(openraft::ChangeMembers::RemoveNodes(learners), false)
                .await
                .map_err(|e| e.to_string())?;
        }
        if !leaving_voters.is_empty() {
            self.raft
                .change_membership(openraft::ChangeMembers::RemoveVoters(leaving_voters), false)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Leaves the cluster gracefully: asks the leader to remove this server.
    pub async fn leave(&self) -> anyhow::Result<()> {
        self.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let left = self.leave_cluster().await;
        if left.is_err() {
            // Still a member: it may rejoin as usual.
            self.leaving
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        left
    }

    async fn leave_cluster(&self) -> anyhow::Result<()> {
        // The only server (a `-dev` agent, a one-server datacenter) has nobody to hand the
        // cluster to: it leaves gossip and stops, and its data keeps the cluster for a
        // restart, as Consul's does.
        let others = self
            .members()
            .iter()
            .filter(|(id, _, voter)| *voter && *id != self.id)
            .count();
        if others == 0 {
            tracing::info!("the only server: leaving without changing the Raft configuration");
            return Ok(());
        }
        if self.is_leader() {
            self.remove_servers(&[self.id])
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            return Ok(());
        }
        let (_, leader) = self.leader().context("no leader to leave through")?;
        match self
            .call(
                &leader.addr,
                &RpcRequest::Leave { id: self.id },
                Duration::from_secs(10),
            )
            .await?
        {
            RpcReply::Done(Ok(())) => Ok(()),
            RpcReply::Done(Err(e)) => Err(anyhow::anyhow!("the leader refused: {e}")),
            _ => Err(anyhow::anyhow!("the leader answered another kind of RPC")),
        }
    }

    /// Stops Raft and closes the endpoint.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        self.transport.close().await;
    }
}
