//! How a check's results become its status, as Consul decides: a run is passing, warning or
//! critical; `success_before_passing` consecutive passes are needed to turn passing,
//! `failures_before_critical` consecutive non-passing runs to turn warning or critical; a TTL
//! check turns critical when its TTL runs out without an update; output is kept bounded.
//! Pure: the clock comes in as an argument.

use std::time::{Duration, Instant};

use wire::records::HealthStatus;

/// Consul's default limit on kept output.
pub const MAX_OUTPUT: usize = 4096;

/// The thresholds of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Thresholds {
    /// Consecutive passes before the status turns passing (0 and 1: at once).
    pub success_before_passing: u32,
    /// Consecutive failures before the status turns warning or critical (0 and 1: at once).
    pub failures_before_critical: u32,
    /// Deregister the service once critical this long.
    pub deregister_critical_after: Option<Duration>,
}

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// What the run found.
    pub status: HealthStatus,
    /// What it printed or answered.
    pub output: String,
}

/// A status change to sync to the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The new status.
    pub status: HealthStatus,
    /// The output that goes with it.
    pub output: String,
}

/// A check's status and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    status: HealthStatus,
    output: String,
    successes: u32,
    failures: u32,
    critical_since: Option<Instant>,
    ttl_deadline: Option<Instant>,
}

/// Keeps at most [`MAX_OUTPUT`] bytes, cut on a character boundary, saying how much was cut.
pub fn bound_output(output: &str) -> String {
    if output.len() <= MAX_OUTPUT {
        return output.to_owned();
    }
    let cut = (0..=MAX_OUTPUT)
        .rev()
        .find(|i| output.is_char_boundary(*i))
        .unwrap_or(0);
    format!(
        "{}\n... (output truncated: kept {cut} of {} bytes)",
        &output[..cut],
        output.len()
    )
}

/// Consul's reading of an HTTP check's status code: 2xx passing, 429 warning, else critical.
pub fn http_status(code: u16) -> HealthStatus {
    match code {
        200..=299 => HealthStatus::Passing,
        429 => HealthStatus::Warning,
        _ => HealthStatus::Critical,
    }
}

impl CheckState {
    /// A new check, in `initial` status (Consul starts checks critical unless told).
    pub fn new(now: Instant, initial: HealthStatus) -> CheckState {
        CheckState {
            status: initial,
            output: String::new(),
            successes: 0,
            failures: 0,
            critical_since: (initial == HealthStatus::Critical).then_some(now),
            ttl_deadline: None,
        }
    }

    /// The current status.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// The output of the current status.
    pub fn output(&self) -> &str {
        &self.output
    }

    /// Records one run; returns the change to sync, if the status or output changed.
    pub fn record(
        &mut self,
        now: Instant,
        result: RunResult,
        thresholds: &Thresholds,
    ) -> Option<Change> {
        let output = bound_output(&result.output);
        let apply = if result.status == HealthStatus::Passing {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            self.successes >= thresholds.success_before_passing.max(1)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            self.failures >= thresholds.failures_before_critical.max(1)
        };
        if !apply {
            return None;
        }
        self.set(now, result.status, output)
    }

    fn set(&mut self, now: Instant, status: HealthStatus, output: String) -> Option<Change> {
        if status == self.status && output == self.output {
            return None;
        }
        if status == HealthStatus::Critical {
            self.critical_since.get_or_insert(now);
        } else {
            self.critical_since = None;
        }
        self.status = status;
        self.output = output.clone();
        Some(Change { status, output })
    }

    /// A TTL check's update (`/v1/agent/check/pass|warn|fail`): applies at once and
    /// restarts the TTL.
    pub fn update_ttl(
        &mut self,
        now: Instant,
        ttl: Duration,
        status: HealthStatus,
        note: &str,
    ) -> Option<Change> {
        self.ttl_deadline = Some(now + ttl);
        self.successes = 0;
        self.failures = 0;
        self.set(now, status, bound_output(note))
    }

    /// When a TTL check expires (if it has been updated or started).
    pub fn ttl_deadline(&self) -> Option<Instant> {
        self.ttl_deadline
    }

    /// Takes back a TTL check's status kept from before a restart, due to run out at
    /// `deadline`.
    pub fn restore_ttl(
        &mut self,
        now: Instant,
        deadline: Instant,
        status: HealthStatus,
        output: &str,
    ) {
        self.ttl_deadline = Some(deadline);
        self.set(now, status, bound_output(output));
    }

