//! The management tools: each one's MCP face (name, description, input and output schema), the
//! caller, the time limit and the audit line. What each does is in [`super::workflow`].

use std::sync::Arc;

use rmcp::ErrorData;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::Extensions;
use rmcp::{tool, tool_handler, tool_router};

use super::audit;
use super::auth::{Access, Caller};
use super::error::ToolError;
use super::input::{
    DeleteRequest, GetRequest, Input, ListRequest, RegisterRequest, TestRequest, UpdateRequest,
};
use super::limits::Limits;
use super::metrics::ServerMetrics;
use super::store::Store;
use super::view::{ConfigList, ConfigView, DeleteResult, TestResult, WriteResult, view};
use super::workflow::{check_version, id};
use crate::probe::Prober;

/// The name of a config registered without one.
pub const DEFAULT_CONFIG_NAME: &str = "tenant-mcp";

/// The tools, over the Kubernetes API.
#[derive(Clone)]
pub struct ManagementTools {
    pub(super) store: Store,
    pub(super) prober: Prober,
    pub(super) limits: Arc<Limits>,
    /// The caller of a session without HTTP (stdio), authenticated once at start.
    pub(super) fixed_caller: Option<Caller>,
    pub(super) metrics: Arc<ServerMetrics>,
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
                let global = self.store.global().await?;
                let config = self.store.config(&request.tenant_id, &global).await?;
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
                    let global = self.store.global().await?;
                    let current = self.store.config(&request.tenant_id, &global).await?;
                    check_version(&current, request.expected_version.as_deref())?;
                    Ok(current)
                })
                .await?;
            self.delete_unbounded(&current, request.expected_version.clone())
                .await
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
            metrics: Arc::new(ServerMetrics::new()),
        }
    }

    /// The metrics of these tools' calls.
    pub fn metrics(&self) -> Arc<ServerMetrics> {
        self.metrics.clone()
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
        let started = std::time::Instant::now();
        match body(caller.clone()).await {
            Ok((value, detail)) => {
                audit::record(&caller, tenant, tool, "Ok", &detail);
                self.metrics.call(tool, "Ok", started.elapsed());
                Ok(Json(value))
            }
            Err(e) => {
                audit::record(&caller, tenant, tool, e.reason(), &e.to_string());
                self.metrics.call(tool, e.reason(), started.elapsed());
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
}
