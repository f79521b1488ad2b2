//! The management tools. Each call is authorized against the caller's token, checked in full
//! before anything is stored (static validation, endpoint policy, connection tests), runs under
//! a time limit, and is audited.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use rmcp::ErrorData;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::Extensions;
use rmcp::{tool, tool_handler, tool_router};

use super::audit;
use super::auth::{Access, Caller, Role};
use super::connection::{self, ConnectionTest};
use super::error::ToolError;
use super::input::{
    CredentialsInput, DeleteRequest, GetRequest, Input, ListRequest, RegisterRequest, TestRequest,
    UpdateRequest,
};
use super::limits::Limits;
use super::plan::{SecretWrite, as_arguments, other_owners, overlay, secret_writes, touched};
use super::store::Store;
use super::view::{ConfigList, ConfigView, DeleteResult, TestResult, WriteResult, view};
use crate::api::{TenantMcpConfigSpec, ValidationSettings};
use crate::config::candidate::ServerKey;
use crate::config::validate::is_dns_subdomain;
use crate::config::{
    FieldError, FieldErrors, FieldPath, merge_servers, validate_tenant_spec, validate_tenant_update,
};
use crate::probe::Prober;

/// The name of a config registered without one.
pub const DEFAULT_CONFIG_NAME: &str = "tenant-mcp";

/// The tools, over the Kubernetes API.
#[derive(Clone)]
pub struct ManagementTools {
    store: Store,
    prober: Prober,
    limits: Arc<Limits>,
    /// The caller of a session without HTTP (stdio), authenticated once at start.
    fixed_caller: Option<Caller>,
}

/// A config checked and ready to store.
struct Checked {
    namespace: String,
    name: String,
    /// The resourceVersion the write requires (updates).
    version: Option<String>,
    spec: TenantMcpConfigSpec,
    writes: Vec<SecretWrite>,
    existing: HashMap<String, Secret>,
    tests: Vec<ConnectionTest>,
}

#[tool_router]
impl ManagementTools {
    /// Creates a tenant's config.
    #[tool(
        name = "rag_register_tenant_mcp_config",
        description = "Create a tenant's MCP config (fails if the tenant has one). Servers as in the TenantMcpConfig spec; credentials go into the Secrets the servers reference, never into the config. Every server is connection-tested first; nothing is stored unless all pass."
    )]
    async fn register(
        &self,
        extensions: Extensions,
        Parameters(Input(request)): Parameters<Input<RegisterRequest>>,
    ) -> Result<Json<WriteResult>, ErrorData> {
        let tenant = request.tenant_id.clone();
        const TOOL: &str = "rag_register_tenant_mcp_config";
        self.call(&extensions, TOOL, &tenant, |caller| async move {
            let checked = self
                .bounded(TOOL, self.plan_register(caller, request))
                .await?;
            self.store_checked(checked).await
        })
        .await
    }

    /// Changes chosen server types of a tenant's config.
    #[tool(
        name = "rag_update_tenant_mcp_config",
        description = "Change a tenant's MCP config: `servers` is a merge patch per server type (left out: unchanged, null: removed, object: merged). Changed servers are connection-tested first; nothing is stored unless all pass. `expectedVersion` (a resourceVersion from get) guards against concurrent changes."
    )]
    async fn update(
        &self,
        extensions: Extensions,
        Parameters(Input(request)): Parameters<Input<UpdateRequest>>,
    ) -> Result<Json<WriteResult>, ErrorData> {
        let tenant = request.tenant_id.clone();
        const TOOL: &str = "rag_update_tenant_mcp_config";
        self.call(&extensions, TOOL, &tenant, |caller| async move {
            let checked = self
                .bounded(TOOL, self.plan_update(caller, request))
                .await?;
            self.store_checked(checked).await
        })
        .await
    }

    /// One tenant's config.
    #[tool(
        name = "rag_get_tenant_mcp_config",
        description = "A tenant's MCP config: desired and active per server type, health and conditions (never a credential)"
    )]
    async fn get(
        &self,
        extensions: Extensions,
        Parameters(Input(request)): Parameters<Input<GetRequest>>,
    ) -> Result<Json<ConfigView>, ErrorData> {
        let tenant = request.tenant_id.clone();
        const TOOL: &str = "rag_get_tenant_mcp_config";
        self.call(&extensions, TOOL, &tenant, |caller| {
            self.bounded(TOOL, async move {
                caller.authorize(Access::Tenant(&request.tenant_id))?;
                let config = self.store.config(&request.tenant_id).await?;
                Ok((view(&config), format!("read {}", id(&config))))
            })
        })
        .await
    }

    /// The configs the caller may see.
    #[tool(
        name = "rag_list_tenant_mcp_configs",
        description = "Tenant MCP configs: every tenant's for an uber admin, the own tenant's for a tenant admin"
    )]
    async fn list(
        &self,
        extensions: Extensions,
        Parameters(Input(request)): Parameters<Input<ListRequest>>,
    ) -> Result<Json<ConfigList>, ErrorData> {
        const TOOL: &str = "rag_list_tenant_mcp_configs";
        let shown = request.tenant_id.clone().unwrap_or_else(|| "*".into());
        self.call(&extensions, TOOL, &shown, |caller| {
            self.bounded(TOOL, self.list_visible(caller, request))
        })
        .await
    }

    /// Deletes a tenant's config.
    #[tool(
        name = "rag_delete_tenant_mcp_config",
        description = "Delete a tenant's MCP config and the Secrets this server made for it; the tenant then uses the global servers. `expectedVersion` guards against concurrent changes."
    )]
    async fn delete(
        &self,
        extensions: Extensions,
        Parameters(Input(request)): Parameters<Input<DeleteRequest>>,
    ) -> Result<Json<DeleteResult>, ErrorData> {
        const TOOL: &str = "rag_delete_tenant_mcp_config";
        let tenant = request.tenant_id.clone();
        self.call(&extensions, TOOL, &tenant, |caller| async move {
            let current = self
                .bounded(TOOL, async {
                    caller.authorize(Access::Tenant(&request.tenant_id))?;
                    let current = self.store.config(&request.tenant_id).await?;
                    check_version(&current, request.expected_version.as_deref())?;
                    Ok(current)
                })
                .await?;
            self.delete_unbounded(&current).await
        })
        .await
    }

    /// Validates and connection-tests a config without storing it.
    #[tool(
        name = "rag_test_tenant_mcp_config",
        description = "Validate and connection-test a tenant MCP config without storing anything: every problem by field, and each server's test result"
    )]
    async fn test(
        &self,
        extensions: Extensions,
        Parameters(Input(request)): Parameters<Input<TestRequest>>,
    ) -> Result<Json<TestResult>, ErrorData> {
        let tenant = request.tenant_id.clone();
        const TOOL: &str = "rag_test_tenant_mcp_config";
        self.call(&extensions, TOOL, &tenant, |caller| {
            self.bounded(TOOL, self.test_only(caller, request))
        })
        .await
    }
}

