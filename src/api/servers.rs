//! The server shapes a tenant (or the global fallback) can declare: Postgres, MinIO/S3 and MCP
//! servers over Streamable HTTP. Shared by `TenantMcpConfig` and `GlobalMcpConfig`.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::secret_ref::{PostgresCredentialsRef, S3CredentialsRef, SecretKeyRef};

/// The external servers of one tenant (or of the global fallback). Every entry is optional: a
/// server type that is absent falls back to the global one. The three server types are boxed:
/// most configs declare one or two, and an absent one then takes a pointer's room in every
/// cached config instead of its whole size.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServersSpec {
    /// The Postgres database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<Box<PostgresServer>>,
    /// The MinIO (or any S3-compatible) object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minio: Option<Box<S3Server>>,
    /// The AI MCP server the platform's RAG pipeline calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_mcp_server: Option<Box<McpServer>>,
    /// Further MCP servers, each under a unique name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = super::MAX_NAMED_MCP_SERVERS))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub mcp_servers: Vec<NamedMcpServer>,
}

impl ServersSpec {
    /// True when no server type is declared.
    pub fn is_empty(&self) -> bool {
        self.postgres.is_none()
            && self.minio.is_none()
            && self.ai_mcp_server.is_none()
            && self.mcp_servers.is_empty()
    }

    /// Every Secret these servers read, with the keys each needs.
    pub fn secret_uses(&self) -> Vec<SecretUse<'_>> {
        let mut uses = Vec::new();
        if let Some(pg) = &self.postgres {
            let r = &pg.credentials_secret_ref;
            uses.push(SecretUse {
                field: "postgres.credentialsSecretRef".into(),
                name: &r.name,
                keys: vec![
                    ("usernameKey", &r.username_key),
                    ("passwordKey", &r.password_key),
                ],
            });
            if let Some(ca) = &pg.ca_cert_secret_ref {
                uses.push(SecretUse::key("postgres.caCertSecretRef".into(), ca));
            }
        }
        if let Some(s3) = &self.minio {
            let r = &s3.credentials_secret_ref;
            uses.push(SecretUse {
                field: "minio.credentialsSecretRef".into(),
                name: &r.name,
                keys: vec![
                    ("accessKeyIdKey", &r.access_key_id_key),
                    ("secretAccessKeyKey", &r.secret_access_key_key),
                ],
            });
        }
        let named = self
            .mcp_servers
            .iter()
            .map(|n| (format!("mcpServers[{}]", n.name), &n.server));
        for (field, server) in self
            .ai_mcp_server
            .iter()
            .map(|s| ("aiMcpServer".to_owned(), s.as_ref()))
            .chain(named)
        {
            if let Some(token) = &server.bearer_token_secret_ref {
                uses.push(SecretUse::key(
                    format!("{field}.bearerTokenSecretRef"),
                    token,
                ));
            }
            for (i, header) in server.headers.iter().enumerate() {
                if let Some(from) = &header.value_from {
                    uses.push(SecretUse::key(
                        format!("{field}.headers[{i}].valueFrom"),
                        from,
                    ));
                }
            }
        }
        uses
    }
}

/// One Secret read by a server config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretUse<'a> {
    /// The referencing field, relative to `servers` (e.g. `postgres.credentialsSecretRef`).
    pub field: String,
    /// The Secret's name.
    pub name: &'a str,
    /// Each key needed, as `(field naming the key, key)`.
    pub keys: Vec<(&'static str, &'a str)>,
}

impl<'a> SecretUse<'a> {
    fn key(field: String, r: &'a SecretKeyRef) -> Self {
        Self {
            field,
            name: &r.name,
            keys: vec![("key", &r.key)],
        }
    }
}

