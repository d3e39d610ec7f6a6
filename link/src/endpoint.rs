//! Endpoints and connection settings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pki::NodeTls;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

/// QUIC settings of every Isthmus connection: 1 s keep-alives, a 5 s idle timeout (a dead
/// peer is noticed within it), and room for 4096 concurrent streams (forwarded blocking
/// queries each hold one while they wait).
pub fn transport_config() -> Arc<quinn::TransportConfig> {
    transport(Duration::from_secs(1), Duration::from_secs(5))
}

/// Keep-alives every `keep_alive`, a peer silent for `idle` is gone, 4096 streams.
fn transport(keep_alive: Duration, idle: Duration) -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    config.keep_alive_interval(Some(keep_alive));
    if let Ok(idle) = quinn::IdleTimeout::try_from(idle) {
        config.max_idle_timeout(Some(idle));
    }
    config.max_concurrent_bidi_streams(4096u32.into());
    Arc::new(config)
}

/// QUIC settings of a dc-link (a server to its own datacenter's gateway, on one network):
/// as [`transport_config`], with keep-alives every 250 ms and a 1.5 s idle timeout, so that
/// a gateway killed outright is noticed (and its requests retried through another) within
/// 1.5 s. The idle timeout in force is the lower of the two sides', so the dialing server
/// sets it.
pub fn dc_link_transport_config() -> Arc<quinn::TransportConfig> {
    transport(Duration::from_millis(250), Duration::from_millis(1500))
}

/// QUIC settings of a WAN link (a gateway to another datacenter's gateway): keep-alives
/// every 500 ms and a 3 s idle timeout, so that a datacenter's gateway that dies is noticed
/// (its link shown down, its traffic failed over) within 3 s, while a WAN's usual loss and
/// jitter (six keep-alives in a row lost) does not cut a link. The dialing gateway sets it.
pub fn wan_link_transport_config() -> Arc<quinn::TransportConfig> {
    transport(Duration::from_millis(500), Duration::from_secs(3))
}

/// A client config from a rustls config (with its ALPN and peer policy), tuned as
/// [`transport_config`].
pub fn client_config(rustls: rustls::ClientConfig) -> anyhow::Result<quinn::ClientConfig> {
    client_config_with(rustls, transport_config())
}

/// A client config from a rustls config with the given transport settings.
pub fn client_config_with(
    rustls: rustls::ClientConfig,
    transport: Arc<quinn::TransportConfig>,
) -> anyhow::Result<quinn::ClientConfig> {
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(rustls)?));
    config.transport_config(transport);
    Ok(config)
}

/// An endpoint that accepts with `rustls` (and dials) on `bind`. Stateless resets and
/// connection IDs come from keys derived from the node's TLS material, so they survive a
/// restart: a peer still linked to the previous process learns at once that it is gone.
pub fn server_endpoint(
    bind: SocketAddr,
    rustls: rustls::ServerConfig,
    tls: &NodeTls,
) -> anyhow::Result<quinn::Endpoint> {
    let mut server_config =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(rustls)?));
    server_config.transport_config(transport_config());
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(tls.stateless_reset_key()));
    let cid_key = tls.connection_id_key();
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = std::net::UdpSocket::bind(bind)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| anyhow::anyhow!("no async runtime for the QUIC endpoint"))?;
    Ok(quinn::Endpoint::new(
        endpoint_config,
        Some(server_config),
        socket,
        runtime,
    )?)
}

/// The peer certificate of a connection, DER.
pub fn peer_certificate(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let identity = connection.peer_identity()?;
    let certificates = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certificates.first().map(|c| c.to_vec())
}

/// The ALPN protocol a connection negotiated.
pub fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let data = connection.handshake_data()?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    data.protocol
}
