//! Which configs claim each tenant, and which configs live in each namespace, kept from the
//! config watch's events, so a reconcile finds the other claims of its tenant (for the binding
//! rule) and a namespace change finds its configs without scanning every config in the cluster.
//! At 10,000 configs that scan was the controller's only per-reconcile cost growing with N.
//!
//! Each string is kept once and shared (`Arc<str>`) between the entry and the two lists that
//! name it: with a `String` in each place the index took about 800 bytes per config.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use super::sorted;
use crate::api::TenantMcpConfig;

/// A config's place in the index: (namespace, name).
type Key = (Arc<str>, Arc<str>);

/// The tenant a config claims.
type Tenant = Arc<str>;

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Key, Tenant>,
    by_tenant: HashMap<Tenant, Vec<Key>>,
    /// Keyed by the namespace of the keys it lists (the same `Arc`).
    by_namespace: HashMap<Arc<str>, Vec<Key>>,
    /// The entries of a relist in progress (between `Init` and `InitDone`): swapped in whole,
    /// as the reflector's store is, so a config deleted while the watch was down goes.
    relist: Option<HashMap<Key, Tenant>>,
}

/// Configs by tenant and by namespace.
#[derive(Debug, Default)]
pub struct ClaimIndex {
    inner: Mutex<Inner>,
}

impl ClaimIndex {
    /// Takes one event of the config watch (call it for every event, in order).
    pub fn observe(&self, event: &Event<TenantMcpConfig>) {
        let mut inner = self.lock();
        match event {
            Event::Apply(config) => inner.insert(key(config), tenant(config)),
            Event::Delete(config) => inner.remove(&key(config)),
            Event::Init => inner.relist = Some(HashMap::new()),
            Event::InitApply(config) => {
                inner
                    .relist
                    .get_or_insert_with(HashMap::new)
                    .insert(key(config), tenant(config));
            }
            Event::InitDone => {
                let fresh = inner.relist.take().unwrap_or_default();
                *inner = Inner::default();
                for (k, t) in fresh {
                    inner.insert(k, t);
                }
            }
        }
    }

    /// Every config that claims `tenant`.
    pub fn claiming(&self, tenant: &str) -> Vec<ObjectRef<TenantMcpConfig>> {
        refs(self.lock().by_tenant.get(tenant))
    }

    /// Every config in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectRef<TenantMcpConfig>> {
        refs(self.lock().by_namespace.get(namespace))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn insert(&mut self, k: Key, tenant: Tenant) {
        self.remove(&k);
        // The tenant's string is shared with another claim's when there is one.
        let tenant = match self.by_tenant.get_key_value(&tenant) {
            Some((shared, _)) => shared.clone(),
            None => tenant,
        };
        sorted::insert(self.by_tenant.entry(tenant.clone()).or_default(), &k);
        sorted::insert(self.by_namespace.entry(k.0.clone()).or_default(), &k);
        self.entries.insert(k, tenant);
    }

    fn remove(&mut self, k: &Key) {
        let Some(tenant) = self.entries.remove(k) else {
            return;
        };
        for (map, at) in [
            (&mut self.by_tenant, &tenant),
            (&mut self.by_namespace, &k.0),
        ] {
            if let Some(set) = map.get_mut(at) {
                set.retain(|x| x != k);
                if set.is_empty() {
                    map.remove(at);
                }
            }
        }
    }
}

fn key(config: &TenantMcpConfig) -> Key {
    let meta = &config.metadata;
    (
        meta.namespace.as_deref().unwrap_or_default().into(),
        meta.name.as_deref().unwrap_or_default().into(),
    )
}

fn tenant(config: &TenantMcpConfig) -> Tenant {
    config.spec.tenant_id.as_str().into()
}

fn refs(keys: Option<&Vec<Key>>) -> Vec<ObjectRef<TenantMcpConfig>> {
    keys.into_iter()
        .flatten()
        .map(|(ns, name)| ObjectRef::new(name).within(ns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ns: &str, name: &str, tenant: &str) -> TenantMcpConfig {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tenantmcp.dev/v1alpha1",
            "kind": "TenantMcpConfig",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"tenantId": tenant, "servers": {}},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(refs: Vec<ObjectRef<TenantMcpConfig>>) -> Vec<String> {
        refs.into_iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn claims_follow_applies_edits_and_deletes() {
        let index = ClaimIndex::default();
        index.observe(&Event::Apply(config("tenant-acme", "acme", "acme")));
        // A hostile config in another namespace claiming the same tenant.
        index.observe(&Event::Apply(config("tenant-evil", "x", "acme")));
        assert_eq!(index.claiming("acme").len(), 2);
        assert_eq!(index.in_namespace("tenant-evil").len(), 1);
        // Its tenantId edited away: no longer a claim on acme.
        index.observe(&Event::Apply(config("tenant-evil", "x", "evil")));
        assert_eq!(
            names(index.claiming("acme")),
            names(vec![ObjectRef::new("acme").within("tenant-acme")])
        );
        assert_eq!(index.claiming("evil").len(), 1);
        index.observe(&Event::Delete(config("tenant-evil", "x", "evil")));
        assert!(index.claiming("evil").is_empty());
        assert!(index.in_namespace("tenant-evil").is_empty());
    }

    /// A relist replaces the index whole: a config deleted while the watch was down is gone,
    /// and until the relist is done the old entries still answer.
    #[test]
    fn a_relist_replaces_everything_when_done() {
        let index = ClaimIndex::default();
        index.observe(&Event::Apply(config("a", "gone", "acme")));
        index.observe(&Event::Init);
        index.observe(&Event::InitApply(config("b", "kept", "acme")));
        assert_eq!(
            index.claiming("acme").len(),
            1,
            "old answers until InitDone"
        );
        index.observe(&Event::InitDone);
        assert_eq!(
            names(index.claiming("acme")),
            names(vec![ObjectRef::new("kept").within("b")])
        );
        assert!(index.in_namespace("a").is_empty());
    }
}
