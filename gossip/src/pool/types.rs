//! What the pools are made of: members and their identities, the messages besides foca's
//! (goodbyes, keyring queries and answers, coordinate probes), and the wire constants.

use super::*;

/// First bytes of every plaintext datagram.
pub(super) const MAGIC: &[u8; 3] = b"ISG";
pub(super) const KIND_FOCA: u8 = 0;
pub(super) const KIND_BYE: u8 = 1;
/// A round-trip probe for network coordinates: [`Probe`] with the sender's coordinate.
pub(super) const KIND_PING: u8 = 2;
/// The answer to a `KIND_PING`: [`Probe`] with the same nonce and the answerer's coordinate.
pub(super) const KIND_ACK: u8 = 3;
/// A keyring operation for every member: [`KeyQuery`].
pub(super) const KIND_KEY_OP: u8 = 4;
/// A member's answer to a `KIND_KEY_OP`: [`KeyAck`].
pub(super) const KIND_KEY_ACK: u8 = 5;
/// An application message for every member ([`UserMessage`]), spread epidemically.
pub(super) const KIND_USER: u8 = 6;
/// The fewest random members a node passes a user message on to when it first hears it.
pub(super) const USER_FANOUT: usize = 4;
/// How long a user message's ID is remembered (so it is taken once).
pub(super) const USER_SEEN_FOR: Duration = Duration::from_secs(120);
/// Most user message IDs remembered.
pub(super) const USER_SEEN_MAX: usize = 8192;
/// Largest user message payload.
pub const MAX_USER_PAYLOAD: usize = 1024;

/// How long a keyring operation waits for the members' answers.
pub(super) const KEY_OP_TIMEOUT: Duration = Duration::from_secs(3);
/// When a keyring operation is sent again to the members that have not answered.
pub(super) const KEY_OP_RESEND: Duration = Duration::from_secs(1);
/// A coordinate probe not answered within this long is forgotten.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest foca datagram; leaves room for our envelope and the seal in a 1500-byte MTU.
pub(super) const MAX_FOCA_PACKET: usize = 1350;
/// Largest WAN foca datagram: with the seal, the envelope and the routing header it must fit
/// in one QUIC datagram at QUIC's smallest MTU (1200 bytes less QUIC's own overhead).
pub(super) const MAX_WAN_PACKET: usize = 900;

/// Which pool an identity belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PoolKind {
    /// The agents of one datacenter, over UDP.
    Lan,
    /// The servers of every datacenter, through the gateways.
    Wan,
}

/// What makes a member unique in its pool: its gossip address on the LAN, its datacenter
/// and node name on the WAN (where packets are routed by name, not address).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberKey {
    /// A LAN member's gossip address.
    Lan(SocketAddr),
    /// A WAN member's datacenter and node name.
    Wan(String, String),
}

/// A gossip identity: where a node listens, who it is, and a restart counter so that a
/// restarted node replaces its old self.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The pool.
    pub pool: PoolKind,
    /// Gossip address on the LAN; on the WAN, the server's RPC address (where its dc-links
    /// start), shown by `members -wan`.
    pub addr: SocketAddr,
    /// Unix milliseconds at start.
    pub bump: u64,
    /// Node name.
    pub name: String,
    /// Server or client.
    pub server: bool,
    /// A server's RPC port (0 on clients), which client agents dial.
    pub rpc_port: u16,
    /// Datacenter.
    pub dc: String,
    /// Build version.
    pub build: String,
}

impl NodeId {
    /// The name `members` shows: `node` on the LAN, `node.dc` on the WAN.
    pub fn display_name(&self) -> String {
        match self.pool {
            PoolKind::Lan => self.name.clone(),
            PoolKind::Wan => format!("{}.{}", self.name, self.dc),
        }
    }

    /// An identity to announce to when only where it is reached is known: a LAN address.
    pub fn lan_seed(addr: SocketAddr) -> NodeId {
        NodeId {
            pool: PoolKind::Lan,
            addr,
            bump: 0,
            name: String::new(),
            server: false,
            rpc_port: 0,
            dc: String::new(),
            build: String::new(),
        }
    }

