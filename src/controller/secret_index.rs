//! Which configs read which Secret, so a change to a Secret reconciles exactly the configs
//! that use it. Filled in by each reconcile from the config's spec.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

type SecretId = (String, String);

/// Secret (namespace, name) → names of the configs in that namespace that read it.
#[derive(Debug, Default)]
pub struct SecretIndex {
    inner: Mutex<Inner>,
}

/// Sorted vectors ([`super::sorted`]), not sets: most Secrets have one reader and most
/// configs read one or two Secrets.
#[derive(Debug, Default)]
struct Inner {
    readers: HashMap<SecretId, Vec<String>>,
    reads: HashMap<SecretId, Vec<String>>,
}

impl SecretIndex {
    /// Records that config `name` in `namespace` reads exactly `secrets`.
    pub fn set(&self, namespace: &str, name: &str, secrets: BTreeSet<String>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let config = (namespace.to_owned(), name.to_owned());
        let before = inner.reads.remove(&config).unwrap_or_default();
        for secret in before.iter().filter(|s| !secrets.contains(*s)) {
            let id = (namespace.to_owned(), secret.clone());
            if let Some(readers) = inner.readers.get_mut(&id) {
                readers.retain(|r| r != name);
                if readers.is_empty() {
                    inner.readers.remove(&id);
                }
            }
        }
        for secret in &secrets {
            let readers = inner
                .readers
                .entry((namespace.to_owned(), secret.clone()))
                .or_default();
            super::sorted::insert(readers, name);
        }
        if !secrets.is_empty() {
            inner.reads.insert(config, secrets.into_iter().collect());
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
            .get(&(namespace.to_owned(), secret.to_owned()))
            .cloned()
            .unwrap_or_default()
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
