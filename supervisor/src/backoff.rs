//! Restart delays for crashed workers: capped exponential backoff with
//! jitter.
//!
//! The first restart is quick (a one-off crash costs ~100 ms of downtime);
//! each further consecutive crash doubles the delay up to the cap, so a
//! crash-looping worker cannot burn the CPU. Jitter (up to −20 %) keeps
//! several crashing workers from restarting in lock-step. A worker that stays
//! up long enough has its backoff reset.

use std::time::Duration;

use revaer_config::SupervisorConfig;

/// Consecutive-crash counter for one worker.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    consecutive_crashes: u32,
}

impl Backoff {
    /// Forgets earlier crashes (the worker proved stable).
    pub fn reset(&mut self) {
        self.consecutive_crashes = 0;
    }

    /// The delay before the next restart; `jitter` in `[0, 1]` scales the
    /// reduction (0 = no reduction, 1 = −20 %).
    pub fn next_delay(&mut self, config: &SupervisorConfig, jitter: f64) -> Duration {
        let exponent = self.consecutive_crashes.min(32);
        self.consecutive_crashes = self.consecutive_crashes.saturating_add(1);
        let base = config
            .restart_backoff_initial_ms
            .saturating_mul(1_u64.checked_shl(exponent).unwrap_or(u64::MAX))
            .min(config.restart_backoff_max_ms);
        let jitter = jitter.clamp(0.0, 1.0);
        // Millisecond values stay far below 2^52, so the f64 round trip is exact enough.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let jittered = (base as f64 * (1.0 - 0.2 * jitter)).round() as u64;
        Duration::from_millis(jittered.max(1))
    }
}

/// A uniformly random jitter factor in `[0, 1]` from the OS RNG (0 when the
/// RNG fails: jitter is a nicety, not a correctness property).
#[must_use]
pub fn random_jitter() -> f64 {
    let mut bytes = [0_u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(initial: u64, max: u64) -> SupervisorConfig {
        SupervisorConfig {
            restart_backoff_initial_ms: initial,
            restart_backoff_max_ms: max,
            ..SupervisorConfig::default()
        }
    }

    #[test]
    fn doubles_then_caps() {
        let cfg = config(100, 1000);
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..7)
            .map(|_| b.next_delay(&cfg, 0.0).as_millis())
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn jitter_only_shortens_by_at_most_a_fifth() {
        let cfg = config(100, 1000);
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(&cfg, 1.0).as_millis(), 80);
        for _ in 0..10 {
            let d = b.next_delay(&cfg, random_jitter()).as_millis();
            assert!((80..=1000).contains(&d), "{d}");
        }
    }

    #[test]
    fn reset_starts_over_and_huge_counts_do_not_overflow() {
        let cfg = config(100, 30_000);
        let mut b = Backoff::default();
        for _ in 0..100 {
            assert!(b.next_delay(&cfg, 0.0).as_millis() <= 30_000);
        }
        b.reset();
        assert_eq!(b.next_delay(&cfg, 0.0).as_millis(), 100);
    }
}
