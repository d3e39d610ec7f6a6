//! Keeping a link up: dial, hand the connection to a session, redial when it ends, with a
//! backoff that a working link resets.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long a dial (the QUIC handshake) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The pause between failed dials: 250 ms, doubling up to 5 s; back to 250 ms once a link
/// comes up. Pure: the caller sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first pause.
    pub const INITIAL: Duration = Duration::from_millis(250);
    /// The longest pause.
    pub const MAX: Duration = Duration::from_secs(5);

    /// A backoff at its first pause.
    pub fn new() -> Backoff {
        Backoff {
            next: Self::INITIAL,
        }
    }

    /// The pause to take now; the next one is twice as long, up to [`Backoff::MAX`].
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }

    /// A link came up: the next failure pauses briefly again.
    pub fn reset(&mut self) {
        self.next = Self::INITIAL;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Keeps a link to `addr` (checked as `server_name`) up until `cancel`: dials within
/// [`DIAL_TIMEOUT`], runs `session` on each connection until it returns, and redials with
/// [`Backoff`]. `what` names the link in logs (`dc-link`, `WAN link`).
pub async fn keep_dialled<S, F>(
    endpoint: &quinn::Endpoint,
    client: &quinn::ClientConfig,
    addr: SocketAddr,
    server_name: &str,
    what: &str,
    cancel: &CancellationToken,
    mut session: S,
) where
    S: FnMut(quinn::Connection) -> F,
    F: Future<Output = ()>,
{
    let mut backoff = Backoff::new();
    loop {
        let dialled = async {
            let connecting = endpoint
                .connect_with(client.clone(), addr, server_name)
                .map_err(|e| e.to_string())?;
            tokio::time::timeout(DIAL_TIMEOUT, connecting)
                .await
                .map_err(|_| format!("no handshake within {DIAL_TIMEOUT:?}"))?
                .map_err(|e| e.to_string())
        };
        let dialled = tokio::select! {
            _ = cancel.cancelled() => return,
            dialled = dialled => dialled,
        };
        match dialled {
            Ok(connection) => {
                backoff.reset();
                session(connection).await;
                if cancel.is_cancelled() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(peer = %addr, link = what, error = %e, "dialling failed");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_pause()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let pauses: Vec<u128> = (0..7).map(|_| backoff.next_pause().as_millis()).collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_pause(), Backoff::INITIAL);
    }
}
