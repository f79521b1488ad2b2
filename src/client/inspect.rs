//! A one-off look at the cluster for the `status` and `route` commands: the configs, the
//! namespaces' bindings, the GlobalMcpConfig, the snapshot Secrets and the global credential
//! Secrets, made into the same [`Routes`] the client library builds (the binding rule, the
//! active entries, the policy re-check, the global fallback), so what these commands say is
//! what an application pod would do right now.
//!
//! Reads need an administrator's rights (every config and namespace, the snapshots by list);
//! application accounts use [`super::TenantClients`] instead.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt as _};

use super::error::ClientError;
use super::record::ConfigRecord;
use super::routes::{self, Explanation, Routes};
use crate::api::{GLOBAL_CONFIG_NAME, GlobalMcpConfig, SNAPSHOT_TYPE, TenantMcpConfig};
use crate::config::EndpointPolicy;
use crate::config::binding::{self, Claim, Verdict};
use crate::config::candidate::ServerKey;

/// The cluster as the client library would see it now.
pub struct ClusterView {
    /// Every TenantMcpConfig (of the tenant asked for, when one was).
    pub configs: Vec<TenantMcpConfig>,
    /// Each namespace's labels, by name.
    pub namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// The GlobalMcpConfig `default`, if any.
    pub global: Option<GlobalMcpConfig>,
    /// The endpoint policy in force.
    pub policy: Arc<EndpointPolicy>,
    routes: Routes,
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView")
            .field("configs", &self.configs.len())
            .field("global", &self.global.is_some())
            .finish_non_exhaustive()
    }
}

fn source(action: &str, e: kube::Error) -> ClientError {
    ClientError::Source(format!("{action}: {e}"))
}

impl ClusterView {
    /// Reads the cluster (only what `tenant` needs, when given).
    pub async fn load(kube: Client, tenant: Option<&str>) -> Result<Self, ClientError> {
        let mut configs = Api::<TenantMcpConfig>::all(kube.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| source("listing TenantMcpConfigs", e))?
            .items;
        configs.retain(|c| tenant.is_none_or(|t| c.spec.tenant_id == t));
        configs.sort_by_key(|c| (c.spec.tenant_id.clone(), c.namespace(), c.name_any()));
        let namespace_labels: HashMap<String, BTreeMap<String, String>> =
            Api::<Namespace>::all(kube.clone())
                .list_metadata(&ListParams::default())
                .await
                .map_err(|e| source("listing namespaces", e))?
                .items
                .into_iter()
                .map(|n| (n.name_any(), n.metadata.labels.unwrap_or_default()))
                .collect();
        let global = Api::<GlobalMcpConfig>::all(kube.clone())
            .get_opt(GLOBAL_CONFIG_NAME)
            .await
            .map_err(|e| source("reading the GlobalMcpConfig", e))?;
        let snapshots: HashMap<(String, String), Secret> = Api::<Secret>::all(kube.clone())
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=tenant-mcp"))
            .await
            .map_err(|e| source("listing snapshot Secrets", e))?
            .items
            .into_iter()
            .filter(|s| s.type_.as_deref() == Some(SNAPSHOT_TYPE))
            .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), s))
            .collect();
        let mut global_secrets = HashMap::new();
        if let Some(g) = &global {
            let api: Api<Secret> = Api::namespaced(kube.clone(), &g.spec.credentials_namespace);
            for used in g.spec.servers.secret_uses() {
                if let Some(s) = api
                    .get_opt(used.name)
                    .await
                    .map_err(|e| source("reading a global credential Secret", e))?
                {
                    global_secrets.insert(used.name.to_owned(), s);
                }
            }
        }
        let policy = Arc::new(
            global
                .as_ref()
                .map(|g| EndpointPolicy::compile_or_strict(&g.spec.endpoint_policy))
                .unwrap_or_default(),
        );
        let view = Self {
            configs,
            namespace_labels,
            global,
            policy,
            routes: Routes::new(true),
        };
        view.routes.set_global(routes::global_routes(
            view.global.as_ref().map(|g| &g.spec),
            &|name| global_secrets.get(name).cloned(),
        ));
        let allow_unbound = view.allow_unbound();
        let snapshot = |config: &ConfigRecord, name: &str| {
            snapshots
                .get(&(config.namespace.clone(), name.to_owned()))
                .cloned()
        };
        let records: Vec<ConfigRecord> =
            view.configs.iter().map(ConfigRecord::from_status).collect();
        let all: Vec<_> = view
            .tenants()
            .into_iter()
            .filter_map(|tenant| {
                let claims: Vec<routes::Claimed<'_>> = records
                    .iter()
                    .filter(|r| r.tenant == tenant)
                    .map(|r| (r, view.namespace_tenant(&r.namespace)))
                    .collect();
                let r = routes::tenant_routes_of(
                    &tenant,
                    &claims,
                    allow_unbound,
                    &view.policy,
                    &snapshot,
                )?;
                Some((tenant, r))
            })
            .collect();
        view.routes.set_all_tenants(all);
        Ok(view)
    }

    /// Whether the GlobalMcpConfig allows unbound namespaces.
    pub fn allow_unbound(&self) -> bool {
        self.global
            .as_ref()
            .is_some_and(|g| g.spec.allow_unbound_namespaces)
    }

    /// Whether tenant configs are switched on in the GlobalMcpConfig.
    pub fn tenant_configs_enabled(&self) -> bool {
        self.global
            .as_ref()
            .is_none_or(|g| g.spec.tenant_configs_enabled)
    }

    /// Every tenant some config claims.
    pub fn tenants(&self) -> BTreeSet<String> {
        self.configs
            .iter()
            .map(|c| c.spec.tenant_id.clone())
            .collect()
    }

    /// The tenant namespace `ns` is bound to, if any.
    fn namespace_tenant(&self, ns: &str) -> Option<&str> {
        self.namespace_labels
            .get(ns)
            .and_then(|l| l.get(crate::api::TENANT_LABEL))
            .map(String::as_str)
    }

    fn claims_with_labels(
        &self,
        tenant: &str,
    ) -> Vec<(&TenantMcpConfig, Option<&BTreeMap<String, String>>)> {
        self.configs
            .iter()
            .filter(|c| c.spec.tenant_id == tenant)
            .map(|c| {
                let labels = self
                    .namespace_labels
                    .get(&c.namespace().unwrap_or_default());
                (c, labels)
            })
            .collect()
    }

    /// Every config claiming `tenant`, with the binding rule's verdict.
    pub fn claims(&self, tenant: &str) -> Vec<(&TenantMcpConfig, Verdict)> {
        let claims = self.claims_with_labels(tenant);
        let rule: Vec<Claim<'_>> = claims.iter().map(|(c, l)| Claim::of(c, *l)).collect();
        let decision = binding::decide(tenant, &rule, self.allow_unbound());
        claims
            .into_iter()
            .map(|(c, _)| c)
            .zip(decision.verdicts)
            .collect()
    }

    /// The config that serves `tenant`, if any.
    pub fn serving(&self, tenant: &str) -> Option<&TenantMcpConfig> {
        self.claims(tenant)
            .into_iter()
            .find(|(_, v)| v.serves())
            .map(|(c, _)| c)
    }

    /// The server types that matter for `tenant`: those its serving config or the global
    /// config declares.
    pub fn server_keys(&self, tenant: &str) -> Vec<ServerKey> {
        let mut keys: BTreeSet<ServerKey> = BTreeSet::new();
        if let Some(c) = self.serving(tenant) {
            keys.extend(ServerKey::declared(&c.spec.servers));
        }
        if let Some(g) = &self.global {
            keys.extend(ServerKey::declared(&g.spec.servers));
        }
        keys.into_iter().collect()
    }

    /// Where server `key` of `tenant` is served from now, and why.
    pub fn explain(&self, tenant: &str, key: &ServerKey) -> Explanation {
        self.routes.explain(tenant, key)
    }
}

