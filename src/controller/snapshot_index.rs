//! The controller's snapshot Secrets by the config they belong to, kept from the Secret
//! metadata watch the controller runs anyway, so the snapshot cleanup of a reconcile reads
//! memory instead of listing Secrets (a LIST per reconcile was two of the five API requests a
//! tenant cost on first sync). It also says which Secret events are news: a snapshot the
//! controller itself just wrote or deleted is not, so its own writes trigger no reconcile.
//!
//! What counts as a snapshot is what the old label selector matched
//! ([`snapshot::selector`](super::snapshot::selector)): `app.kubernetes.io/managed-by=tenant-mcp`
//! and a `tenantmcp.dev/config-uid`, in the config's own namespace. Only metadata is kept, never
//! a credential.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;

use super::snapshot::{CONFIG_UID_LABEL, MANAGED_BY_LABEL, SUPERSEDED_ANNOTATION};

/// (namespace, config uid). Strings are `Arc`s shared between the two maps that name them.
type Owner = (Arc<str>, Arc<str>);
/// (namespace, Secret name).
type Name = (Arc<str>, Arc<str>);

/// What the index keeps of one snapshot: what the cleanup ([`super::snapshot::cleanup`]) and
/// the news test read, and the owning config's name to wake it when the snapshot goes. The
/// whole metadata with its labels and owner reference took 6 KiB per snapshot at 10,000
/// configs (a third of the controller's heap); this takes about 200 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Kept {
    name: Arc<str>,
    uid: Option<Box<str>>,
    resource_version: Option<Box<str>>,
    /// The superseded-at annotation, when the controller has marked it.
    superseded: Option<Box<str>>,
    /// The controlling TenantMcpConfig's name.
    config: Option<Box<str>>,
}

