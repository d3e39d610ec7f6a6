//! The gateway's Prometheus metrics, served at `/metrics` on the metrics port (9100).

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric of the gateway.
pub struct Metrics {
    registry: Registry,
    /// `isthmus_gateway_link_up{dst_dc,peer}`: 1 while a WAN link to that gateway is up.
    pub link_up: IntGaugeVec,
    /// `isthmus_gateway_servers`: servers of this datacenter with a dc-link up.
    pub servers: IntGauge,
    /// `isthmus_cross_dc_requests_total{dst_dc,outcome}`: routed streams by outcome (`ok`,
    /// `no_route`, `broken`, `timeout`).
    pub requests: IntCounterVec,
    /// `isthmus_cross_dc_request_seconds`: time to route and answer a local server's request.
    pub request_seconds: Histogram,
    /// `isthmus_wan_rtt_seconds{src_dc,dst_dc,peer}`: QUIC's smoothed RTT of each WAN link.
    pub wan_rtt: GaugeVec,
    /// `isthmus_gateway_datagrams_total{outcome}`: WAN gossip datagrams by outcome
    /// (`routed`, `no_route`, `malformed`, `too_large`).
    pub datagrams: IntCounterVec,
    /// `isthmus_gateway_refused_total`: links refused for their certificate, and control
    /// messages refused.
    pub refused: IntCounter,
    /// `isthmus_gateway_up`: 1 while the gateway runs.
    pub up: Gauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let link_up = IntGaugeVec::new(
            Opts::new(
                "isthmus_gateway_link_up",
                "1 while the WAN link to that gateway is up.",
            ),
            &["dst_dc", "peer"],
        )?;
        let servers = IntGauge::new(
            "isthmus_gateway_servers",
            "Servers of this datacenter with a dc-link to this gateway.",
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "isthmus_cross_dc_requests_total",
                "Routed cross-DC streams, by destination datacenter and outcome.",
            ),
            &["dst_dc", "outcome"],
        )?;
        let request_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "isthmus_cross_dc_request_seconds",
                "Time to route and answer a local server's cross-DC request, in seconds.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]),
        )?;
        let wan_rtt = GaugeVec::new(
            Opts::new(
                "isthmus_wan_rtt_seconds",
                "Smoothed round trip of each WAN link, in seconds.",
            ),
            &["src_dc", "dst_dc", "peer"],
        )?;
        let datagrams = IntCounterVec::new(
            Opts::new(
                "isthmus_gateway_datagrams_total",
                "Routed datagrams (WAN gossip), by outcome: routed, no_route, malformed, too_large.",
            ),
            &["outcome"],
        )?;
        for outcome in ["routed", "no_route", "malformed", "too_large"] {
            datagrams.with_label_values(&[outcome]);
        }
        let refused = IntCounter::new(
            "isthmus_gateway_refused_total",
            "Links refused because the peer's certificate does not fit the protocol, and control messages refused (a Forget of a live datacenter).",
        )?;
        let up = Gauge::new("isthmus_gateway_up", "1 while the gateway runs.")?;
        registry.register(Box::new(link_up.clone()))?;
        registry.register(Box::new(servers.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(wan_rtt.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(datagrams.clone()))?;
        registry.register(Box::new(up.clone()))?;
        Ok(Metrics {
            registry,
            link_up,
            servers,
            requests,
            request_seconds,
            wan_rtt,
            refused,
            datagrams,
            up,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
