//! Where a routed stream goes: the gateway's routing decision, pure. The shell
//! (`gateway::Gateway::route`) reads the header, takes a snapshot of its live links
//! ([`Links`]), asks [`decide`], and carries the decision out (copies the stream on, answers
//! `NoRoute`, learns or forgets gateways).
//!
//! Rules: a stream from a local server (over a dc-link) goes out on a WAN link to its
//! destination datacenter; a stream from a WAN link goes to a server of this datacenter, and
//! never on to a third one (no transit, so no loops). Where a stream comes from is what its
//! link says, not what its header claims. Deadlines are capped at [`link::MAX_DEADLINE`].

use std::collections::BTreeMap;

use wire::route::{GatewayAddress, RouteHeader, StreamKind, Target};

/// Which kind of link a stream arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A dc-link from a server of this datacenter.
    Server,
    /// A WAN link with a gateway of another datacenter.
    Wan,
}

/// What the gateway knows at the moment it decides: who it is and its live links, by node
/// name, in a fixed order (the picks index into these lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// This gateway's datacenter.
    pub datacenter: String,
    /// This gateway's node name.
    pub node: String,
    /// Live WAN links, by datacenter: the gateways' node names.
    pub wan: BTreeMap<String, Vec<String>>,
    /// Live dc-links: the local servers' node names.
    pub servers: Vec<String>,
}

/// What to do with a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A remote gateway's list of the gateways it knows: learn them, answer with ours.
    ExchangeGateways(Vec<GatewayAddress>),
    /// Forget a datacenter removed from the federation; pass the word to every WAN peer
    /// when a local server asked.
    Forget {
        /// The datacenter.
        dc: String,
        /// Whether to tell the WAN peers.
        tell_peers: bool,
    },
    /// A local server asks about the federation (`GatewayInfo`).
    Info,
    /// Pass the stream on over the WAN link to gateway `wan[dc][index]`.
    ToGateway {
        /// Destination datacenter.
        dc: String,
        /// Which of its live links.
        index: usize,
    },
    /// Pass the stream on to local server `servers[index]`.
    ToServer {
        /// Which live dc-link.
        index: usize,
    },
    /// Answer `NoRoute(reason)`; `outcome` labels the metric (`no_route`, `timeout`).
    NoRoute {
        /// Why, as the caller reads it.
        reason: String,
        /// The metric label.
        outcome: &'static str,
    },
}

/// Makes a header tell the truth before anything reads it: the source is the link's
/// datacenter (this one for a dc-link), and the deadline at most [`link::MAX_DEADLINE`].
pub fn normalize(header: &mut RouteHeader, side: Side, peer_dc: Option<&str>, datacenter: &str) {
    header.src_dc = match (side, peer_dc) {
        (Side::Wan, Some(dc)) => dc.to_owned(),
        _ => datacenter.to_owned(),
    };
    header.deadline_ms = header
        .deadline_ms
        .min(u64::try_from(link::MAX_DEADLINE.as_millis()).unwrap_or(u64::MAX));
}

/// Decides what to do with a stream (its route header normalized). `turn` spreads
/// streams over the live links (round robin: the shell passes a counter it increments).
pub fn decide(side: Side, kind: &StreamKind, links: &Links, turn: usize) -> Decision {
    let me = || format!("gateway {} of {}", links.node, links.datacenter);
    match (kind, side) {
        (StreamKind::Gateways(gateways), Side::Wan) => Decision::ExchangeGateways(gateways.clone()),
        (StreamKind::Gateways(_), Side::Server) => Decision::NoRoute {
            reason: format!("{}: only gateways announce gateways", me()),
            outcome: "no_route",
        },
        // A datacenter is forgotten only once it is gone: whoever asks (a rogue gateway
        // certificate included) cannot cut the links to one that is alive.
        (StreamKind::Forget(dc), _) if links.wan.get(dc).is_some_and(|g| !g.is_empty()) => {
            Decision::NoRoute {
                reason: format!(
                    "{}: {dc} is linked and alive; a datacenter is forgotten only once its gateways are gone",
                    me()
                ),
                outcome: "refused",
            }
        }
        (StreamKind::Forget(dc), side) => Decision::Forget {
            dc: dc.clone(),
            tell_peers: side == Side::Server,
        },
        (StreamKind::Info, Side::Server) => Decision::Info,
        (StreamKind::Info, Side::Wan) => Decision::NoRoute {
            reason: format!("{}: gateway info is for its own servers", me()),
            outcome: "no_route",
        },
        (StreamKind::Route(header), side) => route(side, header, links, turn),
    }
}

