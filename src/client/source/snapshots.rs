//! The snapshot Secrets the client uses, read by name: `status.active` names each one, and a
//! snapshot never changes (the controller makes a new one for new credentials), so one read
//! per snapshot is enough. Reading by name needs only `get` on exactly those Secrets — which
//! the controller grants per config — instead of listing every Secret of every namespace.
//!
//! A read that fails (not there yet, not readable yet, the API down) is retried with a backoff
//! for as long as some tenant still uses the snapshot; until it succeeds the tenant's server is
//! unavailable (`SnapshotNotVisible`), never routed elsewhere. A snapshot no tenant uses any
//! more is dropped from memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::api::ObjectMeta;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// A snapshot: (namespace, name).
pub(super) type Key = (String, String);

/// Most reads under way at once (a new client with 10,000 tenants must not flood the API).
const CONCURRENT_READS: usize = 16;

/// What the client keeps of a snapshot Secret: the configs it belongs to (by uid; none when it
/// is not a snapshot at all) and its data. Its metadata is not kept: at 10,000 tenants the
/// Secrets' object metadata outweighed their credentials.
struct Kept {
    owners: Box<[String]>,
    /// Its uid, which `status.active` records: a Secret recreated under the name has another.
    uid: Option<Box<str>>,
    data: BTreeMap<String, ByteString>,
}

impl Kept {
    fn of(secret: Secret) -> Self {
        let owners = if secret.type_.as_deref() == Some(crate::api::SNAPSHOT_TYPE) {
            secret
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|o| o.kind == "TenantMcpConfig")
                .map(|o| o.uid.clone())
                .collect()
        } else {
            Box::default()
        };
        Self {
            owners,
            uid: secret.metadata.uid.map(String::into_boxed_str),
            data: secret.data.unwrap_or_default(),
        }
    }

    /// Whether the controller made it for the config with uid `owner`.
    fn belongs_to(&self, owner: &str) -> bool {
        self.owners.iter().any(|o| o == owner)
    }
}

/// A read whose retry backoff ended.
pub(super) struct Due {
    key: Key,
    attempt: u32,
}

/// The outcome of one read.
pub(super) struct Fetched {
    key: Key,
    result: Result<Option<Secret>, String>,
    attempt: u32,
}

/// `M` is the source's message type: each [`Fetched`] read and [`Due`] retry reaches it as one.
pub(super) struct Snapshots<M> {
    client: Client,
    tx: mpsc::UnboundedSender<M>,
    stop: CancellationToken,
    cache: HashMap<Key, Kept>,
    /// Which tenants use each snapshot (rarely more than one), and which snapshots each
    /// tenant uses.
    users: HashMap<Key, Vec<String>>,
    used_by: HashMap<String, Vec<Key>>,
    /// Reads under way, queued or waiting for their backoff.
    pending: HashSet<Key>,
    /// Reads due, in order.
    queue: VecDeque<(Key, u32)>,
    /// Reads under way.
    in_flight: usize,
    /// Snapshots read at least once (found or not): the first sync waits for these only.
    attempted: HashSet<Key>,
    last_error: HashMap<Key, String>,
}

