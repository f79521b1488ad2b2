//! Whether the caches the reconciler decides from (configs, the GlobalMcpConfig, namespaces)
//! have completed their first list.
//!
//! kube-runtime's `Store::wait_until_ready` wakes only the most recent waiter (one oneshot
//! receiver behind a lock): sixteen concurrent reconciles waiting on it left fifteen asleep
//! forever. This is a watch channel instead, set from each reflector stream's `InitDone`,
//! which wakes every waiter.

use tokio::sync::watch;

/// A cache the reconciler reads.
#[derive(Clone, Copy, Debug)]
pub enum Cache {
    /// `TenantMcpConfig`s (the conflict check).
    Configs = 1,
    /// The `GlobalMcpConfig` (policy and flags).
    Globals = 2,
    /// Namespace labels (tenant binding).
    Namespaces = 4,
}

const ALL: u8 = Cache::Configs as u8 | Cache::Globals as u8 | Cache::Namespaces as u8;

/// Which caches have synced; cheap to share.
#[derive(Debug)]
pub struct Synced(watch::Sender<u8>);

impl Default for Synced {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl Synced {
    /// Records that `cache` completed a list (later re-lists are no-ops).
    pub fn mark(&self, cache: Cache) {
        self.0.send_if_modified(|m| {
            let before = *m;
            *m |= cache as u8;
            *m != before
        });
    }

    /// Whether every cache has synced.
    pub fn is_synced(&self) -> bool {
        *self.0.borrow() == ALL
    }

    /// Returns once every cache has synced.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|m| *m == ALL).await;
    }
}

/// A stream inspector that marks `cache` synced when its reflector stream completes a list.
pub fn mark_on_init_done<K, E>(
    synced: &std::sync::Arc<Synced>,
    cache: Cache,
) -> impl FnMut(&Result<kube::runtime::watcher::Event<K>, E>) + use<K, E> {
    let synced = synced.clone();
    move |event| {
        if let Ok(kube::runtime::watcher::Event::InitDone) = event {
            synced.mark(cache);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Many waiters all wake (the failure mode of `Store::wait_until_ready` this replaces).
    #[tokio::test]
    async fn every_waiter_wakes_once_all_caches_synced() {
        let synced = Arc::new(Synced::default());
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let s = synced.clone();
                tokio::spawn(async move { s.wait().await })
            })
            .collect();
        tokio::task::yield_now().await;
        synced.mark(Cache::Configs);
        synced.mark(Cache::Namespaces);
        assert!(!synced.is_synced());
        tokio::task::yield_now().await;
        assert!(waiters.iter().all(|w| !w.is_finished()));
        synced.mark(Cache::Globals);
        for w in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("a waiter was not woken")
                .expect("waiter panicked");
        }
        assert!(synced.is_synced());
    }
}
