//! The tools' arguments: types whose JSON Schemas are generated from the CRD types, and
//! [`Input`], which decodes untrusted arguments with an error per field.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::error::ToolError;
use crate::api::{McpServer, PostgresServer, S3Server, ServersSpec, ValidationSettings};
use crate::config::decode::decode;
use crate::config::inline_credentials::find_inline_credentials;
use crate::config::{Credential, FieldErrors, FieldPath};

/// Tool arguments of type `T`, decoded so that every unknown field, the first wrong type and
/// every credential written straight into `servers` are reported by field path (serde alone
/// names neither the field of a type error nor why a `password` field is refused).
///
/// Decoding never fails the request: wrong arguments are the tool's `Invalid` failure, a
/// result the model sees, not a JSON-RPC error its client swallows (see [`super::error`]).
#[derive(Debug)]
pub struct Input<T> {
    /// The arguments, or every problem with them.
    pub decoded: Result<T, FieldErrors>,
    /// The `tenantId` the caller gave, if it is a string: what the audit line names even
    /// when the arguments are wrong.
    pub tenant: Option<String>,
}

impl<T> Input<T> {
    /// The arguments, or an `Invalid` failure naming every problem.
    pub fn into_request(self) -> Result<T, ToolError> {
        self.decoded
            .map_err(|errors| ToolError::invalid("invalid arguments, nothing done", errors))
    }
}

impl<'de, T: DeserializeOwned + JsonSchema> Deserialize<'de> for Input<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let tenant = value
            .get("tenantId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            decoded: decode_arguments(value),
            tenant,
        })
    }
}

fn decode_arguments<T: DeserializeOwned + JsonSchema>(value: Value) -> Result<T, FieldErrors> {
    let mut errors = FieldErrors::default();
    if let Some(servers) = value.get("servers") {
        for mut e in find_inline_credentials(servers, &FieldPath::new("servers")).0 {
            e.message = "inline credentials are not allowed in servers: give the value in \
                         `credentials` (the tool keeps it in the Secret the config references)"
                .into();
            errors.push(e);
        }
    }
    match decode::<T>(value, &FieldPath::default()) {
        Ok(v) if errors.is_empty() => Ok(v),
        Ok(_) => Err(errors),
        Err(more) => {
            // An inline credential is also an unknown field; say it once, the useful way.
            let inline: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
            errors.extend(more.0.into_iter().filter(|e| !inline.contains(&e.path)));
            Err(errors)
        }
    }
}

impl<T: JsonSchema> JsonSchema for Input<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

/// Credentials to keep in Secrets, per server type. Each goes into the Secret (and under the
/// key) that the server's reference names; the tool creates or updates that Secret.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsInput {
    /// The Postgres login, for `servers.postgres.credentialsSecretRef`.
    #[serde(default)]
    pub postgres: Option<PostgresLogin>,
    /// The S3 keys, for `servers.minio.credentialsSecretRef`.
    #[serde(default)]
    pub minio: Option<S3Keys>,
    /// The AI MCP server's bearer token, for `servers.aiMcpServer.bearerTokenSecretRef`.
    #[serde(default)]
    pub ai_mcp_server: Option<McpToken>,
    /// Bearer tokens of further MCP servers by name, for their `bearerTokenSecretRef`.
    #[serde(default)]
    pub mcp_servers: BTreeMap<String, McpToken>,
}

/// A Postgres user name and password.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostgresLogin {
    /// User name.
    #[schemars(length(min = 1, max = 63))]
    pub username: String,
    /// Password.
    pub password: Credential,
}

/// An S3 access key pair.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Keys {
    /// Access key id.
    #[schemars(length(min = 1, max = 128))]
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Credential,
}

/// An MCP server's bearer token.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpToken {
    /// The token sent as `Authorization: Bearer …`.
    pub bearer_token: Credential,
}

