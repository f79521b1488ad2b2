//! Where the client library learns the configs: the Kubernetes API, or a directory of the same
//! YAML manifests for runs without a cluster ([`directory`]).
//!
//! The Kubernetes source watches `TenantMcpConfig`s, the namespaces' labels (which bind them
//! to tenants) and the `GlobalMcpConfig`, and reads only the Secrets it uses, by name: the
//! snapshot Secrets that `status.active` points at (`snapshots`, fetched once each: they are
//! immutable) and the global servers' credential Secrets (`global_secrets`, one watch per
//! name). It never lists or watches a namespace's Secrets, so an application account needs no
//! right to read any Secret it does not use. An event recomputes only the tenants it touches.
//!
//! Which config serves a tenant is the binding rule's answer ([`crate::config::binding`]),
//! computed here from the namespaces' labels — the same rule the controller and the management
//! tools apply — not taken from the config's status.

pub mod directory;
mod global_secrets;
mod snapshots;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use directory::{
    DirectoryStamp, Manifests, Settle, directory_routes, directory_stamp, load_directory,
    watch_directory,
};

use super::record::ConfigRecord;
use super::routes::{self, Routes, TenantRoutes};
use crate::api::{GLOBAL_CONFIG_NAME, GlobalMcpConfig, TENANT_LABEL, TenantMcpConfig};
use crate::config::EndpointPolicy;
use crate::listed::{Applied, Listed};
use global_secrets::GlobalSecrets;
use snapshots::Snapshots;

/// What the Kubernetes source watches.
#[derive(Clone, Debug, Default)]
pub struct KubeSource {
    /// Only configs (and snapshots) of this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Only configs with these labels (`team=search`), when set.
    pub label_selector: Option<String>,
}

/// How far the first sync has come: `Ok(())` once every watch listed and every snapshot in
/// use was fetched once; before that, what is still awaited (and the last error seen).
pub type SyncState = Result<(), String>;

/// Updates from the tasks the source runs besides its watches.
enum Internal {
    Snapshot(snapshots::Fetched),
    SnapshotDue(snapshots::Due),
    // Boxed: it carries a whole Secret event, the others a few words.
    GlobalSecret(Box<global_secrets::Update>),
}

impl From<snapshots::Fetched> for Internal {
    fn from(fetched: snapshots::Fetched) -> Self {
        Self::Snapshot(fetched)
    }
}

impl From<snapshots::Due> for Internal {
    fn from(due: snapshots::Due) -> Self {
        Self::SnapshotDue(due)
    }
}

impl From<global_secrets::Update> for Internal {
    fn from(update: global_secrets::Update) -> Self {
        Self::GlobalSecret(Box::new(update))
    }
}

enum Change {
    Config(watcher::Event<TenantMcpConfig>),
    Namespace(watcher::Event<PartialObjectMeta<Namespace>>),
    Global(watcher::Event<GlobalMcpConfig>),
    Internal(Internal),
}

const CONFIGS: u8 = 1;
const NAMESPACES: u8 = 2;
const GLOBAL: u8 = 4;
const ALL: u8 = CONFIGS | NAMESPACES | GLOBAL;

