//! Running a gateway until SIGINT/SIGTERM: the QUIC endpoint, the metrics listener and the
//! RTT sampler.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::ValidatedConfig;
use crate::gateway::Gateway;
use crate::metrics::Metrics;

/// Runs the gateway until a signal.
pub async fn run(config: ValidatedConfig) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new()?);
    let cancel = CancellationToken::new();
    let listen = config.listen;
    let metrics_listen = config.metrics_listen;
    let node_name = config.config.node_name.clone();
    let datacenter = config.config.datacenter.clone();
    let remotes: Vec<String> = config
        .remote_gateways
        .iter()
        .map(|(dc, node, addr)| format!("{node}.{dc} ({addr})"))
        .collect();
    let listener = tokio::net::TcpListener::bind(metrics_listen)
        .await
        .with_context(|| format!("binding the metrics port {metrics_listen}"))?;
    let gateway = Gateway::start(config, metrics.clone(), cancel.clone())
        .with_context(|| format!("starting the gateway on {listen}"))?;
    metrics.up.set(1.0);
    let served = metrics.clone();
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = served.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    metrics.render(),
                )
            }
        }),
    );
    println!("==> Isthmus WAN gateway");
    println!("        Node name: '{node_name}'");
    println!("       Datacenter: '{datacenter}'");
    println!("             QUIC: {listen} (dc-links, WAN links)");
    println!("          Metrics: http://{metrics_listen}/metrics");
    println!("  Remote gateways: {}", remotes.join(", "));
    let sampler = gateway.clone();
    let sampling = cancel.clone();
    crate::tasks::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = sampling.cancelled() => return,
                _ = tick.tick() => sampler.record_rtt(),
            }
        }
    });
    let signals = cancel.clone();
    crate::tasks::spawn(async move {
        wait_for_signal().await;
        tracing::info!("caught a signal, shutting down");
        signals.cancel();
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .await
        .context("serving metrics")?;
    gateway.close().await;
    let tasks = crate::tasks::tracker();
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 5s");
    }
    tracing::info!("gateway stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