/// `rag_register_tenant_mcp_config`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    /// The tenant (a DNS label, e.g. `acme`).
    pub tenant_id: String,
    /// The namespace to create the config in; default: the one namespace labelled
    /// `tenantmcp.dev/tenant=<tenantId>`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The TenantMcpConfig's name (default `tenant-mcp`).
    #[serde(default)]
    pub name: Option<String>,
    /// `false` sends this tenant to the global servers (default `true`).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The tenant's servers, exactly as in the TenantMcpConfig spec; credentials only by Secret
    /// reference (give their values in `credentials`).
    pub servers: ServersSpec,
    /// Connection-test settings, as in the TenantMcpConfig spec.
    #[serde(default)]
    pub validation: Option<ValidationSettings>,
    /// Credentials to store in the Secrets the servers reference.
    #[serde(default)]
    pub credentials: Option<CredentialsInput>,
    /// Connection-test every server before storing (default `true`).
    #[serde(default)]
    pub connection_test: Option<bool>,
}

/// The shape of an update's `servers`: a JSON merge patch per server type.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServersPatch {
    /// Merged into the Postgres entry; `null` removes it.
    #[serde(default)]
    pub postgres: Option<PostgresServer>,
    /// Merged into the MinIO entry; `null` removes it.
    #[serde(default)]
    pub minio: Option<S3Server>,
    /// Merged into the AI MCP server entry; `null` removes it.
    #[serde(default)]
    pub ai_mcp_server: Option<McpServer>,
    /// Further MCP servers by name, each merged; `null` removes one.
    #[serde(default)]
    pub mcp_servers: Option<BTreeMap<String, Option<McpServer>>>,
}

/// `rag_update_tenant_mcp_config`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRequest {
    /// The tenant whose config to change.
    pub tenant_id: String,
    /// A merge patch of the server types to change: a type left out stays as it is, `null`
    /// removes it, an object is merged into it (fields set to `null` go back to defaults).
    #[serde(default)]
    #[schemars(with = "Option<ServersPatch>")]
    pub servers: Option<Value>,
    /// New value of `enabled`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// New connection-test settings.
    #[serde(default)]
    pub validation: Option<ValidationSettings>,
    /// Credentials to store in the Secrets the servers reference.
    #[serde(default)]
    pub credentials: Option<CredentialsInput>,
    /// Fail unless the config's `resourceVersion` is still this one (from a get).
    #[serde(default)]
    pub expected_version: Option<String>,
    /// Connection-test the changed servers before storing (default `true`).
    #[serde(default)]
    pub connection_test: Option<bool>,
}

/// `rag_get_tenant_mcp_config`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetRequest {
    /// The tenant (its `spec.tenantId`).
    pub tenant_id: String,
}

/// `rag_list_tenant_mcp_configs`'s input.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListRequest {
    /// Only this tenant's configs. A tenant admin sees only its own tenant either way.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Listing every tenant's configs: at most this many in one answer (default
    /// [`LIST_PAGE`], at most [`LIST_PAGE_MAX`]); the answer's `continue` asks for the rest.
    #[serde(default)]
    #[schemars(range(min = 1, max = LIST_PAGE_MAX))]
    pub limit: Option<u32>,
    /// The `continue` of the previous answer: the next configs of the same listing.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

/// Configs in one answer of a listing of every tenant, unless `limit` says otherwise: at
/// 10,000 configs the whole list was a 34 MiB answer that took the server to 775 MiB.
pub const LIST_PAGE: u32 = 100;
/// The most configs one answer of a listing holds.
pub const LIST_PAGE_MAX: u32 = 500;

/// `rag_delete_tenant_mcp_config`'s input.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteRequest {
    /// The tenant whose config to delete; the tenant then uses the global servers.
    pub tenant_id: String,
    /// Fail unless the config's `resourceVersion` is still this one.
    #[serde(default)]
    pub expected_version: Option<String>,
}

/// `rag_test_tenant_mcp_config`'s input: a config to validate and connection-test, nothing
/// stored.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestRequest {
    /// The tenant the config is for.
    pub tenant_id: String,
    /// Where Secrets the call does not supply (a CA bundle) are read from when the tenant has
    /// no config yet; default: the namespace bound to the tenant. Once it has one, they come
    /// from that config's namespace, and stored credentials only for servers whose endpoint,
    /// TLS settings and Secret references are the stored ones.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The servers, as in the TenantMcpConfig spec.
    pub servers: ServersSpec,
    /// Connection-test settings.
    #[serde(default)]
    pub validation: Option<ValidationSettings>,
    /// Credentials to test with (not stored).
    #[serde(default)]
    pub credentials: Option<CredentialsInput>,
}
