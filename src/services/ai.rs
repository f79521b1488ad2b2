//! The tenant's AI MCP server: its own, or the shared one with the tenant routing (header or
//! path) on every request.

use rmcp::model::{CallToolResult, Tool};

use super::error::ServiceError;
use crate::client::{TenantClients, require_tenant};

/// Tool calls on tenants' AI MCP servers.
#[derive(Clone, Debug)]
pub struct TenantAi {
    clients: TenantClients,
}

impl TenantAi {
    /// The service over `clients`.
    pub fn new(clients: TenantClients) -> Self {
        Self { clients }
    }

    /// Every tool of `tenant`'s AI MCP server.
    pub async fn list_tools(&self, tenant: &str) -> Result<Vec<Tool>, ServiceError> {
        let client = self.clients.ai_mcp(tenant).await?;
        client
            .list_tools()
            .await
            .map_err(|source| mcp_error(tenant, source))
    }

    /// Calls tool `name` of `tenant`'s AI MCP server.
    pub async fn call_tool(
        &self,
        tenant: &str,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<CallToolResult, ServiceError> {
        let client = self.clients.ai_mcp(tenant).await?;
        client
            .call_tool(name, arguments)
            .await
            .map_err(|source| mcp_error(tenant, source))
    }

    /// [`Self::call_tool`] for the tenant in scope.
    pub async fn call_tool_current(
        &self,
        name: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<CallToolResult, ServiceError> {
        self.call_tool(&require_tenant()?, name, arguments).await
    }
}

/// The error of an MCP call for `tenant`: a connection the endpoint policy refused becomes
/// [`ServiceError::PolicyDenied`].
fn mcp_error(tenant: &str, source: crate::client::McpCallError) -> ServiceError {
    if source.reason == Some(crate::api::conditions::reason::POLICY_DENIED) {
        return ServiceError::PolicyDenied {
            tenant: tenant.to_owned(),
            server: "mcp",
            message: source.message,
        };
    }
    ServiceError::Mcp {
        tenant: tenant.to_owned(),
        source,
    }
}
