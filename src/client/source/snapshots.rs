//! The snapshot Secrets the client uses, read by name: `status.active` names each one, and a
//! snapshot never changes (the controller makes a new one for new credentials), so one read
//! per snapshot is enough. Reading by name needs only `get` on exactly those Secrets — which
//! the controller grants per config — instead of listing every Secret of every namespace.
//!
//! A read that fails (not there yet, not readable yet, the API down) is retried with a backoff
//! for as long as some tenant still uses the snapshot; until it succeeds the tenant's server is
//! unavailable (`SnapshotNotVisible`), never routed elsewhere. A snapshot no tenant uses any
//! more is dropped from memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
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
/// Secrets' object metadata outweighed their credentials. The data is a boxed slice, not the
/// Secret's `BTreeMap`: a snapshot holds a handful of keys, and the map's node of eleven slots
/// was 500 bytes of every snapshot.
struct Kept {
    owners: Box<[String]>,
    /// Its uid, which `status.active` records: a Secret recreated under the name has another.
    uid: Option<Box<str>>,
    data: Box<[SecretEntry]>,
}

/// One key of a Secret's data and its value.
type SecretEntry = (Box<str>, Box<[u8]>);

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
            data: secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.0.into_boxed_slice()))
                .collect(),
        }
    }

    /// Whether the controller made it for the config with uid `owner`.
    fn belongs_to(&self, owner: &str) -> bool {
        self.owners.iter().any(|o| o == owner)
    }

    /// The Secret's data as a Secret carries it.
    fn data(&self) -> BTreeMap<String, ByteString> {
        self.data
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect()
    }
}

/// A snapshot some tenant uses: who, and what reading it gave so far. One entry per
/// snapshot instead of a map per fact: each map held its own copy of every key.
#[derive(Default)]
struct Entry {
    /// The tenants that use it (rarely more than one).
    users: Vec<String>,
    /// What was read; `None` until a read finds it.
    kept: Option<Kept>,
    /// Read at least once (found or not): the first sync waits for these only.
    attempted: bool,
    /// A read under way, queued or waiting for its backoff.
    pending: bool,
    /// Why the last read failed.
    last_error: Option<String>,
}

/// A read whose retry backoff ended.
pub(super) struct Due {
    key: Key,
    attempt: u32,
}

/// The outcome of one read: the Secret as kept (converted in the reading task, so no whole
/// Secret waits in the channel).
pub(super) struct Fetched {
    key: Key,
    result: Result<Option<Kept>, String>,
    attempt: u32,
}

