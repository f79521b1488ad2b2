//! The public API: the `TenantMcpConfig` and `GlobalMcpConfig` custom resources, their server
//! shapes, status and condition vocabulary.
//!
//! These types are what platform teams write in YAML, so every field carries a `///` comment
//! (it becomes the CRD description) and renaming a field is a breaking change. This module does
//! no I/O and holds no credential values: credentials are only ever Secret references.

pub mod conditions;
pub mod crd;
pub mod flat_map;
pub mod global;
pub mod reference;
pub mod schema;
pub mod secret_ref;
pub mod servers;
pub mod slim;
pub mod status;
pub mod tenant;

pub use global::{
    DEFAULT_CREDENTIALS_NAMESPACE, EndpointPolicySpec, GlobalMcpConfig, GlobalMcpConfigSpec,
};
pub use secret_ref::{PostgresCredentialsRef, S3CredentialsRef, SecretKeyRef};
pub use servers::{
    HttpHeader, McpServer, NamedMcpServer, PoolSettings, PostgresServer, RoutingMode, S3Server,
    ServersSpec, SslMode, TenantRouting,
};
pub use status::{ActiveConfig, ActiveServer, McpConfigStatus, ServerHealth, ServerState};
pub use tenant::{TenantMcpConfig, TenantMcpConfigSpec, ValidationSettings};

/// The API group of both custom resources.
pub const GROUP: &str = "tenantmcp.dev";
/// The served and stored API version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as it appears in manifests.
pub const API_VERSION: &str = "tenantmcp.dev/v1alpha1";
/// The name of the one `GlobalMcpConfig` the controller and the client library read.
pub const GLOBAL_CONFIG_NAME: &str = "default";
/// The namespace label that binds a namespace to the tenant it serves.
pub const TENANT_LABEL: &str = "tenantmcp.dev/tenant";
/// Most further MCP servers one config declares (`spec.servers.mcpServers`).
pub const MAX_NAMED_MCP_SERVERS: u32 = 32;
/// Most server keys a status reports on: `postgres`, `minio`, `aiMcpServer` and every named
/// MCP server.
pub const MAX_SERVER_KEYS: u32 = MAX_NAMED_MCP_SERVERS + 3;
/// The Secret `type` of the controller's snapshot Secrets.
pub const SNAPSHOT_TYPE: &str = "tenantmcp.dev/snapshot";