impl<M: From<Fetched> + From<Due> + Send + 'static> Snapshots<M> {
    pub(super) fn new(
        client: Client,
        tx: mpsc::UnboundedSender<M>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            client,
            tx,
            stop,
            cache: HashMap::new(),
            users: HashMap::new(),
            used_by: HashMap::new(),
            pending: HashSet::new(),
            queue: VecDeque::new(),
            in_flight: 0,
            attempted: HashSet::new(),
            last_error: HashMap::new(),
        }
    }

    /// Snapshot `namespace/name` if it was read and is one the controller made for the config
    /// with uid `owner`: the client takes credentials only from those, never from another
    /// Secret that happens to carry the name.
    pub(super) fn get(&self, namespace: &str, name: &str, owner: &str) -> Option<Secret> {
        let kept = self
            .cache
            .get(&(namespace.to_owned(), name.to_owned()))
            .filter(|k| k.belongs_to(owner))?;
        Some(Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                uid: kept.uid.as_deref().map(str::to_owned),
                ..ObjectMeta::default()
            },
            type_: Some(crate::api::SNAPSHOT_TYPE.to_owned()),
            data: Some(kept.data.clone()),
            ..Secret::default()
        })
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
            let users = self.users.entry(key.clone()).or_default();
            if !users.iter().any(|u| u == tenant) {
                users.push(tenant.to_owned());
            }
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
            users.retain(|u| u != tenant);
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
        self.in_flight = self.in_flight.saturating_sub(1);
        self.pump();
        let Some(users) = self.users.get(&key).map(|u| u.iter().cloned().collect()) else {
            return BTreeSet::new();
        };
        self.attempted.insert(key.clone());
        match result {
            Ok(Some(secret)) => {
                self.last_error.remove(&key);
                self.cache.insert(key, Kept::of(secret));
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

    /// Reads `key` now, or after a backoff for a retry.
    fn read(&mut self, key: Key, attempt: u32) {
        self.pending.insert(key.clone());
        if attempt == 0 {
            self.queue.push_back((key, attempt));
            self.pump();
            return;
        }
        let (tx, stop) = (self.tx.clone(), self.stop.clone());
        let delay = Duration::from_millis(200 << attempt.min(8)).min(Duration::from_secs(30));
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(delay) => {
                    let _ = tx.send(Due { key, attempt }.into());
                }
            }
        });
    }

    /// A retry's backoff ended: queue its read.
    pub(super) fn due(&mut self, due: Due) {
        self.queue.push_back((due.key, due.attempt));
        self.pump();
    }

    /// Starts queued reads while fewer than [`CONCURRENT_READS`] are under way. One task per
    /// read under way, not per read queued: a new client with 10,000 tenants queued 10,000
    /// reads, and their tasks (each a pending API request) were the peak of its memory.
    fn pump(&mut self) {
        while self.in_flight < CONCURRENT_READS {
            let Some((key, attempt)) = self.queue.pop_front() else {
                return;
            };
            if !self.users.contains_key(&key) {
                // Nobody uses it any more.
                self.pending.remove(&key);
                continue;
            }
            self.in_flight += 1;
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.0);
            let (tx, stop) = (self.tx.clone(), self.stop.clone());
            tokio::spawn(async move {
                let result = tokio::select! {
                    () = stop.cancelled() => return,
                    r = api.get_opt(&key.1) => r.map_err(|e| e.to_string()),
                };
                let _ = tx.send(
                    Fetched {
                        key,
                        result,
                        attempt,
                    }
                    .into(),
                );
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(type_: &str, kind: &str, uid: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "snap", "namespace": "tenant-acme",
                "ownerReferences": [{"apiVersion": "tenantmcp.dev/v1alpha1", "kind": kind,
                    "name": "config", "uid": uid}]},
            "type": type_,
            "stringData": {"password": "p"}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A tenant admin can create a Secret with the snapshot's name in its own namespace (before
    /// the controller does, or after deleting it): its values must never become the
    /// credentials of the config's routes.
    #[test]
    fn only_a_snapshot_the_controller_made_for_this_config_is_used() {
        let owner = "uid-of-the-config";
        assert!(
            Kept::of(secret(crate::api::SNAPSHOT_TYPE, "TenantMcpConfig", owner)).belongs_to(owner)
        );
        for (what, forged) in [
            (
                "an ordinary Secret",
                secret("Opaque", "TenantMcpConfig", owner),
            ),
            (
                "a snapshot of another config",
                secret(
                    crate::api::SNAPSHOT_TYPE,
                    "TenantMcpConfig",
                    "uid-of-another",
                ),
            ),
            (
                "owned by another kind with the config's uid",
                secret(crate::api::SNAPSHOT_TYPE, "ConfigMap", owner),
            ),
        ] {
            assert!(!Kept::of(forged).belongs_to(owner), "{what} was taken");
        }
    }
}
