//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller replicas
//! exactly one reconciles. Every change to the Lease is a compare-and-swap on its
//! `resourceVersion`: two candidates racing for an expired Lease cannot both win.
//!
//! Expiry follows client-go's rule, not the holder's timestamps: a follower counts the Lease
//! duration from when *it* last saw the Lease record change, on its own monotonic clock, so
//! clock skew between pods cannot make a live leader look expired (a holder whose clock runs
//! behind) or a dead one look alive (a holder whose clock ran ahead). Written by hand rather
//! than with `kube-lease-manager`: the controller needs the start of each successful renewal
//! for its write fencing ([`Leadership`]) and a release on shutdown, around the same calls.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

/// One candidate's view of a Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// The Lease record as last seen, and when (this process's monotonic clock).
    observed: std::sync::Mutex<Option<Observed>>,
}

/// The parts of a Lease that change on every renewal or hand-over: when any of them changes,
/// the holder is alive (or a new one took over) as of the moment this process saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    holder: String,
    renew_time: Option<Timestamp>,
    acquire_time: Option<Timestamp>,
    transitions: i32,
    duration_seconds: i32,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
            duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
        }
    }
}

/// A record and when this process first saw it.
#[derive(Clone, Debug)]
pub struct Observed {
    record: Record,
    at: tokio::time::Instant,
}

/// Takes the record read `now` into what was observed, and says whether the holder's lease has
/// expired by client-go's rule: no holder, or the same record seen unchanged for longer than
/// the duration it declares. A record seen for the first time starts its duration now, so a
/// replica that starts (or restarts) waits one full duration before it takes over a Lease
/// whose holder stopped renewing.
pub fn observe(observed: &mut Option<Observed>, record: Record, now: tokio::time::Instant) -> bool {
    let held_for = Duration::from_secs(u64::try_from(record.duration_seconds).unwrap_or(0));
    let no_holder = record.holder.is_empty();
    let since = match observed {
        Some(o) if o.record == record => o.at,
        _ => {
            *observed = Some(Observed { record, at: now });
            now
        }
    };
    no_holder || now.duration_since(since) > held_for
}

/// What an attempt to take or keep the Lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This candidate holds the Lease (until at least `duration` from now).
    Leading,
    /// Someone else holds it.
    Following {
        /// The holder's identity.
        holder: String,
    },
}

impl LeaseLock {
    /// The Lease `name` in `api`'s namespace, for candidate `identity` (usually the pod name),
    /// held for `duration` after each renewal.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: std::sync::Mutex::new(None),
        }
    }

    fn observed(&self) -> std::sync::MutexGuard<'_, Option<Observed>> {
        self.observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Takes the Lease if it is free or expired, renews it if held by us.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &fresh).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(e) if is_conflict(&e) => self.follower_of_current().await,
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = observe(
            &mut self.observed(),
            Record::of(&spec),
            tokio::time::Instant::now(),
        );
        let ours = holder == self.identity;
        if !ours && !expired {
            return Ok(Attempt::Following { holder });
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            spec.acquire_time.as_ref().map_or(now, |t| t.0)
        } else {
            now
        };
        let mut next = lease.clone();
        let written = self.spec(acquired, now, transitions);
        next.spec = Some(written.clone());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => {
                *self.observed() = Some(Observed {
                    record: Record::of(&written),
                    at: tokio::time::Instant::now(),
                });
                Ok(Attempt::Leading)
            }
            Err(e) if is_conflict(&e) => self.follower_of_current().await,
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if we hold it, so another replica takes over at once instead of
    /// waiting for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            // Someone else changed it since: it is not ours to release any more.
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn follower_of_current(&self) -> Result<Attempt, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let holder = lease
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        Ok(Attempt::Following { holder })
    }

    fn spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// Until when this replica may write as the leader: the start of its last successful renewal
/// plus the Lease duration, on the monotonic clock (which keeps running while the process is
/// stopped, so a replica resumed after a pause finds it has lapsed). Every write of a reconcile
/// checks it first: a replica that cannot be sure it still leads writes nothing.
#[derive(Debug, Default)]
pub struct Leadership {
    /// `None` without leader election: always allowed.
    until: std::sync::Mutex<Option<tokio::time::Instant>>,
    elected: bool,
}

