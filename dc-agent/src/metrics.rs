//! Prometheus metrics of an agent, served at `/v1/agent/metrics?format=prometheus`.
//! Consul's names where Consul has the metric (its timers are in milliseconds); ours with
//! units and `_total` otherwise.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio_util::sync::CancellationToken;

use crate::server::Server;

/// Every metric of the agent.
pub struct Metrics {
    registry: Registry,
    /// `consul_kvs_apply`: time to apply a KV write through Raft, ms.
    pub kvs_apply: Histogram,
    /// `consul_txn_apply`: time to apply a transaction, ms.
    pub txn_apply: Histogram,
    /// `consul_raft_commitTime`: time from a write's arrival at the leader to its commit, ms.
    pub raft_commit_time: Histogram,
    /// `consul_raft_apply`: writes applied through Raft.
    pub raft_apply: IntCounter,
    /// `consul_rpc_request`: requests served by this server.
    pub rpc_request: IntCounter,
    /// `isthmus_rpc_forwarded_total`: requests forwarded to the leader.
    pub rpc_forwarded: IntCounter,
    /// `consul_rpc_cross_dc`: requests sent to another datacenter.
    pub rpc_cross_dc: IntCounter,
    /// `isthmus_https_handshake_failures_total`: HTTPS connections refused in the TLS
    /// handshake (no or a foreign client certificate, plain HTTP, a timeout).
    pub https_handshake_failures: IntCounter,
    /// `isthmus_http_connections`: HTTP(S) connections open now.
    pub http_connections: IntGauge,
    /// `isthmus_http_connections_rejected_total`: connections answered 429 and closed, past
    /// `limits.http_max_conns_per_client`.
    pub http_connections_rejected: IntCounter,
    /// `isthmus_blocking_queries_coalesced_total`: a client agent's blocking queries that
    /// joined the same query already on its way to a server.
    pub blocking_coalesced: IntCounter,
    /// `isthmus_blocking_queries_upstream`: blocking queries a client agent holds open to
    /// its servers now.
    pub blocking_upstream: IntGauge,
    /// `isthmus_kv_tombstones_reaped_total`: KV tombstones the leader's GC removed.
    pub tombstones_reaped: IntCounter,
    /// `consul_raft_state_leader`: times this server became leader.
    pub raft_state_leader: IntCounter,
    /// `consul_raft_state_candidate`: times this server started an election.
    pub raft_state_candidate: IntCounter,
    /// `consul_server_isLeader`: 1 on the leader.
    pub server_is_leader: IntGauge,
    /// `consul_raft_leader_lastContact`: ms since the leader was last heard from.
    pub raft_leader_last_contact: IntGauge,
    /// `isthmus_raft_applied_index`: last applied Raft index.
    pub raft_applied_index: IntGauge,
    /// `isthmus_raft_term`: current term.
    pub raft_term: IntGauge,
    /// `consul_autopilot_healthy`: 1 when every voter is replicating (leader only).
    pub autopilot_healthy: IntGauge,
    /// `isthmus_tls_rejected_total{reason}`: refused peer certificates.
    pub tls_rejected: IntCounterVec,
    /// `isthmus_http_requests_total{method,code}`.
    pub http_requests: IntCounterVec,
    /// `isthmus_dns_queries_total{rcode}`: DNS queries answered, by response code.
    pub dns_queries: IntCounterVec,
    /// The gossip pools' metrics.
    pub gossip: GossipMetrics,
    /// `consul_client_rpc`: requests a client agent sent to a server.
    pub client_rpc: IntCounter,
    /// `consul_client_rpc_failed`: of those, the ones no server answered.
    pub client_rpc_failed: IntCounter,
    /// `isthmus_dns_view_names`: names a client agent's DNS view keeps current.
    pub dns_view_names: IntGauge,
    /// `isthmus_dns_view_refreshes_total{result}`: the view's fetches, `ok` or `error`.
    pub dns_view_refreshes: IntCounterVec,
    /// Sessions, locks and user events.
    pub coordination: CoordinationMetrics,
}

/// Creates metrics and registers them.
struct Reg(Registry);

