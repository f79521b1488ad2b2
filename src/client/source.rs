//! Where the client library learns the configs: the Kubernetes API (watches of
//! `TenantMcpConfig`, the `GlobalMcpConfig`, the snapshot Secrets and the global credentials
//! Secrets) or a directory of the same YAML manifests for runs without a cluster.
//!
//! Both keep [`Routes`] current: the Kubernetes source recomputes only the tenant an event
//! touches; the directory source reloads everything when a file changes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::error::ClientError;
use super::routes::{self, Routes, TenantRoutes};
use crate::api::{GLOBAL_CONFIG_NAME, GlobalMcpConfig, TenantMcpConfig};
use crate::config::EndpointPolicy;
use crate::config::manifest::parse_documents;

/// The label every snapshot Secret carries, and what the client's Secret watch selects.
pub const SNAPSHOT_SELECTOR: &str = "app.kubernetes.io/managed-by=tenant-mcp";

/// What the Kubernetes source watches.
#[derive(Clone, Debug)]
pub struct KubeSource {
    /// Only configs (and snapshots) of this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Only configs with these labels (`team=search`), when set.
    pub label_selector: Option<String>,
    /// Where the global servers' credential Secrets live (the GlobalMcpConfig's
    /// `credentialsNamespace`).
    pub credentials_namespace: String,
}

impl Default for KubeSource {
    fn default() -> Self {
        Self {
            namespace: None,
            label_selector: None,
            credentials_namespace: "tenant-mcp-system".into(),
        }
    }
}

enum Change {
    Config(watcher::Event<TenantMcpConfig>),
    Snapshot(watcher::Event<Secret>),
    Global(watcher::Event<GlobalMcpConfig>),
    GlobalSecret(watcher::Event<Secret>),
}

const CONFIGS: u8 = 1;
const SNAPSHOTS: u8 = 2;
const GLOBAL: u8 = 4;
const GLOBAL_SECRETS: u8 = 8;
const ALL: u8 = CONFIGS | SNAPSHOTS | GLOBAL | GLOBAL_SECRETS;

