//! The handle the rest of the agent holds: members, coordinates, join, leave, force-leave,
//! keyring operations (sent to the driver as commands).

use super::*;

pub(super) enum Command {
    Join(Vec<NodeId>),
    Leave(oneshot::Sender<()>),
    ForceLeave(Vec<MemberKey>),
    Key(KeyOp, oneshot::Sender<KeyOutcome>),
    Broadcast(Vec<u8>),
}

/// A handle on a running pool.
#[derive(Clone)]
pub struct Pool {
    pub(super) local: NodeId,
    pub(super) members: Arc<RwLock<BTreeMap<MemberKey, Member>>>,
    pub(super) coordinates: Coordinates,
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) broadcasts: tokio::sync::broadcast::Sender<Vec<u8>>,
}

/// The latest coordinate of each node heard from, this one included.
pub(super) type Coordinates = Arc<RwLock<BTreeMap<MemberKey, NodeCoordinate>>>;

impl Pool {
    /// This node's identity in the pool.
    pub fn local(&self) -> &NodeId {
        &self.local
    }

    /// The network coordinates of this node and of every member it has exchanged a
    /// coordinate probe with, by datacenter and name.
    pub fn coordinates(&self) -> Vec<NodeCoordinate> {
        let mut all: Vec<NodeCoordinate> = self.coordinates.read().values().cloned().collect();
        all.sort_by(|a, b| (&a.dc, &a.node).cmp(&(&b.dc, &b.node)));
        all
    }

    /// Every member, this node included, by name.
    pub fn members(&self) -> Vec<Member> {
        let mut members: Vec<Member> = self.members.read().values().cloned().collect();
        members.push(Member {
            id: self.local.clone(),
            status: MemberStatus::Alive,
        });
        members.sort_by(|a, b| (&a.id.dc, &a.id.name).cmp(&(&b.id.dc, &b.id.name)));
        members
    }

    /// Announces this node to `seeds` (see [`NodeId::lan_seed`], [`NodeId::wan_seed`]);
    /// returns how many were contacted.
    pub async fn join(&self, seeds: Vec<NodeId>) -> usize {
        let n = seeds.len();
        if self.commands.send(Command::Join(seeds)).await.is_err() {
            return 0;
        }
        n
    }

    /// Marks a failed member as left across the pool (`force-leave`); false when no failed
    /// member has that name (`node`, or `node.dc` on the WAN).
    pub async fn force_leave(&self, name: &str) -> bool {
        let target = Some(self.members.read()).and_then(|members| {
            members
                .iter()
                .find(|(_, m)| m.id.display_name() == name && m.status == MemberStatus::Failed)
                .map(|(key, _)| key.clone())
        });
        match target {
            Some(key) => self
                .commands
                .send(Command::ForceLeave(vec![key]))
                .await
                .is_ok(),
            None => false,
        }
    }

    /// Marks every member of `dc` as left across the pool, alive or not (a datacenter
    /// removed from the federation for good); returns how many there were. A member that
    /// is still running would announce itself again: its servers must be stopped first.
    pub async fn remove_datacenter(&self, dc: &str) -> usize {
        let keys: Vec<MemberKey> = self
            .members
            .read()
            .iter()
            .filter(|(_, m)| m.id.dc == dc)
            .map(|(key, _)| key.clone())
            .collect();
        let n = keys.len();
        if n == 0 || self.commands.send(Command::ForceLeave(keys)).await.is_err() {
            return 0;
        }
        n
    }

    /// Applies a keyring operation on this node and every live member, as Consul's keyring
    /// query does; returns each one's answer, and who did not answer within 3 s.
    pub async fn keyring(&self, op: KeyOp) -> Result<KeyOutcome, String> {
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::Key(op, reply))
            .await
            .map_err(|_| "the gossip pool has stopped".to_owned())?;
        outcome
            .await
            .map_err(|_| "the gossip pool has stopped".to_owned())
    }

    /// Spreads an application message (at most [`MAX_USER_PAYLOAD`] bytes) to every other
    /// member; false when the pool has stopped.
    pub async fn broadcast(&self, payload: Vec<u8>) -> bool {
        self.commands
            .send(Command::Broadcast(payload))
            .await
            .is_ok()
    }

    /// The application messages other members broadcast, from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Vec<u8>> {
        self.broadcasts.subscribe()
    }

    /// Says goodbye and leaves the pool; returns once the goodbyes are sent.
    pub async fn leave(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
        }
    }
}
