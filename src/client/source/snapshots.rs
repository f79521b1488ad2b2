//! The snapshot Secrets the client uses, read by name: `status.active` names each one, and a
//! snapshot never changes (the controller makes a new one for new credentials), so one read
//! per snapshot is enough. Reading by name needs only `get` on exactly those Secrets — which
//! the controller grants per config — instead of listing every Secret of every namespace.
//!
//! A read that fails (not there yet, not readable yet, the API down) is retried with a backoff
//! for as long as some tenant still uses the snapshot; until it succeeds the tenant's server is
//! unavailable (`SnapshotNotVisible`), never routed elsewhere. A snapshot no tenant uses any
//! more is dropped from memory.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::Internal;

/// A snapshot: (namespace, name).
pub(super) type Key = (String, String);

/// Most reads under way at once (a new client with 10,000 tenants must not flood the API).
const CONCURRENT_READS: usize = 16;

/// The outcome of one read.
pub(super) struct Fetched {
    key: Key,
    result: Result<Option<Secret>, String>,
    attempt: u32,
}

pub(super) struct Snapshots {
    client: Client,
    tx: mpsc::UnboundedSender<Internal>,
    stop: CancellationToken,
    reads: Arc<Semaphore>,
    cache: HashMap<Key, Secret>,
    /// Which tenants use each snapshot, and which snapshots each tenant uses.
    users: HashMap<Key, BTreeSet<String>>,
    used_by: HashMap<String, Vec<Key>>,
    /// Reads under way or scheduled.
    pending: HashSet<Key>,
    /// Snapshots read at least once (found or not): the first sync waits for these only.
    attempted: HashSet<Key>,
    last_error: HashMap<Key, String>,
}

impl Snapshots {
    pub(super) fn new(
        client: Client,
        tx: mpsc::UnboundedSender<Internal>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            client,
            tx,
            stop,
            reads: Arc::new(Semaphore::new(CONCURRENT_READS)),
            cache: HashMap::new(),
            users: HashMap::new(),
            used_by: HashMap::new(),
            pending: HashSet::new(),
            attempted: HashSet::new(),
            last_error: HashMap::new(),
        }
    }

    /// Snapshot `namespace/name` if it was read and is one the controller made for the config
    /// with uid `owner`.
    pub(super) fn get(&self, namespace: &str, name: &str, owner: &str) -> Option<Secret> {
        self.cache
            .get(&(namespace.to_owned(), name.to_owned()))
            .filter(|s| super::is_snapshot_of(s, owner))
            .cloned()
    }

    /// Records that `tenant` now uses exactly `keys`: reads the new ones, forgets the ones
    /// nobody uses any more.
    pub(super) fn need(&mut self, tenant: &str, keys: Vec<Key>) {
        let old = if keys.is_empty() {
            self.used_by.remove(tenant).unwrap_or_default()
        } else {
            self.used_by
                .insert(tenant.to_owned(), keys.clone())
                .unwrap_or_default()
        };
        for key in &keys {
            self.users
                .entry(key.clone())
                .or_default()
                .insert(tenant.to_owned());
            if !self.cache.contains_key(key) && !self.pending.contains(key) {
                self.read(key.clone(), 0);
            }
        }
        for key in old.into_iter().filter(|k| !keys.contains(k)) {
            self.release(&key, tenant);
        }
    }

    /// Forgets the snapshots of tenants no longer in `tenants`.
    pub(super) fn retain_tenants<V>(&mut self, tenants: &HashMap<String, V>) {
        let gone: Vec<String> = self
            .used_by
            .keys()
            .filter(|t| !tenants.contains_key(*t))
            .cloned()
            .collect();
        for tenant in gone {
            self.need(&tenant, Vec::new());
        }
    }

    fn release(&mut self, key: &Key, tenant: &str) {
        if let Some(users) = self.users.get_mut(key) {
            users.remove(tenant);
            if users.is_empty() {
                self.users.remove(key);
                self.cache.remove(key);
                self.attempted.remove(key);
                self.last_error.remove(key);
            }
        }
    }

    /// Takes a finished read; the tenants whose routes it changes.
    pub(super) fn fetched(&mut self, fetched: Fetched) -> BTreeSet<String> {
        let Fetched {
            key,
            result,
            attempt,
        } = fetched;
        self.pending.remove(&key);
        let Some(users) = self.users.get(&key).cloned() else {
            return BTreeSet::new();
        };
        self.attempted.insert(key.clone());
        match result {
            Ok(Some(mut secret)) => {
                self.last_error.remove(&key);
                super::slim::snapshot(&mut secret);
                self.cache.insert(key, secret);
                users
            }
            outcome => {
                let why = match outcome {
                    Err(e) => e,
                    _ => "not found".to_owned(),
                };
                // A few misses are normal (a status seen before its Secret); many are not.
                if attempt == 5 {
                    warn!(snapshot = %format!("{}/{}", key.0, key.1), "cannot read the snapshot Secret ({why}); retrying: check that the controller runs with this client's account in --snapshot-reader, or the account's Role in this namespace");
                } else {
                    debug!(snapshot = %format!("{}/{}", key.0, key.1), attempt, "snapshot read failed: {why}");
                }
                self.last_error.insert(key.clone(), why);
                self.read(key, attempt + 1);
                BTreeSet::new()
            }
        }
    }

    /// Whether every snapshot in use was read at least once.
    pub(super) fn settled(&self) -> bool {
        self.users.keys().all(|k| self.attempted.contains(k))
    }

    /// The snapshots the first sync still waits for.
    pub(super) fn waiting_for(&self) -> Vec<String> {
        let mut waiting: Vec<String> = self
            .users
            .keys()
            .filter(|k| !self.attempted.contains(*k))
            .map(|(ns, name)| format!("snapshot Secret {ns}/{name}"))
            .collect();
        waiting.sort();
        waiting.truncate(5);
        waiting
    }

    /// Reads `key` (after a backoff for a retry), reporting to the source's loop.
    fn read(&mut self, key: Key, attempt: u32) {
        self.pending.insert(key.clone());
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.0);
        let (tx, stop, reads) = (self.tx.clone(), self.stop.clone(), self.reads.clone());
        tokio::spawn(async move {
            if attempt > 0 {
                let delay =
                    Duration::from_millis(200 << attempt.min(8)).min(Duration::from_secs(30));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
            let result = {
                let Ok(_permit) = reads.acquire().await else {
                    return;
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    r = api.get_opt(&key.1) => r.map_err(|e| e.to_string()),
                }
            };
            let _ = tx.send(Internal::Snapshot(Fetched {
                key,
                result,
                attempt,
            }));
        });
    }
}