/// Watches the API until `stop`, keeping `routes` current; `synced` turns true once every
/// watch has listed.
pub async fn run_kube(
    client: Client,
    source: KubeSource,
    routes: Arc<Routes>,
    synced: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let (configs, configs_writer) = reflector::store::<TenantMcpConfig>();
    let (snapshots, snapshots_writer) = reflector::store::<Secret>();
    let (globals, globals_writer) = reflector::store::<GlobalMcpConfig>();
    let (global_secrets, global_secrets_writer) = reflector::store::<Secret>();
    fn scoped<K>(client: Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    }
    let ns = source.namespace.as_deref();
    let mut config_watch = watcher::Config::default();
    if let Some(selector) = &source.label_selector {
        config_watch = config_watch.labels(selector);
    }
    let config_stream = watcher(scoped::<TenantMcpConfig>(client.clone(), ns), config_watch)
        .default_backoff()
        .reflect(configs_writer)
        .map(|e| e.map(Change::Config));
    let snapshot_stream = watcher(
        scoped::<Secret>(client.clone(), ns),
        watcher::Config::default().labels(SNAPSHOT_SELECTOR),
    )
    .default_backoff()
    .reflect(snapshots_writer)
    .map(|e| e.map(Change::Snapshot));
    let global_stream = watcher(
        Api::<GlobalMcpConfig>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={GLOBAL_CONFIG_NAME}")),
    )
    .default_backoff()
    .reflect(globals_writer)
    .map(|e| e.map(Change::Global));
    let global_secret_stream = watcher(
        Api::<Secret>::namespaced(client, &source.credentials_namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(global_secrets_writer)
    .map(|e| e.map(Change::GlobalSecret));
    let mut changes = futures::stream::select_all([
        config_stream.boxed(),
        snapshot_stream.boxed(),
        global_stream.boxed(),
        global_secret_stream.boxed(),
    ]);
    let mut state = KubeState {
        configs,
        snapshots,
        globals,
        global_secrets,
        credentials_namespace: source.credentials_namespace,
        by_tenant: HashMap::new(),
        tenant_of: HashMap::new(),
        routes,
        listed: 0,
    };
    loop {
        let change = tokio::select! {
            () = stop.cancelled() => return,
            next = changes.next() => next,
        };
        match change {
            None => return,
            Some(Err(e)) => warn!("watching tenant configs: {e}"),
            Some(Ok(change)) => {
                let was = state.listed == ALL;
                state.apply(change);
                if !was && state.listed == ALL {
                    synced.send_replace(true);
                }
            }
        }
    }
}

struct KubeState {
    configs: Store<TenantMcpConfig>,
    snapshots: Store<Secret>,
    globals: Store<GlobalMcpConfig>,
    global_secrets: Store<Secret>,
    credentials_namespace: String,
    /// The configs claiming each tenant.
    by_tenant: HashMap<String, HashSet<ObjectRef<TenantMcpConfig>>>,
    /// The tenant each config claimed when last seen (a changed `tenantId` leaves the old one).
    tenant_of: HashMap<ObjectRef<TenantMcpConfig>, String>,
    routes: Arc<Routes>,
    listed: u8,
}

impl KubeState {
    fn apply(&mut self, change: Change) {
        use watcher::Event::{Apply, Delete, InitDone};
        match change {
            Change::Config(Apply(c)) => {
                let tenants = self.index(&c, true);
                self.recompute(tenants);
            }
            Change::Config(Delete(c)) => {
                let tenants = self.index(&c, false);
                self.recompute(tenants);
            }
            Change::Config(InitDone) => {
                self.listed |= CONFIGS;
                self.reindex();
                self.recompute_all();
            }
            Change::Snapshot(Apply(s) | Delete(s)) => {
                if let Some(tenant) = s.labels().get(crate::api::TENANT_LABEL) {
                    self.recompute([tenant.clone()].into());
                }
            }
            Change::Snapshot(InitDone) => {
                self.listed |= SNAPSHOTS;
                self.recompute_all();
            }
            Change::Global(InitDone) => {
                self.listed |= GLOBAL;
                self.recompute_global();
            }
            Change::GlobalSecret(InitDone) => {
                self.listed |= GLOBAL_SECRETS;
                self.recompute_global();
            }
            Change::Global(Apply(_) | Delete(_)) | Change::GlobalSecret(Apply(_) | Delete(_)) => {
                self.recompute_global();
            }
            // The reflector buffers a re-list; InitDone acts on the whole result.
            _ => {}
        }
    }

    /// Updates the tenant index for `config`; returns the tenants whose routes may change.
    fn index(&mut self, config: &TenantMcpConfig, present: bool) -> BTreeSet<String> {
        let key = ObjectRef::from_obj(config);
        let mut touched = BTreeSet::new();
        if let Some(old) = self.tenant_of.remove(&key) {
            if let Some(set) = self.by_tenant.get_mut(&old) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_tenant.remove(&old);
                }
            }
            touched.insert(old);
        }
        if present {
            let tenant = config.spec.tenant_id.clone();
            self.by_tenant
                .entry(tenant.clone())
                .or_default()
                .insert(key.clone());
            self.tenant_of.insert(key, tenant.clone());
            touched.insert(tenant);
        }
        touched
    }

    fn reindex(&mut self) {
        self.by_tenant.clear();
        self.tenant_of.clear();
        for c in self.configs.state() {
            self.index(&c, true);
        }
    }

    fn tenant_routes(&self, tenant: &str) -> Option<TenantRoutes> {
        let refs = self.by_tenant.get(tenant)?;
        let configs: Vec<Arc<TenantMcpConfig>> =
            refs.iter().filter_map(|r| self.configs.get(r)).collect();
        let claims: Vec<&TenantMcpConfig> = configs.iter().map(AsRef::as_ref).collect();
        let config = routes::serving_config(&claims)?;
        let ns = config.namespace().unwrap_or_default();
        let lookup = |name: &str| {
            self.snapshots
                .get(&ObjectRef::new(name).within(&ns))
                .map(|s| s.as_ref().clone())
        };
        Some(routes::from_status(config, &lookup))
    }

    fn recompute(&self, tenants: BTreeSet<String>) {
        for tenant in tenants {
            let routes = self.tenant_routes(&tenant);
            debug!(%tenant, present = routes.is_some(), "tenant routes changed");
            self.routes.set_tenant(&tenant, routes);
        }
    }

    fn recompute_all(&self) {
        let all = self
            .by_tenant
            .keys()
            .filter_map(|t| Some((t.clone(), self.tenant_routes(t)?)))
            .collect();
        self.routes.set_all_tenants(all);
    }

    fn recompute_global(&self) {
        let global = self
            .globals
            .get(&ObjectRef::new(GLOBAL_CONFIG_NAME))
            .map(|g| g.spec.clone());
        if let Some(spec) = &global
            && spec.credentials_namespace != self.credentials_namespace
        {
            warn!(
                configured = %spec.credentials_namespace,
                watched = %self.credentials_namespace,
                "the GlobalMcpConfig's credentialsNamespace is not the namespace this client watches: global credentials will not be found"
            );
        }
        let lookup = |name: &str| {
            self.global_secrets
                .get(&ObjectRef::new(name).within(&self.credentials_namespace))
                .map(|s| s.as_ref().clone())
        };
        self.routes
            .set_global(routes::global_routes(global.as_ref(), &lookup));
    }
}

