//! A directory of manifests as the config source, for runs without a cluster: the same
//! TenantMcpConfig, GlobalMcpConfig, Namespace and Secret YAML a cluster would hold, reloaded
//! when the files change. The binding rule applies as in a cluster: a config serves only from
//! a Namespace (declared in the directory) bound to its tenant, unless the GlobalMcpConfig
//! allows unbound namespaces.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt as _;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::api::{
    DEFAULT_CREDENTIALS_NAMESPACE, GLOBAL_CONFIG_NAME, GlobalMcpConfig, TenantMcpConfig,
};
use crate::client::error::ClientError;
use crate::client::routes::{self, Routes};
use crate::config::EndpointPolicy;
use crate::config::manifest::documents;

/// The objects of a directory of manifests.
#[derive(Default)]
pub struct Manifests {
    /// Every TenantMcpConfig.
    pub configs: Vec<TenantMcpConfig>,
    /// The GlobalMcpConfig `default`, if any.
    pub global: Option<GlobalMcpConfig>,
    /// Every Namespace (their labels bind them to tenants).
    pub namespaces: Vec<Namespace>,
    /// Every Secret (`stringData` folded into `data`).
    pub secrets: Vec<Secret>,
}

// Secrets hold credentials: print which ones and their keys, never a value.
impl std::fmt::Debug for Manifests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets: Vec<String> = self
            .secrets
            .iter()
            .map(|s| {
                let keys: Vec<&str> = s
                    .data
                    .iter()
                    .flat_map(|d| d.keys().map(String::as_str))
                    .collect();
                format!(
                    "{}/{} {keys:?}",
                    s.namespace().unwrap_or_else(|| "default".into()),
                    s.name_any()
                )
            })
            .collect();
        f.debug_struct("Manifests")
            .field("configs", &self.configs)
            .field("global", &self.global)
            .field(
                "namespaces",
                &self
                    .namespaces
                    .iter()
                    .map(|n| n.name_any())
                    .collect::<Vec<_>>(),
            )
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
                "TenantMcpConfig" => manifests
                    .configs
                    .push(serde_json::from_value(value).map_err(bad)?),
                "GlobalMcpConfig" => {
                    let g: GlobalMcpConfig = serde_json::from_value(value).map_err(bad)?;
                    if g.name_any() == GLOBAL_CONFIG_NAME {
                        manifests.global = Some(g);
                    }
                }
                "Namespace" => manifests
                    .namespaces
                    .push(serde_json::from_value(value).map_err(bad)?),
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
    let policy = Arc::new(
        global_spec
            .map(|g| EndpointPolicy::compile_or_strict(&g.endpoint_policy))
            .unwrap_or_default(),
    );
    let credentials_ns =
        global_spec.map_or(DEFAULT_CREDENTIALS_NAMESPACE, |g| &g.credentials_namespace);
    // By (namespace, name): a scan per lookup made loading 10,000 tenants quadratic.
    // The first of two Secrets with one name wins, as a scan would find it.
    let mut secrets: HashMap<(String, String), &Secret> = HashMap::new();
    for s in &manifests.secrets {
        let ns = s.namespace().unwrap_or_else(|| "default".into());
        secrets.entry((ns, s.name_any())).or_insert(s);
    }
    let secret_in = |ns: &str, name: &str| {
        secrets
            .get(&(ns.to_owned(), name.to_owned()))
            .map(|s| (*s).clone())
    };
    routes.set_global(routes::global_routes(global_spec, &|n| {
        secret_in(credentials_ns, n)
    }));
    let allow_unbound = global_spec.is_some_and(|g| g.allow_unbound_namespaces);
    let labels: HashMap<String, &BTreeMap<String, String>> = manifests
        .namespaces
        .iter()
        .filter_map(|n| Some((n.name_any(), n.metadata.labels.as_ref()?)))
        .collect();
    let mut by_tenant: HashMap<&str, Vec<routes::Claimed<'_, '_>>> = HashMap::new();
    for c in &manifests.configs {
        let ns = c.namespace().unwrap_or_else(|| "default".into());
        by_tenant
            .entry(&c.spec.tenant_id)
            .or_default()
            .push((c, labels.get(&ns).copied()));
    }
    let all = by_tenant
        .into_iter()
        .filter_map(|(tenant, claims)| {
            let Some(config) = routes::serving_config(tenant, &claims, allow_unbound) else {
                warn!(
                    %tenant,
                    "no config in the directory serves tenant {tenant:?}: each claims it from a namespace that is not bound to it (declare the Namespace with the label tenantmcp.dev/tenant={tenant}); it uses the global servers"
                );
                return None;
            };
            let ns = config.namespace().unwrap_or_else(|| "default".into());
            let lookup = |n: &str| secret_in(&ns, n);
            let has_active = config
                .status
                .as_ref()
                .is_some_and(|s| s.active != Default::default());
            let r = if has_active {
                routes::from_status(config, &lookup, &policy)
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
