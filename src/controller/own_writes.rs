//! The controller's own status writes that its config cache may not have seen yet.
//!
//! kube-runtime hands a reconcile the cached object. The reconcile right after a status write
//! (triggered by a Secret, say) can start before the watch delivers that write; deciding on the
//! older status would redo what the write recorded. ReplicaSet's "expectations" solve the same
//! problem in kube-controller-manager.

use std::collections::HashMap;
use std::sync::Mutex;

/// The resourceVersion of each config's last status write by this replica, by config uid,
/// until the cache has caught up with it.
#[derive(Debug, Default)]
pub struct OwnWrites(Mutex<HashMap<String, i64>>);

impl OwnWrites {
    /// Records that this replica wrote config `uid`'s status, which made it `version`.
    pub fn wrote(&self, uid: &str, version: i64) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(uid.to_owned(), version);
        }
    }

    /// `Err(last write)` while the cached `version` of config `uid` is older than this
    /// replica's last write to it; once the cache has caught up the entry is dropped.
    pub fn check(&self, uid: &str, cached: i64) -> Result<(), i64> {
        let Ok(mut map) = self.0.lock() else {
            return Ok(());
        };
        match map.get(uid) {
            Some(&last) if cached < last => Err(last),
            Some(_) => {
                map.remove(uid);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Forgets config `uid` (it is gone).
    pub fn forget(&self, uid: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(uid);
        }
    }

    /// How many writes the cache has not been seen to catch up with.
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::OwnWrites;

    #[test]
    fn a_cache_behind_the_last_write_is_stale_until_it_catches_up() {
        let writes = OwnWrites::default();
        assert_eq!(writes.check("a", 5), Ok(()), "nothing written: not stale");
        writes.wrote("a", 10);
        assert_eq!(writes.check("a", 9), Err(10));
        assert_eq!(writes.check("b", 1), Ok(()), "another config");
        assert_eq!(writes.check("a", 10), Ok(()));
        assert!(writes.is_empty(), "caught up: the entry goes");
        assert_eq!(writes.check("a", 3), Ok(()));
        writes.wrote("a", 12);
        writes.forget("a");
        assert_eq!(writes.check("a", 11), Ok(()));
    }
}
