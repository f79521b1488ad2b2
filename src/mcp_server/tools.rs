//! The management tools: each one's MCP face (name, description, input and output schema), the
//! caller, the time limit and the audit line. What each does is in [`super::workflow`].

use rmcp::ErrorData;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Extensions};
use rmcp::{tool, tool_handler, tool_router};
use serde::Serialize;

use super::audit;
use super::auth::{Access, Caller};
use super::error::ToolError;
use super::input::{
    DeleteRequest, GetRequest, Input, ListRequest, RegisterRequest, TestRequest, UpdateRequest,
};
pub use super::management::{DEFAULT_CONFIG_NAME, ManagementTools};
use super::schema;
use super::view::{ConfigList, ConfigView, DeleteResult, TestResult, WriteResult, view};
use super::workflow::{check_version, id};

#[tool_router(vis = "pub(crate)")]
impl ManagementTools {
    /// Creates a tenant's config.
    #[tool(
        name = "rag_register_tenant_mcp_config",
        title = "Register a tenant's MCP config",
        description = "Create a tenant's MCP config (fails if the tenant has one). Servers as in the TenantMcpConfig spec; credentials go into the Secrets the servers reference, never into the config. Every server is connection-tested first; nothing is stored unless all pass.",
        input_schema = schema::input::<RegisterRequest>(),
        output_schema = schema::output::<WriteResult>(),
        // Idempotent: a repeat finds the config and stores nothing (AlreadyExists).
        // Open world: it connects to the tenant's servers to test them.
        annotations(
            title = "Register a tenant's MCP config",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn register(
        &self,
        extensions: Extensions,
        Parameters(input): Parameters<Input<RegisterRequest>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "rag_register_tenant_mcp_config";
        self.call(&extensions, TOOL, input, |caller, request| async move {
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
        title = "Update a tenant's MCP config",
        description = "Change a tenant's MCP config: `servers` is a merge patch per server type (left out: unchanged, null: removed, object: merged). Changed servers are connection-tested first; nothing is stored unless all pass. `expectedVersion` (a resourceVersion from get) guards against concurrent changes.",
        input_schema = schema::input::<UpdateRequest>(),
        output_schema = schema::output::<WriteResult>(),
        // Destructive: `null` removes a server. Idempotent: a merge patch applied twice
        // gives what it gave once.
        annotations(
            title = "Update a tenant's MCP config",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = true
        )
    )]
    async fn update(
        &self,
        extensions: Extensions,
        Parameters(input): Parameters<Input<UpdateRequest>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "rag_update_tenant_mcp_config";
        self.call(&extensions, TOOL, input, |caller, request| async move {
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
        title = "Read a tenant's MCP config",
        description = "A tenant's MCP config: desired and active per server type, health and conditions (never a credential)",
        input_schema = schema::input::<GetRequest>(),
        output_schema = schema::output::<ConfigView>(),
        annotations(
            title = "Read a tenant's MCP config",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn get(
        &self,
        extensions: Extensions,
        Parameters(input): Parameters<Input<GetRequest>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "rag_get_tenant_mcp_config";
        self.call(&extensions, TOOL, input, |caller, request| {
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
        title = "List tenant MCP configs",
        description = "Tenant MCP configs: every tenant's for an uber admin, the own tenant's for a tenant admin",
        input_schema = schema::input::<ListRequest>(),
        output_schema = schema::output::<ConfigList>(),
        annotations(
            title = "List tenant MCP configs",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn list(
        &self,
        extensions: Extensions,
        Parameters(input): Parameters<Input<ListRequest>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "rag_list_tenant_mcp_configs";
        self.call(&extensions, TOOL, input, |caller, request| {
            self.bounded(TOOL, self.list_visible(caller, request))
        })
        .await
    }

    /// Deletes a tenant's config.
    #[tool(
        name = "rag_delete_tenant_mcp_config",
        title = "Delete a tenant's MCP config",
        description = "Delete a tenant's MCP config and the Secrets this server made for it; the tenant then uses the global servers. `expectedVersion` guards against concurrent changes.",
        input_schema = schema::input::<DeleteRequest>(),
        output_schema = schema::output::<DeleteResult>(),
        // Idempotent: a repeat finds nothing to delete (NotFound) and changes nothing.
        annotations(
            title = "Delete a tenant's MCP config",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete(
        &self,
        extensions: Extensions,
        Parameters(input): Parameters<Input<DeleteRequest>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "rag_delete_tenant_mcp_config";
        self.call(&extensions, TOOL, input, |caller, request| async move {
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
        title = "Test a tenant MCP config without storing it",
        description = "Validate and connection-test a tenant MCP config without storing anything: every problem by field, and each server's test result",
        input_schema = schema::input::<TestRequest>(),
        output_schema = schema::output::<TestResult>(),
        // Read-only: nothing is stored. Open world: it connects to the servers it tests.
        annotations(
            title = "Test a tenant MCP config without storing it",
            read_only_hint = true,
            open_world_hint = true
        )
    )]
    async fn test(
        &self,
        extensions: Extensions,
        Parameters(input): Parameters<Input<TestRequest>>,
    ) -> Result<CallToolResult, ErrorData> {
        const TOOL: &str = "rag_test_tenant_mcp_config";
        self.call(&extensions, TOOL, input, |caller, request| {
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
    /// Runs one call: finds the caller, decodes the arguments, audits the outcome, and answers
    /// the structured result or the failure as a tool result ([`ToolError::into_result`]). The
    /// time limit applies inside the tools, to everything before a write ([`Self::bounded`]).
    async fn call<R, T, F, Fut>(
        &self,
        extensions: &Extensions,
        tool: &'static str,
        input: Input<R>,
        body: F,
    ) -> Result<CallToolResult, ErrorData>
    where
        F: FnOnce(Caller, R) -> Fut,
        Fut: Future<Output = Result<(T, String), ToolError>>,
        T: Serialize,
    {
        let caller = extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<Caller>())
            .or(self.fixed_caller.as_ref())
            .cloned()
            .ok_or_else(|| ErrorData::internal_error("no authenticated caller", None))?;
        // `*`: the call names no tenant (a list of all it may see, or arguments without one).
        let tenant = input.tenant.clone().unwrap_or_else(|| "*".into());
        let started = std::time::Instant::now();
        let outcome = match input.into_request() {
            Ok(request) => body(caller.clone(), request).await,
            Err(invalid) => Err(invalid),
        }
        .and_then(|(value, detail)| {
            serde_json::to_value(value)
                .map(|value| (value, detail))
                .map_err(|e| ToolError::Internal(format!("the result as JSON: {e}")))
        });
        match outcome {
            Ok((value, detail)) => {
                audit::record(&caller, &tenant, tool, "Ok", &detail);
                self.metrics.call(tool, "Ok", started.elapsed());
                Ok(CallToolResult::structured(value))
            }
            Err(e) => {
                let reason = e.reason().as_str();
                audit::record(&caller, &tenant, tool, reason, &e.to_string());
                self.metrics.call(tool, reason, started.elapsed());
                e.into_result()
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
