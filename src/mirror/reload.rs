//! Picks up a changed keys directory (the mounted keys Secret) without a restart, so a key
//! rotation needs no controller restart: the new active key seals from the next write on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::crypto::Keyring;

/// Reads `dir` every `every` until `stop`; when its active key or key material differ from
/// `current`, hands the new keyring to `apply`, which checks it and takes it or says why not.
/// A directory that does not load (a key being added, a typo) or a keyring `apply` refuses (a
/// key regenerated under an id the rows were sealed with) keeps the current keyring, with an
/// error logged once per distinct problem.
pub async fn watch_keys<F, Fut>(
    dir: PathBuf,
    mut current: Arc<Keyring>,
    every: Duration,
    stop: CancellationToken,
    apply: F,
) where
    F: Fn(Arc<Keyring>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut last_error = String::new();
    let mut report = |text: String| {
        if text != last_error {
            error!(
                "reloading keys from {}: {text}; keeping the loaded keys",
                dir.display()
            );
            last_error = text;
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match Keyring::from_dir(&dir) {
            Ok(next) if next.same_keys(&current) => {}
            Ok(next) => {
                let next = Arc::new(next);
                match apply(next.clone()).await {
                    Ok(()) => {
                        info!(
                            active = next.active_id(),
                            keys = ?next.key_ids().collect::<Vec<_>>(),
                            "loaded keys from {}",
                            dir.display()
                        );
                        current = next;
                    }
                    Err(e) => report(e),
                }
            }
            Err(e) => report(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;
    use crate::crypto::generate_key;

    #[tokio::test]
    async fn a_new_active_key_is_applied_and_a_broken_directory_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k1"), generate_key()).unwrap();
        std::fs::write(dir.path().join("active"), "k1").unwrap();
        let first = Arc::new(Keyring::from_dir(dir.path()).unwrap());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch_keys(
            dir.path().to_owned(),
            first,
            Duration::from_millis(10),
            stop.clone(),
            {
                let seen = seen.clone();
                move |k: Arc<Keyring>| {
                    seen.lock().unwrap().push(k.active_id().to_owned());
                    std::future::ready(Ok(()))
                }
            },
        ));
        let wait_for = async |n: usize| {
            for _ in 0..500 {
                if seen.lock().unwrap().len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("no reload after {n} changes: {:?}", seen.lock().unwrap());
        };
        // Rotation: add k2 and make it active. (A mounted Secret changes all at once; here
        // `active` goes first, so the state in between is broken, never a different keyring.)
        std::fs::write(dir.path().join("active"), "k2").unwrap();
        std::fs::write(dir.path().join("k2"), generate_key()).unwrap();
        wait_for(1).await;
        // A broken directory (active names a key that is not there) keeps k2…
        std::fs::write(dir.path().join("active"), "k3").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // …until it is fixed.
        std::fs::write(dir.path().join("k3"), generate_key()).unwrap();
        wait_for(2).await;
        stop.cancel();
        task.await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["k2", "k3"]);
    }
}
