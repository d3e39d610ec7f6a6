//! Blocking queries: `?index=N&wait=D` returns once the index of what was asked for moves
//! past N, or when D (plus up to D/16 of jitter, as Consul) runs out, with the real index of
//! what it read (at least 1), as Consul's: lower than N only when the state went back (a
//! snapshot restore, a rebuilt datacenter), which Consul's clients take as their cue to
//! start again from 0.

use std::time::Duration;

use tokio::time::Instant;

use super::{ApiError, Params};
use crate::raft::state_machine::{StateMachineData, StateMachineStore};

/// Consul's default wait.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Consul's longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// The `?wait` of a request, capped at [`MAX_WAIT`].
pub fn wait_of(params: &Params) -> Result<Duration, ApiError> {
    match params.get("wait") {
        None => Ok(DEFAULT_WAIT),
        Some(text) => {
            let wait: wire::GoDuration = text
                .parse()
                .map_err(|e| ApiError::BadRequest(format!("Invalid wait time: {e}")))?;
            Ok(wait.0.min(MAX_WAIT))
        }
    }
}

/// The `?index` of a request (0 when absent).
pub fn index_of(params: &Params) -> Result<u64, ApiError> {
    match params.get("index") {
        None => Ok(0),
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("Invalid index: {text:?} is not a number"))),
    }
}

/// Runs `read` (which returns the index of what it read and the answer) until the index
/// passes the requested one or the wait runs out.
pub async fn run<T>(
    state: &StateMachineStore,
    params: &Params,
    read: impl Fn(&StateMachineData) -> (u64, T),
) -> Result<(u64, T), ApiError> {
    let min_index = index_of(params)?;
    let wait = wait_of(params)?;
    let mut applied = state.watch_applied();
    let lock_error = |e: std::io::Error| ApiError::Internal(e.to_string());
    if min_index == 0 {
        return state
            .read(|data| read(data))
            .map(|(index, answer)| (index.max(1), answer))
            .map_err(lock_error);
    }
    let jitter = Duration::from_nanos(jitter_nanos(wait.as_nanos() as u64 / 16));
    let deadline = Instant::now() + wait + jitter;
    loop {
        applied.borrow_and_update();
        let (index, answer) = state.read(|data| read(data)).map_err(lock_error)?;
        if index > min_index {
            return Ok((index, answer));
        }
        // The state is behind the client (it was restored or rebuilt since the client
        // read N): answer now with the real index, so the client resets at once.
        if index < min_index && *applied.borrow() < min_index {
            return Ok((index.max(1), answer));
        }
        let woke = tokio::select! {
            changed = applied.changed() => changed.is_ok(),
            _ = tokio::time::sleep_until(deadline) => false,
        };
        if !woke {
            let (index, answer) = state.read(|data| read(data)).map_err(lock_error)?;
            return Ok((index.max(1), answer));
        }
    }
}

fn jitter_nanos(bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    nanos % bound
}