/// Where a request goes: out on a WAN link from a local server, to a local server from a
/// WAN link.
fn route(side: Side, header: &RouteHeader, links: &Links, turn: usize) -> Decision {
    let me = format!("gateway {} of {}", links.node, links.datacenter);
    let dst = &header.dst_dc;
    let next = match side {
        Side::Server if *dst == links.datacenter => Err(format!("{me}: {dst} is this datacenter")),
        Side::Server => match links.wan.get(dst).filter(|peers| !peers.is_empty()) {
            Some(peers) => Ok(Decision::ToGateway {
                dc: dst.clone(),
                index: turn % peers.len(),
            }),
            None => Err(format!("{me} has no link to {dst}")),
        },
        Side::Wan if *dst != links.datacenter => Err(format!(
            "{me} routes only into its own datacenter, not to {dst}"
        )),
        Side::Wan => match &header.target {
            Target::Node(name) => match links.servers.iter().position(|s| s == name) {
                Some(index) => Ok(Decision::ToServer { index }),
                None => Err(format!("{me} has no server linked")),
            },
            Target::AnyServer if !links.servers.is_empty() => Ok(Decision::ToServer {
                index: turn % links.servers.len(),
            }),
            Target::AnyServer => Err(format!("{me} has no server linked")),
        },
    };
    match next {
        Ok(_) if header.deadline_ms == 0 => Decision::NoRoute {
            reason: "the request's deadline had passed".to_owned(),
            outcome: "timeout",
        },
        Ok(decision) => decision,
        Err(reason) => Decision::NoRoute {
            reason,
            outcome: "no_route",
        },
    }
}

/// Where a datagram goes (best effort: `None` drops it as `no_route`). Unlike a stream, a
/// local server's datagram for this datacenter goes straight to the server it names (WAN
/// gossip between servers of one datacenter); an empty `dst_node` means any server.
/// Returns [`Decision::ToGateway`] or [`Decision::ToServer`].
pub fn datagram_next(
    side: Side,
    dst_dc: &str,
    dst_node: &str,
    links: &Links,
    turn: usize,
) -> Option<Decision> {
    let to_server = || {
        if dst_node.is_empty() {
            (!links.servers.is_empty()).then(|| Decision::ToServer {
                index: turn % links.servers.len(),
            })
        } else {
            links
                .servers
                .iter()
                .position(|s| s == dst_node)
                .map(|index| Decision::ToServer { index })
        }
    };
    match side {
        _ if dst_dc == links.datacenter => to_server(),
        Side::Server => {
            let peers = links.wan.get(dst_dc).filter(|p| !p.is_empty())?;
            Some(Decision::ToGateway {
                dc: dst_dc.to_owned(),
                index: turn % peers.len(),
            })
        }
        Side::Wan => None,
    }
}

