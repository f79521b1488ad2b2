//! The management server's reads and writes on the Kubernetes API: configs, the namespace bound
//! to a tenant, the endpoint policy, and the Secrets it keeps credentials in. Every write is a
//! server-side apply under [`FIELD_MANAGER`], so fields another manager owns are reported as
//! conflicts instead of being overwritten.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Resource as _, ResourceExt as _};
use serde_json::json;

use super::error::ToolError;
use super::plan::{CREDENTIALS_OF_LABEL, FIELD_MANAGER, MANAGED_BY, SecretWrite, writable};
use crate::api::{
    GLOBAL_CONFIG_NAME, GlobalMcpConfig, TENANT_LABEL, TenantMcpConfig, TenantMcpConfigSpec,
};
use crate::config::binding::{self, Claim, Verdict};
use crate::config::{EndpointPolicy, FieldError, FieldErrors, FieldPath};

/// A Secret as it was before a write, to put back when a later step fails.
pub struct Restore {
    name: String,
    before: Option<BTreeMap<String, ByteString>>,
}

// The values are credentials: print the Secret and its keys only.
impl std::fmt::Debug for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restore")
            .field("name", &self.name)
            .field(
                "keys",
                &self.before.as_ref().map(|d| d.keys().collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// A config that claims a tenant, with what the binding rule says of it.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The config.
    pub config: TenantMcpConfig,
    /// Whether it serves its tenant, and why not.
    pub verdict: Verdict,
    /// The tenant its namespace is bound to, if any.
    pub namespace_tenant: Option<String>,
}

/// What the tools take from the GlobalMcpConfig.
#[derive(Clone, Debug, Default)]
pub struct GlobalSettings {
    /// The endpoint policy.
    pub policy: EndpointPolicy,
    /// `allowUnboundNamespaces`.
    pub allow_unbound: bool,
}

/// The Kubernetes side of the tools.
#[derive(Clone)]
pub struct Store {
    kube: kube::Client,
}

impl Store {
    /// A store over `kube`.
    pub fn new(kube: kube::Client) -> Self {
        Self { kube }
    }

    /// Every TenantMcpConfig that claims `tenant`, each with the binding rule's verdict and
    /// the tenant its namespace is bound to; oldest first.
    pub async fn claims(
        &self,
        tenant: &str,
        global: &GlobalSettings,
    ) -> Result<Vec<Claimed>, ToolError> {
        // No config can claim what is not a tenant id (the CRD refuses it), and it must not
        // reach a field selector.
        if !crate::config::validate::is_dns_label(tenant) {
            return Ok(Vec::new());
        }
        let api: Api<TenantMcpConfig> = Api::all(self.kube.clone());
        // The CRD's selectable field: the API server filters, and a read of one tenant does
        // not fetch every config of the cluster (at 10,000 configs, 47 MB of JSON per call).
        let params = ListParams::default().fields(&format!("spec.tenantId={tenant}"));
        let mut all = api
            .list(&params)
            .await
            .map_err(|e| ToolError::kube("listing TenantMcpConfigs", e))?
            .items;
        all.retain(|c| c.spec.tenant_id == tenant);
        all.sort_by_key(|c| {
            (
                c.meta().creation_timestamp.clone().map(|t| t.0),
                c.namespace(),
                c.name_any(),
            )
        });
        let bindings = self.namespace_bindings(&all).await?;
        let labels: Vec<Option<String>> = all
            .iter()
            .map(|c| {
                bindings
                    .get(&c.namespace().unwrap_or_default())
                    .cloned()
                    .flatten()
            })
            .collect();
        let claims: Vec<Claim<'_>> = all
            .iter()
            .zip(&labels)
            .map(|(config, label)| {
                let mut claim = Claim::of(config, None);
                claim.namespace_tenant = label.as_deref();
                claim
            })
            .collect();
        let verdicts = binding::decide(tenant, &claims, global.allow_unbound).verdicts;
        Ok(all
            .into_iter()
            .zip(verdicts)
            .zip(labels)
            .map(|((config, verdict), namespace_tenant)| Claimed {
                config,
                verdict,
                namespace_tenant,
            })
            .collect())
    }

    /// One page of every tenant's claims, in the API server's order (by namespace and name):
    /// at most `limit` configs from `continue_token` on, and the token of the next page. Each
    /// config's verdict is decided with every claim of its tenant, not only this page's.
    pub async fn claims_page(
        &self,
        global: &GlobalSettings,
        limit: u32,
        continue_token: Option<&str>,
    ) -> Result<(Vec<Claimed>, Option<String>), ToolError> {
        let api: Api<TenantMcpConfig> = Api::all(self.kube.clone());
        let mut params = ListParams::default().limit(limit);
        if let Some(token) = continue_token {
            params = params.continue_token(token);
        }
        let refused = |message: &str| {
            let mut errors = FieldErrors::default();
            errors.push(FieldError::invalid(&FieldPath::new("continue"), message));
            ToolError::invalid("nothing listed", errors)
        };
        let page = api.list(&params).await.map_err(|e| match e {
            kube::Error::Api(ref s) if s.code == 410 => refused(
                "expired (the API server keeps a listing for a few minutes): list again from \
                 the start, without `continue`",
            ),
            kube::Error::Api(ref s) if s.code == 400 && continue_token.is_some() => {
                refused("not the `continue` of an earlier answer")
            }
            e => ToolError::kube("listing TenantMcpConfigs", e),
        })?;
        let next = page.metadata.continue_.filter(|t| !t.is_empty());
        let on_page: std::collections::HashSet<Option<String>> =
            page.items.iter().map(|c| c.metadata.uid.clone()).collect();
        let tenants: std::collections::BTreeSet<String> = page
            .items
            .iter()
            .map(|c| c.spec.tenant_id.clone())
            .collect();
        let mut claimed = Vec::with_capacity(page.items.len());
        for tenant in tenants {
            claimed.extend(
                self.claims(&tenant, global)
                    .await?
                    .into_iter()
                    .filter(|c| on_page.contains(&c.config.metadata.uid)),
            );
        }
        let order = |c: &Claimed| (c.config.namespace(), c.config.name_any());
        claimed.sort_by_key(order);
        Ok((claimed, next))
    }

    /// The tenant each namespace of `configs` is bound to (its label), by namespace name.
    async fn namespace_bindings(
        &self,
        configs: &[TenantMcpConfig],
    ) -> Result<HashMap<String, Option<String>>, ToolError> {
        let api: Api<Namespace> = Api::all(self.kube.clone());
        let wanted: std::collections::BTreeSet<String> = configs
            .iter()
            .filter_map(kube::ResourceExt::namespace)
            .collect();
        let mut found = HashMap::new();
        for name in wanted {
            let ns = api
                .get_metadata_opt(&name)
                .await
                .map_err(|e| ToolError::kube(format!("reading namespace {name:?}"), e))?;
            let bound = ns.and_then(|n| n.labels().get(TENANT_LABEL).cloned());
            found.insert(name, bound);
        }
        Ok(found)
    }

    /// The config that serves `tenant` under the binding rule. A config that claims the
    /// tenant without serving it (from another tenant's namespace, or in conflict) is never
    /// returned: the tools must not read, write or delete it on the tenant's behalf.
    pub async fn config(
        &self,
        tenant: &str,
        global: &GlobalSettings,
    ) -> Result<TenantMcpConfig, ToolError> {
        self.claims(tenant, global)
            .await?
            .into_iter()
            .find(|c| c.verdict.serves())
            .map(|c| c.config)
            .ok_or_else(|| {
                ToolError::NotFound(format!(
                    "tenant {tenant:?} has no TenantMcpConfig that serves it: register one with rag_register_tenant_mcp_config"
                ))
            })
    }

    /// What the tools take from the GlobalMcpConfig: its endpoint policy (the strict default
    /// without one) and whether unbound namespaces may serve, as the controller applies them.
    pub async fn global(&self) -> Result<GlobalSettings, ToolError> {
        let api: Api<GlobalMcpConfig> = Api::all(self.kube.clone());
        let global = api
            .get_opt(GLOBAL_CONFIG_NAME)
            .await
            .map_err(|e| ToolError::kube("reading the GlobalMcpConfig", e))?;
        Ok(GlobalSettings {
            policy: global.as_ref().map_or_else(EndpointPolicy::default, |g| {
                EndpointPolicy::compile_or_strict(&g.spec.endpoint_policy)
            }),
            allow_unbound: global.is_some_and(|g| g.spec.allow_unbound_namespaces),
        })
    }

    /// The namespace a config of `tenant` lives in: `requested` if it is bound to the tenant,
    /// else the one namespace labelled for it. Errors name the `namespace` argument.
    pub async fn bound_namespace(
        &self,
        tenant: &str,
        requested: Option<&str>,
    ) -> Result<String, ToolError> {
        let api: Api<Namespace> = Api::all(self.kube.clone());
        let field = FieldPath::new("namespace");
        let fail = |message: String| {
            let mut errors = FieldErrors::default();
            errors.push(FieldError::invalid(&field, message));
            ToolError::invalid("no namespace for the config", errors)
        };
        let bind = format!("kubectl label namespace <namespace> {TENANT_LABEL}={tenant}");
        if let Some(name) = requested {
            let ns = api
                .get_opt(name)
                .await
                .map_err(|e| ToolError::kube(format!("reading namespace {name:?}"), e))?
                .ok_or_else(|| fail(format!("namespace {name:?} does not exist")))?;
            // The tools place configs in bound namespaces only, even where the cluster allows
            // unbound ones.
            let bound = ns.labels().get(TENANT_LABEL).cloned();
            return binding::namespace_allows(name, bound.as_deref(), tenant, false)
                .map(|()| name.to_owned())
                .map_err(|e| fail(e.message(tenant)));
        }
        let bound = api
            .list(&ListParams::default().labels(&format!("{TENANT_LABEL}={tenant}")))
            .await
            .map_err(|e| ToolError::kube("listing namespaces", e))?
            .items;
        match bound.as_slice() {
            [one] => Ok(one.name_any()),
            [] => Err(fail(format!(
                "no namespace is bound to tenant {tenant:?}: bind one with `{bind}`"
            ))),
            many => Err(fail(format!(
                "{} namespaces are bound to tenant {tenant:?} ({}): name one",
                many.len(),
                many.iter()
                    .map(kube::ResourceExt::name_any)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The Secrets named `names` in `namespace` that exist.
    pub async fn secrets(
        &self,
        namespace: &str,
        names: &[String],
    ) -> Result<HashMap<String, Secret>, ToolError> {
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let mut found = HashMap::new();
        for name in names {
            let name = name.as_str();
            if found.contains_key(name) {
                continue;
            }
            if let Some(secret) = api
                .get_opt(name)
                .await
                .map_err(|e| ToolError::kube(format!("reading Secret {namespace}/{name}"), e))?
            {
                found.insert(name.to_owned(), secret);
            }
        }
        Ok(found)
    }

    /// Refuses writes into Secrets the tool did not make for config `config`.
    pub fn check_writable(
        writes: &[SecretWrite],
        existing: &HashMap<String, Secret>,
        config: &str,
    ) -> Result<(), ToolError> {
        let mut errors = FieldErrors::default();
        for write in writes {
            if let Some(secret) = existing.get(&write.name)
                && !writable(secret, config)
            {
                errors.push(FieldError::forbidden(
                    &FieldPath::new("credentials"),
                    format!(
                        "Secret {:?} exists and was not made by this tool for config {config:?}: \
                         reference it without giving credentials (its values are used as they \
                         are), or name another Secret",
                        write.name
                    ),
                ));
            }
        }
        errors
            .into_result()
            .map_err(|e| ToolError::invalid("credentials cannot be stored", e))
    }

    /// Writes `writes` (keeping the other keys of each Secret), returning how to undo them.
    pub async fn write_secrets(
        &self,
        namespace: &str,
        config: &str,
        writes: &[SecretWrite],
        existing: &HashMap<String, Secret>,
    ) -> Result<Vec<Restore>, ToolError> {
        let mut done = Vec::new();
        for write in writes {
            let before = existing.get(&write.name).and_then(|s| s.data.clone());
            let mut data = before.clone().unwrap_or_default();
            for (key, value) in &write.data {
                data.insert(key.clone(), ByteString(value.expose().as_bytes().to_vec()));
            }
            if let Err(e) = self
                .apply_secret(namespace, config, &write.name, &data)
                .await
            {
                self.restore(namespace, config, done).await;
                return Err(e);
            }
            done.push(Restore {
                name: write.name.clone(),
                before,
            });
        }
        Ok(done)
    }

    /// Puts Secrets back as they were (best effort: a failure is logged, the original error is
    /// what the caller hears).
    pub async fn restore(&self, namespace: &str, config: &str, restores: Vec<Restore>) {
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        for r in restores.into_iter().rev() {
            let result = match &r.before {
                Some(data) => self.apply_secret(namespace, config, &r.name, data).await,
                None => api
                    .delete(&r.name, &DeleteParams::default())
                    .await
                    .map(|_| ())
                    .map_err(|e| ToolError::kube("deleting", e)),
            };
            if let Err(e) = result {
                tracing::error!(secret = %format!("{namespace}/{}", r.name), error = %e, "could not undo a Secret write");
            }
        }
    }

    async fn apply_secret(
        &self,
        namespace: &str,
        config: &str,
        name: &str,
        data: &BTreeMap<String, ByteString>,
    ) -> Result<(), ToolError> {
        let api: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY, CREDENTIALS_OF_LABEL: config}},
            "data": data,
        });
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(secret),
        )
        .await
        .map(|_| ())
        .map_err(|e| conflict_or(e, &format!("writing Secret {namespace}/{name}")))
    }

    /// Applies `spec` as config `namespace/name`. With `version`, the apply fails if the
    /// config changed since (the API server checks `metadata.resourceVersion`).
    pub async fn apply_config(
        &self,
        namespace: &str,
        name: &str,
        spec: &TenantMcpConfigSpec,
        version: Option<&str>,
    ) -> Result<TenantMcpConfig, ToolError> {
        let api: Api<TenantMcpConfig> = Api::namespaced(self.kube.clone(), namespace);
        let mut config = json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        if let Some(v) = version {
            config["metadata"]["resourceVersion"] = json!(v);
        }
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(config),
        )
        .await
        .map_err(|e| conflict_or(e, &format!("writing TenantMcpConfig {namespace}/{name}")))
    }

    /// Config `namespace/name`, if it exists.
    pub async fn get_config(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<TenantMcpConfig>, ToolError> {
        Api::<TenantMcpConfig>::namespaced(self.kube.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| ToolError::kube(format!("reading TenantMcpConfig {namespace}/{name}"), e))
    }

    /// Deletes config `namespace/name` if it meets `preconditions` (its uid, or the version a
    /// caller expects), then the Secrets the tool made for it; the names of those Secrets.
    pub async fn delete_config(
        &self,
        namespace: &str,
        name: &str,
        preconditions: Preconditions,
    ) -> Result<Vec<String>, ToolError> {
        let api: Api<TenantMcpConfig> = Api::namespaced(self.kube.clone(), namespace);
        let params = DeleteParams {
            preconditions: Some(preconditions),
            ..DeleteParams::default()
        };
        api.delete(name, &params)
            .await
            .map_err(|e| conflict_or(e, &format!("deleting TenantMcpConfig {namespace}/{name}")))?;
        self.delete_unused_secrets(namespace, name).await
    }

    /// Deletes the Secrets the tool made for config `namespace/name` (by their labels) that no
    /// config of the namespace uses; their names. A write cut off between its Secrets and its
    /// config (the server killed, the API gone) leaves Secrets the config does not use: the
    /// next write of the config removes them.
    pub async fn delete_unused_secrets(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<String>, ToolError> {
        let configs = Api::<TenantMcpConfig>::namespaced(self.kube.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| ToolError::kube(format!("listing TenantMcpConfigs in {namespace}"), e))?;
        let keep: Vec<String> = configs
            .items
            .iter()
            // A config being deleted (the controller's finalizer still on it) uses nothing.
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .flat_map(|c| c.spec.servers.secret_uses())
            .map(|u| u.name.to_owned())
            .collect();
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), namespace);
        let selector =
            format!("app.kubernetes.io/managed-by={MANAGED_BY},{CREDENTIALS_OF_LABEL}={name}");
        let made = secrets
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| ToolError::kube("listing the config's Secrets", e))?;
        let mut deleted = Vec::new();
        for secret in made {
            let secret_name = secret.name_any();
            if keep.contains(&secret_name) {
                continue;
            }
            match secrets.delete(&secret_name, &DeleteParams::default()).await {
                Ok(_) => deleted.push(secret_name),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(ToolError::kube(format!("deleting Secret {secret_name}"), e)),
            }
        }
        Ok(deleted)
    }
}

