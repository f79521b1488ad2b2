//! Which configs read which Secret, so a change to a Secret reconciles exactly the configs
//! that use it. Filled in by each reconcile from the config's spec.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// (namespace, name) of a Secret or of a config.
type Id = (Arc<str>, Arc<str>);

/// Secret (namespace, name) → names of the configs in that namespace that read it.
#[derive(Debug, Default)]
pub struct SecretIndex {
    inner: Mutex<Inner>,
}

/// Sorted vectors, not sets: most Secrets have one reader and most configs read one or two
/// Secrets. Each name is kept once and shared (`Arc<str>`) between the two maps.
#[derive(Debug, Default)]
struct Inner {
    /// Secret → the configs that read it.
    readers: HashMap<Id, Vec<Arc<str>>>,
    /// Config → the Secrets it reads.
    reads: HashMap<Id, Vec<Arc<str>>>,
}

impl SecretIndex {
    /// Records that config `name` in `namespace` reads exactly `secrets`.
    pub fn set(&self, namespace: &str, name: &str, secrets: BTreeSet<String>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let probe: Id = (namespace.into(), name.into());
        let (config, before) = inner
            .reads
            .remove_entry(&probe)
            .unwrap_or((probe, Vec::new()));
        for secret in before.iter().filter(|s| !secrets.contains(&***s)) {
            let id = (config.0.clone(), secret.clone());
            if let Some(readers) = inner.readers.get_mut(&id) {
                readers.retain(|r| **r != *name);
                if readers.is_empty() {
                    inner.readers.remove(&id);
                }
            }
        }
        let mut reads = Vec::with_capacity(secrets.len());
        for secret in secrets {
            let entry = inner.readers.entry((config.0.clone(), secret.into()));
            reads.push(entry.key().1.clone());
            let readers = entry.or_default();
            if let Err(at) = readers.binary_search(&config.1) {
                readers.insert(at, config.1.clone());
            }
        }
        if !reads.is_empty() {
            inner.reads.insert(config, reads);
        }
    }

    /// Forgets config `name` in `namespace`.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.set(namespace, name, BTreeSet::new());
    }

    /// The configs in `namespace` that read Secret `secret`.
    pub fn readers(&self, namespace: &str, secret: &str) -> Vec<String> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner
            .readers
            .get(&(namespace.into(), secret.into()))
            .into_iter()
            .flatten()
            .map(|r| r.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_follow_each_configs_latest_spec() {
        let index = SecretIndex::default();
        index.set("a", "c1", ["pg".into(), "s3".into()].into());
        index.set("a", "c2", ["pg".into()].into());
        index.set("b", "c1", ["pg".into()].into());
        assert_eq!(index.readers("a", "pg"), ["c1", "c2"]);
        assert_eq!(index.readers("b", "pg"), ["c1"]);
        index.set("a", "c1", ["s3-new".into()].into());
        assert_eq!(index.readers("a", "pg"), ["c2"]);
        assert!(index.readers("a", "s3").is_empty());
        assert_eq!(index.readers("a", "s3-new"), ["c1"]);
        index.remove("a", "c2");
        assert!(index.readers("a", "pg").is_empty());
    }
}
