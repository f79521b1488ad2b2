//! Fault injection for tests: requests the test holds back (a controller caught between two
//! writes, to be killed there), and a log of every write with who made it and how it ended
//! (to check that a replica which lost its Lease wrote nothing after).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// What becomes of held requests when the test lets go of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Served as if nothing happened.
    Proceed,
    /// Answered 503 without being applied: the client died before the server read it.
    Drop,
}

#[derive(Debug)]
struct Hold {
    user: Option<String>,
    method: String,
    path_contains: String,
    held: AtomicUsize,
    released: watch::Sender<Option<Release>>,
}

/// One write the stand-in served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// Who made it.
    pub user: String,
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The response status.
    pub code: u16,
    /// When it was answered.
    pub at: Instant,
}

/// The fault state of one stand-in.
#[derive(Debug, Default)]
pub struct Faults {
    holds: Mutex<Vec<Arc<Hold>>>,
    writes: Mutex<Vec<Write>>,
}

/// At most this many writes are kept.
const MAX_WRITES: usize = 100_000;

impl Faults {
    /// Holds every later request with `method` whose path contains `path_contains`.
    pub fn hold(&self, method: &str, path_contains: &str) -> HoldHandle {
        self.hold_from(None, method, path_contains)
    }

    /// As [`Self::hold`], only requests of `user` when given.
    pub fn hold_from(&self, user: Option<&str>, method: &str, path_contains: &str) -> HoldHandle {
        let (released, _) = watch::channel(None);
        let hold = Arc::new(Hold {
            user: user.map(str::to_owned),
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            held: AtomicUsize::new(0),
            released,
        });
        self.holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(hold.clone());
        HoldHandle { hold }
    }

    /// Waits while a hold matches this request of `user`; what the test decided then.
    pub async fn pass(&self, user: &str, method: &str, path: &str) -> Release {
        let hold = self
            .holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|h| {
                h.user.as_deref().is_none_or(|u| u == user)
                    && h.method == method
                    && path.contains(&h.path_contains)
                    && h.released.borrow().is_none()
            })
            .cloned();
        let Some(hold) = hold else {
            return Release::Proceed;
        };
        let mut rx = hold.released.subscribe();
        hold.held.fetch_add(1, Ordering::SeqCst);
        let decision = rx.wait_for(Option::is_some).await.map(|d| *d);
        decision.ok().flatten().unwrap_or(Release::Proceed)
    }

    /// Records a served write.
    pub fn record(&self, write: Write) {
        let mut writes = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        if writes.len() < MAX_WRITES {
            writes.push(write);
        }
    }

    /// Every write served so far.
    pub fn writes(&self) -> Vec<Write> {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A hold the test controls.
#[derive(Debug)]
pub struct HoldHandle {
    hold: Arc<Hold>,
}

impl HoldHandle {
    /// How many requests are waiting on it.
    pub fn held(&self) -> usize {
        self.hold.held.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests are held; panics after `timeout`.
    pub async fn wait_held(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.held() < n {
            assert!(
                Instant::now() < deadline,
                "no {} {}* request was held within {timeout:?}",
                self.hold.method,
                self.hold.path_contains
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lets go: the held requests (and later ones) end as `release` says; later ones are
    /// not held.
    pub fn release(self, release: Release) {
        // `send` stores nothing without a receiver: the held requests' may be gone (their
        // client was killed), and the hold must end all the same.
        self.hold.released.send_replace(Some(release));
    }
}
