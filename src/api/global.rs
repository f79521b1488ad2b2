//! `GlobalMcpConfig`: the cluster-wide fallback servers, the tenant-configs feature flag and the
//! endpoint policy every config is checked against.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::servers::ServersSpec;
use super::status::McpConfigStatus;
use super::tenant::ValidationSettings;

/// The platform's global servers, used by every tenant for each server type it does not declare
/// itself. Only the object named `default` is used.
// clippy reads each repeated `printcolumn(type_ = …)` as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tenantmcp.dev",
    version = "v1alpha1",
    kind = "GlobalMcpConfig",
    doc = "The cluster-wide fallback servers, feature flag and endpoint policy; only `default` is used.",
    status = "McpConfigStatus",
    shortname = "gmc",
    category = "tenantmcp",
    derive = "PartialEq",
    cel,
    validation = kube::core::Rule::new("self.metadata.name == 'default'").message("the GlobalMcpConfig must be named default"),
    printcolumn(name = "TenantConfigs", type_ = "boolean", json_path = ".spec.tenantConfigsEnabled", description = "Whether tenant-specific configs are served"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Whether every declared global server is active and healthy"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct GlobalMcpConfigSpec {
    /// The feature flag: `false` sends every tenant to the global servers. Nothing is deleted, and
    /// setting it back to `true` restores tenant configs.
    #[serde(default = "default_true")]
    pub tenant_configs_enabled: bool,
    /// Namespace of the Secrets referenced by the global servers.
    #[serde(default = "default_credentials_namespace")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub credentials_namespace: String,
    /// Serve configs in namespaces that carry no `tenantmcp.dev/tenant` label. Off by default: a
    /// namespace serves only the tenant its label names.
    #[serde(default)]
    pub allow_unbound_namespaces: bool,
    /// The global servers.
    #[serde(default)]
    pub servers: ServersSpec,
    /// Which endpoints any config (tenant or global) may point at.
    #[serde(default)]
    pub endpoint_policy: EndpointPolicySpec,
    /// How the controller tests the global servers.
    #[serde(default)]
    pub validation: ValidationSettings,
}

fn default_true() -> bool {
    true
}
/// Where the global servers' credentials live unless the GlobalMcpConfig says otherwise: a
/// namespace of their own, never the one the controller and its keys run in, so application
/// pods can be given read access to exactly these Secrets and nothing of the control plane.
pub const DEFAULT_CREDENTIALS_NAMESPACE: &str = "tenant-mcp-credentials";

fn default_credentials_namespace() -> String {
    DEFAULT_CREDENTIALS_NAMESPACE.into()
}

/// Rules for the hosts, addresses, schemes and ports a config may point at: the guard against
/// server-side request forgery through a tenant's config. Deny rules win over allow rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPolicySpec {
    /// URL schemes allowed for S3 and MCP endpoints.
    #[serde(default = "default_schemes")]
    #[schemars(length(min = 1, max = 2))]
    pub allowed_schemes: Vec<UrlScheme>,
    /// Ports or port ranges (`443`, `9000-9001`) allowed; empty allows every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 11)))]
    pub allowed_ports: Vec<String>,
    /// Host patterns allowed (`db.example.com`, `*.svc.cluster.local`); empty allows every host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    pub allowed_hosts: Vec<String>,
    /// Host patterns always denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    pub denied_hosts: Vec<String>,
    /// Address ranges (CIDR) allowed even when private, loopback or link-local, e.g. the
    /// cluster's service range.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 49)))]
    pub allowed_cidrs: Vec<String>,
    /// Address ranges (CIDR) always denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 49)))]
    pub denied_cidrs: Vec<String>,
    /// Allow private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7).
    #[serde(default)]
    pub allow_private_networks: bool,
    /// Allow loopback addresses and `localhost` (for local development only).
    #[serde(default)]
    pub allow_loopback: bool,
    /// Allow link-local addresses (169.254/16, fe80::/10), cloud metadata excepted.
    #[serde(default)]
    pub allow_link_local: bool,
    /// Allow cloud metadata endpoints (169.254.169.254, fd00:ec2::254, metadata.google.internal).
    /// Almost never what you want.
    #[serde(default)]
    pub allow_cloud_metadata: bool,
    /// Require verified TLS to every endpoint: `https` for S3 and MCP servers, and Postgres
    /// `sslMode` `verify-ca` or `verify-full`. Configs that fall short are refused, and active
    /// ones are taken out of service (their tenants get `PolicyDenied`, never another server).
    #[serde(default)]
    pub require_tls: bool,
}

fn default_schemes() -> Vec<UrlScheme> {
    vec![UrlScheme::Https, UrlScheme::Http]
}

impl Default for EndpointPolicySpec {
    fn default() -> Self {
        Self {
            allowed_schemes: default_schemes(),
            allowed_ports: Vec::new(),
            allowed_hosts: Vec::new(),
            denied_hosts: Vec::new(),
            allowed_cidrs: Vec::new(),
            denied_cidrs: Vec::new(),
            allow_private_networks: false,
            allow_loopback: false,
            allow_link_local: false,
            allow_cloud_metadata: false,
            require_tls: false,
        }
    }
}

/// A URL scheme an endpoint may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UrlScheme {
    /// TLS.
    Https,
    /// Plain HTTP.
    Http,
}

impl UrlScheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }
}
