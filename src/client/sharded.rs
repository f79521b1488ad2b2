//! A concurrent map from tenant to value: `dashmap`'s sharded map (each shard behind its own
//! lock, so lookups of different tenants from different cores rarely meet on one lock word)
//! under the few operations the client's caches need, named for what they do there.

use dashmap::DashMap;
use foldhash::fast::RandomState;

/// The map.
pub(crate) struct ShardedMap<V> {
    map: DashMap<String, V, RandomState>,
}

impl<V> std::fmt::Debug for ShardedMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedMap")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<V> Default for ShardedMap<V> {
    fn default() -> Self {
        Self {
            map: DashMap::with_hasher(RandomState::default()),
        }
    }
}

impl<V> ShardedMap<V> {
    /// Runs `f` on the value of `key` under its shard's read lock.
    pub(crate) fn with<R>(&self, key: &str, f: impl FnOnce(Option<&V>) -> R) -> R {
        let entry = self.map.get(key);
        f(entry.as_deref())
    }

    /// The value of `key`, or the one `make` returns inserted (and whether it was).
    pub(crate) fn get_or_insert_with(&self, key: &str, make: impl FnOnce() -> V) -> (V, bool)
    where
        V: Clone,
    {
        // A read lock first: the hit needs no owned key and no write lock.
        if let Some(v) = self.map.get(key) {
            return (v.clone(), false);
        }
        let mut inserted = false;
        let v = self
            .map
            .entry(key.to_owned())
            .or_insert_with(|| {
                inserted = true;
                make()
            })
            .clone();
        (v, inserted)
    }

    /// Sets the value of `key`; returns the old one.
    pub(crate) fn insert(&self, key: &str, value: V) -> Option<V> {
        self.map.insert(key.to_owned(), value)
    }

    /// Removes `key`; returns its value.
    pub(crate) fn remove(&self, key: &str) -> Option<V> {
        self.map.remove(key).map(|(_, v)| v)
    }

    /// Removes `key` only when `pred` holds for its value (checked under the lock).
    pub(crate) fn remove_if(&self, key: &str, pred: impl FnOnce(&V) -> bool) -> Option<V> {
        self.map.remove_if(key, |_, v| pred(v)).map(|(_, v)| v)
    }

    /// Removes and returns every entry for which `pred` holds.
    pub(crate) fn remove_where(&self, mut pred: impl FnMut(&V) -> bool) -> Vec<(String, V)>
    where
        V: Clone,
    {
        let mut out = Vec::new();
        self.map.retain(|k, v| {
            if pred(v) {
                out.push((k.clone(), v.clone()));
                false
            } else {
                true
            }
        });
        out
    }

    /// Replaces every entry: the new ones are inserted first and the others removed after, so
    /// a key in both is never missing to a reader.
    pub(crate) fn replace_all(&self, all: impl IntoIterator<Item = (String, V)>) {
        let mut keep = std::collections::HashSet::new();
        for (k, v) in all {
            keep.insert(k.clone());
            self.map.insert(k, v);
        }
        self.map.retain(|k, _| keep.contains(k));
    }

    /// The key whose `rank` is smallest, with its rank (the least recently used, given last
    /// use as rank).
    pub(crate) fn min_key_by(&self, rank: impl Fn(&V) -> u64) -> Option<(String, u64)> {
        self.map
            .iter()
            .map(|e| (rank(e.value()), e.key().clone()))
            .min_by_key(|(r, _)| *r)
            .map(|(r, k)| (k, r))
    }

    /// Runs `f` on every value, under each shard's read lock in turn (no copies).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&V)) {
        self.map.iter().for_each(|e| f(e.value()));
    }

    /// A copy of every value.
    pub(crate) fn values(&self) -> Vec<V>
    where
        V: Clone,
    {
        self.map.iter().map(|e| e.value().clone()).collect()
    }

    /// A copy of every entry.
    pub(crate) fn entries(&self) -> Vec<(String, V)>
    where
        V: Clone,
    {
        self.map
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// How many entries.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_and_len_agree_across_shards() {
        let map = ShardedMap::<u64>::default();
        for i in 0..1000u64 {
            assert_eq!(map.insert(&format!("t{i}"), i), None);
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.insert("t7", 70), Some(7));
        assert_eq!(map.len(), 1000);
        assert_eq!(map.with("t7", |v| v.copied()), Some(70));
        assert_eq!(map.remove("t7"), Some(70));
        assert_eq!(map.remove("t7"), None);
        assert_eq!(map.remove_if("t8", |v| *v == 0), None);
        assert_eq!(map.remove_if("t8", |v| *v == 8), Some(8));
        assert_eq!(map.len(), 998);
        let small = map.remove_where(|v| *v < 100);
        assert_eq!(small.len(), 98);
        assert_eq!(map.len(), 900);
        assert_eq!(map.min_key_by(|v| *v), Some(("t100".to_owned(), 100)));
        assert_eq!(map.values().len(), 900);
        assert_eq!(map.entries().len(), 900);
        let mut sum = 0;
        map.for_each(|v| sum += v);
        assert_eq!(sum, (100..1000).sum::<u64>());
        let (v, inserted) = map.get_or_insert_with("t100", || 0);
        assert_eq!((v, inserted), (100, false));
        let (v, inserted) = map.get_or_insert_with("new", || 5);
        assert_eq!((v, inserted), (5, true));
        map.replace_all([("a".to_owned(), 1), ("b".to_owned(), 2)]);
        assert_eq!(map.len(), 2);
        assert_eq!(map.with("t100", |v| v.copied()), None);
        assert_eq!(map.with("b", |v| v.copied()), Some(2));
    }
}
