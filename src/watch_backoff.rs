//! How the controller and the client library back off between failed attempts of a watch of
//! the cluster.
//!
//! kube-runtime's default (client-go's: 0.8 s doubling to 30 s, reset only by a success) made
//! a 10 s API outage cost up to two minutes: each watch's back-off grows while the API server
//! is down, and the first thing a real kube-apiserver answers a resumed watch after its restart
//! is `410 Gone` (its new watch cache holds no history), which costs one more full back-off
//! before the relist. A watch of this product is one of a handful per process, so a shorter
//! cap costs a struggling API server little and bounds the staleness after an outage.

use std::time::Duration;

use aes_gcm::aead::Generate as _;
use kube::runtime::utils::Backoff;

/// The first delay after a failure.
pub const FIRST: Duration = Duration::from_millis(500);
/// The longest delay of the controller's watches (one leader per cluster).
pub const CONTROLLER_CAP: Duration = Duration::from_secs(5);
/// The longest delay of the client library's watches (every application pod runs them).
pub const CLIENT_CAP: Duration = Duration::from_secs(10);

/// Exponential back-off from [`FIRST`], doubling up to a cap, with up to 20 % random jitter
/// so watches that failed together do not retry together; reset by any success.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
    cap: Duration,
}

impl WatchBackoff {
    /// A back-off that never waits longer than `cap`.
    pub fn capped(cap: Duration) -> Self {
        Self {
            next: FIRST.min(cap),
            cap,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        let [r] = <[u8; 1]>::generate();
        Some(delay + delay.mul_f64(f64::from(r) / 255.0 / 5.0))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST.min(self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_bounded_jitter_and_reset() {
        let mut backoff = WatchBackoff::capped(Duration::from_secs(5));
        let delays: Vec<Duration> = backoff.by_ref().take(6).collect();
        for (delay, base) in delays.iter().zip([0.5, 1.0, 2.0, 4.0, 5.0, 5.0]) {
            let base = Duration::from_secs_f64(base);
            assert!(*delay >= base && *delay <= base.mul_f64(1.2), "{delays:?}");
        }
        backoff.reset();
        assert!(
            backoff
                .next()
                .is_some_and(|d| d < Duration::from_millis(700))
        );
    }
}