    /// Starts a TTL check's clock (at registration).
    pub fn start_ttl(&mut self, now: Instant, ttl: Duration) {
        self.ttl_deadline = Some(now + ttl);
    }

    /// Turns a TTL check critical once its TTL ran out.
    pub fn expire_ttl(&mut self, now: Instant) -> Option<Change> {
        match self.ttl_deadline {
            Some(deadline) if now >= deadline => {
                self.ttl_deadline = None;
                self.set(now, HealthStatus::Critical, "TTL expired".to_owned())
            }
            _ => None,
        }
    }

    /// Whether the service should be deregistered (critical for longer than allowed).
    pub fn should_deregister(&self, now: Instant, thresholds: &Thresholds) -> bool {
        match (self.critical_since, thresholds.deregister_critical_after) {
            (Some(since), Some(after)) => now.duration_since(since) >= after,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    fn run(status: HealthStatus) -> RunResult {
        RunResult {
            status,
            output: format!("{status}"),
        }
    }

    /// Feeds results in order; shows the status after each and whether it changed.
    fn check(thresholds: Thresholds, results: &[HealthStatus]) -> String {
        let start = Instant::now();
        let mut state = CheckState::new(start, Critical);
        results
            .iter()
            .enumerate()
            .map(|(n, status)| {
                let changed = state.record(
                    start + Duration::from_secs(n as u64),
                    run(*status),
                    &thresholds,
                );
                format!(
                    "{status}->{}{}",
                    state.status(),
                    if changed.is_some() { "*" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn thresholds_debounce_flapping() {
        let at_once = Thresholds::default();
        assert_eq!(
            check(at_once, &[Passing, Passing, Critical, Warning]),
            "passing->passing* passing->passing critical->critical* warning->warning*"
        );
        let debounced = Thresholds {
            success_before_passing: 2,
            failures_before_critical: 3,
            deregister_critical_after: None,
        };
        assert_eq!(
            check(debounced, &[Passing, Passing, Critical, Critical, Passing, Critical, Critical, Critical]),
            "passing->critical passing->passing* critical->passing critical->passing passing->passing critical->passing critical->passing critical->critical*"
        );
    }

    #[test]
    fn ttl_checks_expire_and_updates_restart_them() {
        let start = Instant::now();
        let ttl = Duration::from_secs(30);
        let mut state = CheckState::new(start, Critical);
        state.start_ttl(start, ttl);
        assert_eq!(
            state
                .update_ttl(start + Duration::from_secs(5), ttl, Passing, "ok")
                .map(|c| c.status),
            Some(Passing)
        );
        assert_eq!(
            state.expire_ttl(start + Duration::from_secs(30)),
            None,
            "updated at 5s, so alive until 35s"
        );
        assert_eq!(
            state.expire_ttl(start + Duration::from_secs(35)),
            Some(Change {
                status: Critical,
                output: "TTL expired".to_owned()
            })
        );
        assert_eq!(
            state.expire_ttl(start + Duration::from_secs(99)),
            None,
            "expires once"
        );
    }

    #[test]
    fn a_service_critical_too_long_is_deregistered() {
        let start = Instant::now();
        let thresholds = Thresholds {
            deregister_critical_after: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        let mut state = CheckState::new(start, Passing);
        state.record(start + Duration::from_secs(10), run(Critical), &thresholds);
        assert!(!state.should_deregister(start + Duration::from_secs(69), &thresholds));
        assert!(state.should_deregister(start + Duration::from_secs(70), &thresholds));
        state.record(start + Duration::from_secs(71), run(Passing), &thresholds);
        assert!(
            !state.should_deregister(start + Duration::from_secs(500), &thresholds),
            "recovery resets the clock"
        );
    }

    #[test]
    fn output_is_bounded_and_http_codes_map_like_consul() {
        let long = "é".repeat(3000);
        let kept = bound_output(&long);
        assert!(
            kept.len() < 4200 && kept.ends_with("(output truncated: kept 4096 of 6000 bytes)"),
            "{}",
            &kept[kept.len() - 60..]
        );
        assert_eq!(bound_output("short"), "short");
        assert_eq!(
            [200, 204, 299, 429, 300, 404, 500, 503].map(http_status),
            [Passing, Passing, Passing, Warning, Critical, Critical, Critical, Critical]
        );
    }
}