impl Reg {
    fn histogram(&self, name: &str, help: &str) -> Result<Histogram, prometheus::Error> {
        let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(ms_buckets()))?;
        self.0.register(Box::new(h.clone()))?;
        Ok(h)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        let c = IntCounter::new(name, help)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        let g = IntGauge::new(name, help)?;
        self.0.register(Box::new(g.clone()))?;
        Ok(g)
    }

    fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// A counter with one label whose `values` are present (at 0) from the start.
    fn present(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        let c = self.counter_vec(name, help, &[label])?;
        for value in values {
            c.with_label_values(&[*value]);
        }
        Ok(c)
    }
}

/// Sessions, locks and user events (Consul's names).
pub struct CoordinationMetrics {
    /// `consul_session_apply`: time to create or destroy a session through Raft, ms.
    pub session_apply: Histogram,
    /// `consul_session_ttl_active`: TTL sessions the leader keeps timers for.
    pub session_ttl_active: IntGauge,
    /// `consul_session_ttl_invalidate`: time to invalidate a session whose TTL ran out, ms.
    pub session_ttl_invalidate: Histogram,
    /// `isthmus_kv_lock_attempts_total{outcome}`: `?acquire` attempts (`acquired`, `held`,
    /// `lock_delay`).
    pub lock_attempts: IntCounterVec,
    /// `consul_serf_events`: user events this agent received and kept.
    pub serf_events: IntCounter,
    /// `isthmus_user_events_fired_total`: user events fired on this agent.
    pub events_fired: IntCounter,
    /// `isthmus_acl_denied_total`: requests refused for their token.
    pub acl_denied: IntCounter,
    /// `consul_leader_replication_acl_policies_status`: 1 while a secondary's leader
    /// copies the primary's ACLs, 0 while it fails.
    pub acl_replication_status: IntGauge,
    /// `consul_leader_replication_acl_policies_index`: the primary's ACL index copied.
    pub acl_replication_index: IntGauge,
    /// `isthmus_acl_replication_errors_total`: replication polls that failed.
    pub acl_replication_errors: IntCounter,
    /// `isthmus_acl_replication_applied_total`: changes of the primary's ACLs applied here.
    pub acl_replication_applied: IntCounter,
}

impl CoordinationMetrics {
    fn new(r: &Reg) -> Result<CoordinationMetrics, prometheus::Error> {
        Ok(CoordinationMetrics {
            session_apply: r.histogram(
                "consul_session_apply",
                "Time to create or destroy a session through Raft, in milliseconds.",
            )?,
            session_ttl_active: r.gauge(
                "consul_session_ttl_active",
                "TTL sessions whose timers this server keeps (the leader).",
            )?,
            session_ttl_invalidate: r.histogram(
                "consul_session_ttl_invalidate",
                "Time to invalidate a session whose TTL ran out, in milliseconds.",
            )?,
            lock_attempts: r.present(
                "isthmus_kv_lock_attempts_total",
                "KV ?acquire attempts by outcome: acquired, held (by another session), lock_delay.",
                "outcome",
                &["acquired", "held", "lock_delay"],
            )?,
            serf_events: r.counter(
                "consul_serf_events",
                "User events this agent received and kept.",
            )?,
            events_fired: r.counter(
                "isthmus_user_events_fired_total",
                "User events fired on this agent.",
            )?,
            acl_denied: r.counter(
                "isthmus_acl_denied_total",
                "Requests refused for what their token may do (403 Permission denied).",
            )?,
            acl_replication_status: r.gauge(
                "consul_leader_replication_acl_policies_status",
                "1 while this secondary datacenter's leader copies the primary's ACLs, 0 while it fails.",
            )?,
            acl_replication_index: r.gauge(
                "consul_leader_replication_acl_policies_index",
                "The primary's ACL index this datacenter's copy is at.",
            )?,
            acl_replication_errors: r.counter(
                "isthmus_acl_replication_errors_total",
                "ACL replication polls of the primary that failed.",
            )?,
            acl_replication_applied: r.counter(
                "isthmus_acl_replication_applied_total",
                "Changes of the primary's ACLs applied to this datacenter's copy.",
            )?,
        })
    }
}

