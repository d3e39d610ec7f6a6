//! Stopping, as Consul's agent stops: which signal makes the agent leave the cluster first
//! (`leave_on_terminate`, `skip_leave_on_interrupt`, with Consul's defaults for servers and
//! clients), and the graceful leave itself, shared by signals and `/v1/agent/leave`: Raft
//! first (a server hands its vote back through the leader), then goodbyes to the WAN and LAN
//! pools (so peers see `left`, not `failed`), then a short drain so the goodbyes go out.

use std::time::Duration;

use crate::gossip::pool::Pool;
use crate::server::Server;

/// Consul's `leave_drain_time`: goodbyes are handed to the network before the agent stops
/// (WAN ones ride QUIC datagrams, sent by the connection's own task).
pub const LEAVE_DRAIN: Duration = Duration::from_secs(1);

/// Longest a leave on a signal may take before the agent stops anyway.
pub const LEAVE_DEADLINE: Duration = Duration::from_secs(15);

/// The signal that asks the agent to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (a service manager's stop).
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

/// Pure: whether `signal` makes this agent leave before it stops. Consul's defaults: a
/// server stays a member on either signal (its data and vote are expected back), a client
/// leaves on either.
pub fn leaves_on(
    signal: Signal,
    server: bool,
    leave_on_terminate: Option<bool>,
    skip_leave_on_interrupt: Option<bool>,
) -> bool {
    match signal {
        Signal::Terminate => leave_on_terminate.unwrap_or(!server),
        Signal::Interrupt => !skip_leave_on_interrupt.unwrap_or(server),
    }
}

/// Leaves the cluster: Raft (servers), then the WAN pool, then the LAN pool, then drains.
/// A server Raft refuses to let go (no leader) stays a member and says so.
pub async fn graceful_leave(
    server: Option<&Server>,
    wan: Option<&Pool>,
    lan: &Pool,
) -> anyhow::Result<()> {
    if let Some(server) = server {
        server.leave().await?;
    }
    // Only once Raft let this server go: say goodbye to the gossip pools, then stop.
    if let Some(wan) = wan {
        wan.leave().await;
    }
    lan.leave().await;
    tokio::time::sleep(LEAVE_DRAIN).await;
    Ok(())
}

/// Watches for SIGTERM and SIGINT: leaves the cluster first when the signal says so
/// ([`leaves_on`] with `(leave_on_terminate, skip_leave_on_interrupt)`), within
/// [`LEAVE_DEADLINE`], then cancels `cancel`, which stops the agent.
pub fn on_signals(
    signals: Signals,
    server: Option<std::sync::Arc<Server>>,
    wan: Option<Pool>,
    lan: Pool,
    settings: (Option<bool>, Option<bool>),
    cancel: tokio_util::sync::CancellationToken,
) {
    crate::tasks::spawn(async move {
        let signal = tokio::select! {
            signal = signals.wait() => signal,
            // Stopped another way (`leave`): nothing to wait for.
            () = cancel.cancelled() => return,
        };
        let (on_terminate, skip_on_interrupt) = settings;
        if leaves_on(signal, server.is_some(), on_terminate, skip_on_interrupt) {
            tracing::info!(
                ?signal,
                "caught a signal: leaving the cluster, then shutting down"
            );
            match tokio::time::timeout(
                LEAVE_DEADLINE,
                graceful_leave(server.as_deref(), wan.as_ref(), &lan),
            )
            .await
            {
                Ok(Ok(())) => tracing::info!("left the cluster"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not leave the cluster; stopping as a member")
                }
                Err(_) => tracing::warn!(
                    "leaving took longer than {LEAVE_DEADLINE:?}; stopping as a member"
                ),
            }
        } else {
            tracing::info!(?signal, "caught a signal, shutting down (still a member: leave_on_terminate / skip_leave_on_interrupt)");
        }
        cancel.cancel();
    });
}

/// SIGTERM and SIGINT, caught from the moment the agent starts: before they are, the
/// default action kills the process, and an agent already in the gossip pool would vanish
/// without leaving.
pub struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Catches both now (inside the runtime).
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    /// Waits for either.
    pub async fn wait(mut self) -> Signal {
        #[cfg(unix)]
        {
            let terminate = async {
                match self.terminate.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match self.interrupt.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            };
            tokio::select! {
                () = interrupt => Signal::Interrupt,
                () = terminate => Signal::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Interrupt
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuls_defaults_and_overrides() {
        use Signal::*;
        // Defaults: servers stay, clients leave.
        assert!(!leaves_on(Terminate, true, None, None));
        assert!(!leaves_on(Interrupt, true, None, None));
        assert!(leaves_on(Terminate, false, None, None));
        assert!(leaves_on(Interrupt, false, None, None));
        // Overrides.
        assert!(leaves_on(Terminate, true, Some(true), None));
        assert!(!leaves_on(Terminate, false, Some(false), None));
        assert!(leaves_on(Interrupt, true, None, Some(false)));
        assert!(!leaves_on(Interrupt, false, None, Some(true)));
    }
}
