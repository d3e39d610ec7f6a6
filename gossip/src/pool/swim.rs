//! foca and its settings: sized with the pool (suspicion and retransmissions as
//! memberlist's scale), suspicion stretched by local health, packets sized for each pool.

use super::*;

use rand::rngs::StdRng;

type SwimFoca = Foca<NodeId, PostcardCodec, StdRng, foca::NoCustomBroadcast>;

/// foca and what is tuned around it: its settings (resized with the pool, suspicion scaled
/// by local health), the runtime it writes into, and the join sync window.
pub(super) struct Swim {
    pub(super) foca: SwimFoca,
    pub(super) runtime: AccumulatingRuntime<NodeId>,
    pub(super) config: Config,
    pub(super) base_suspicion: Duration,
    pub(super) health: LocalHealth,
    pub(super) cluster_size: usize,
    pub(super) syncing_until: Instant,
}

impl Swim {
    pub(super) fn new(local: NodeId, now: Instant, rng: StdRng) -> Swim {
        // Suspicion and retransmissions scale with the pool's size, as memberlist's do
        // (4 x max(1, log10 N) probe periods); foca is reconfigured as members come and go.
        let pool = local.pool;
        let mut config = pool_config(pool, 1);
        config.max_transmissions = pool_config(pool, 16).max_transmissions;
        let base_suspicion = config.suspect_to_down_after;
        Swim {
            foca: Foca::new(local, config.clone(), rng, PostcardCodec),
            runtime: AccumulatingRuntime::new(),
            config,
            base_suspicion,
            health: LocalHealth::new(now),
            cluster_size: 1,
            syncing_until: now + JOIN_SYNC,
        }
    }

    pub(super) fn members(&self) -> Vec<NodeId> {
        self.foca.iter_members().map(|m| m.id().clone()).collect()
    }
}

/// A keyring operation for logs: which kind, never the key.
pub(super) fn redacted(op: &KeyOp) -> &'static str {
    match op {
        KeyOp::List => "list",
        KeyOp::Install(_) => "install",
        KeyOp::Use(_) => "use",
        KeyOp::Remove(_) => "remove",
    }
}

/// foca's settings for a pool of `size` members, with our packet size.
///
/// The WAN pool probes every 2 s and waits 1 s for an answer (memberlist's WAN profile
/// waits 5 s and 3 s, tuned for the open internet; our WAN packets ride QUIC links the
/// gateways keep warm, and their RTT is what the probe measures), and a suspicion lasts
/// 5 probe periods x max(1, log10 N) before the member is declared failed.
pub(super) fn pool_config(pool: PoolKind, size: usize) -> Config {
    let size = std::num::NonZeroU32::new(u32::try_from(size).unwrap_or(u32::MAX))
        .unwrap_or(std::num::NonZeroU32::MIN);
    let mut config = match pool {
        PoolKind::Lan => Config::new_lan(size),
        PoolKind::Wan => {
            let mut config = Config::new_wan(size);
            let period = Duration::from_secs(2);
            config.probe_period = period;
            config.probe_rtt = Duration::from_secs(1);
            config.suspect_to_down_after =
                period.mul_f64(5.0 * f64::from(size.get()).log10().max(1.0));
            config
        }
    };
    let max_packet = match pool {
        PoolKind::Lan => MAX_FOCA_PACKET,
        PoolKind::Wan => MAX_WAN_PACKET,
    };
    if let Some(max) = std::num::NonZeroUsize::new(max_packet) {
        config.max_packet_size = max;
    }
    // Each update goes out twice as many times as foca's 4 x log10(N + 1), at least eight.
    // foca starts a suspicion timer only on the member whose probe failed, so a member that
    // misses both the suspicion and the verdict learns of the failure only when it probes
    // the dead member itself, up to N probe periods later: with foca's count that happened
    // in about one 20-node run in seven (20 s instead of 7 s).
    let doubled = config.max_transmissions.get().saturating_mul(2).max(8);
    if let Some(max_tx) = std::num::NonZeroU8::new(doubled) {
        config.max_transmissions = max_tx;
    }
    config
}