/// The objects of a directory of manifests.
#[derive(Debug, Default)]
pub struct Manifests {
    /// Every TenantMcpConfig.
    pub configs: Vec<TenantMcpConfig>,
    /// The GlobalMcpConfig `default`, if any.
    pub global: Option<GlobalMcpConfig>,
    /// Every Secret (`stringData` folded into `data`).
    pub secrets: Vec<Secret>,
}

/// Reads every `*.yaml`, `*.yml` and `*.json` file under `dir` (recursively). Objects of other
/// kinds are skipped; a document that does not parse is an error naming file and position.
pub fn load_directory(dir: &Path) -> Result<Manifests, ClientError> {
    let mut manifests = Manifests::default();
    for file in manifest_files(dir)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ClientError::Source(format!("reading {}: {e}", file.display())))?;
        let source = file.display().to_string();
        for doc in parse_documents(&source, &text) {
            let at = format!("{source} document {}", doc.position);
            let value = doc
                .content
                .map_err(|e| ClientError::Source(format!("{at}: {e}")))?;
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or("")
                .to_owned();
            let bad = |e: serde_json::Error| ClientError::Source(format!("{at}: {kind}: {e}"));
            match kind.as_str() {
                "TenantMcpConfig" => manifests
                    .configs
                    .push(serde_json::from_value(value).map_err(bad)?),
                "GlobalMcpConfig" => {
                    let g: GlobalMcpConfig = serde_json::from_value(value).map_err(bad)?;
                    if g.name_any() == GLOBAL_CONFIG_NAME {
                        manifests.global = Some(g);
                    }
                }
                "Secret" => {
                    let mut s: Secret = serde_json::from_value(value).map_err(bad)?;
                    let data = s.data.get_or_insert_with(Default::default);
                    for (k, v) in s.string_data.take().unwrap_or_default() {
                        data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
                    }
                    manifests.secrets.push(s);
                }
                _ => {}
            }
        }
    }
    Ok(manifests)
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, ClientError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| ClientError::Source(format!("reading {}: {e}", d.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Computes every route from a directory's manifests. A config with a `status.active` (copied
/// from a cluster) is served from it; one without is served from its spec, checked statically
/// and against the global endpoint policy, since no controller tests it.
pub fn directory_routes(manifests: &Manifests, routes: &Routes) {
    let global_spec = manifests.global.as_ref().map(|g| &g.spec);
    let policy = global_spec
        .map(|g| EndpointPolicy::compile_or_strict(&g.endpoint_policy))
        .unwrap_or_default();
    let credentials_ns = global_spec.map_or("tenant-mcp-system", |g| &g.credentials_namespace);
    let secret_in = |ns: &str, name: &str| {
        manifests
            .secrets
            .iter()
            .find(|s| s.namespace().as_deref().unwrap_or("default") == ns && s.name_any() == name)
            .cloned()
    };
    routes.set_global(routes::global_routes(global_spec, &|n| {
        secret_in(credentials_ns, n)
    }));
    let mut by_tenant: HashMap<&str, Vec<&TenantMcpConfig>> = HashMap::new();
    for c in &manifests.configs {
        by_tenant.entry(&c.spec.tenant_id).or_default().push(c);
    }
    let all = by_tenant
        .into_iter()
        .filter_map(|(tenant, claims)| {
            let config = routes::serving_config(&claims)?;
            let ns = config.namespace().unwrap_or_else(|| "default".into());
            let lookup = |n: &str| secret_in(&ns, n);
            let has_active = config
                .status
                .as_ref()
                .is_some_and(|s| s.active != Default::default());
            let r = if has_active {
                routes::from_status(config, &lookup)
            } else {
                routes::from_spec(config, &policy, &lookup)
            };
            Some((tenant.to_owned(), r))
        })
        .collect();
    routes.set_all_tenants(all);
}

/// A cheap fingerprint of a directory: every manifest file's path, length and mtime.
pub fn directory_stamp(dir: &Path) -> DirectoryStamp {
    manifest_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect()
}

/// A directory's [`directory_stamp`].
pub type DirectoryStamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// When to reload a polled directory: a change is loaded only once it has held still for one
/// poll, so a file caught while it is written (truncated, half written) is never loaded — an
/// empty file read mid-write would otherwise drop every tenant's config.
#[derive(Debug)]
pub struct Settle {
    loaded: DirectoryStamp,
    pending: Option<DirectoryStamp>,
}

impl Settle {
    /// Starts from the stamp of what is loaded.
    pub fn new(loaded: DirectoryStamp) -> Self {
        Self {
            loaded,
            pending: None,
        }
    }

    /// Takes the stamp seen at a poll: `true` when the directory should be loaded now.
    pub fn observe(&mut self, now: &DirectoryStamp) -> bool {
        if *now == self.loaded {
            self.pending = None;
            return false;
        }
        if self.pending.as_ref() == Some(now) {
            return true;
        }
        self.pending = Some(now.clone());
        false
    }

    /// Records that the directory was loaded (or found broken) at `stamp`.
    pub fn loaded(&mut self, stamp: DirectoryStamp) {
        self.loaded = stamp;
        self.pending = None;
    }
}

/// Reloads `dir` into `routes` whenever its files change and then hold still for one poll
/// ([`Settle`]), checked every `every`, until `stop`. `stamp` must be taken before the first
/// load, so an edit made while the task starts is not mistaken for the loaded state. A reload
/// that fails keeps the previous routes and logs why.
pub async fn watch_directory(
    dir: PathBuf,
    stamp: DirectoryStamp,
    routes: Arc<Routes>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut settle = Settle::new(stamp);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = directory_stamp(&dir);
        if !settle.observe(&now) {
            continue;
        }
        let loaded = load_directory(&dir);
        // Changed again while it was read: look again at the next poll.
        if directory_stamp(&dir) != now {
            continue;
        }
        settle.loaded(now);
        match loaded {
            Ok(m) => directory_routes(&m, &routes),
            Err(e) => warn!(
                "reloading {}: {e}; keeping the previous configs",
                dir.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(len: u64) -> DirectoryStamp {
        vec![(PathBuf::from("acme.yaml"), len, None)]
    }

    #[test]
    fn a_change_is_loaded_only_after_it_held_still_for_a_poll() {
        let mut settle = Settle::new(stamp(100));
        assert!(!settle.observe(&stamp(100)), "nothing changed");
        // A writer truncated the file and is still writing: seen once, then different.
        assert!(!settle.observe(&stamp(0)));
        assert!(!settle.observe(&stamp(60)));
        assert!(!settle.observe(&stamp(120)));
        // The finished file, seen twice in a row: load it.
        assert!(settle.observe(&stamp(120)));
        settle.loaded(stamp(120));
        assert!(!settle.observe(&stamp(120)));
        // A change that goes back to what is loaded needs nothing.
        assert!(!settle.observe(&stamp(5)));
        assert!(!settle.observe(&stamp(120)));
        assert!(!settle.observe(&stamp(120)));
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    /// A directory's Secrets are credentials: the loaded manifests print names and keys only.
    #[test]
    fn loaded_manifests_never_print_secret_values() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            dir.path().join("s.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: pg, namespace: creds}\n\
             stringData: {username: platform, password: hunter2-in-a-file}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let manifests = load_directory(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let dump = format!("{manifests:?} {manifests:#?}");
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(!dump.contains("104, 117"), "bytes of the value: {dump}");
        assert!(
            dump.contains("creds/pg") && dump.contains("password"),
            "{dump}"
        );
    }
}