#[tool_handler(
    name = "tenant-mcp",
    instructions = "Manage tenant MCP configs (each tenant's own Postgres, MinIO/S3, AI MCP and further MCP servers; tenants without one use the global servers). Read with rag_get_tenant_mcp_config / rag_list_tenant_mcp_configs; check a config with rag_test_tenant_mcp_config; store with rag_register_tenant_mcp_config (new tenant) or rag_update_tenant_mcp_config (merge patch per server type); remove with rag_delete_tenant_mcp_config. Credentials go in `credentials`, never in `servers`. A tenant_admin acts on its own tenant only."
)]
impl rmcp::ServerHandler for ManagementTools {}

impl ManagementTools {
    /// Tools over `kube`, testing connections with `prober`, under `limits`.
    pub fn new(kube: kube::Client, prober: Prober, limits: Arc<Limits>) -> Self {
        Self {
            store: Store::new(kube),
            prober,
            limits,
            fixed_caller: None,
        }
    }

    /// The same tools for one caller known in advance (a stdio session has no HTTP headers).
    pub fn for_caller(mut self, caller: Caller) -> Self {
        self.fixed_caller = Some(caller);
        self
    }

    /// Runs one call: finds the caller, audits the outcome. The time limit applies inside the
    /// tools, to everything before a write ([`Self::bounded`]).
    async fn call<T, F, Fut>(
        &self,
        extensions: &Extensions,
        tool: &'static str,
        tenant: &str,
        body: F,
    ) -> Result<Json<T>, ErrorData>
    where
        F: FnOnce(Caller) -> Fut,
        Fut: Future<Output = Result<(T, String), ToolError>>,
    {
        let caller = extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Caller>())
            .or(self.fixed_caller.as_ref())
            .cloned()
            .ok_or_else(|| ErrorData::internal_error("no authenticated caller", None))?;
        match body(caller.clone()).await {
            Ok((value, detail)) => {
                audit::record(&caller, tenant, tool, "Ok", &detail);
                Ok(Json(value))
            }
            Err(e) => {
                audit::record(&caller, tenant, tool, e.reason(), &e.to_string());
                Err(e.into())
            }
        }
    }

    /// Runs `work` under the tool time limit. Only reads and checks run here: a write, once
    /// started, is never cut short half-way.
    async fn bounded<T>(
        &self,
        tool: &'static str,
        work: impl Future<Output = Result<T, ToolError>>,
    ) -> Result<T, ToolError> {
        let limit = self.limits.tool_timeout;
        tokio::time::timeout(limit, work)
            .await
            .unwrap_or(Err(ToolError::Timeout {
                tool,
                seconds: limit.as_secs(),
            }))
    }

    async fn list_visible(
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
        let configs = self.store.configs(tenant.as_deref()).await?;
        let detail = format!("listed {}", configs.len());
        let configs = configs.iter().map(view).collect();
        Ok((ConfigList { configs }, detail))
    }

    /// Deletes `current` (if unchanged) and the Secrets made for it, in a task of its own so
    /// the two go together even if the caller leaves.
    async fn delete_unbounded(
        &self,
        current: &crate::api::TenantMcpConfig,
    ) -> Result<(DeleteResult, String), ToolError> {
        let (namespace, name) = (current.namespace().unwrap_or_default(), current.name_any());
        let version = current.resource_version();
        let store = self.store.clone();
        let (ns, n) = (namespace.clone(), name.clone());
        let secrets_deleted =
            tokio::spawn(async move { store.delete_config(&ns, &n, version.as_deref()).await })
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

    async fn plan_register(
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
        let policy = self.store.policy().await?;
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
        if !errors.is_empty() {
            return Err(ToolError::invalid("invalid config, nothing stored", errors));
        }
        let tenant = spec.tenant_id.clone();
        let namespace = self
            .store
            .bound_namespace(&tenant, request.namespace.as_deref())
            .await?;
        if let Some(existing) = self.store.configs(Some(&tenant)).await?.first() {
            return Err(ToolError::AlreadyExists(format!(
                "tenant {tenant:?} already has TenantMcpConfig {}: change it with rag_update_tenant_mcp_config",
                id(existing)
            )));
        }
        let keys = ServerKey::declared(&spec.servers);
        let test = request.connection_test.unwrap_or(true);
        self.check(
            namespace,
            &name,
            spec,
            writes,
            if test { &keys } else { &[] },
        )
        .await
    }

    async fn plan_update(
        &self,
        caller: Caller,
        request: UpdateRequest,
    ) -> Result<Checked, ToolError> {
        caller.authorize(Access::Tenant(&request.tenant_id))?;
        let current = self.store.config(&request.tenant_id).await?;
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
        let policy = self.store.policy().await?;
        errors.extend(as_arguments(validate_tenant_update(
            &current.spec,
            &spec,
            &policy,
        )));
        let credentials = request.credentials.unwrap_or_default();
        let writes = planned_writes(&spec, &credentials, &mut errors);
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
                namespace,
                &name,
                spec,
                writes,
                if test { &keys } else { &[] },
            )
            .await?;
        checked.version = current.resource_version();
        Ok(checked)
    }

    async fn test_only(
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
        let policy = self.store.policy().await?;
        let mut errors = as_arguments(validate_tenant_spec(&spec, &policy));
        let credentials = request.credentials.unwrap_or_default();
        let writes = planned_writes(&spec, &credentials, &mut errors);
        let mut tests = Vec::new();
        if errors.is_empty() {
            let needs_namespace = spec
                .servers
                .secret_uses()
                .iter()
                .any(|u| !writes.iter().any(|w| w.name == u.name));
            let mut secrets = HashMap::new();
            if needs_namespace {
                let namespace = self
                    .store
                    .bound_namespace(&spec.tenant_id, request.namespace.as_deref())
                    .await?;
                let names: Vec<String> = spec
                    .servers
                    .secret_uses()
                    .iter()
                    .map(|u| u.name.to_owned())
                    .collect();
                secrets = self.store.secrets(&namespace, &names).await?;
            }
            for write in &writes {
                secrets.insert(write.name.clone(), overlay(secrets.get(&write.name), write));
            }
            let keys = ServerKey::declared(&spec.servers);
            let (results, failures) = self.run_tests(&spec, &keys, &secrets).await;
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
    async fn check(
        &self,
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
        let mut planned = existing.clone();
        for write in &writes {
            planned.insert(
                write.name.clone(),
                overlay(existing.get(&write.name), write),
            );
        }
        let (tests, failures) = self.run_tests(&spec, keys, &planned).await;
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
            spec,
            writes,
            existing,
            tests,
        })
    }

    async fn run_tests(
        &self,
        spec: &TenantMcpConfigSpec,
        keys: &[ServerKey],
        secrets: &HashMap<String, Secret>,
    ) -> (Vec<ConnectionTest>, FieldErrors) {
        let policy = match self.store.policy().await {
            Ok(p) => p,
            Err(e) => {
                let mut errors = FieldErrors::default();
                errors.push(FieldError::invalid(
                    &FieldPath::new("servers"),
                    e.to_string(),
                ));
                return (Vec::new(), errors);
            }
        };
        connection::run(
            &self.prober,
            &policy,
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
    async fn store_checked(&self, checked: Checked) -> Result<(WriteResult, String), ToolError> {
        let store = self.store.clone();
        let write = tokio::spawn(async move {
            let Checked {
                namespace,
                name,
                version,
                spec,
                writes,
                existing,
                tests,
            } = checked;
            let restores = store
                .write_secrets(&namespace, &name, &writes, &existing)
                .await?;
            match store
                .apply_config(&namespace, &name, &spec, version.as_deref())
                .await
            {
                Ok(config) => {
                    let detail = format!(
                        "stored {} ({} servers, {} tested, {} Secrets written)",
                        id(&config),
                        ServerKey::declared(&spec.servers).len(),
                        tests.len(),
                        writes.len()
                    );
                    Ok((
                        WriteResult {
                            config: view(&config),
                            connection_tests: tests,
                            secrets_written: writes.into_iter().map(|w| w.name).collect(),
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

fn check_version(
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

fn id(config: &crate::api::TenantMcpConfig) -> String {
    format!(
        "{}/{}",
        config.namespace().unwrap_or_default(),
        config.name_any()
    )
}
