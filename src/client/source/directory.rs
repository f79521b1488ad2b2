//! A directory of manifests as the config source, for runs without a cluster: the same
//! TenantMcpConfig, GlobalMcpConfig, Namespace and Secret YAML a cluster would hold, reloaded
//! when the files change. The binding rule applies as in a cluster: a config serves only from
//! a Namespace (declared in the directory) bound to its tenant, unless the GlobalMcpConfig
//! allows unbound namespaces.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt as _;
use kube::api::ObjectMeta;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::api::{
    DEFAULT_CREDENTIALS_NAMESPACE, GLOBAL_CONFIG_NAME, GlobalMcpConfig, TENANT_LABEL,
    TenantMcpConfig,
};
use crate::client::error::ClientError;
use crate::client::record::ConfigRecord;
use crate::client::routes::{self, Routes};
use crate::config::EndpointPolicy;
use crate::config::manifest::documents;

/// A Secret's data as (key, value) pairs.
pub type SecretData = Box<[(String, ByteString)]>;

/// What routing needs of a directory of manifests; each object is converted as it is read and
/// dropped, so a load holds one parsed document at a time besides these.
#[derive(Default)]
pub struct Manifests {
    /// Every TenantMcpConfig: served from its `status.active` when it has one (copied from a
    /// cluster), else from its spec, since no controller tests it.
    pub configs: Vec<ConfigRecord>,
    /// The GlobalMcpConfig `default`, if any.
    pub global: Option<GlobalMcpConfig>,
    /// The tenant each Namespace is bound to, by name (its `tenantmcp.dev/tenant` label);
    /// namespaces without the label are not kept.
    pub namespaces: HashMap<String, String>,
    /// Every Secret's data (`stringData` folded in) as (key, value) pairs, by (namespace,
    /// name); of two Secrets with one name the first read wins. Pairs, not a map: a
    /// `BTreeMap` of a few keys allocates a node of eleven slots.
    pub secrets: HashMap<(String, String), SecretData>,
}

impl Manifests {
    /// Secret `name` of namespace `ns`, if the directory holds it.
    pub fn secret(&self, ns: &str, name: &str) -> Option<Secret> {
        let data = self.secrets.get(&(ns.to_owned(), name.to_owned()))?;
        Some(Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(ns.to_owned()),
                ..ObjectMeta::default()
            },
            data: Some(data.iter().cloned().collect()),
            ..Secret::default()
        })
    }
}

// Secrets hold credentials: print which ones and their keys, never a value.
impl std::fmt::Debug for Manifests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut secrets: Vec<String> = self
            .secrets
            .iter()
            .map(|((ns, name), data)| {
                let keys: Vec<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
                format!("{ns}/{name} {keys:?}")
            })
            .collect();
        secrets.sort();
        f.debug_struct("Manifests")
            .field("configs", &self.configs)
            .field("global", &self.global)
            .field("namespaces", &self.namespaces)
            .field("secrets", &secrets)
            .finish()
    }
}

/// Reads every `*.yaml`, `*.yml` and `*.json` file under `dir` (recursively). Objects of other
/// kinds are skipped; a document that does not parse is an error naming file and position.
pub fn load_directory(dir: &Path) -> Result<Manifests, ClientError> {
    let mut manifests = Manifests::default();
    for file in manifest_files(dir)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ClientError::Source(format!("reading {}: {e}", file.display())))?;
        let source = file.display().to_string();
        for doc in documents(&source, &text) {
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
                "TenantMcpConfig" => {
                    let mut c: TenantMcpConfig = serde_json::from_value(value).map_err(bad)?;
                    c.metadata
                        .namespace
                        .get_or_insert_with(|| "default".to_owned());
                    let has_active = c
                        .status
                        .as_ref()
                        .is_some_and(|s| s.active != Default::default());
                    manifests.configs.push(if has_active {
                        ConfigRecord::from_status(&c)
                    } else {
                        ConfigRecord::from_spec(&c)
                    });
                }
                "GlobalMcpConfig" => {
                    let g: GlobalMcpConfig = serde_json::from_value(value).map_err(bad)?;
                    if g.name_any() == GLOBAL_CONFIG_NAME {
                        manifests.global = Some(g);
                    }
                }
                "Namespace" => {
                    let n: Namespace = serde_json::from_value(value).map_err(bad)?;
                    if let Some(tenant) = n.labels().get(TENANT_LABEL) {
                        manifests.namespaces.insert(n.name_any(), tenant.clone());
                    }
                }
                "Secret" => {
                    let s: Secret = serde_json::from_value(value).map_err(bad)?;
                    let ns = s.namespace().unwrap_or_else(|| "default".into());
                    let name = s.name_any();
                    let mut data = s.data.unwrap_or_default();
                    for (k, v) in s.string_data.unwrap_or_default() {
                        data.insert(k, ByteString(v.into_bytes()));
                    }
                    manifests
                        .secrets
                        .entry((ns, name))
                        .or_insert_with(|| data.into_iter().collect());
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
/// and against the global endpoint policy, since no controller tests it. Each tenant's
/// records are dropped once its routes are built, so the load does not hold every record and
/// every route at once.
pub fn directory_routes(mut manifests: Manifests, routes: &Routes) {
    let configs = std::mem::take(&mut manifests.configs);
    let global_spec = manifests.global.as_ref().map(|g| &g.spec);
    let policy = Arc::new(
        global_spec
            .map(|g| EndpointPolicy::compile_or_strict(&g.endpoint_policy))
            .unwrap_or_default(),
    );
    let credentials_ns =
        global_spec.map_or(DEFAULT_CREDENTIALS_NAMESPACE, |g| &g.credentials_namespace);
    routes.set_global(routes::global_routes(global_spec, &|n| {
        manifests.secret(credentials_ns, n)
    }));
    let allow_unbound = global_spec.is_some_and(|g| g.allow_unbound_namespaces);
    let mut by_tenant: HashMap<String, Vec<ConfigRecord>> = HashMap::new();
    for c in configs {
        by_tenant.entry(c.tenant.clone()).or_default().push(c);
    }
    let find = |config: &ConfigRecord, name: &str| manifests.secret(&config.namespace, name);
    let mut all = HashMap::with_capacity(by_tenant.len());
    for (tenant, records) in by_tenant.drain() {
        let claims: Vec<routes::Claimed<'_>> = records
            .iter()
            .map(|c| {
                let bound = manifests.namespaces.get(&c.namespace);
                (c, bound.map(String::as_str))
            })
            .collect();
        match routes::tenant_routes_of(&tenant, &claims, allow_unbound, &policy, &find) {
            Some(r) => {
                all.insert(tenant, r);
            }
            None => warn!(
                %tenant,
                "no config in the directory serves tenant {tenant:?}: each claims it from a namespace that is not bound to it (declare the Namespace with the label tenantmcp.dev/tenant={tenant}); it uses the global servers"
            ),
        }
    }
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
            Ok(m) => directory_routes(m, &routes),
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
