//! A map kept from a watch's events, as kube's reflector store keeps objects, but of what its
//! owner makes of each object (a routing record, a namespace's binding) instead of the
//! object: the store would hold every object whole for as long as it exists. A re-list is
//! gathered apart and swapped in whole when it ends, so readers never see half of one, and an
//! object deleted while the watch was down is gone after it. The client library's Kubernetes
//! source and the controller's namespace index keep their maps with it.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

use kube::runtime::watcher::Event;

/// What one watch event did to a [`Listed`].
#[derive(Debug, PartialEq)]
pub enum Applied<K, V> {
    /// `key` changed; `old` is what it held before (`None`: nothing).
    Changed {
        /// The entry's key.
        key: K,
        /// Its previous value.
        old: Option<V>,
    },
    /// A re-list ended: every entry may have changed.
    Relisted,
    /// A re-list is under way: nothing visible changed yet.
    Buffered,
}

/// Entries by key, from a watch's events.
#[derive(Debug)]
pub struct Listed<K, V> {
    live: HashMap<K, V>,
    relist: Option<HashMap<K, V>>,
}

impl<K, V> Default for Listed<K, V> {
    fn default() -> Self {
        Self {
            live: HashMap::new(),
            relist: None,
        }
    }
}

impl<K: Eq + Hash + Clone, V> Listed<K, V> {
    /// The entry of `key`.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.live.get(key)
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.live.iter()
    }

    /// Applies `event`: `key` names an object's entry, `value` makes the entry (`None`: the
    /// object is known but keeps no entry, like a namespace bound to no tenant). A deleted
    /// object is only keyed.
    pub fn apply<O>(
        &mut self,
        event: &Event<O>,
        key: impl Fn(&O) -> K,
        value: impl Fn(&O) -> Option<V>,
    ) -> Applied<K, V> {
        match event {
            Event::Apply(o) => {
                let key = key(o);
                let old = match value(o) {
                    Some(v) => self.live.insert(key.clone(), v),
                    None => self.live.remove(&key),
                };
                Applied::Changed { key, old }
            }
            Event::Delete(o) => {
                let key = key(o);
                let old = self.live.remove(&key);
                Applied::Changed { key, old }
            }
            Event::Init => {
                self.relist = Some(HashMap::new());
                Applied::Buffered
            }
            Event::InitApply(o) => {
                if let Some(v) = value(o) {
                    self.relist
                        .get_or_insert_with(HashMap::new)
                        .insert(key(o), v);
                }
                Applied::Buffered
            }
            Event::InitDone => {
                self.live = self.relist.take().unwrap_or_default();
                Applied::Relisted
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Namespace = (&'static str, Option<&'static str>);

    fn name(o: &Namespace) -> String {
        o.0.to_owned()
    }

    fn bound(o: &Namespace) -> Option<String> {
        o.1.map(str::to_owned)
    }

    #[test]
    fn a_relist_is_swapped_in_whole_when_it_ends() {
        let mut l: Listed<String, String> = Listed::default();
        l.apply(&Event::Init, name, bound);
        l.apply(&Event::InitApply(("a", Some("acme"))), name, bound);
        assert_eq!(l.get(&"a".to_owned()), None, "not before the list ends");
        assert_eq!(l.apply(&Event::InitDone, name, bound), Applied::Relisted);
        assert_eq!(l.get(&"a".to_owned()).map(String::as_str), Some("acme"));
        // A re-list that no longer holds `a` (deleted while the watch was down) drops it,
        // and keeps serving the old entries until it ends.
        l.apply(&Event::Init, name, bound);
        l.apply(&Event::InitApply(("b", Some("beta"))), name, bound);
        assert!(l.get(&"a".to_owned()).is_some());
        l.apply(&Event::InitDone, name, bound);
        assert_eq!(l.get(&"a".to_owned()), None);
        assert_eq!(l.iter().count(), 1);
    }

    #[test]
    fn an_object_that_keeps_no_entry_removes_the_old_one() {
        let mut l: Listed<String, String> = Listed::default();
        l.apply(&Event::Apply(("ns", Some("acme"))), name, bound);
        // The namespace lost its binding label.
        assert_eq!(
            l.apply(&Event::Apply(("ns", None)), name, bound),
            Applied::Changed {
                key: "ns".to_owned(),
                old: Some("acme".to_owned())
            }
        );
        assert_eq!(l.get(&"ns".to_owned()), None);
        assert_eq!(
            l.apply(&Event::Delete(("ns", None)), name, bound),
            Applied::Changed {
                key: "ns".to_owned(),
                old: None
            }
        );
    }
}
