//! Per-key rate limits: one token bucket (governor, GCRA) per API key.
//!
//! A key's own `rate_per_minute` wins; otherwise `[api]
//! default_rate_per_minute` applies (changed live). Each key has its own
//! bucket, so one key's flood never slows another. Throttles are counted
//! per key id — never per secret — for `/metrics`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::store::keys::KeyInfo;

#[derive(Debug)]
struct Bucket {
    per_minute: u32,
    limiter: Arc<DefaultDirectRateLimiter>,
}

/// All keys' buckets.
#[derive(Debug)]
pub struct RateLimits {
    default_per_minute: AtomicU32,
    buckets: Mutex<HashMap<String, Bucket>>,
    throttled: Mutex<HashMap<String, u64>>,
    /// When each key's throttling was last announced as an event.
    announced: Mutex<HashMap<String, std::time::Instant>>,
    clock: DefaultClock,
}

/// At most one `rate_limited` event per key this often.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(60);

impl RateLimits {
    #[must_use]
    pub fn new(default_per_minute: u32) -> Self {
        Self {
            default_per_minute: AtomicU32::new(default_per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
            throttled: Mutex::new(HashMap::new()),
            announced: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// Changes the default rate (config reload); keys without a rate of
    /// their own get a fresh bucket at the new rate.
    pub fn set_default(&self, per_minute: u32) {
        self.default_per_minute
            .store(per_minute.max(1), Ordering::Release);
    }

    /// `Err(wait)` when `key` must wait before its next request.
    pub fn check(&self, key: &KeyInfo) -> Result<(), Duration> {
        let per_minute = key
            .rate_per_minute
            .unwrap_or_else(|| self.default_per_minute.load(Ordering::Acquire))
            .max(1);
        let limiter = {
            let mut buckets = self
                .buckets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Looked up first: no allocation for a key seen before.
            if !buckets.contains_key(key.id.as_str()) {
                buckets.insert(
                    key.id.clone(),
                    Bucket {
                        per_minute: 0,
                        limiter: Arc::new(RateLimiter::direct(Quota::per_minute(NonZeroU32::MIN))),
                    },
                );
            }
            let Some(bucket) = buckets.get_mut(key.id.as_str()) else {
                return Ok(());
            };
            if bucket.per_minute != per_minute {
                let quota =
                    Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
                *bucket = Bucket {
                    per_minute,
                    limiter: Arc::new(RateLimiter::direct(quota)),
                };
            }
            Arc::clone(&bucket.limiter)
        };
        limiter.check().map_err(|not_until| {
            *self
                .throttled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(key.id.clone())
                .or_insert(0) += 1;
            not_until.wait_time_from(self.clock.now())
        })
    }

    /// Whether a throttle of `key_id` should be announced now (a
    /// `rate_limited` event): true at most once per [`ANNOUNCE_EVERY`], so a
    /// flood cannot flood the event log too.
    pub fn take_announcement(&self, key_id: &str) -> bool {
        let now = std::time::Instant::now();
        let mut announced = self
            .announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match announced.get(key_id) {
            Some(at) if now.duration_since(*at) < ANNOUNCE_EVERY => false,
            _ => {
                announced.insert(key_id.to_owned(), now);
                true
            }
        }
    }

    /// Throttled requests per key id since start.
    #[must_use]
    pub fn throttled(&self) -> Vec<(String, u64)> {
        let mut out: Vec<_> = self
            .throttled
            .lock()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_are_announced_once_per_interval_per_key() {
        let limits = RateLimits::new(1);
        assert!(limits.take_announcement("a"));
        assert!(!limits.take_announcement("a"));
        assert!(limits.take_announcement("b"), "keys are independent");
    }
    use crate::store::keys::Scope;

    fn key(id: &str, rate: Option<u32>) -> KeyInfo {
        KeyInfo {
            id: id.to_owned(),
            name: id.to_owned(),
            scope: Scope::Read,
            rate_per_minute: rate,
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_waits_and_others_are_unaffected() {
        let limits = RateLimits::new(1000);
        let flooder = key("a", Some(3));
        for _ in 0..3 {
            assert!(limits.check(&flooder).is_ok());
        }
        let wait = limits.check(&flooder).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        let other = key("b", None);
        for _ in 0..100 {
            assert!(limits.check(&other).is_ok());
        }
        assert_eq!(limits.throttled(), vec![("a".to_owned(), 1)]);
    }

    #[test]
    fn the_default_applies_to_keys_without_a_rate_and_follows_reloads() {
        let limits = RateLimits::new(2);
        let k = key("c", None);
        assert!(limits.check(&k).is_ok());
        assert!(limits.check(&k).is_ok());
        assert!(limits.check(&k).is_err());
        limits.set_default(100);
        assert!(limits.check(&k).is_ok(), "a new default gives a new bucket");
    }
}