/// Whether a WAN link from a gateway of `dc` is admitted: only from a datacenter of this
/// federation, one configured at this gateway or learned from a peer that is one (a
/// gateway certificate, even the federation CA's, does not make a datacenter a member by
/// itself). Never from this gateway's own datacenter.
pub fn admits_wan<'a>(
    dc: &str,
    own: &str,
    configured: &[String],
    mut known: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    if dc == own {
        return Err(format!("a gateway of {own}, this gateway's own datacenter"));
    }
    if configured.iter().any(|c| c == dc) || known.any(|k| k == dc) {
        return Ok(());
    }
    Err(format!(
        "{dc} is not a datacenter of this federation (configure its gateways in remote_gateways of a gateway of the federation)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_header(dst: &str, target: Target, deadline_ms: u64) -> RouteHeader {
        RouteHeader {
            dst_dc: dst.into(),
            src_dc: "forged".into(),
            target,
            deadline_ms,
        }
    }

    fn header(dst: &str, target: Target, deadline_ms: u64) -> StreamKind {
        StreamKind::Route(route_header(dst, target, deadline_ms))
    }

    fn links() -> Links {
        Links {
            datacenter: "dc1".into(),
            node: "gw1".into(),
            wan: BTreeMap::from([
                ("dc2".into(), vec!["gw1".into(), "gw2".into()]),
                ("dc3".into(), vec![]),
            ]),
            servers: vec!["s1".into(), "s2".into()],
        }
    }

    #[test]
    fn headers_are_made_truthful() {
        let mut h = route_header("dc2", Target::AnyServer, u64::MAX);
        normalize(&mut h, Side::Wan, Some("dc9"), "dc1");
        assert_eq!(h.src_dc, "dc9");
        assert_eq!(h.deadline_ms, 660_000);
        normalize(&mut h, Side::Server, Some("dc9"), "dc1");
        assert_eq!(h.src_dc, "dc1");
    }

    #[test]
    fn outbound_goes_round_robin_over_live_links_and_never_to_itself() {
        let l = links();
        let h = header("dc2", Target::AnyServer, 1000);
        let picks: Vec<Decision> = (0..3).map(|t| decide(Side::Server, &h, &l, t)).collect();
        assert_eq!(
            picks,
            [0, 1, 0].map(|index| Decision::ToGateway {
                dc: "dc2".into(),
                index
            })
        );
        for dst in ["dc1", "dc3", "dc4"] {
            let d = decide(Side::Server, &header(dst, Target::AnyServer, 1000), &l, 0);
            assert!(
                matches!(
                    &d,
                    Decision::NoRoute {
                        outcome: "no_route",
                        ..
                    }
                ),
                "{dst}: {d:?}"
            );
        }
        let d = decide(Side::Server, &StreamKind::Info, &l, 0);
        assert_eq!(d, Decision::Info);
        let d = decide(Side::Wan, &StreamKind::Info, &l, 0);
        assert!(matches!(d, Decision::NoRoute { .. }), "{d:?}");
    }

    #[test]
    fn inbound_reaches_local_servers_only() {
        let l = links();
        let d = decide(
            Side::Wan,
            &header("dc1", Target::Node("s2".into()), 10),
            &l,
            0,
        );
        assert_eq!(d, Decision::ToServer { index: 1 });
        let d = decide(Side::Wan, &header("dc1", Target::AnyServer, 10), &l, 3);
        assert_eq!(d, Decision::ToServer { index: 1 });
        // No transit through this datacenter to a third one.
        let d = decide(Side::Wan, &header("dc2", Target::AnyServer, 10), &l, 0);
        assert!(matches!(d, Decision::NoRoute { .. }), "{d:?}");
        let d = decide(
            Side::Wan,
            &header("dc1", Target::Node("s9".into()), 10),
            &l,
            0,
        );
        assert!(matches!(d, Decision::NoRoute { .. }), "{d:?}");
        // A spent deadline is a timeout, not a route.
        let d = decide(Side::Wan, &header("dc1", Target::AnyServer, 0), &l, 0);
        assert!(
            matches!(
                d,
                Decision::NoRoute {
                    outcome: "timeout",
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn control_streams() {
        let l = links();
        let gateways = vec![GatewayAddress {
            datacenter: "dc2".into(),
            node: "gw1".into(),
            address: "127.0.0.1:8443".into(),
        }];
        let d = decide(Side::Wan, &StreamKind::Gateways(gateways.clone()), &l, 0);
        assert_eq!(d, Decision::ExchangeGateways(gateways.clone()));
        // Only gateways announce gateways.
        let d = decide(Side::Server, &StreamKind::Gateways(gateways), &l, 0);
        assert!(matches!(d, Decision::NoRoute { .. }), "{d:?}");
        let d = decide(Side::Server, &StreamKind::Forget("dc3".into()), &l, 0);
        assert_eq!(
            d,
            Decision::Forget {
                dc: "dc3".into(),
                tell_peers: true
            }
        );
        let d = decide(Side::Wan, &StreamKind::Forget("dc3".into()), &l, 0);
        assert_eq!(
            d,
            Decision::Forget {
                dc: "dc3".into(),
                tell_peers: false
            }
        );
        // A linked, live datacenter cannot be forgotten, whoever asks.
        let alive = l.wan.keys().next().cloned().expect("a linked datacenter");
        for side in [Side::Wan, Side::Server] {
            let d = decide(side, &StreamKind::Forget(alive.clone()), &l, 0);
            assert!(
                matches!(
                    d,
                    Decision::NoRoute {
                        outcome: "refused",
                        ..
                    }
                ),
                "{d:?}"
            );
        }
    }

    #[test]
    fn datagrams() {
        let l = links();
        assert_eq!(
            datagram_next(Side::Server, "dc1", "s2", &l, 0),
            Some(Decision::ToServer { index: 1 })
        );
        assert_eq!(
            datagram_next(Side::Wan, "dc1", "", &l, 1),
            Some(Decision::ToServer { index: 1 })
        );
        assert_eq!(
            datagram_next(Side::Server, "dc2", "s1", &l, 1),
            Some(Decision::ToGateway {
                dc: "dc2".into(),
                index: 1
            })
        );
        assert_eq!(datagram_next(Side::Wan, "dc2", "s1", &l, 0), None);
        assert_eq!(datagram_next(Side::Server, "dc3", "s1", &l, 0), None);
        assert_eq!(datagram_next(Side::Wan, "dc1", "s9", &l, 0), None);
    }

    #[test]
    fn only_declared_or_learned_datacenters_link() {
        let configured = vec!["dc2".to_owned()];
        assert_eq!(
            admits_wan("dc2", "dc1", &configured, std::iter::empty()),
            Ok(())
        );
        assert_eq!(
            admits_wan("dc3", "dc1", &configured, ["dc3"].into_iter()),
            Ok(())
        );
        let refused = admits_wan("dc7", "dc1", &configured, ["dc3"].into_iter());
        assert!(refused.is_err_and(|e| e.contains("dc7 is not a datacenter of this federation")));
        assert!(admits_wan("dc1", "dc1", &configured, ["dc1"].into_iter()).is_err());
    }
}