/// How often the first sync's "still waiting for" text is refreshed.
const WAITING_REPORT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Watches the API until `stop`, keeping `routes` current; `synced` turns `Ok` once every watch
/// has listed and the Secrets in use were read.
pub async fn run_kube(
    client: Client,
    source: KubeSource,
    routes: Arc<Routes>,
    synced: watch::Sender<SyncState>,
    stop: CancellationToken,
) {
    let (globals, globals_writer) = reflector::store::<GlobalMcpConfig>();
    let (internal_tx, mut internal_rx) = mpsc::unbounded_channel::<Internal>();

    let mut config_watch = watcher::Config::default().page_size(100);
    if let Some(selector) = &source.label_selector {
        config_watch = config_watch.labels(selector);
    }
    let config_api: Api<TenantMcpConfig> = match &source.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let config_stream = watcher(config_api, config_watch)
        .backoff(crate::watch_backoff::WatchBackoff::capped(
            crate::watch_backoff::CLIENT_CAP,
        ))
        .map(|e| e.map(Change::Config));
    // A client of one namespace reads that namespace's labels only (RBAC can grant exactly it).
    let mut namespace_watch = watcher::Config::default().page_size(100);
    if let Some(ns) = &source.namespace {
        namespace_watch = namespace_watch.fields(&format!("metadata.name={ns}"));
    }
    let namespace_stream = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        namespace_watch,
    )
    .backoff(crate::watch_backoff::WatchBackoff::capped(
        crate::watch_backoff::CLIENT_CAP,
    ))
    .map(|e| e.map(Change::Namespace));
    let global_stream = watcher(
        Api::<GlobalMcpConfig>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={GLOBAL_CONFIG_NAME}")),
    )
    .backoff(crate::watch_backoff::WatchBackoff::capped(
        crate::watch_backoff::CLIENT_CAP,
    ))
    .modify(crate::api::slim::global)
    .reflect(globals_writer)
    .map(|e| e.map(Change::Global));
    let internal_stream = futures::stream::poll_fn(move |cx| internal_rx.poll_recv(cx))
        .map(|i| Ok(Change::Internal(i)));
    let mut changes = futures::stream::select_all([
        config_stream.boxed(),
        namespace_stream.boxed(),
        global_stream.boxed(),
        internal_stream.boxed(),
    ]);
    let mut state = KubeState {
        configs: Listed::default(),
        namespaces: Listed::default(),
        globals,
        snapshots: Snapshots::new(client.clone(), internal_tx.clone(), stop.clone()),
        global_secrets: GlobalSecrets::new(client, internal_tx, stop.clone()),
        by_tenant: HashMap::new(),
        allow_unbound: false,
        policy: Arc::new(EndpointPolicy::default()),
        routes,
        listed: 0,
        synced: false,
        last_error: None,
    };
    let mut report = SyncReport::new(synced, state.waiting_for());
    let mut tick = tokio::time::interval(WAITING_REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let change = tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick(), if report.stale => {
                report.refresh(|| state.waiting_for());
                continue;
            }
            next = changes.next() => next,
        };
        match change {
            None => return,
            Some(Err(e)) => {
                warn!("watching tenant configs: {e}");
                state.last_error = Some(e.to_string());
            }
            Some(Ok(change)) => {
                state.apply(change);
                state.settle();
            }
        }
        report.changed(state.synced);
    }
}

/// What the source tells `from_kube` through `synced`: `Ok` once the first sync is done, and
/// for good; before that, what it still waits for. That text is read only if the sync times
/// out, and refreshing it on every event of a 10,000-tenant sync made it most of the sync's
/// allocations: it is refreshed on a tick while it is stale (an error included).
struct SyncReport {
    tx: watch::Sender<SyncState>,
    /// Something changed since the text was last refreshed.
    stale: bool,
}

impl SyncReport {
    fn new(tx: watch::Sender<SyncState>, waiting: String) -> Self {
        let _ = tx.send_replace(Err(waiting));
        Self { tx, stale: false }
    }

    /// After an event: `Ok` when the first sync is `done`, else the text is stale.
    fn changed(&mut self, done: bool) {
        if self.tx.borrow().is_ok() {
            return;
        }
        if done {
            let _ = self.tx.send_replace(Ok(()));
        }
        self.stale = !done;
    }

    /// On a tick: the text of what is still awaited, unless the sync is done.
    fn refresh(&mut self, waiting: impl FnOnce() -> String) {
        self.stale = false;
        if self.tx.borrow().is_err() {
            let _ = self.tx.send_replace(Err(waiting()));
        }
    }
}

/// A config by (namespace, name).
type ConfigKey = (String, String);

