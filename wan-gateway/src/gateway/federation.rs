//! What a gateway knows of the federation and tells others: the gateways it knows
//! (announced to its WAN peers and learned from theirs), datacenters removed for good, and
//! what it tells a local server (`GatewayInfo`).

use super::*;

impl Gateway {
    /// This gateway and every gateway it dials.
    pub(super) fn gateways(&self) -> Vec<GatewayAddress> {
        let mut all = vec![GatewayAddress {
            datacenter: self.datacenter.clone(),
            node: self.node.clone(),
            address: self.advertise.to_string(),
        }];
        {
            let known = self.known.lock();
            all.extend(known.iter().map(|((dc, node), (addr, _))| GatewayAddress {
                datacenter: dc.clone(),
                node: node.clone(),
                address: addr.to_string(),
            }));
        }
        all
    }

    /// Links to the gateways a peer told of that this one does not dial yet (a new
    /// datacenter, a new gateway). A known gateway's address changes only when that gateway
    /// says so itself (the first entry of its own list), so a stale third-hand address
    /// never replaces a current one.
    pub(super) fn learn(self: &Arc<Self>, gateways: &[GatewayAddress]) {
        let teller = gateways
            .first()
            .map(|g| (g.datacenter.clone(), g.node.clone()));
        for gateway in gateways.iter().take(MAX_GATEWAYS) {
            let Ok(addr) = gateway.address.parse::<SocketAddr>() else {
                continue;
            };
            // A gateway bound to every interface (0.0.0.0) cannot say where it is reached.
            if addr.ip().is_unspecified() {
                continue;
            }
            if wire::validate_dns_label(&gateway.datacenter).is_err()
                || self.forgotten.lock().contains(&gateway.datacenter)
            {
                continue;
            }
            let key = (gateway.datacenter.clone(), gateway.node.clone());
            let itself = teller.as_ref() == Some(&key);
            let new = match self.known.lock().get(&key) {
                None => true,
                Some((known_addr, _)) => itself && *known_addr != addr,
            };
            if new && gateway.datacenter != self.datacenter {
                tracing::info!(dc = %gateway.datacenter, gateway = %gateway.node, addr = %addr, "learned a gateway from the federation");
                if let Err(e) = self.dial(&gateway.datacenter, &gateway.node, addr) {
                    tracing::warn!(error = %e, "could not link to a learned gateway");
                }
            }
        }
    }

    /// Tells every WAN peer, now and then, which gateways this one knows.
    pub(super) async fn announce_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let peers: Vec<(String, Peer)> = self
                .links
                .read()
                .iter()
                .flat_map(|(dc, peers)| peers.iter().map(|p| (dc.clone(), p.clone())))
                .collect();
            for (dc, peer) in peers {
                crate::tasks::spawn(self.clone().announce(dc, peer.connection));
            }
        }
    }

    /// Exchanges known gateways with the gateway at the other end of a WAN link.
    pub(super) async fn announce(self: Arc<Self>, dc: String, connection: quinn::Connection) {
        let exchange = async {
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
            let open = StreamOpen::new(StreamKind::Gateways(self.gateways()));
            link::write_frame(&mut send, &open)
                .await
                .map_err(|e| e.to_string())?;
            read_small::<Vec<GatewayAddress>>(&mut recv).await
        };
        match tokio::time::timeout(Duration::from_secs(5), exchange).await {
            Ok(Ok(gateways)) => self.learn(&gateways),
            Ok(Err(e)) => tracing::debug!(dc = %dc, error = %e, "gateway exchange failed"),
            Err(_) => tracing::debug!(dc = %dc, "gateway exchange timed out"),
        }
    }

    /// Forgets a datacenter removed from the federation: stops dialling its gateways and
    /// closes the links to them. False for this gateway's own datacenter.
    pub(super) fn forget(&self, dc: &str) -> bool {
        if dc == self.datacenter || wire::validate_dns_label(dc).is_err() {
            return false;
        }
        {
            let mut forgotten = self.forgotten.lock();
            if forgotten.len() < MAX_GATEWAYS {
                forgotten.insert(dc.to_owned());
            }
        }
        let mut peers_of_dc = Vec::new();
        {
            let mut known = self.known.lock();
            known.retain(|(known_dc, node), (_, stop)| {
                if known_dc == dc {
                    stop.cancel();
                    peers_of_dc.push(node.clone());
                }
                known_dc != dc
            });
        }
        let peers: Vec<Peer> = self.links.read().get(dc).cloned().unwrap_or_default();
        for peer in peers {
            peers_of_dc.push(peer.node.clone());
            peer.connection
                .close(2u32.into(), b"datacenter removed from the federation");
        }
        // No series of a removed datacenter stays behind (a link "down" forever would
        // keep its alert firing).
        for node in peers_of_dc {
            let _ = self.metrics.link_up.remove_label_values(&[dc, &node]);
            let _ = self
                .metrics
                .wan_rtt
                .remove_label_values(&[&self.datacenter, dc, &node]);
        }
        tracing::info!(dc = %dc, "datacenter removed from the federation: its gateways are forgotten");
        true
    }

    pub(super) fn info(&self) -> GatewayInfo {
        let mut datacenters = vec![(self.datacenter.clone(), Some(0))];
        for dc in self.linked_datacenters() {
            let rtt = self
                .pick_link(&dc)
                .map(|p| u64::try_from(p.connection.rtt().as_micros()).unwrap_or(u64::MAX));
            datacenters.push((dc, rtt));
        }
        // Datacenters known but not linked now are still part of the federation (as Consul
        // lists a failed datacenter): listed last, with no round trip.
        let known: Vec<String> = self.known.lock().keys().map(|(dc, _)| dc.clone()).collect();
        for dc in known {
            if !datacenters.iter().any(|(d, _)| *d == dc) {
                datacenters.push((dc, None));
            }
        }
        GatewayInfo {
            datacenter: self.datacenter.clone(),
            node: self.node.clone(),
            datacenters,
        }
    }
}

/// Tells the gateway at the other end of a WAN link to forget `dc`.
pub(super) async fn tell_forget(connection: quinn::Connection, dc: String) {
    let told = async {
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        let open = StreamOpen::new(StreamKind::Forget(dc.clone()));
        link::write_frame(&mut send, &open)
            .await
            .map_err(|e| e.to_string())?;
        read_small::<RouteStatus>(&mut recv).await
    };
    match tokio::time::timeout(Duration::from_secs(5), told).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::debug!(dc = %dc, error = %e, "telling a gateway to forget a datacenter failed")
        }
        Err(_) => tracing::debug!(dc = %dc, "telling a gateway to forget a datacenter timed out"),
    }
}