/// The gossip pools' metrics (LAN and WAN, keyring operations).
pub struct GossipMetrics {
    /// `consul_serf_member_join` / `_failed` / `_left`: membership events (`event` label).
    pub serf_members: IntCounterVec,
    /// `isthmus_gossip_dropped_packets_total{pool,reason}`: gossip packets dropped.
    pub gossip_dropped: IntCounterVec,
    /// `isthmus_serf_wan_member_events_total{event}`: WAN membership events (servers).
    pub wan_members: IntCounterVec,
    /// `isthmus_keyring_operations_total{op,outcome}`: keyring operations this server ran.
    pub keyring_ops: IntCounterVec,
    /// `isthmus_wan_health_score`: the WAN pool's local health score.
    pub wan_health_score: IntGauge,
    /// `isthmus_wan_gossip_datagrams_dropped_total`: WAN gossip datagrams a server could
    /// not send (no gateway link, too large) or had no room to take.
    pub wan_datagrams_dropped: IntCounter,
    /// `consul_memberlist_health_score`: local health (0 healthy, up to 8 when this node
    /// runs late and lengthens its suspicions).
    pub memberlist_health_score: IntGauge,
}

impl GossipMetrics {
    fn new(r: &Reg) -> Result<GossipMetrics, prometheus::Error> {
        // Present from the start, so that `increase()` sees the first event.
        let wan_members = r.present(
            "isthmus_serf_wan_member_events_total",
            "WAN membership events seen by this server: join, failed, left.",
            "event",
            &["join", "failed", "left"],
        )?;
        Ok(GossipMetrics {
        serf_members: r.counter_vec(
            "consul_serf_member_events",
            "LAN membership events: join, failed, left.",
            &["event"],
        )?,
        gossip_dropped: r.counter_vec(
            "isthmus_gossip_dropped_packets_total",
            "Gossip packets dropped, by pool and reason (no_key: no installed key opens it).",
            &["pool", "reason"],
        )?,
        keyring_ops: r.counter_vec(
            "isthmus_keyring_operations_total",
            "Keyring operations (list, install, use, remove) this server ran across the federation, by outcome.",
            &["op", "outcome"],
        )?,
        wan_health_score: r.gauge(
            "isthmus_wan_health_score",
            "Local health score of the WAN pool (as consul_memberlist_health_score for the LAN).",
        )?,
        wan_datagrams_dropped: r.counter(
            "isthmus_wan_gossip_datagrams_dropped_total",
            "WAN gossip datagrams not sent (no gateway link, too large) or not taken (inbox full).",
        )?,
        memberlist_health_score: r.gauge(
            "consul_memberlist_health_score",
            "Local health score: 0 is healthy; higher when this node runs late (its suspicions of others then take longer).",
        )?,
            wan_members,
        })
    }
}