/// This replica can no longer be sure it holds the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this replica's hold on the leader Lease has lapsed")]
pub struct Lapsed;

impl Leadership {
    /// Leadership without election (one replica): every write is allowed.
    pub fn unelected() -> Self {
        Self::default()
    }

    /// Leadership by election: no write is allowed until [`Self::renewed`].
    pub fn elected() -> Self {
        Self {
            until: std::sync::Mutex::new(None),
            elected: true,
        }
    }

    /// A renewal that started at `started` succeeded: the Lease is ours for `duration` from
    /// then (the other replicas count from when they see the renewal, which is later).
    pub fn renewed(&self, started: tokio::time::Instant, duration: Duration) {
        *self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(started + duration);
    }

    /// Ends leadership now (the Lease was lost or released).
    pub fn lapse(&self) {
        *self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tokio::time::Instant::now());
    }

    /// Whether this replica may still write.
    pub fn check(&self) -> Result<(), Lapsed> {
        if !self.elected {
            return Ok(());
        }
        let until = *self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match until {
            Some(until) if tokio::time::Instant::now() < until => Ok(()),
            _ => Err(Lapsed),
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stop_when_the_last_renewal_is_older_than_the_lease() {
        assert!(Leadership::unelected().check().is_ok());
        let leadership = Leadership::elected();
        assert_eq!(
            leadership.check(),
            Err(Lapsed),
            "not before the first renewal"
        );
        let now = tokio::time::Instant::now();
        leadership.renewed(now, Duration::from_secs(3600));
        assert!(leadership.check().is_ok());
        // The last renewal started longer ago than the Lease lasts (a pause: SIGSTOP, a long
        // GC, a starved node).
        leadership.renewed(now - Duration::from_secs(16), Duration::from_secs(15));
        assert_eq!(leadership.check(), Err(Lapsed));
        leadership.renewed(now, Duration::from_secs(3600));
        leadership.lapse();
        assert_eq!(leadership.check(), Err(Lapsed));
    }

    fn record(holder: &str, renewed: &str) -> Record {
        Record {
            holder: holder.to_owned(),
            renew_time: Some(renewed.parse().unwrap_or_else(|e| panic!("{e}"))),
            acquire_time: None,
            transitions: 0,
            duration_seconds: 15,
        }
    }

    /// The holder's clock runs an hour behind this replica's: its renewTime always looks an
    /// hour old. Compared with the local clock it would look expired at every renewal and be
    /// deposed while alive; by the client-go rule it is alive while its record keeps changing.
    #[test]
    fn a_live_holder_with_a_slow_clock_is_not_deposed() {
        let start = tokio::time::Instant::now();
        let mut observed = None;
        let mut expired = Vec::new();
        for second in (0..60).step_by(5) {
            let renewed = format!("2026-11-30T00:{:02}:{:02}Z", second / 60, second % 60);
            let now = start + Duration::from_secs(second);
            expired.push(observe(&mut observed, record("a", &renewed), now));
        }
        assert!(expired.iter().all(|e| !e), "{expired:?}");
    }

    /// The holder's clock ran an hour ahead, then it died: its last renewTime lies in this
    /// replica's future. Compared with the local clock it would look alive for an hour; by the
    /// client-go rule it expires one duration after its record stopped changing.
    #[test]
    fn a_dead_holder_with_a_fast_clock_expires_after_one_duration() {
        let start = tokio::time::Instant::now();
        let mut observed = None;
        let last = record("a", "2099-01-01T00:00:00Z");
        assert!(!observe(&mut observed, last.clone(), start));
        assert!(!observe(
            &mut observed,
            last.clone(),
            start + Duration::from_secs(15)
        ));
        assert!(observe(
            &mut observed,
            last.clone(),
            start + Duration::from_secs(16)
        ));
        // A renewal seen later starts the count again.
        let renewed = record("a", "2099-01-01T00:00:10Z");
        assert!(!observe(
            &mut observed,
            renewed,
            start + Duration::from_secs(17)
        ));
    }

    #[test]
    fn a_lease_without_a_holder_is_free_at_once() {
        let mut observed = None;
        assert!(observe(
            &mut observed,
            record("", "2026-11-30T00:00:00Z"),
            tokio::time::Instant::now()
        ));
    }
}
