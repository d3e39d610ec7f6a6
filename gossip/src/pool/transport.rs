//! Where a pool's packets go: a UDP socket (LAN) or QUIC datagrams over the dc-links (WAN).

use super::*;

/// Where a pool's packets go and come from.
pub enum Transport {
    /// A UDP socket (the LAN pool).
    Udp(tokio::net::UdpSocket),
    /// Datagrams routed by datacenter and node name (the WAN pool, over the dc-links).
    Routed {
        /// Sends a datagram.
        out: Arc<dyn RoutedOut>,
        /// Datagrams addressed to this node.
        inbox: mpsc::Receiver<Vec<u8>>,
    },
}

/// Sends a WAN gossip datagram to a server of a datacenter.
pub trait RoutedOut: Send + Sync + 'static {
    /// Sends `payload` to `node` (any server when empty) of `dc`; best effort, as UDP.
    fn send(&self, dc: &str, node: &str, payload: Vec<u8>);
}

impl Transport {
    pub(super) async fn send(&self, to: &NodeId, packet: Vec<u8>) {
        match self {
            Transport::Udp(socket) => {
                let _ = socket.send_to(&packet, to.addr).await;
            }
            Transport::Routed { out, .. } => out.send(&to.dc, &to.name, packet),
        }
    }

    /// The next datagram and, over UDP, where it came from (routed datagrams come from a
    /// gateway, which says nothing of their sender).
    pub(super) async fn recv(
        &mut self,
        buffer: &mut [u8],
    ) -> Option<(Vec<u8>, Option<SocketAddr>)> {
        match self {
            Transport::Udp(socket) => {
                let (n, from) = socket.recv_from(buffer).await.ok()?;
                Some((buffer[..n].to_vec(), Some(from)))
            }
            Transport::Routed { inbox, .. } => match inbox.recv().await {
                Some(packet) => Some((packet, None)),
                None => std::future::pending().await,
            },
        }
    }
}