/// `M` is the source's message type: each [`Fetched`] read and [`Due`] retry reaches it as one.
pub(super) struct Snapshots<M> {
    client: Client,
    tx: mpsc::UnboundedSender<M>,
    stop: CancellationToken,
    /// Every snapshot in use.
    entries: HashMap<Key, Entry>,
    /// The snapshots each tenant uses.
    used_by: HashMap<String, Vec<Key>>,
    /// Reads due, in order.
    queue: VecDeque<(Key, u32)>,
    /// Reads under way.
    in_flight: usize,
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
            entries: HashMap::new(),
            used_by: HashMap::new(),
            queue: VecDeque::new(),
            in_flight: 0,
        }
    }

    /// Snapshot `namespace/name` if it was read and is one the controller made for the config
    /// with uid `owner`: the client takes credentials only from those, never from another
    /// Secret that happens to carry the name.
    pub(super) fn get(&self, namespace: &str, name: &str, owner: &str) -> Option<Secret> {
        let kept = self
            .entries
            .get(&(namespace.to_owned(), name.to_owned()))?
            .kept
            .as_ref()
            .filter(|k| k.belongs_to(owner))?;
        Some(Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                uid: kept.uid.as_deref().map(str::to_owned),
                ..ObjectMeta::default()
            },
            type_: Some(crate::api::SNAPSHOT_TYPE.to_owned()),
            data: Some(kept.data()),
            ..Secret::default()
        })
    }

    /// Records that `tenant` now uses exactly `keys`: reads the new ones, forgets the ones
    /// nobody uses any more.
    pub(super) fn need(&mut self, tenant: &str, keys: Vec<Key>) {
        let old = if keys.is_empty() {
            self.used_by.remove(tenant).unwrap_or_default()
        } else if self.used_by.get(tenant) == Some(&keys) {
            // Unchanged (most recomputations): nothing to read or forget.
            return;
        } else {
            self.used_by
                .insert(tenant.to_owned(), keys.clone())
                .unwrap_or_default()
        };
        for key in &keys {
            let entry = match self.entries.get_mut(key) {
                Some(entry) => entry,
                None => self.entries.entry(key.clone()).or_default(),
            };
            if !entry.users.iter().any(|u| u == tenant) {
                entry.users.push(tenant.to_owned());
            }
            if entry.kept.is_none() && !entry.pending {
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
        if let Some(entry) = self.entries.get_mut(key) {
            entry.users.retain(|u| u != tenant);
            if entry.users.is_empty() {
                self.entries.remove(key);
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
        self.in_flight = self.in_flight.saturating_sub(1);
        self.pump();
        // Nobody uses it any more: the read is dropped with the entry.
        let Some(entry) = self.entries.get_mut(&key) else {
            return BTreeSet::new();
        };
        entry.pending = false;
        entry.attempted = true;
        match result {
            Ok(Some(kept)) => {
                entry.last_error = None;
                entry.kept = Some(kept);
                entry.users.iter().cloned().collect()
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
                entry.last_error = Some(why);
                self.read(key, attempt + 1);
                BTreeSet::new()
            }
        }
    }

    /// Whether every snapshot in use was read at least once.
    pub(super) fn settled(&self) -> bool {
        self.entries.values().all(|e| e.attempted)
    }

    /// The first few snapshots (by namespace and name) the first sync still waits for, with
    /// the last error of each. Formats only those: at 10,000 tenants this ran on every event
    /// of the first sync and formatted every waiting snapshot each time.
    pub(super) fn waiting_for(&self) -> Vec<String> {
        const SHOWN: usize = 5;
        let mut first: Vec<(&Key, &Entry)> = Vec::with_capacity(SHOWN + 1);
        for (key, entry) in self.entries.iter().filter(|(_, e)| !e.attempted) {
            if first.len() == SHOWN && first.last().is_some_and(|(last, _)| key >= *last) {
                continue;
            }
            let at = first.partition_point(|(k, _)| *k < key);
            first.insert(at, (key, entry));
            first.truncate(SHOWN);
        }
        first
            .into_iter()
            .map(|((ns, name), e)| match &e.last_error {
                Some(why) => format!("snapshot Secret {ns}/{name} ({why})"),
                None => format!("snapshot Secret {ns}/{name}"),
            })
            .collect()
    }

    /// Reads `key` now, or after a backoff for a retry.
    fn read(&mut self, key: Key, attempt: u32) {
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.pending = true;
        }
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
            if !self.entries.contains_key(&key) {
                // Nobody uses it any more.
                continue;
            }
            self.in_flight += 1;
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &key.0);
            let (tx, stop) = (self.tx.clone(), self.stop.clone());
            tokio::spawn(async move {
                let result = tokio::select! {
                    () = stop.cancelled() => return,
                    r = api.get_opt(&key.1) => r.map(|s| s.map(Kept::of)).map_err(|e| e.to_string()),
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

    /// Snapshots over a client that reaches nothing: its reads fail, which these tests do
    /// not wait for.
    fn unreachable() -> Snapshots<Internal> {
        let config = kube::Config::new(
            "http://127.0.0.1:9"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let client = Client::try_from(config).unwrap_or_else(|e| panic!("{e}"));
        let (tx, _rx) = mpsc::unbounded_channel();
        Snapshots::new(client, tx, CancellationToken::new())
    }

    /// The source's message type, as far as these tests need one.
    enum Internal {
        Fetched,
        Due,
    }

    impl From<Fetched> for Internal {
        fn from(_: Fetched) -> Self {
            Self::Fetched
        }
    }

    impl From<Due> for Internal {
        fn from(_: Due) -> Self {
            Self::Due
        }
    }

    fn key(ns: &str) -> Key {
        (ns.to_owned(), "snap".to_owned())
    }

    #[tokio::test]
    async fn the_first_sync_names_the_first_five_snapshots_it_waits_for_in_order() {
        let mut snapshots = unreachable();
        for t in ["t7", "t3", "t9", "t1", "t5", "t8", "t2", "t6", "t4"] {
            snapshots.need(t, vec![key(t)]);
        }
        // t1 was read (not found): it is no longer awaited.
        snapshots.fetched(Fetched {
            key: key("t1"),
            result: Ok(None),
            attempt: 0,
        });
        assert!(!snapshots.settled());
        assert_eq!(
            snapshots.waiting_for(),
            ["t2", "t3", "t4", "t5", "t6"].map(|t| format!("snapshot Secret {t}/snap"))
        );
        snapshots.fetched(Fetched {
            key: key("t2"),
            result: Err("forbidden".to_owned()),
            attempt: 0,
        });
        assert_eq!(snapshots.waiting_for()[0], "snapshot Secret t3/snap");
    }

    #[tokio::test]
    async fn a_snapshot_is_kept_while_some_tenant_uses_it_and_forgotten_after() {
        let mut snapshots = unreachable();
        let owner = "uid-of-the-config";
        snapshots.need("acme", vec![key("shared")]);
        snapshots.need("beta", vec![key("shared")]);
        let tenants = snapshots.fetched(Fetched {
            key: key("shared"),
            result: Ok(Some(Kept::of(Secret {
                data: Some(BTreeMap::from([(
                    "password".to_owned(),
                    ByteString(b"p".to_vec()),
                )])),
                ..secret(crate::api::SNAPSHOT_TYPE, "TenantMcpConfig", owner)
            }))),
            attempt: 0,
        });
        assert_eq!(
            tenants,
            BTreeSet::from(["acme".to_owned(), "beta".to_owned()])
        );
        let read = snapshots.get("shared", "snap", owner).and_then(|s| s.data);
        assert_eq!(
            read.and_then(|d| d.get("password").cloned()),
            Some(ByteString(b"p".to_vec()))
        );
        // The same needs again change nothing; acme moving away leaves beta's.
        snapshots.need("beta", vec![key("shared")]);
        snapshots.need("acme", vec![key("other")]);
        assert!(snapshots.get("shared", "snap", owner).is_some());
        snapshots.need("beta", Vec::new());
        assert!(
            snapshots.get("shared", "snap", owner).is_none(),
            "nobody uses it"
        );
        assert!(!snapshots.settled(), "acme's new snapshot is not read yet");
    }
}
