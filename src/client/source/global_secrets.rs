//! The global servers' credential Secrets, each watched by name (`metadata.name=` field
//! selector) in the GlobalMcpConfig's `credentialsNamespace`: an application account needs
//! `get`/`list`/`watch` on exactly those names (RBAC `resourceNames`), never on the namespace,
//! and a rotated global credential reaches the client as soon as it is written.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// An event of one named watch; `generation` tells events of a replaced watch apart.
pub(super) struct Update {
    generation: u64,
    name: String,
    event: Result<watcher::Event<Secret>, String>,
}

/// `M` is the source's message type: each [`Update`] reaches it as one.
pub(super) struct GlobalSecrets<M> {
    client: Client,
    tx: mpsc::UnboundedSender<M>,
    stop: CancellationToken,
    namespace: String,
    generation: u64,
    watches: HashMap<String, CancellationToken>,
    secrets: HashMap<String, Secret>,
    /// What a re-list found so far, applied at its end.
    staged: HashMap<String, Option<Secret>>,
    listed: HashSet<String>,
    last_error: HashMap<String, String>,
}

impl<M: From<Update> + Send + 'static> GlobalSecrets<M> {
    pub(super) fn new(
        client: Client,
        tx: mpsc::UnboundedSender<M>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            client,
            tx,
            stop,
            namespace: String::new(),
            generation: 0,
            watches: HashMap::new(),
            secrets: HashMap::new(),
            staged: HashMap::new(),
            listed: HashSet::new(),
            last_error: HashMap::new(),
        }
    }

    /// Watches exactly `names` in `namespace` from now on.
    pub(super) fn want(&mut self, namespace: &str, names: BTreeSet<String>) {
        if namespace != self.namespace {
            for (_, stop) in self.watches.drain() {
                stop.cancel();
            }
            self.generation += 1;
            self.namespace = namespace.to_owned();
            self.secrets.clear();
            self.staged.clear();
            self.listed.clear();
            self.last_error.clear();
        }
        let gone: Vec<String> = self
            .watches
            .keys()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some(stop) = self.watches.remove(&name) {
                stop.cancel();
            }
            self.secrets.remove(&name);
            self.staged.remove(&name);
            self.listed.remove(&name);
            self.last_error.remove(&name);
        }
        for name in names {
            if !self.watches.contains_key(&name) {
                let stop = self.stop.child_token();
                self.spawn(name.clone(), stop.clone());
                self.watches.insert(name, stop);
            }
        }
    }

    fn spawn(&self, name: String, stop: CancellationToken) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let (tx, generation) = (self.tx.clone(), self.generation);
        tokio::spawn(async move {
            let mut events = watcher(api, config)
                .backoff(crate::watch_backoff::WatchBackoff::capped(
                    crate::watch_backoff::CLIENT_CAP,
                ))
                .boxed();
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    next = events.next() => next,
                };
                let Some(event) = next else { return };
                let update = Update {
                    generation,
                    name: name.clone(),
                    event: event.map_err(|e| e.to_string()),
                };
                if tx.send(update.into()).is_err() {
                    return;
                }
            }
        });
    }

    /// Takes an event of a named watch; whether a Secret changed.
    pub(super) fn update(&mut self, update: Update) -> bool {
        use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
        let Update {
            generation,
            name,
            event,
        } = update;
        if generation != self.generation || !self.watches.contains_key(&name) {
            return false;
        }
        match event {
            Err(e) => {
                warn!(secret = %format!("{}/{name}", self.namespace), "watching a global credential Secret: {e}");
                self.last_error.insert(name, e);
                false
            }
            Ok(Init) => {
                self.staged.insert(name, None);
                false
            }
            Ok(InitApply(s)) => {
                self.staged.insert(name, Some(s));
                false
            }
            Ok(InitDone) => {
                self.listed.insert(name.clone());
                self.last_error.remove(&name);
                match self.staged.remove(&name).flatten() {
                    Some(s) => self.secrets.insert(name, s),
                    None => self.secrets.remove(&name),
                };
                true
            }
            Ok(Apply(s)) => {
                self.secrets.insert(name, s);
                true
            }
            Ok(Delete(_)) => self.secrets.remove(&name).is_some(),
        }
    }

    /// Global Secret `name`, if it exists.
    pub(super) fn get(&self, name: &str) -> Option<Secret> {
        self.secrets.get(name).cloned()
    }

    /// Whether every named watch has listed once.
    pub(super) fn listed(&self) -> bool {
        self.watches.keys().all(|n| self.listed.contains(n))
    }

    /// The named watches the first sync still waits for, with their last error.
    pub(super) fn waiting_for(&self) -> Vec<String> {
        let mut waiting: Vec<String> = self
            .watches
            .keys()
            .filter(|n| !self.listed.contains(*n))
            .map(|n| match self.last_error.get(n) {
                Some(e) => format!("global Secret {}/{n} ({e})", self.namespace),
                None => format!("global Secret {}/{n}", self.namespace),
            })
            .collect();
        waiting.sort();
        waiting
    }
}
