//! A map of a few string keys, kept as a vector sorted by key: the same JSON object and the same
//! schema as a `BTreeMap<String, V>`, without its node. A B-tree map allocates a node with room
//! for eleven entries on its first insert (about 540 bytes for string values), and the maps in a
//! config's status hold one to three: at 10,000 configs their nodes were about 9 MB of the
//! controller's cache.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Entries by key, sorted by key, each key once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlatMap<V>(Vec<(String, V)>);

impl<V> Default for FlatMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> FlatMap<V> {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// The value of `key`, to change.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets the value of `key`; returns the one it replaced.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Keeps the entries for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// The values, in key order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V> FromIterator<(String, V)> for FlatMap<V> {
    /// The last value of a key given twice wins, as in a `BTreeMap`.
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut map = Self::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<V> From<BTreeMap<String, V>> for FlatMap<V> {
    fn from(map: BTreeMap<String, V>) -> Self {
        // Already sorted and unique.
        Self(map.into_iter().collect())
    }
}

impl<V> std::ops::Index<&str> for FlatMap<V> {
    type Output = V;

    fn index(&self, key: &str) -> &V {
        self.get(key)
            .unwrap_or_else(|| panic!("no entry {key:?} in the map"))
    }
}

impl<'a, V> IntoIterator for &'a FlatMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, V)>,
        fn(&'a (String, V)) -> (&'a String, &'a V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<V: Serialize> Serialize for FlatMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for FlatMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, V>::deserialize(deserializer).map(Self::from)
    }
}

impl<V: JsonSchema> JsonSchema for FlatMap<V> {
    fn schema_name() -> Cow<'static, str> {
        BTreeMap::<String, V>::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        BTreeMap::<String, V>::schema_id()
    }

    fn inline_schema() -> bool {
        BTreeMap::<String, V>::inline_schema()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        BTreeMap::<String, V>::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_reads_and_writes_the_json_object_a_btree_map_does() {
        let json = r#"{"zeta":"1","alpha":"2","mid":"3"}"#;
        let flat: FlatMap<String> = serde_json::from_str(json).unwrap();
        let tree: BTreeMap<String, String> = serde_json::from_str(json).unwrap();
        assert_eq!(
            serde_json::to_string(&flat).unwrap(),
            serde_json::to_string(&tree).unwrap()
        );
        assert_eq!(flat.keys().collect::<Vec<_>>(), ["alpha", "mid", "zeta"]);
        assert_eq!(flat.get("mid").map(String::as_str), Some("3"));
        assert_eq!(flat.get("nope"), None);
        // A key given twice: the last wins, as in the B-tree map.
        let twice: FlatMap<u8> = serde_json::from_str(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(twice.iter().collect::<Vec<_>>(), [(&"a".to_owned(), &2)]);
    }

    #[test]
    fn inserts_and_removals_keep_it_sorted_with_each_key_once() {
        let mut m = FlatMap::default();
        assert_eq!(m.insert("b".to_owned(), 1), None);
        assert_eq!(m.insert("a".to_owned(), 2), None);
        assert_eq!(m.insert("c".to_owned(), 3), None);
        assert_eq!(m.insert("b".to_owned(), 4), Some(1));
        assert_eq!(m.len(), 3);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [2, 4, 3]);
        assert_eq!(m.remove("a"), Some(2));
        assert_eq!(m.remove("a"), None);
        m.retain(|k, _| k != "c");
        assert_eq!(m.iter().collect::<Vec<_>>(), [(&"b".to_owned(), &4)]);
        *m.get_mut("b").unwrap() = 5;
        assert_eq!(m["b"], 5);
    }

    #[test]
    fn its_schema_is_the_btree_maps() {
        let flat = schemars::schema_for!(FlatMap<String>);
        let tree = schemars::schema_for!(BTreeMap<String, String>);
        assert_eq!(flat, tree);
    }
}