/// One Event recorded about a config.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    /// When it last happened.
    pub time: Option<jiff::Timestamp>,
    /// `Normal` or `Warning`.
    pub kind: String,
    /// Its reason (`Promoted`, `Demoted`, `AuthFailed`…).
    pub reason: String,
    /// What it says.
    pub note: String,
    /// `namespace/name` of the config it is about.
    pub config: String,
}

/// The most recent `limit` Events about `configs` (newest first).
pub async fn recent_events(
    kube: Client,
    configs: &[&TenantMcpConfig],
    limit: usize,
) -> Result<Vec<EventLine>, ClientError> {
    use k8s_openapi::api::events::v1::Event;
    let mut lines = Vec::new();
    let namespaces: BTreeSet<String> = configs.iter().filter_map(|c| c.namespace()).collect();
    for ns in namespaces {
        let events = Api::<Event>::namespaced(kube.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| source("listing Events", e))?;
        for event in events {
            let Some(regarding) = &event.regarding else {
                continue;
            };
            let about = configs.iter().any(|c| {
                regarding.kind.as_deref() == Some("TenantMcpConfig")
                    && regarding.name == c.metadata.name
                    && regarding.namespace == c.metadata.namespace
            });
            if !about {
                continue;
            }
            let time = event
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or_else(|| event.event_time.as_ref().map(|t| t.0))
                .or_else(|| event.deprecated_last_timestamp.as_ref().map(|t| t.0));
            lines.push(EventLine {
                time,
                kind: event.type_.clone().unwrap_or_default(),
                reason: event.reason.clone().unwrap_or_default(),
                note: event.note.clone().unwrap_or_default(),
                config: format!("{ns}/{}", regarding.name.clone().unwrap_or_default()),
            });
        }
    }
    lines.sort_by_key(|l| std::cmp::Reverse(l.time));
    lines.truncate(limit);
    Ok(lines)
}
