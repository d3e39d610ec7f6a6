//! The gossip pools: SWIM (foca), every datagram sealed with the keyring and tagged with
//! its pool (the LAN pool of a datacenter, or the WAN pool of all servers), so a wrong key
//! or another pool's packet is dropped and counted rather than merged. One task owns foca;
//! timers come from one deadline-ordered heap (foca needs them in order). A node leaving
//! says goodbye first, so peers can tell a node that left from one that failed (SWIM alone
//! cannot).
//!
//! The LAN pool speaks UDP (8301). The WAN pool has no socket of its own: its packets ride
//! the server's dc-links as QUIC datagrams, addressed to a datacenter and a node name, and
//! the gateways route them without reading them (they are sealed end to end).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use foca::{AccumulatingRuntime, Config, Foca, Identity, OwnedNotification, PostcardCodec, Timer};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::Role;

use crate::coordinate::{Coordinate, Vivaldi};
use crate::keyfile::{KeyOp, SharedKeyring};
use crate::keyring::NONCE_LEN;

mod core;
mod driver;
mod handle;
mod health;
mod swim;
mod transport;
mod types;

pub use self::core::*;
pub use handle::*;
pub use health::*;
pub use transport::*;
pub use types::*;

use driver::Driver;
use swim::{pool_config, redacted, Swim};

/// Starts a LAN pool on `local.addr`, announcing to `seeds` until it has members; its
/// driver runs on `tasks`.
pub async fn start(
    local: NodeId,
    keyring: Option<SharedKeyring>,
    seeds: Vec<SocketAddr>,
    events: Arc<dyn PoolEvents>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> anyhow::Result<Pool> {
    let socket = tokio::net::UdpSocket::bind(local.addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the gossip port {}/udp: {e}", local.addr))?;
    let seeds = seeds.into_iter().map(NodeId::lan_seed).collect();
    Ok(start_on(
        local,
        Transport::Udp(socket),
        keyring,
        seeds,
        events,
        tasks,
        cancel,
    ))
}

/// Starts a pool on `transport`, announcing to `seeds` until it has members.
pub fn start_on(
    local: NodeId,
    transport: Transport,
    keyring: Option<SharedKeyring>,
    seeds: Vec<NodeId>,
    events: Arc<dyn PoolEvents>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> Pool {
    let members = Arc::new(RwLock::new(BTreeMap::new()));
    let coordinates = Arc::new(RwLock::new(BTreeMap::new()));
    let (commands, receiver) = mpsc::channel(16);
    let (broadcasts, _) = tokio::sync::broadcast::channel(256);
    let pool = Pool {
        local: local.clone(),
        members: members.clone(),
        coordinates: coordinates.clone(),
        commands,
        broadcasts: broadcasts.clone(),
    };
    let core = PoolCore::new(local, keyring, seeds, driver::now(), rand::random());
    let driver = Driver {
        core,
        transport,
        events,
        members,
        coordinates,
        replies: HashMap::new(),
        next_token: 0,
        leaving: None,
        broadcasts,
    };
    tasks.spawn(driver.run(receiver, cancel));
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_timers_raise_the_score_and_it_decays_when_on_time_again() {
        let start = Instant::now();
        let mut health = LocalHealth::new(start);
        let base = Duration::from_secs(4);
        // On time, or a little late: no change.
        assert!(!health.timer_fired(start, start + Duration::from_millis(150)));
        assert_eq!(health.suspicion(base), base);
        // A two-second pause: late.
        let resumed = start + Duration::from_secs(2);
        assert!(health.timer_fired(start, resumed));
        assert!(health.timer_fired(start, resumed));
        assert_eq!(health.score(), 2);
        assert_eq!(health.suspicion(base), base * 3);
        // Capped.
        for _ in 0..20 {
            health.timer_fired(start, resumed);
        }
        assert_eq!(health.score(), MAX_HEALTH_SCORE);
        // No decay before HEALTH_DECAY; one step per HEALTH_DECAY after.
        assert!(!health.decay(resumed + HEALTH_DECAY / 2));
        assert!(health.decay(resumed + HEALTH_DECAY * 3));
        assert_eq!(health.score(), MAX_HEALTH_SCORE - 3);
        assert!(health.decay(resumed + HEALTH_DECAY * 100));
        assert_eq!(health.score(), 0);
        assert_eq!(health.suspicion(base), base);
    }
}
