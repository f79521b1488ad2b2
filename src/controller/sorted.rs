//! Small sets kept as sorted vectors: the controller's indexes hold one or two entries per key
//! almost always, and a B-tree set's first node has room for eleven.

use std::borrow::Borrow;

/// Adds `value` to the sorted `set` unless it is there already (allocating only then).
pub(super) fn insert<T, Q>(set: &mut Vec<T>, value: &Q)
where
    T: Borrow<Q> + Ord,
    Q: Ord + ToOwned<Owned = T> + ?Sized,
{
    if let Err(at) = set.binary_search_by(|x| x.borrow().cmp(value)) {
        set.insert(at, value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stays_sorted_and_without_repeats() {
        let mut set: Vec<String> = Vec::new();
        for v in ["b", "a", "c", "a"] {
            super::insert(&mut set, v);
        }
        assert_eq!(set, ["a", "b", "c"]);
    }
}
