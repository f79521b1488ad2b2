//! What one client may take from the server: request size, a rate per caller, and how long a
//! tool call may run.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The management server's limits.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// HTTP requests per minute one caller (token subject) may make, sustained. One MCP tool
    /// call in a session of its own is about four (initialize, initialized, the call, close).
    pub requests_per_minute: u32,
    /// Requests one caller may make at once before the rate applies.
    pub burst: u32,
    /// How long one tool call may take (connection tests included).
    pub tool_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 256 * 1024,
            requests_per_minute: 600,
            burst: 120,
            tool_timeout: Duration::from_secs(60),
        }
    }
}

/// Most callers remembered; beyond it, callers whose bucket is full again are forgotten.
const MAX_TRACKED: usize = 10_000;

/// A token bucket per caller.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_minute` requests per minute sustained, `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request for `caller` at `now`: `Err(wait)` when over the rate, with how long
    /// until the next request would pass.
    pub fn check(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(caller) {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second < burst
            });
        }
        let (tokens, at) = buckets
            .entry(caller.to_owned())
            .or_insert((self.burst, now));
        let refilled = (*tokens
            + now.saturating_duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_the_rate_and_others_are_unaffected() {
        let limiter = RateLimiter::new(60, 3);
        let start = Instant::now();
        for _ in 0..3 {
            limiter.check("alice", start).unwrap();
        }
        let wait = limiter.check("alice", start).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limiter.check("bob", start).unwrap();
        // One request per second comes back.
        limiter
            .check("alice", start + Duration::from_secs(1))
            .unwrap();
        limiter
            .check("alice", start + Duration::from_secs(1))
            .unwrap_err();
    }

    #[test]
    fn forgotten_callers_are_only_those_with_a_full_bucket() {
        let limiter = RateLimiter::new(60, 2);
        let start = Instant::now();
        for i in 0..MAX_TRACKED {
            limiter.check(&format!("caller-{i}"), start).unwrap();
        }
        limiter.check("busy", start).unwrap();
        limiter.check("busy", start).unwrap();
        // Ten seconds later the others' buckets are full again and make room; "busy" is
        // remembered only while it still owes.
        let later = start + Duration::from_secs(10);
        limiter.check("newcomer", later).unwrap();
        assert!(limiter.buckets.lock().unwrap().len() < MAX_TRACKED);
    }
}