    /// An identity to announce to on the WAN: a server of `dc` by name (foca takes only
    /// packets addressed to its own identity, so the name must be the server's; the
    /// simulation's WAN scenario found that an empty one is never answered).
    pub fn wan_seed(dc: &str, node: &str) -> NodeId {
        NodeId {
            pool: PoolKind::Wan,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            bump: 0,
            name: node.to_owned(),
            server: true,
            rpc_port: 0,
            dc: dc.to_owned(),
            build: String::new(),
        }
    }
}

impl Identity for NodeId {
    type Addr = MemberKey;

    fn renew(&self) -> Option<Self> {
        Some(NodeId {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> MemberKey {
        match self.pool {
            PoolKind::Lan => MemberKey::Lan(self.addr),
            PoolKind::Wan => MemberKey::Wan(self.dc.clone(), self.name.clone()),
        }
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.bump, &self.name) > (adversary.bump, &adversary.name)
    }
}

/// A goodbye: this member (at this incarnation of its identity) left, or was force-left.
/// A goodbye for an older incarnation, or for a node that is not a member, changes nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Bye {
    pub(super) key: MemberKey,
    pub(super) bump: u64,
}

/// How many more times a force-leave goodbye is sent (once per probe period), beyond the
/// first: datagrams get lost, and a member that misses it would keep the node failed.
pub(super) const BYE_REPEATS: u8 = 3;

/// A keyring operation sent to every member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct KeyQuery {
    pub(super) id: u64,
    pub(super) from: MemberKey,
    /// Unix milliseconds when the operator asked: a query older than [`KEY_OP_MAX_AGE`]
    /// is a replay and is ignored.
    pub(super) sent_ms: u64,
    pub(super) op: KeyOp,
}

/// How old (or how far ahead, for clocks apart) a keyring query may be. Within that
/// window, a query already applied is answered again but never applied twice.
pub(super) const KEY_OP_MAX_AGE: Duration = Duration::from_secs(60);
/// Most keyring queries remembered as applied.
pub(super) const KEY_OPS_SEEN: usize = 1024;

/// A member's answer to a keyring operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct KeyAck {
    pub(super) id: u64,
    pub(super) from: MemberKey,
    pub(super) answer: KeyAnswer,
}

/// What one member answered to a keyring operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAnswer {
    /// The member (`node`, or `node.dc` on the WAN).
    pub node: String,
    /// Why the operation failed there, if it did.
    pub error: Option<String>,
    /// Its installed keys, the primary first.
    pub keys: Vec<String>,
}

/// A keyring operation's outcome across a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOutcome {
    /// The answers, this node's first.
    pub answers: Vec<KeyAnswer>,
    /// Live members that did not answer in time.
    pub silent: Vec<String>,
}

/// A keyring operation waiting for the members' answers.
pub(super) struct PendingKeyOp {
    pub(super) op: KeyOp,
    pub(super) sent_ms: u64,
    pub(super) waiting: BTreeMap<MemberKey, NodeId>,
    pub(super) outcome: KeyOutcome,
    pub(super) deadline: Instant,
    pub(super) resend: Instant,
    /// Names the answer ([`Event::KeyOutcome`]).
    pub(super) token: u64,
}

/// An application message (a user event) spread to every member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct UserMessage {
    pub(super) id: u64,
    pub(super) payload: Vec<u8>,
}

/// A coordinate probe or its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Probe {
    pub(super) nonce: u64,
    pub(super) from: MemberKey,
    pub(super) coordinate: Coordinate,
}

/// A node's network coordinate, as a pool knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeCoordinate {
    /// Node name.
    pub node: String,
    /// Its datacenter.
    pub dc: String,
    /// Its coordinate.
    pub coordinate: Coordinate,
}

/// A member's state as `members` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MemberStatus {
    /// Answering probes.
    Alive,
    /// Left the pool gracefully.
    Left,
    /// Stopped answering.
    Failed,
}

impl MemberStatus {
    /// Consul's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }

    /// Consul's numeric status in `/v1/agent/members` (1 alive, 3 left, 4 failed).
    pub fn code(self) -> u8 {
        match self {
            MemberStatus::Alive => 1,
            MemberStatus::Left => 3,
            MemberStatus::Failed => 4,
        }
    }
}

/// One member of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its identity.
    pub id: NodeId,
    /// Its state.
    pub status: MemberStatus,
}

impl Member {
    /// Server or client.
    pub fn role(&self) -> Role {
        if self.id.server {
            Role::Server
        } else {
            Role::Client
        }
    }
}