/// A 409 as [`ToolError::Conflict`] (with the API server's list of conflicting fields and
/// managers), anything else as a Kubernetes error.
fn conflict_or(e: kube::Error, action: &str) -> ToolError {
    match &e {
        kube::Error::Api(status)
            if status.code == 409 && status.message.contains("Apply failed") =>
        {
            ToolError::Conflict {
                message: format!(
                    "{action}: {}. Another field manager (e.g. a GitOps tool) owns these fields: \
                     change them there",
                    status.message
                ),
            }
        }
        kube::Error::Api(status) if status.code == 409 => ToolError::Conflict {
            message: format!(
                "{action}: {}. It changed since it was read: get it again and retry",
                status.message
            ),
        },
        _ => ToolError::kube(action, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a Secret held before a write is credentials: a debug dump of the undo record
    /// names the Secret and its keys, never a value.
    #[test]
    fn a_restore_record_never_prints_the_values_it_keeps() {
        let restore = Restore {
            name: "acme-pg".into(),
            before: Some(
                [(
                    "password".to_owned(),
                    ByteString(b"hunter2-old-password".to_vec()),
                )]
                .into(),
            ),
        };
        let dump = format!("{restore:?} {restore:#?}");
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(!dump.contains("104, 117"), "bytes of the value: {dump}");
        assert!(
            dump.contains("acme-pg") && dump.contains("password"),
            "{dump}"
        );
    }
}
