//! `TenantMcpConfig`: one tenant's endpoints and credential references, in the tenant's
//! namespace.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::servers::ServersSpec;
use super::status::McpConfigStatus;

/// A tenant's own Postgres, MinIO/S3, AI MCP and further MCP servers. Server types left out fall
/// back to the cluster's `GlobalMcpConfig`. The controller validates and connection-tests each
/// server type and copies it into `status.active` only when it passed.
// clippy reads each repeated `printcolumn(type_ = …)` as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tenantmcp.dev",
    version = "v1alpha1",
    kind = "TenantMcpConfig",
    doc = "One tenant's own servers and credential references; see spec and status.",
    namespaced,
    status = "McpConfigStatus",
    shortname = "tmc",
    category = "tenantmcp",
    derive = "PartialEq",
    cel,
    // `kubectl get tmc -A --field-selector spec.tenantId=acme`, and the webhook's rival lookup
    // without listing every config.
    selectable = ".spec.tenantId",
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenantId",
        description = "The tenant this config serves"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every declared server type is active and healthy"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1",
        description = "Why the config is or is not ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct TenantMcpConfigSpec {
    /// The tenant this config serves: a DNS label (lowercase letters, digits and `-`, at most 63
    /// characters). Immutable.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("tenantId is immutable"))]
    pub tenant_id: String,
    /// `false` sends this tenant back to the global servers without deleting anything.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The tenant's own servers; absent server types use the global ones.
    #[serde(default)]
    pub servers: ServersSpec,
    /// How the controller tests these servers.
    #[serde(default)]
    pub validation: ValidationSettings,
}

fn default_true() -> bool {
    true
}

/// How and how often the controller connection-tests the servers of a config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationSettings {
    /// Seconds a connection test may take before it counts as failed (`Timeout`).
    #[serde(default = "default_connect_timeout")]
    #[schemars(range(min = 1, max = 60))]
    pub connect_timeout_seconds: i32,
    /// Seconds between re-validations of active servers; `0` turns re-validation off.
    #[serde(default = "default_revalidate_interval")]
    #[schemars(range(min = 0, max = 86400))]
    pub revalidate_interval_seconds: i32,
}

fn default_connect_timeout() -> i32 {
    5
}
fn default_revalidate_interval() -> i32 {
    300
}

impl Default for ValidationSettings {
    fn default() -> Self {
        Self {
            connect_timeout_seconds: default_connect_timeout(),
            revalidate_interval_seconds: default_revalidate_interval(),
        }
    }
}