/// A Postgres server and the database to use on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresServer {
    /// Host name or IP address (no scheme, port or credentials).
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port.
    #[serde(default = "default_postgres_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Database name.
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
    /// TLS mode, as libpq's `sslmode`.
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// Secret key holding a PEM CA bundle to verify the server with (`verify-ca`, `verify-full`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert_secret_ref: Option<SecretKeyRef>,
    /// Connection pool settings for clients of this database.
    #[serde(default)]
    pub pool: PoolSettings,
    /// The Secret with the user name and password.
    pub credentials_secret_ref: PostgresCredentialsRef,
}

fn default_postgres_port() -> i32 {
    5432
}

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Try without TLS first, then with TLS.
    Allow,
    /// Try TLS first, then without (libpq's default).
    #[default]
    Prefer,
    /// Require TLS, do not verify the certificate.
    Require,
    /// Require TLS and a certificate signed by the given CA.
    VerifyCa,
    /// Require TLS, a CA-signed certificate and a matching host name.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Connection pool settings for a tenant's Postgres pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolSettings {
    /// Most connections this tenant's pool opens (per application pod).
    #[serde(default = "default_max_connections")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_connections: i32,
    /// Connections kept open while idle.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub min_connections: i32,
    /// Seconds to wait for a free connection before failing a request.
    #[serde(default = "default_acquire_timeout")]
    #[schemars(range(min = 1, max = 300))]
    pub acquire_timeout_seconds: i32,
    /// Seconds after which an idle connection is closed.
    #[serde(default = "default_idle_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub idle_timeout_seconds: i32,
    /// Seconds after which any connection is recycled.
    #[serde(default = "default_max_lifetime")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_lifetime_seconds: i32,
}

fn default_max_connections() -> i32 {
    10
}
fn default_acquire_timeout() -> i32 {
    5
}
fn default_idle_timeout() -> i32 {
    300
}
fn default_max_lifetime() -> i32 {
    1800
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            min_connections: 0,
            acquire_timeout_seconds: default_acquire_timeout(),
            idle_timeout_seconds: default_idle_timeout(),
            max_lifetime_seconds: default_max_lifetime(),
        }
    }
}

/// A MinIO or other S3-compatible object store and the bucket to use on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Server {
    /// Endpoint URL, `http://` or `https://`, without credentials, path or query.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("endpoint must be an http:// or https:// URL"))]
    pub endpoint: String,
    /// Region sent in request signatures (MinIO accepts any; `us-east-1` is its default).
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// Bucket holding this tenant's objects.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Address buckets as `endpoint/bucket` (MinIO) instead of `bucket.endpoint` (virtual hosts).
    #[serde(default = "default_true")]
    pub force_path_style: bool,
    /// The Secret with the access key id and secret access key.
    pub credentials_secret_ref: S3CredentialsRef,
    /// Seconds one S3 operation may take, retries and connecting included, before it fails.
    #[serde(
        default = "default_s3_timeout",
        skip_serializing_if = "is_default_s3_timeout"
    )]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: i32,
}

fn default_s3_timeout() -> i32 {
    30
}

// Left out of the serialized spec at its default, so spec hashes made before the field
// existed stay the same (no re-test of every server on upgrade).
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
fn is_default_s3_timeout(seconds: &i32) -> bool {
    *seconds == default_s3_timeout()
}

fn default_region() -> String {
    "us-east-1".into()
}
fn default_true() -> bool {
    true
}

/// An MCP server reached over Streamable HTTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpServer {
    /// Streamable HTTP endpoint, `http://` or `https://`, without credentials.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = kube::core::Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("url must be an http:// or https:// URL"))]
    pub url: String,
    /// Secret key holding a bearer token sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// Extra HTTP headers sent on every request. Credential headers must use `valueFrom`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub headers: Vec<HttpHeader>,
    /// Seconds an MCP request may take before it fails.
    #[serde(default = "default_mcp_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: i32,
    /// How a shared, multi-tenant server tells tenants apart.
    #[serde(default)]
    pub tenant_routing: TenantRouting,
}

fn default_mcp_timeout() -> i32 {
    30
}

