//! Default ports, as in Consul where Consul has the port (see ARCHITECTURE.md).

/// Raft and RPC between servers, QUIC (Consul: 8300).
pub const SERVER: u16 = 8300;
/// LAN gossip, UDP (Consul: 8301).
pub const SERF_LAN: u16 = 8301;
/// HTTP `/v1` API (Consul: 8500).
pub const HTTP: u16 = 8500;
/// DNS for the `consul.` domain, UDP and TCP (Consul: 8600).
pub const DNS: u16 = 8600;
/// HTTPS API (Consul's `ports.https` in its examples).
pub const HTTPS: u16 = 8501;
/// Gateway QUIC listener for dc-links and WAN links.
pub const GATEWAY: u16 = 8443;
/// Gateway Prometheus metrics (`/metrics`).
pub const GATEWAY_METRICS: u16 = 9100;
