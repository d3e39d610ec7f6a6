//! Every task the agent starts goes through [`spawn`], so that none is detached: when the
//! agent stops, `run` closes the tracker and waits (with a deadline) for them all.

use std::future::Future;
use std::sync::LazyLock;

use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

static TRACKER: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// The agent's tracker.
pub fn tracker() -> &'static TaskTracker {
    &TRACKER
}

/// Spawns `task` on the current runtime, tracked.
pub fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    TRACKER.spawn(task)
}