/// A config's key.
fn config_key(c: &TenantMcpConfig) -> ConfigKey {
    let meta = &c.metadata;
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// A config's routing record.
fn config_record(c: &TenantMcpConfig) -> Option<ConfigRecord> {
    Some(ConfigRecord::from_status(c))
}

/// The tenant a namespace is bound to, if any.
fn namespace_binding(n: &PartialObjectMeta<Namespace>) -> Option<String> {
    n.labels().get(TENANT_LABEL).cloned()
}

struct KubeState {
    /// Every config's routing record.
    configs: Listed<ConfigKey, ConfigRecord>,
    /// The tenant each namespace is bound to (namespaces without the label are left out).
    namespaces: Listed<String, String>,
    globals: Store<GlobalMcpConfig>,
    snapshots: Snapshots<Internal>,
    global_secrets: GlobalSecrets<Internal>,
    /// The configs claiming each tenant.
    by_tenant: HashMap<String, Vec<ConfigKey>>,
    /// The GlobalMcpConfig's `allowUnboundNamespaces`.
    allow_unbound: bool,
    /// The GlobalMcpConfig's endpoint policy (the strict default without one).
    policy: Arc<EndpointPolicy>,
    routes: Arc<Routes>,
    listed: u8,
    /// The first sync is done: every watch listed, every snapshot in use read once.
    synced: bool,
    last_error: Option<String>,
}

impl KubeState {
    fn apply(&mut self, change: Change) {
        use watcher::Event::{Apply, Delete, InitDone};
        match change {
            Change::Config(event) => match self.configs.apply(&event, config_key, config_record) {
                Applied::Changed { key, old } => {
                    let tenants = self.index(&key, old.map(|r| r.tenant));
                    self.recompute(tenants);
                }
                Applied::Relisted => {
                    self.listed |= CONFIGS;
                    self.reindex();
                    self.recompute_all();
                }
                Applied::Buffered => {}
            },
            Change::Namespace(event) => {
                match self
                    .namespaces
                    .apply(&event, |n| n.name_any(), namespace_binding)
                {
                    Applied::Changed { key: ns, .. } => {
                        // Its label may bind or unbind it: every tenant with a config there may
                        // change.
                        let tenants = self
                            .configs
                            .iter()
                            .filter(|((n, _), _)| *n == ns)
                            .map(|(_, r)| r.tenant.clone())
                            .collect();
                        self.recompute(tenants);
                    }
                    Applied::Relisted => {
                        self.listed |= NAMESPACES;
                        self.recompute_all();
                    }
                    Applied::Buffered => {}
                }
            }
            Change::Global(InitDone) => {
                self.listed |= GLOBAL;
                self.global_changed();
            }
            Change::Global(Apply(_) | Delete(_)) => self.global_changed(),
            Change::Internal(Internal::SnapshotDue(due)) => self.snapshots.due(due),
            Change::Internal(Internal::Snapshot(fetched)) => {
                let tenants = self.snapshots.fetched(fetched);
                self.recompute(tenants);
            }
            Change::Internal(Internal::GlobalSecret(update)) => {
                let changed = self.global_secrets.update(*update);
                if changed {
                    self.recompute_global();
                }
            }
            // The reflector buffers a re-list; InitDone acts on the whole result.
            Change::Global(_) => {}
        }
    }

    fn is_synced(&self) -> bool {
        self.listed == ALL && self.global_secrets.listed() && self.snapshots.settled()
    }

    /// What the first sync still waits for, for the error `from_kube` gives when it times out.
    fn waiting_for(&self) -> String {
        let mut waiting: Vec<String> = [
            (CONFIGS, "the TenantMcpConfig watch"),
            (NAMESPACES, "the Namespace watch"),
            (GLOBAL, "the GlobalMcpConfig watch"),
        ]
        .iter()
        .filter(|(bit, _)| self.listed & bit == 0)
        .map(|(_, what)| (*what).to_owned())
        .collect();
        waiting.extend(self.global_secrets.waiting_for());
        waiting.extend(self.snapshots.waiting_for());
        let mut text = waiting.join(", ");
        if let Some(e) = &self.last_error {
            text.push_str(&format!(" (last error: {e})"));
        }
        text
    }

    fn global_spec(&self) -> Option<crate::api::GlobalMcpConfigSpec> {
        self.globals
            .get(&ObjectRef::new(GLOBAL_CONFIG_NAME))
            .map(|g| g.spec.clone())
    }

    /// The GlobalMcpConfig changed: watch the Secrets it now names, recompute the global
    /// routes, and every tenant's when the binding rule's `allowUnboundNamespaces` flipped.
    fn global_changed(&mut self) {
        let spec = self.global_spec();
        let (namespace, names) = match &spec {
            Some(s) => (
                s.credentials_namespace.clone(),
                s.servers
                    .secret_uses()
                    .iter()
                    .map(|u| u.name.to_owned())
                    .collect::<BTreeSet<_>>(),
            ),
            None => (String::new(), BTreeSet::new()),
        };
        self.global_secrets.want(&namespace, names);
        self.recompute_global();
        let policy = spec
            .as_ref()
            .map(|s| EndpointPolicy::compile_or_strict(&s.endpoint_policy))
            .unwrap_or_default();
        let allow = spec.is_some_and(|s| s.allow_unbound_namespaces);
        // Either changes what serves (the binding rule) or what may be connected to.
        if allow != self.allow_unbound || policy != *self.policy {
            self.allow_unbound = allow;
            self.policy = Arc::new(policy);
            self.recompute_all();
        }
    }

    /// Moves config `key` in the tenant index from the tenant it claimed (`old`) to the one
    /// its record claims now; returns the tenants whose routes may change.
    fn index(&mut self, key: &ConfigKey, old: Option<String>) -> BTreeSet<String> {
        let mut touched = BTreeSet::new();
        if let Some(old) = old {
            if let Some(keys) = self.by_tenant.get_mut(&old) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.by_tenant.remove(&old);
                }
            }
            touched.insert(old);
        }
        if let Some(record) = self.configs.get(key) {
            let keys = self.by_tenant.entry(record.tenant.clone()).or_default();
            if !keys.contains(key) {
                keys.push(key.clone());
            }
            touched.insert(record.tenant.clone());
        }
        touched
    }

    fn reindex(&mut self) {
        self.by_tenant.clear();
        for (key, record) in self.configs.iter() {
            self.by_tenant
                .entry(record.tenant.clone())
                .or_default()
                .push(key.clone());
        }
    }

    /// The routes of `tenant`: its serving config's active entries, with the snapshots it
    /// points at (asked for when not read yet). `None` when no config serves the tenant.
    /// Until the first sync only the snapshots are asked for: nobody reads the routes before
    /// it, and building each tenant's endpoints once per watch listed and again per snapshot
    /// read was most of a new client's allocations.
    fn tenant_routes(&mut self, tenant: &str) -> Option<TenantRoutes> {
        let claims: Vec<routes::Claimed<'_>> = self
            .by_tenant
            .get(tenant)
            .into_iter()
            .flatten()
            .filter_map(|k| self.configs.get(k))
            .map(|r| (r, self.namespaces.get(&r.namespace).map(String::as_str)))
            .collect();
        let serving = routes::serving_config(tenant, &claims, self.allow_unbound);
        if serving.is_none() && !claims.is_empty() {
            debug!(%tenant, claims = claims.len(), "no config serves this tenant: global fallback");
        }
        let wanted = serving.map_or_else(Vec::new, |config| {
            config
                .snapshots()
                .map(|name| (config.namespace.clone(), name.to_owned()))
                .collect()
        });
        let snapshots = &self.snapshots;
        let routes = serving.filter(|_| self.synced).map(|config| {
            routes::record_routes(
                config,
                &|name| snapshots.get(&config.namespace, name, &config.uid),
                &self.policy,
            )
        });
        self.snapshots.need(tenant, wanted);
        routes
    }

    /// Recomputes the routes of `tenants` (nothing before all three watches listed: the
    /// full recomputation then covers them).
    fn recompute(&mut self, tenants: BTreeSet<String>) {
        if self.listed != ALL {
            return;
        }
        for tenant in tenants {
            let routes = self.tenant_routes(&tenant);
            if self.synced {
                debug!(%tenant, present = routes.is_some(), "tenant routes changed");
                self.routes.set_tenant(&tenant, routes);
            }
        }
    }

    /// Recomputes every tenant's routes (nothing before all three watches listed).
    fn recompute_all(&mut self) {
        if self.listed != ALL {
            return;
        }
        let tenants: Vec<String> = self.by_tenant.keys().cloned().collect();
        self.snapshots.retain_tenants(&self.by_tenant);
        let all: Vec<(String, TenantRoutes)> = tenants
            .into_iter()
            .filter_map(|t| {
                let routes = self.tenant_routes(&t)?;
                Some((t, routes))
            })
            .collect();
        if self.synced {
            self.routes.set_all_tenants(all);
        }
    }

    /// Marks the first sync done once it is, and builds every tenant's routes then.
    fn settle(&mut self) {
        if !self.synced && self.is_synced() {
            self.synced = true;
            self.recompute_all();
        }
    }

    fn recompute_global(&self) {
        let global = self.global_spec();
        let lookup = |name: &str| self.global_secrets.get(name);
        self.routes
            .set_global(routes::global_routes(global.as_ref(), &lookup));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first sync's `Ok` is final. A refresh of the waiting text that fell due as the sync
    /// finished turned it back into "still waiting for" nothing, and `from_kube` waited out its
    /// timeout (seen at 10,000 tenants).
    #[test]
    fn the_first_sync_once_done_stays_done() {
        let (tx, rx) = watch::channel(Err(String::new()));
        let mut report = SyncReport::new(tx, "the TenantMcpConfig watch".to_owned());
        report.changed(false);
        report.changed(true);
        assert_eq!(*rx.borrow(), Ok(()));
        report.refresh(String::new);
        assert_eq!(*rx.borrow(), Ok(()), "a due refresh undid the sync");
        assert!(!report.stale);
    }

    #[test]
    fn the_waiting_text_changes_on_a_tick_after_an_event_not_on_the_event() {
        let (tx, rx) = watch::channel(Err(String::new()));
        let mut report = SyncReport::new(tx, "the TenantMcpConfig watch".to_owned());
        assert_eq!(*rx.borrow(), Err("the TenantMcpConfig watch".to_owned()));
        report.changed(false);
        assert!(report.stale);
        assert_eq!(*rx.borrow(), Err("the TenantMcpConfig watch".to_owned()));
        report.refresh(|| "snapshot Secret t1/snap".to_owned());
        assert_eq!(*rx.borrow(), Err("snapshot Secret t1/snap".to_owned()));
        assert!(!report.stale);
    }
}
