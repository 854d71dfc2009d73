//! Bounded waiting on the network: capped exponential backoff with jitter,
//! and a budget of consecutive failures and outage time after which a loop
//! gives up.

use std::time::{Duration, Instant};

use crate::cli::RetryArgs;
use crate::error::CliError;

/// A uniformly random duration in `0..=max`.
fn random_up_to(max: Duration) -> Duration {
    let mut bytes = [0_u8; 8];
    let _ = getrandom::fill(&mut bytes);
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(u64::from_le_bytes(bytes) % nanos.saturating_add(1))
}

/// Wait before attempt `attempt` (1 = the first retry): `base` doubled per
/// attempt, capped at `cap`, with "equal jitter" (half fixed, half random)
/// so that many clients do not reconnect in lock-step.
#[must_use]
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let full = base.saturating_mul(1_u32 << exp).min(cap);
    full / 2 + random_up_to(full / 2)
}

/// Consecutive failures and outage time, against their limits.
#[derive(Debug)]
pub struct Budget {
    max_retries: u32,
    max_time: Duration,
    pub max_backoff: Duration,
    failures: u32,
    since: Option<Instant>,
}

impl Budget {
    #[must_use]
    pub fn new(args: &RetryArgs) -> Self {
        Self {
            max_retries: args.max_retries,
            max_time: args.max_retry_time,
            max_backoff: args.max_backoff,
            failures: 0,
            since: None,
        }
    }

    /// Something worked: the count starts again.
    pub fn success(&mut self) {
        self.failures = 0;
        self.since = None;
    }

    /// Records a failure; `Some(attempt)` while retrying is still allowed.
    pub fn failure(&mut self) -> Option<u32> {
        self.failures = self.failures.saturating_add(1);
        let since = *self.since.get_or_insert_with(Instant::now);
        (self.failures <= self.max_retries && since.elapsed() <= self.max_time)
            .then_some(self.failures)
    }

    /// The wait before retry `attempt`, at least `hint` (a `Retry-After`).
    #[must_use]
    pub fn delay(&self, base: Duration, attempt: u32, hint: Option<Duration>) -> Duration {
        let d = backoff(base, self.max_backoff, attempt);
        hint.map_or(d, |h| d.max(h.min(self.max_backoff)))
    }
}

/// Whether a failure may go away by itself: transport problems, 429, and
/// 502–504.
#[must_use]
pub fn retryable(e: &CliError) -> bool {
    match e {
        CliError::Transport { .. } => true,
        CliError::Api { problem, .. } => matches!(problem.status, 429 | 502..=504),
        _ => false,
    }
}

/// The `Retry-After` of a failure, if it has one.
#[must_use]
pub fn retry_after(e: &CliError) -> Option<Duration> {
    match e {
        CliError::Api {
            retry_after: Some(s),
            ..
        } => Some(Duration::from_secs(*s)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revaer_api_models::Problem;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        for attempt in 1..30 {
            let d = backoff(base, cap, attempt);
            let full = (base * 2_u32.pow(attempt.min(20) - 1)).min(cap);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert_eq!(backoff(Duration::ZERO, cap, 3), Duration::ZERO);
    }

    #[test]
    fn the_budget_counts_consecutive_failures() {
        let mut b = Budget::new(&RetryArgs {
            max_retries: 2,
            max_retry_time: Duration::from_secs(60),
            max_backoff: Duration::from_secs(1),
        });
        assert_eq!(b.failure(), Some(1));
        assert_eq!(b.failure(), Some(2));
        assert_eq!(b.failure(), None);
        b.success();
        assert_eq!(b.failure(), Some(1));
        let d = b.delay(Duration::from_millis(10), 1, Some(Duration::from_secs(5)));
        assert_eq!(d, Duration::from_secs(1));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let api = |status| CliError::Api {
            problem: Box::new(Problem::new(status, "x")),
            retry_after: Some(2),
            had_key: true,
        };
        assert!(retryable(&api(429)));
        assert!(retryable(&api(503)));
        assert!(!retryable(&api(404)));
        assert!(!retryable(&api(500)));
        assert!(retryable(&CliError::Transport {
            url: String::new(),
            message: String::new()
        }));
        assert!(!retryable(&CliError::usage("x")));
        assert_eq!(retry_after(&api(429)), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&CliError::usage("x")), None);
    }
}
