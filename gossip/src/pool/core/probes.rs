//! Coordinate probes: a round trip to a member, folded into this node's Vivaldi
//! coordinate; members' coordinates passed on as events.

use super::*;

impl PoolCore {
    pub(super) fn probe_for(&self, nonce: u64) -> Probe {
        Probe {
            nonce,
            from: self.local.addr(),
            coordinate: self.vivaldi.coordinate().clone(),
        }
    }

    /// Sends a coordinate probe to `to`.
    pub(super) fn send_probe(&mut self, at: Instant, to: &NodeId) {
        self.probes
            .retain(|_, (sent, _)| at.saturating_duration_since(*sent) < PROBE_TIMEOUT);
        let nonce = self.rng.random::<u64>();
        let Ok(payload) = postcard::to_stdvec(&self.probe_for(nonce)) else {
            return;
        };
        self.probes.insert(nonce, (at, to.addr()));
        let packet = self.seal(KIND_PING, &payload);
        self.send(to.clone(), packet);
    }

    /// A coordinate probe or its answer arrived (over UDP, from `source`).
    pub(super) fn probed(&mut self, now: Now, kind: u8, probe: Probe, source: Option<SocketAddr>) {
        if !probe.coordinate.is_valid() {
            return;
        }
        // Over UDP a probe must come from the address it claims (no reflection); routed
        // probes are vouched for by the keyring's seal.
        if let (Some(source), MemberKey::Lan(claimed)) = (source, &probe.from) {
            if source != *claimed {
                self.drop_packet(Some(source), "spoofed");
                return;
            }
        }
        // Who it is comes from the pool, not from the probe.
        let member = self
            .members
            .get(&probe.from)
            .filter(|m| m.status != MemberStatus::Left)
            .map(|m| (m.id.name.clone(), m.id.dc.clone(), m.id.display_name()));
        if kind == KIND_PING {
            let to = match &probe.from {
                MemberKey::Lan(addr) => NodeId::lan_seed(*addr),
                MemberKey::Wan(dc, node) => NodeId::wan_seed(dc, node),
            };
            if let Ok(payload) = postcard::to_stdvec(&self.probe_for(probe.nonce)) {
                let packet = self.seal(KIND_ACK, &payload);
                self.send(to, packet);
            }
        } else {
            let Some((sent, key)) = self.probes.remove(&probe.nonce) else {
                return;
            };
            if key != probe.from {
                return;
            }
            let Some((_, _, peer)) = &member else {
                return;
            };
            let rtt = now.at.saturating_duration_since(sent).as_secs_f64();
            if self.vivaldi.observe(peer, &probe.coordinate, rtt) {
                self.store_own_coordinate();
            }
        }
        // Only members' coordinates are kept: a probe from outside the pool is answered
        // (it may be joining) but not remembered.
        if let Some((node, dc, _)) = member {
            let coordinate = NodeCoordinate {
                node,
                dc,
                coordinate: probe.coordinate,
            };
            self.events
                .push_back(Event::Coordinate(probe.from, Some(coordinate)));
        }
    }

    pub(super) fn store_own_coordinate(&mut self) {
        let own = NodeCoordinate {
            node: self.local.name.clone(),
            dc: self.local.dc.clone(),
            coordinate: self.vivaldi.coordinate().clone(),
        };
        self.events
            .push_back(Event::Coordinate(self.local.addr(), Some(own)));
    }
}
