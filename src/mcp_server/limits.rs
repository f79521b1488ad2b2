//! What one client may take from the server: request size, a rate per caller, and how long a
//! tool call may run.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::Quota;
use governor::clock::{Clock, DefaultClock, Reference as _};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};

use super::auth::Caller;

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

/// Most callers remembered at once. Past it, callers idle long enough to have a full bucket
/// again are forgotten; if every remembered caller is still owing, a new caller shares one
/// overflow bucket until room frees up, so a flood of distinct callers costs bounded memory
/// and cannot starve a known one.
pub const MAX_TRACKED: usize = 10_000;

/// The overflow bucket's key (no caller's key can be it: those are JSON arrays).
const OVERFLOW: &str = "\0overflow";

/// A caller's key in the rate limiter: its token's `sub` and tenant claim, so one subject acting
/// for many tenants (a shared service identity) gets a bucket per tenant and one tenant's burst
/// cannot use up another's; for a token without `sub`, its tenant claim and roles, so such tokens
/// share a bucket only with tokens of the same tenant and roles. The parts are JSON-encoded, so
/// no subject can spell another caller's key.
pub fn rate_key(caller: &Caller) -> String {
    let tenant = caller.tenant.as_deref();
    if !caller.subject.is_empty() {
        return serde_json::json!(["sub", caller.subject, tenant]).to_string();
    }
    let roles: Vec<&str> = caller.roles.iter().map(|r| r.as_str()).collect();
    serde_json::json!(["roles", roles, tenant]).to_string()
}

/// A token bucket per caller: `governor`'s keyed GCRA limiter, with the bound on remembered
/// callers ([`MAX_TRACKED`]) that its store does not have.
pub struct RateLimiter<C: Clock = DefaultClock> {
    limiter: governor::RateLimiter<String, Callers, C, NoOpMiddleware<C::Instant>>,
    /// The limiter's own store, shared, to ask whether a caller is known.
    callers: Callers,
    clock: C,
    /// When a full limiter last looked for forgotten callers.
    last_scan: Mutex<Option<C::Instant>>,
}

/// How often a full limiter may scan for callers to forget.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// governor's DashMap store behind an `Arc`, so the limiter and [`RateLimiter::tracked`] share
/// it: governor has no "is this key known" query, and without one a full limiter would have
/// to scan on every request instead of only for a newcomer.
#[derive(Clone, Default)]
struct Callers(Arc<DashMapStateStore<String>>);

impl StateStore for Callers {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<String> for Callers {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&*self.0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("callers", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// `per_minute` requests per minute sustained, `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self::with_clock(per_minute, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// The same, on `clock` (a fake one in tests).
    pub fn with_clock(per_minute: u32, burst: u32, clock: C) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let callers = Callers::default();
        Self {
            limiter: governor::RateLimiter::new(quota, callers.clone(), clock.clone()),
            callers,
            clock,
            last_scan: Mutex::new(None),
        }
    }

    /// Takes one request for the caller with key `key` ([`rate_key`]): `Err(wait)` when over
    /// the rate, with how long until its next request would pass.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let key = self.tracked(key);
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Callers remembered now.
    pub fn tracked_callers(&self) -> usize {
        self.limiter.len()
    }

    /// `key`, or the overflow bucket's key when the limiter is full of owing callers.
    fn tracked(&self, key: &str) -> String {
        let key = key.to_owned();
        if self.limiter.len() < MAX_TRACKED {
            return key;
        }
        if self.callers.0.contains_key(&key) {
            return key;
        }
        // Only a newcomer to a full limiter pays for a scan, and at most one scan a second:
        // a flood of newcomers must not make every request O(callers).
        let now = self.clock.now();
        {
            let mut last = self
                .last_scan
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due = last.is_none_or(|at| now.duration_since(at) >= SCAN_EVERY.into());
            if due {
                *last = Some(now);
                self.limiter.retain_recent();
            }
        }
        if self.limiter.len() < MAX_TRACKED {
            key
        } else {
            OVERFLOW.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::mcp_server::auth::Role;

    fn limiter(per_minute: u32, burst: u32) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimiter::with_clock(per_minute, burst, clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_caller_gets_its_burst_then_the_rate_and_others_are_unaffected() {
        let (limiter, clock) = limiter(60, 3);
        for _ in 0..3 {
            limiter.check("alice").unwrap();
        }
        let wait = limiter.check("alice").unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        limiter.check("bob").unwrap();
        // One request per second comes back.
        clock.advance(Duration::from_secs(1));
        limiter.check("alice").unwrap();
        limiter.check("alice").unwrap_err();
    }

    /// A flood of distinct callers (a compromised issuer, or tokens with random subjects)
    /// stays within MAX_TRACKED remembered callers and never takes a known caller's bucket.
    #[test]
    fn a_flood_of_new_callers_is_bounded_and_shares_one_bucket() {
        let (limiter, clock) = limiter(60, 2);
        limiter.check("known").unwrap();
        for i in 0..MAX_TRACKED * 2 {
            let _ = limiter.check(&format!("caller-{i}"));
        }
        assert!(
            limiter.tracked_callers() <= MAX_TRACKED + 1,
            "{} callers remembered",
            limiter.tracked_callers()
        );
        // The known caller still has its own bucket: one request left of its burst.
        limiter.check("known").unwrap();
        limiter.check("known").unwrap_err();
        // Newcomers past the bound share the overflow bucket, long since empty.
        limiter.check("one-more").unwrap_err();
        // Once the others' buckets are full again they are forgotten, and a newcomer is
        // remembered on its own.
        clock.advance(Duration::from_secs(10));
        limiter.check("newcomer").unwrap();
        limiter.check("newcomer").unwrap();
        assert!(limiter.tracked_callers() < MAX_TRACKED);
    }

    #[test]
    fn callers_share_a_bucket_only_within_their_subject_and_tenant() {
        let caller = |sub: &str, tenant: Option<&str>, role: Role| Caller {
            subject: sub.to_owned(),
            tenant: tenant.map(str::to_owned),
            roles: BTreeSet::from([role]),
        };
        let acme = rate_key(&caller("", Some("acme"), Role::TenantAdmin));
        let globex = rate_key(&caller("", Some("globex"), Role::TenantAdmin));
        let uber = rate_key(&caller("", None, Role::UberAdmin));
        assert_ne!(acme, globex);
        assert_ne!(acme, uber);
        assert_eq!(acme, rate_key(&caller("", Some("acme"), Role::TenantAdmin)));
        // A subject's key is its own per tenant (issue 27, item 5), whatever its roles, and
        // never equals a subject-less key, nor another subject's however it is spelled.
        let alice = rate_key(&caller("alice", Some("acme"), Role::TenantAdmin));
        assert_eq!(
            alice,
            rate_key(&caller("alice", Some("acme"), Role::UberAdmin))
        );
        assert_ne!(
            alice,
            rate_key(&caller("alice", Some("globex"), Role::TenantAdmin))
        );
        assert_ne!(alice, acme);
        assert_ne!(
            rate_key(&caller("a\",\"acme", None, Role::UberAdmin)),
            rate_key(&caller("a", Some("acme"), Role::UberAdmin))
        );

        let (limiter, _) = limiter(60, 1);
        limiter.check(&acme).unwrap();
        limiter.check(&globex).unwrap();
        limiter.check(&acme).unwrap_err();
    }
}
