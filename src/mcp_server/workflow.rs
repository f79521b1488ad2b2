//! What the tools do: each call authorized against the caller, checked in full before anything
//! is stored (static validation, endpoint policy, namespace binding, versions, field owners,
//! connection tests), then written so that nothing is left half-changed.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;

use super::auth::{Access, Caller, Role};
use super::connection::{self, ConnectionTest};
use super::error::ToolError;
use super::input::{
    CredentialsInput, LIST_PAGE, LIST_PAGE_MAX, ListRequest, RegisterRequest, TestRequest,
    UpdateRequest,
};
use super::management::{DEFAULT_CONFIG_NAME, ManagementTools};
use super::plan::{
    SecretWrite, as_arguments, credentials_required, other_owners, secret_writes, touched,
    with_writes,
};
use super::store::Store;
use super::view::{ConfigList, DeleteResult, TestResult, WriteResult, view, view_claimed};
use crate::api::{TenantMcpConfigSpec, ValidationSettings};
use crate::config::candidate::ServerKey;
use crate::config::validate::is_dns_subdomain;
use crate::config::{
    EndpointPolicy, FieldError, FieldErrors, FieldPath, merge_servers, validate_tenant_spec,
    validate_tenant_update,
};

/// A config checked and ready to store.
pub(super) struct Checked {
    namespace: String,
    name: String,
    /// The resourceVersion the caller expects (`expectedVersion`), checked by the API server.
    version: Option<String>,
    /// For an update, the spec it was merged from: the write is refused if the spec changed
    /// meanwhile (a status write by the controller alone does not count).
    base: Option<TenantMcpConfigSpec>,
    spec: TenantMcpConfigSpec,
    writes: Vec<SecretWrite>,
    existing: HashMap<String, Secret>,
    tests: Vec<ConnectionTest>,
}

/// The page size of a listing of every tenant: `limit`, or the default; named by path when
/// out of range.
fn page_limit(limit: Option<u32>) -> Result<u32, ToolError> {
    match limit {
        None => Ok(LIST_PAGE),
        Some(l) if (1..=LIST_PAGE_MAX).contains(&l) => Ok(l),
        Some(l) => {
            let mut errors = FieldErrors::default();
            errors.push(FieldError::invalid(
                &FieldPath::new("limit"),
                format!("must be 1..={LIST_PAGE_MAX}, got {l}"),
            ));
            Err(ToolError::invalid(
                "invalid arguments, nothing done",
                errors,
            ))
        }
    }
}