fn ms_buckets() -> Vec<f64> {
    vec![
        0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
    ]
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let r = Reg(Registry::new());
        let reasons: Vec<&str> = pki::RejectReason::ALL
            .iter()
            .map(|r| r.as_label())
            .collect();
        let tls_rejected = r.present(
            "isthmus_tls_rejected_total",
            "Peer certificates refused, by reason.",
            "reason",
            &reasons,
        )?;
        Ok(Metrics {
            kvs_apply: r.histogram(
                "consul_kvs_apply",
                "Time to apply a KV write through Raft, in milliseconds.",
            )?,
            txn_apply: r.histogram(
                "consul_txn_apply",
                "Time to apply a transaction through Raft, in milliseconds.",
            )?,
            raft_commit_time: r.histogram(
                "consul_raft_commitTime",
                "Time from a write reaching the leader to its commit, in milliseconds.",
            )?,
            raft_apply: r.counter("consul_raft_apply", "Writes applied through Raft.")?,
            rpc_request: r.counter("consul_rpc_request", "Requests served by this server.")?,
            rpc_forwarded: r.counter(
                "isthmus_rpc_forwarded_total",
                "Requests forwarded to the leader.",
            )?,
            rpc_cross_dc: r.counter(
                "consul_rpc_cross_dc",
                "Requests this server sent to another datacenter through a gateway.",
            )?,
            https_handshake_failures: r.counter(
                "isthmus_https_handshake_failures_total",
                "HTTPS connections refused in the TLS handshake.",
            )?,
            http_connections: r.gauge(
                "isthmus_http_connections",
                "HTTP(S) connections open now.",
            )?,
            http_connections_rejected: r.counter(
                "isthmus_http_connections_rejected_total",
                "HTTP(S) connections answered 429 past limits.http_max_conns_per_client.",
            )?,
            blocking_coalesced: r.counter(
                "isthmus_blocking_queries_coalesced_total",
                "Blocking queries that joined the same query already on its way to a server.",
            )?,
            blocking_upstream: r.gauge(
                "isthmus_blocking_queries_upstream",
                "Blocking queries this client agent holds open to its servers.",
            )?,
            tombstones_reaped: r.counter(
                "isthmus_kv_tombstones_reaped_total",
                "KV tombstones removed by the leader's tombstone GC.",
            )?,
            raft_state_leader: r.counter(
                "consul_raft_state_leader",
                "Times this server became the leader.",
            )?,
            raft_state_candidate: r.counter(
                "consul_raft_state_candidate",
                "Times this server started an election.",
            )?,
            server_is_leader: r.gauge("consul_server_isLeader", "1 if this server is the leader.")?,
            raft_leader_last_contact: r.gauge(
                "consul_raft_leader_lastContact",
                "Milliseconds since the leader was last heard from.",
            )?,
            raft_applied_index: r.gauge("isthmus_raft_applied_index", "Last applied Raft index.")?,
            raft_term: r.gauge("isthmus_raft_term", "Current Raft term.")?,
            autopilot_healthy: r.gauge(
                "consul_autopilot_healthy",
                "1 when every voter is replicating (leader only).",
            )?,
            tls_rejected,
            http_requests: r.counter_vec(
                "isthmus_http_requests_total",
                "HTTP requests served, by method and status code.",
                &["method", "code"],
            )?,
            dns_queries: r.counter_vec(
                "isthmus_dns_queries_total",
                "DNS queries answered, by response code; `recursed` and `recursor_failed` count names sent to the recursors.",
                &["rcode"],
            )?,
            gossip: GossipMetrics::new(&r)?,
            client_rpc: r.counter(
                "consul_client_rpc",
                "Requests this client agent sent to a server.",
            )?,
            client_rpc_failed: r.counter(
                "consul_client_rpc_failed",
                "Requests this client agent sent that no server answered.",
            )?,
            dns_view_names: r.gauge(
                "isthmus_dns_view_names",
                "Names this client agent's DNS view keeps current with blocking queries.",
            )?,
            dns_view_refreshes: r.counter_vec(
                "isthmus_dns_view_refreshes_total",
                "Fetches of the client agent's DNS view, by result (ok, error).",
                &["result"],
            )?,
            coordination: CoordinationMetrics::new(&r)?,
            registry: r.0,
        })
    }

    /// Consul's JSON form of `/v1/agent/metrics` (go-metrics' in-memory sink): `Gauges`,
    /// `Counters` and `Samples` (histograms: count, sum, mean), names dotted as Consul's
    /// (`consul_raft_apply` is `consul.raft.apply`), labels as a map.
    pub fn render_json(&self, now: &str) -> serde_json::Value {
        use prometheus::proto::MetricType;
        let mut gauges = Vec::new();
        let mut counters = Vec::new();
        let mut samples = Vec::new();
        for family in self.registry.gather() {
            let name = family.name().replace('_', ".");
            for metric in family.get_metric() {
                let labels: serde_json::Map<String, serde_json::Value> = metric
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_owned(), serde_json::Value::from(l.value())))
                    .collect();
                match family.get_field_type() {
                    MetricType::GAUGE => gauges.push(serde_json::json!({
                        "Name": name, "Value": metric.get_gauge().get_value(), "Labels": labels,
                    })),
                    MetricType::COUNTER => {
                        let value = metric.get_counter().get_value();
                        counters.push(serde_json::json!({
                            "Name": name, "Count": value as u64, "Rate": 0.0, "Sum": value,
                            "Min": 1.0, "Max": 1.0, "Mean": 1.0, "Stddev": 0.0, "Labels": labels,
                        }));
                    }
                    MetricType::HISTOGRAM => {
                        let histogram = metric.get_histogram();
                        let count = histogram.get_sample_count();
                        let sum = histogram.get_sample_sum();
                        let mean = if count == 0 { 0.0 } else { sum / count as f64 };
                        samples.push(serde_json::json!({
                            "Name": name, "Count": count, "Rate": 0.0, "Sum": sum,
                            "Min": 0.0, "Max": 0.0, "Mean": mean, "Stddev": 0.0, "Labels": labels,
                        }));
                    }
                    _ => {}
                }
            }
        }
        serde_json::json!({
            "Timestamp": now,
            "Gauges": gauges,
            "Points": [],
            "Counters": counters,
            "Samples": samples,
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

/// Counts refused peer certificates by reason, and logs the first refusal of each reason
/// (later ones only count: a misconfigured peer retrying must not flood the log).
pub fn rejection_observer(metrics: Arc<Metrics>) -> pki::RejectionObserver {
    let logged = parking_lot::Mutex::new(std::collections::HashSet::new());
    Arc::new(move |rejection: &pki::Rejection| {
        let reason = rejection.reason.as_label();
        metrics.tls_rejected.with_label_values(&[reason]).inc();
        let first = logged.lock().insert(reason);
        if first {
            tracing::warn!(reason, %rejection, "refused a peer certificate (further refusals for this reason are only counted in isthmus_tls_rejected_total)");
        }
    })
}

/// Follows Raft's state to keep the Raft gauges and transition counters current.
pub async fn follow_raft(server: Arc<Server>, metrics: Arc<Metrics>, cancel: CancellationToken) {
    let mut watch = server.raft.metrics();
    let mut last_state = openraft::ServerState::Learner;
    let mut refresh = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            changed = watch.changed() => if changed.is_err() { return },
            _ = refresh.tick() => {}
        }
        let current = watch.borrow_and_update().clone();
        if current.state != last_state {
            match current.state {
                openraft::ServerState::Leader => metrics.raft_state_leader.inc(),
                openraft::ServerState::Candidate => metrics.raft_state_candidate.inc(),
                _ => {}
            }
            tracing::info!(from = ?last_state, to = ?current.state, term = current.current_term, "raft state changed");
            last_state = current.state;
        }
        let is_leader = current.state == openraft::ServerState::Leader;
        metrics.server_is_leader.set(i64::from(is_leader));
        metrics.raft_term.set(current.current_term as i64);
        metrics
            .raft_applied_index
            .set(current.last_applied.map_or(0, |id| id.index) as i64);
        metrics
            .raft_leader_last_contact
            .set(server.last_contact_ms() as i64);
        if let Some(replication) = &current.replication {
            let last = current.last_log_index.unwrap_or(0);
            let healthy = replication
                .values()
                .all(|matched| last.saturating_sub(matched.map_or(0, |id| id.index)) < 1000);
            metrics.autopilot_healthy.set(i64::from(healthy));
        }
    }
}

/// The WAN pool's events, into the WAN metrics.
pub struct WanEvents(pub Arc<Metrics>);

impl crate::gossip::pool::PoolEvents for WanEvents {
    fn dropped(&self, reason: &'static str) {
        self.0
            .gossip
            .gossip_dropped
            .with_label_values(&["wan", reason])
            .inc();
    }

    fn member(&self, status: &'static str) {
        self.0.gossip.wan_members.with_label_values(&[status]).inc();
    }

    fn health(&self, score: u32) {
        self.0.gossip.wan_health_score.set(i64::from(score));
    }
}

impl crate::gossip::pool::PoolEvents for Metrics {
    fn dropped(&self, reason: &'static str) {
        self.gossip
            .gossip_dropped
            .with_label_values(&["lan", reason])
            .inc();
    }

    fn member(&self, status: &'static str) {
        self.gossip.serf_members.with_label_values(&[status]).inc();
    }

    fn health(&self, score: u32) {
        self.gossip.memberlist_health_score.set(i64::from(score));
    }
}