/// An MCP server with a name, for `spec.servers.mcpServers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedMcpServer {
    /// Unique name of this server within the config (a DNS label, e.g. `search`).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The server itself.
    #[serde(flatten)]
    pub server: McpServer,
}

/// An extra HTTP header: a literal value, or one read from a Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    /// Header name (an HTTP token such as `X-Team`).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Literal value; not allowed for credential headers such as `Authorization` or `X-Api-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub value: Option<String>,
    /// Secret key whose value is sent as the header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<SecretKeyRef>,
}

/// How a shared MCP server learns which tenant a request is for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("self.mode != 'PathPrefix' || !has(self.pathPrefix) || self.pathPrefix.contains('{tenantId}')").message("pathPrefix must contain the {tenantId} placeholder"))]
pub struct TenantRouting {
    /// `None` (a dedicated server), `Header` (the tenant id in a request header) or `PathPrefix`
    /// (the tenant id in the URL path).
    #[serde(default)]
    pub mode: RoutingMode,
    /// Header carrying the tenant id when `mode` is `Header` (default `X-Tenant-Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub header_name: Option<String>,
    /// Path template put before the URL's path when `mode` is `PathPrefix`; must contain
    /// `{tenantId}` (default `/tenants/{tenantId}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub path_prefix: Option<String>,
}

/// Default header for `RoutingMode::Header`.
pub const DEFAULT_TENANT_HEADER: &str = "X-Tenant-Id";
/// Default template for `RoutingMode::PathPrefix`.
pub const DEFAULT_PATH_PREFIX: &str = "/tenants/{tenantId}";

impl TenantRouting {
    /// The header used in `Header` mode, with its default applied.
    pub fn header_name(&self) -> &str {
        self.header_name.as_deref().unwrap_or(DEFAULT_TENANT_HEADER)
    }

    /// The path template used in `PathPrefix` mode, with its default applied.
    pub fn path_prefix(&self) -> &str {
        self.path_prefix.as_deref().unwrap_or(DEFAULT_PATH_PREFIX)
    }
}

/// The tenant routing modes of a shared MCP server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RoutingMode {
    /// The server serves one tenant; nothing is added.
    #[default]
    None,
    /// The tenant id is sent in a header.
    Header,
    /// The tenant id is put into the URL path.
    PathPrefix,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_uses_lists_every_reference() {
        let servers: ServersSpec = serde_json::from_value(serde_json::json!({
            "postgres": {"host": "h", "database": "d", "credentialsSecretRef": {"name": "pg"},
                         "caCertSecretRef": {"name": "ca", "key": "ca.crt"}},
            "minio": {"endpoint": "https://s3", "bucket": "b", "credentialsSecretRef": {"name": "s3"}},
            "aiMcpServer": {"url": "https://ai", "bearerTokenSecretRef": {"name": "ai", "key": "token"}},
            "mcpServers": [{"name": "search", "url": "https://s",
                            "headers": [{"name": "X-Team", "value": "a"},
                                        {"name": "X-Api-Key", "valueFrom": {"name": "search", "key": "api-key"}}]}]
        }))
        .unwrap();
        let uses: Vec<String> = servers
            .secret_uses()
            .iter()
            .map(|u| format!("{} -> {} {:?}", u.field, u.name, u.keys))
            .collect();
        assert_eq!(
            uses,
            [
                "postgres.credentialsSecretRef -> pg [(\"usernameKey\", \"username\"), (\"passwordKey\", \"password\")]",
                "postgres.caCertSecretRef -> ca [(\"key\", \"ca.crt\")]",
                "minio.credentialsSecretRef -> s3 [(\"accessKeyIdKey\", \"accessKeyId\"), (\"secretAccessKeyKey\", \"secretAccessKey\")]",
                "aiMcpServer.bearerTokenSecretRef -> ai [(\"key\", \"token\")]",
                "mcpServers[search].headers[1].valueFrom -> search [(\"key\", \"api-key\")]",
            ]
        );
        assert!(ServersSpec::default().secret_uses().is_empty());
    }
}