impl ManagementTools {
    pub(super) async fn list_visible(
        &self,
        caller: Caller,
        request: ListRequest,
    ) -> Result<(ConfigList, String), ToolError> {
        let tenant = match (&request.tenant_id, caller.roles.contains(&Role::UberAdmin)) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => None,
            // A tenant admin listing without a filter sees its own tenant.
            (None, false) => caller.tenant.clone(),
        };
        match &tenant {
            Some(t) => caller.authorize(Access::Tenant(t)),
            None => caller.authorize(Access::AllTenants),
        }?;
        let global = self.store.global().await?;
        let uber = caller.roles.contains(&Role::UberAdmin);
        let (claimed, next) = match &tenant {
            Some(t) => (self.store.claims(t, &global).await?, None),
            None => {
                let limit = page_limit(request.limit)?;
                self.store
                    .claims_page(&global, limit, request.continue_token.as_deref())
                    .await?
            }
        };
        // A tenant admin sees the configs of its tenant in namespaces bound to it: a config
        // that claims its tenant from elsewhere holds someone else's endpoints, and one in its
        // namespace that claims another tenant is not its to see either.
        let configs: Vec<_> = claimed
            .into_iter()
            .filter(|c| {
                uber || (c.namespace_tenant.is_some() && c.namespace_tenant == caller.tenant)
            })
            .collect();
        let detail = format!("listed {}", configs.len());
        let configs = configs
            .iter()
            .map(|c| view_claimed(&c.config, &c.verdict))
            .collect();
        Ok((
            ConfigList {
                configs,
                continue_token: next,
            },
            detail,
        ))
    }

    /// Deletes `current` (if unchanged) and the Secrets made for it, in a task of its own so
    /// the two go together even if the caller leaves.
    pub(super) async fn delete_unbounded(
        &self,
        current: &crate::api::TenantMcpConfig,
        expected_version: Option<String>,
    ) -> Result<(DeleteResult, String), ToolError> {
        let (namespace, name) = (current.namespace().unwrap_or_default(), current.name_any());
        // The object that was read (not one re-created since), at the version the caller
        // expects if it said one; status writes by the controller do not get in the way.
        let preconditions = kube::api::Preconditions {
            uid: current.uid(),
            resource_version: expected_version,
        };
        let store = self.store.clone();
        let (ns, n) = (namespace.clone(), name.clone());
        let secrets_deleted =
            tokio::spawn(async move { store.delete_config(&ns, &n, preconditions).await })
                .await
                .map_err(|e| ToolError::Internal(format!("the delete task failed: {e}")))??;
        let detail = format!(
            "deleted {namespace}/{name} and {} Secrets",
            secrets_deleted.len()
        );
        let result = DeleteResult {
            namespace,
            name,
            secrets_deleted,
        };
        Ok((result, detail))
    }

    pub(super) async fn plan_register(
        &self,
        caller: Caller,
        request: RegisterRequest,
    ) -> Result<Checked, ToolError> {
        caller.authorize(Access::Tenant(&request.tenant_id))?;
        let name = request.name.unwrap_or_else(|| DEFAULT_CONFIG_NAME.into());
        let spec = TenantMcpConfigSpec {
            tenant_id: request.tenant_id,
            enabled: request.enabled.unwrap_or(true),
            servers: request.servers,
            validation: request.validation.unwrap_or_default(),
        };
        let global = self.store.global().await?;
        let policy = global.policy.clone();
        let mut errors = as_arguments(validate_tenant_spec(&spec, &policy));
        if !is_dns_subdomain(&name) {
            errors.push(FieldError::invalid(
                &FieldPath::new("name"),
                format!(
                    "must be a lowercase DNS subdomain (a Kubernetes object name), got {name:?}"
                ),
            ));
        }
        let credentials = request.credentials.unwrap_or_default();
        let writes = planned_writes(&spec, &credentials, &mut errors);
        errors.extend(credentials_required(None, &spec.servers, &credentials));
        if !errors.is_empty() {
            return Err(ToolError::invalid("invalid config, nothing stored", errors));
        }
        let tenant = spec.tenant_id.clone();
        let namespace = self
            .store
            .bound_namespace(&tenant, request.namespace.as_deref())
            .await?;
        // Only a config that serves the tenant counts: one that claims it from another
        // tenant's namespace must not be able to block its registration.
        let claims = self.store.claims(&tenant, &global).await?;
        if let Some(existing) = claims.iter().find(|c| c.verdict.serves()) {
            return Err(ToolError::AlreadyExists(format!(
                "tenant {tenant:?} already has TenantMcpConfig {}: change it with rag_update_tenant_mcp_config",
                id(&existing.config)
            )));
        }
        if let Some(taken) = self.store.get_config(&namespace, &name).await? {
            return Err(ToolError::AlreadyExists(format!(
                "TenantMcpConfig {} exists (for tenant {:?}): choose another name",
                id(&taken),
                taken.spec.tenant_id
            )));
        }
        let keys = ServerKey::declared(&spec.servers);
        let test = request.connection_test.unwrap_or(true);
        self.check(
            &policy,
            namespace,
            &name,
            spec,
            writes,
            if test { &keys } else { &[] },
        )
        .await
    }

    pub(super) async fn plan_update(
        &self,
        caller: Caller,
        request: UpdateRequest,
    ) -> Result<Checked, ToolError> {
        caller.authorize(Access::Tenant(&request.tenant_id))?;
        let global = self.store.global().await?;
        let current = self.store.config(&request.tenant_id, &global).await?;
        check_version(&current, request.expected_version.as_deref())?;
        let mut errors = FieldErrors::default();
        let servers = match &request.servers {
            Some(patch) => merge_servers(&current.spec.servers, patch, &FieldPath::new("servers"))
                .unwrap_or_else(|e| {
                    errors.extend(e);
                    current.spec.servers.clone()
                }),
            None => current.spec.servers.clone(),
        };
        let spec = TenantMcpConfigSpec {
            tenant_id: current.spec.tenant_id.clone(),
            enabled: request.enabled.unwrap_or(current.spec.enabled),
            servers,
            validation: request
                .validation
                .unwrap_or_else(|| current.spec.validation.clone()),
        };
        let policy = global.policy.clone();
        errors.extend(as_arguments(validate_tenant_update(
            &current.spec,
            &spec,
            &policy,
        )));
        let credentials = request.credentials.unwrap_or_default();
        let writes = planned_writes(&spec, &credentials, &mut errors);
        errors.extend(credentials_required(
            Some(&current.spec.servers),
            &spec.servers,
            &credentials,
        ));
        if !errors.is_empty() {
            return Err(ToolError::invalid(
                "invalid update, nothing changed",
                errors,
            ));
        }
        // Server-side apply keeps fields another manager owns, so removing a server that a
        // GitOps tool declared would silently do nothing: refuse it instead.
        let kept = ServerKey::declared(&spec.servers);
        for removed in ServerKey::declared(&current.spec.servers)
            .iter()
            .filter(|k| !kept.contains(k))
        {
            let owners = other_owners(&current, removed);
            if !owners.is_empty() {
                return Err(ToolError::Conflict {
                    message: format!(
                        "{} cannot be removed here: it is managed by {}; remove it there",
                        removed.field(),
                        owners.join(", ")
                    ),
                });
            }
        }
        let keys: Vec<ServerKey> = touched(request.servers.as_ref(), &credentials)
            .into_iter()
            .filter(|k| kept.contains(k))
            .collect();
        let test = request.connection_test.unwrap_or(true);
        let namespace = current.namespace().unwrap_or_default();
        let name = current.name_any();
        let mut checked = self
            .check(
                &policy,
                namespace,
                &name,
                spec,
                writes,
                if test { &keys } else { &[] },
            )
            .await?;
        checked.version = request.expected_version.clone();
        checked.base = Some(current.spec.clone());
        Ok(checked)
    }

    pub(super) async fn test_only(
        &self,
        caller: Caller,
        request: TestRequest,
    ) -> Result<(TestResult, String), ToolError> {
        caller.authorize(Access::Tenant(&request.tenant_id))?;
        let spec = TenantMcpConfigSpec {
            tenant_id: request.tenant_id,
            enabled: true,
            servers: request.servers,
            validation: request.validation.unwrap_or_default(),
        };
        let global = self.store.global().await?;
        let policy = global.policy.clone();
        let mut errors = as_arguments(validate_tenant_spec(&spec, &policy));
        let credentials = request.credentials.unwrap_or_default();
        let writes = planned_writes(&spec, &credentials, &mut errors);
        // Stored credentials are tested only where the stored config already sends them.
        let current = match self.store.config(&spec.tenant_id, &global).await {
            Ok(config) => Some(config),
            Err(ToolError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        errors.extend(credentials_required(
            current.as_ref().map(|c| &c.spec.servers),
            &spec.servers,
            &credentials,
        ));
        let mut tests = Vec::new();
        if errors.is_empty() {
            let needs_namespace = spec
                .servers
                .secret_uses()
                .iter()
                .any(|u| !writes.iter().any(|w| w.name == u.name));
            let mut existing = HashMap::new();
            if needs_namespace {
                // The stored config's own namespace: its Secrets are the ones it sends.
                let namespace = match &current {
                    Some(config) => config.namespace().unwrap_or_default(),
                    None => {
                        self.store
                            .bound_namespace(&spec.tenant_id, request.namespace.as_deref())
                            .await?
                    }
                };
                let names: Vec<String> = spec
                    .servers
                    .secret_uses()
                    .iter()
                    .map(|u| u.name.to_owned())
                    .collect();
                existing = self.store.secrets(&namespace, &names).await?;
            }
            let secrets = with_writes(&existing, &writes);
            let keys = ServerKey::declared(&spec.servers);
            let (results, failures) = self.run_tests(&policy, &spec, &keys, &secrets).await;
            tests = results;
            errors.extend(failures);
        }
        let detail = format!("tested: {} problems", errors.0.len());
        Ok((
            TestResult {
                passed: errors.is_empty(),
                problems: errors.0,
                connection_tests: tests,
            },
            detail,
        ))
    }

    /// Reads the Secrets the config uses, refuses writes into Secrets the tool did not make,
    /// and connection-tests `keys` with the credentials as they will be.
    pub(super) async fn check(
        &self,
        policy: &EndpointPolicy,
        namespace: String,
        name: &str,
        spec: TenantMcpConfigSpec,
        writes: Vec<SecretWrite>,
        keys: &[ServerKey],
    ) -> Result<Checked, ToolError> {
        let names: Vec<String> = spec
            .servers
            .secret_uses()
            .iter()
            .map(|u| u.name.to_owned())
            .chain(writes.iter().map(|w| w.name.clone()))
            .collect();
        let existing = self.store.secrets(&namespace, &names).await?;
        Store::check_writable(&writes, &existing, name)?;
        let planned = with_writes(&existing, &writes);
        let (tests, failures) = self.run_tests(policy, &spec, keys, &planned).await;
        if !failures.is_empty() {
            return Err(ToolError::invalid(
                "connection test failed, nothing stored",
                failures,
            ));
        }
        Ok(Checked {
            namespace,
            name: name.to_owned(),
            version: None,
            base: None,
            spec,
            writes,
            existing,
            tests,
        })
    }

    /// Connection-tests `keys` of `spec` under `policy` (the one the spec was validated
    /// against), with `secrets` by name.
    pub(super) async fn run_tests(
        &self,
        policy: &EndpointPolicy,
        spec: &TenantMcpConfigSpec,
        keys: &[ServerKey],
        secrets: &HashMap<String, Secret>,
    ) -> (Vec<ConnectionTest>, FieldErrors) {
        connection::run(
            &self.prober,
            policy,
            &spec.tenant_id,
            &spec.servers,
            keys,
            secrets,
            connect_timeout(&spec.validation),
        )
        .await
    }

    /// Writes the Secrets, then the config; when the config cannot be written, the Secrets
    /// are put back as they were. Runs as a task of its own, so a caller that goes away or a
    /// cancelled request cannot stop it half-way.
    pub(super) async fn store_checked(
        &self,
        checked: Checked,
    ) -> Result<(WriteResult, String), ToolError> {
        let store = self.store.clone();
        let write = tokio::spawn(async move {
            let Checked {
                namespace,
                name,
                version,
                base,
                spec,
                writes,
                existing,
                tests,
            } = checked;
            if let Some(base) = base {
                match store.get_config(&namespace, &name).await? {
                    Some(now) if now.spec == base => {}
                    Some(_) => {
                        return Err(ToolError::Conflict {
                            message: format!(
                                "TenantMcpConfig {namespace}/{name} changed while this update was \
                                 checked: get it again and retry"
                            ),
                        });
                    }
                    None => {
                        return Err(ToolError::NotFound(format!(
                            "TenantMcpConfig {namespace}/{name} was deleted while this update was checked"
                        )));
                    }
                }
            }
            let restores = store
                .write_secrets(&namespace, &name, &writes, &existing)
                .await?;
            match store
                .apply_config(&namespace, &name, &spec, version.as_deref())
                .await
            {
                Ok(config) => {
                    // The write is done: a failure here leaves a Secret the next write removes.
                    let removed = store
                        .delete_unused_secrets(&namespace, &name)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::warn!(config = %format!("{namespace}/{name}"), error = %e, "could not remove Secrets the config no longer uses");
                            Vec::new()
                        });
                    let detail = format!(
                        "stored {} ({} servers, {} tested, {} Secrets written, {} unused removed)",
                        id(&config),
                        ServerKey::declared(&spec.servers).len(),
                        tests.len(),
                        writes.len(),
                        removed.len()
                    );
                    Ok((
                        WriteResult {
                            config: view(&config),
                            connection_tests: tests,
                            secrets_written: writes.into_iter().map(|w| w.name).collect(),
                            secrets_removed: removed,
                        },
                        detail,
                    ))
                }
                Err(e) => {
                    store.restore(&namespace, &name, restores).await;
                    Err(e)
                }
            }
        });
        write
            .await
            .map_err(|e| ToolError::Internal(format!("the write task failed: {e}")))?
    }
}

/// The Secret writes for `credentials`, adding their problems to `errors`.
fn planned_writes(
    spec: &TenantMcpConfigSpec,
    credentials: &CredentialsInput,
    errors: &mut FieldErrors,
) -> Vec<SecretWrite> {
    secret_writes(&spec.servers, credentials).unwrap_or_else(|e| {
        errors.extend(e);
        Vec::new()
    })
}

pub(super) fn check_version(
    current: &crate::api::TenantMcpConfig,
    expected: Option<&str>,
) -> Result<(), ToolError> {
    match (expected, current.resource_version()) {
        (Some(expected), Some(now)) if expected != now => Err(ToolError::Conflict {
            message: format!(
                "TenantMcpConfig {} changed since version {expected} (now {now}): get it again and retry",
                id(current)
            ),
        }),
        _ => Ok(()),
    }
}

fn connect_timeout(settings: &ValidationSettings) -> Duration {
    Duration::from_secs(
        u64::try_from(settings.connect_timeout_seconds)
            .unwrap_or(5)
            .max(1),
    )
}

pub(super) fn id(config: &crate::api::TenantMcpConfig) -> String {
    format!(
        "{}/{}",
        config.namespace().unwrap_or_default(),
        config.name_any()
    )
}