impl Kept {
    fn of(meta: &ObjectMeta) -> Self {
        Self {
            name: meta.name.as_deref().unwrap_or_default().into(),
            uid: meta.uid.as_deref().map(Into::into),
            resource_version: meta.resource_version.as_deref().map(Into::into),
            superseded: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(SUPERSEDED_ANNOTATION))
                .map(|v| v.as_str().into()),
            config: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "TenantMcpConfig")
                .map(|o| o.name.as_str().into()),
        }
    }

    /// The metadata the cleanup and the owner lookup read, rebuilt.
    fn metadata(&self, owner: &Owner) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.to_string()),
            namespace: Some(owner.0.to_string()),
            uid: self.uid.as_deref().map(str::to_owned),
            resource_version: self.resource_version.as_deref().map(str::to_owned),
            annotations: self
                .superseded
                .as_deref()
                .map(|at| BTreeMap::from([(SUPERSEDED_ANNOTATION.to_owned(), at.to_owned())])),
            owner_references: self.config.as_deref().map(|name| {
                vec![OwnerReference {
                    api_version: crate::api::API_VERSION.to_owned(),
                    kind: "TenantMcpConfig".to_owned(),
                    name: name.to_owned(),
                    uid: owner.1.to_string(),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// A config has one snapshot per declared server type and a few superseded ones: a short
    /// list, not a map (a B-tree's first node holds room for eleven).
    by_owner: HashMap<Owner, Vec<Kept>>,
    owner_of: HashMap<Name, Owner>,
    /// The snapshots of a relist in progress (between `Init` and `InitDone`), swapped in whole.
    relist: Option<Vec<(Owner, Kept)>>,
}

/// Snapshot Secrets' metadata by owning config.
#[derive(Debug, Default)]
pub struct SnapshotIndex {
    inner: Mutex<Inner>,
}

impl SnapshotIndex {
    /// The snapshots of the config with `uid` in `namespace`, by name.
    pub fn owned(&self, namespace: &str, uid: &str) -> Vec<ObjectMeta> {
        let owner: Owner = (namespace.into(), uid.into());
        let mut owned: Vec<ObjectMeta> = self
            .lock()
            .by_owner
            .get(&owner)
            .into_iter()
            .flatten()
            .map(|k| k.metadata(&owner))
            .collect();
        owned.sort_by(|a, b| a.name.cmp(&b.name));
        owned
    }

    /// Records a snapshot as the controller just wrote it (created or annotated), so the
    /// watch event of that write is not news.
    pub fn record(&self, meta: &ObjectMeta) {
        if let Some(owner) = owner(meta) {
            self.lock().insert(owner, Kept::of(meta));
        }
    }

    /// Forgets a snapshot the controller just deleted, so the watch event of that delete is
    /// not news.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().remove(&(namespace.into(), name.into()));
    }

    /// Takes one event of the Secret metadata watch (call it for every event, in order) and
    /// returns the Secrets whose change is news: every Secret that is not a snapshot, and a
    /// snapshot that is new, changed or gone other than by the controller's own hand
    /// (including one that went while the watch was down, found at the end of a relist).
    pub fn observe(
        &self,
        event: &Event<PartialObjectMeta<Secret>>,
    ) -> Vec<PartialObjectMeta<Secret>> {
        let mut inner = self.lock();
        match event {
            Event::Apply(secret) => match owner(&secret.metadata) {
                Some(_) if inner.knows(&secret.metadata) => Vec::new(),
                Some(owner) => {
                    inner.insert(owner, Kept::of(&secret.metadata));
                    vec![secret.clone()]
                }
                None => {
                    // Relabelled away from being a snapshot: forget it.
                    inner.remove(&name(&secret.metadata));
                    vec![secret.clone()]
                }
            },
            Event::Delete(secret) => {
                let key = name(&secret.metadata);
                let known = inner.owner_of.contains_key(&key);
                inner.remove(&key);
                if owner(&secret.metadata).is_none() || known {
                    vec![secret.clone()]
                } else {
                    Vec::new()
                }
            }
            Event::Init => {
                inner.relist = Some(Vec::new());
                Vec::new()
            }
            Event::InitApply(secret) => {
                let news = owner(&secret.metadata).is_none() || !inner.knows(&secret.metadata);
                if let Some(owner) = owner(&secret.metadata) {
                    inner
                        .relist
                        .get_or_insert_with(Vec::new)
                        .push((owner, Kept::of(&secret.metadata)));
                }
                if news {
                    vec![secret.clone()]
                } else {
                    Vec::new()
                }
            }
            Event::InitDone => {
                let fresh = inner.relist.take().unwrap_or_default();
                let listed: std::collections::HashSet<(&str, &str)> = fresh
                    .iter()
                    .map(|(owner, kept)| (&*owner.0, &*kept.name))
                    .collect();
                // Snapshots that went while the watch was down: their owners look again.
                let gone: Vec<PartialObjectMeta<Secret>> = inner
                    .by_owner
                    .iter()
                    .flat_map(|(owner, kept)| kept.iter().map(move |k| (owner, k)))
                    .filter(|(owner, k)| !listed.contains(&(&*owner.0, &*k.name)))
                    .map(|(owner, k)| PartialObjectMeta {
                        metadata: k.metadata(owner),
                        ..PartialObjectMeta::default()
                    })
                    .collect();
                inner.by_owner.clear();
                inner.owner_of.clear();
                for (owner, kept) in fresh {
                    inner.insert(owner, kept);
                }
                gone
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    /// Whether `meta` is a snapshot already indexed at this very version.
    fn knows(&self, meta: &ObjectMeta) -> bool {
        let Some(owner) = owner(meta) else {
            return false;
        };
        let name = meta.name.as_deref().unwrap_or_default();
        self.by_owner
            .get(&owner)
            .and_then(|kept| kept.iter().find(|k| &*k.name == name))
            .is_some_and(|known| {
                known.uid.as_deref() == meta.uid.as_deref()
                    && known.resource_version.as_deref() == meta.resource_version.as_deref()
            })
    }

    fn insert(&mut self, owner: Owner, kept: Kept) {
        let key = (owner.0.clone(), kept.name.clone());
        self.remove(&key);
        self.owner_of.insert(key, owner.clone());
        self.by_owner.entry(owner).or_default().push(kept);
    }

    fn remove(&mut self, key: &Name) {
        let Some(owner) = self.owner_of.remove(key) else {
            return;
        };
        if let Some(kept) = self.by_owner.get_mut(&owner) {
            kept.retain(|k| *k.name != *key.1);
            if kept.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }
}

/// The config a snapshot belongs to, if `meta` is one.
fn owner(meta: &ObjectMeta) -> Option<Owner> {
    let labels = meta.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some("tenant-mcp") {
        return None;
    }
    let uid = labels.get(CONFIG_UID_LABEL)?;
    Some((meta.namespace.as_deref()?.into(), uid.as_str().into()))
}

fn name(meta: &ObjectMeta) -> Name {
    (
        meta.namespace.as_deref().unwrap_or_default().into(),
        meta.name.as_deref().unwrap_or_default().into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(
        name: &str,
        uid: &str,
        version: &str,
        owner: Option<&str>,
    ) -> PartialObjectMeta<Secret> {
        let mut labels = BTreeMap::new();
        if let Some(owner) = owner {
            labels.insert(MANAGED_BY_LABEL.to_owned(), "tenant-mcp".to_owned());
            labels.insert(CONFIG_UID_LABEL.to_owned(), owner.to_owned());
        }
        PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("team-acme".into()),
                uid: Some(uid.into()),
                resource_version: Some(version.into()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            ..PartialObjectMeta::default()
        }
    }

    fn names(news: &[PartialObjectMeta<Secret>]) -> Vec<&str> {
        news.iter()
            .filter_map(|s| s.metadata.name.as_deref())
            .collect()
    }

    #[test]
    fn the_controllers_own_writes_are_not_news_and_everyone_elses_are() {
        let index = SnapshotIndex::default();
        // Written by the controller, then seen on the watch at that version: no reconcile.
        let made = secret("acme-postgres-1", "u1", "10", Some("config-a"));
        index.record(&made.metadata);
        assert!(index.observe(&Event::Apply(made.clone())).is_empty());
        assert_eq!(index.owned("team-acme", "config-a").len(), 1);
        // Changed by someone else (a newer version): news.
        let edited = secret("acme-postgres-1", "u1", "11", Some("config-a"));
        assert_eq!(
            names(&index.observe(&Event::Apply(edited.clone()))),
            ["acme-postgres-1"]
        );
        // Deleted and recreated under the same name (another uid): news.
        let forged = secret("acme-postgres-1", "u2", "12", Some("config-a"));
        assert_eq!(
            names(&index.observe(&Event::Apply(forged.clone()))),
            ["acme-postgres-1"]
        );
        // Deleted by the controller: not news. Deleted by someone else: news.
        index.forget("team-acme", "acme-postgres-1");
        assert!(index.observe(&Event::Delete(forged)).is_empty());
        let other = secret("acme-postgres-2", "u3", "13", Some("config-a"));
        index.observe(&Event::Apply(other.clone()));
        assert_eq!(
            names(&index.observe(&Event::Delete(other))),
            ["acme-postgres-2"]
        );
        assert!(index.owned("team-acme", "config-a").is_empty());
        // A Secret that is not a snapshot (a referenced one) is always news.
        let pg = secret("acme-pg", "u4", "14", None);
        assert_eq!(
            names(&index.observe(&Event::Apply(pg.clone()))),
            ["acme-pg"]
        );
        assert_eq!(names(&index.observe(&Event::Apply(pg))), ["acme-pg"]);
    }

    #[test]
    fn a_snapshot_in_another_namespace_is_never_anothers_config() {
        let index = SnapshotIndex::default();
        let mut elsewhere = secret("acme-postgres-1", "u1", "10", Some("config-a"));
        elsewhere.metadata.namespace = Some("team-evil".into());
        index.observe(&Event::Apply(elsewhere));
        assert!(index.owned("team-acme", "config-a").is_empty());
        assert_eq!(index.owned("team-evil", "config-a").len(), 1);
    }

    #[test]
    fn a_relist_swaps_the_index_and_reports_what_went_while_the_watch_was_down() {
        let index = SnapshotIndex::default();
        let kept = secret("kept", "u1", "10", Some("config-a"));
        let gone = secret("gone", "u2", "11", Some("config-a"));
        index.observe(&Event::Apply(kept.clone()));
        index.observe(&Event::Apply(gone));
        index.observe(&Event::Init);
        // Unchanged across the relist: not news.
        assert!(index.observe(&Event::InitApply(kept)).is_empty());
        let new = secret("new", "u3", "12", Some("config-a"));
        assert_eq!(names(&index.observe(&Event::InitApply(new))), ["new"]);
        assert_eq!(names(&index.observe(&Event::InitDone)), ["gone"]);
        let owned: Vec<String> = index
            .owned("team-acme", "config-a")
            .into_iter()
            .filter_map(|m| m.name)
            .collect();
        assert_eq!(owned, ["kept", "new"]);
    }

    #[test]
    fn what_is_kept_still_names_the_owner_and_the_superseded_mark() {
        let index = SnapshotIndex::default();
        let mut marked = secret("old", "u1", "10", Some("config-uid"));
        marked.metadata.annotations = Some(BTreeMap::from([
            (
                SUPERSEDED_ANNOTATION.to_owned(),
                "2026-12-07T10:00:00Z".to_owned(),
            ),
            ("unrelated".to_owned(), "dropped".to_owned()),
        ]));
        marked.metadata.owner_references = Some(vec![OwnerReference {
            api_version: crate::api::API_VERSION.to_owned(),
            kind: "TenantMcpConfig".to_owned(),
            name: "acme".to_owned(),
            uid: "config-uid".to_owned(),
            ..OwnerReference::default()
        }]);
        index.observe(&Event::Apply(marked));
        let owned = index.owned("team-acme", "config-uid");
        let annotations = owned[0].annotations.clone().unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations[SUPERSEDED_ANNOTATION], "2026-12-07T10:00:00Z");
        // Gone while the watch was down: what the index hands back still leads to its config.
        index.observe(&Event::Init);
        let gone = index.observe(&Event::InitDone);
        let owners = gone[0].metadata.owner_references.clone().unwrap();
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].name.as_str()),
            ("TenantMcpConfig", "acme")
        );
        assert_eq!(gone[0].metadata.namespace.as_deref(), Some("team-acme"));
    }
}
