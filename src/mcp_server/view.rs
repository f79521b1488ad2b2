//! What the tools answer with: a config as a caller may see it (the CR holds only Secret
//! references, so there is nothing to redact), and the results of writes and tests.

use kube::ResourceExt as _;
use schemars::JsonSchema;
use serde::Serialize;

use super::connection::ConnectionTest;
use crate::api::TenantMcpConfig;
use crate::config::FieldError;
use crate::config::active::entry;
use crate::config::binding::Verdict;
use crate::config::candidate::ServerKey;

/// One server type: what is declared, what serves, and its health.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerView {
    /// `postgres`, `minio`, `aiMcpServer` or `mcpServers.<name>`.
    pub server: String,
    /// `Healthy`, `Failing`, `Pending`… from `status.servers`.
    pub state: Option<String>,
    /// Why, when not healthy.
    pub reason: Option<String>,
    /// Whether the declared spec is the one serving (`status.active` has the same hash).
    pub desired_is_active: bool,
}

/// A tenant config as a caller may see it: the CR holds only Secret references, never a
/// credential, so nothing needs redacting.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView {
    /// Namespace of the TenantMcpConfig.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.tenantId`.
    pub tenant_id: String,
    /// For `expectedVersion` on updates.
    pub resource_version: Option<String>,
    /// The desired config.
    pub spec: serde_json::Value,
    /// The last-known-good config that serves.
    pub active: serde_json::Value,
    /// Per server type.
    pub servers: Vec<ServerView>,
    /// `status.conditions`.
    pub conditions: serde_json::Value,
    /// Whether this config serves its tenant under the binding rule (a config in another
    /// tenant's namespace, or in conflict with an older one, does not).
    pub serving: bool,
    /// Why it does not serve, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_serving_because: Option<String>,
}

/// `rag_list_tenant_mcp_configs`'s output.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ConfigList {
    /// The configs the caller may see.
    pub configs: Vec<ConfigView>,
    /// More configs follow: pass this as `continue` (with the same arguments) for the next
    /// ones. Absent on the last answer.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
}

/// What a register or update stored.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteResult {
    /// The config as stored (the controller fills in its status shortly after).
    pub config: ConfigView,
    /// The connection tests that passed before it was stored.
    pub connection_tests: Vec<ConnectionTest>,
    /// The Secrets the credentials were written to.
    pub secrets_written: Vec<String>,
    /// Secrets the tool had made for this config that it no longer uses (left by an earlier
    /// write that was cut off, or replaced by a new name), deleted after this write.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets_removed: Vec<String>,
}

/// What a delete removed.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteResult {
    /// Namespace of the deleted config.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The Secrets this server had made for it, deleted with it.
    pub secrets_deleted: Vec<String>,
}

/// The verdict of `rag_test_tenant_mcp_config`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// Whether the config is valid and every server passed its connection test.
    pub passed: bool,
    /// Every problem, by field.
    pub problems: Vec<FieldError>,
    /// Per server (empty when the config is statically invalid).
    pub connection_tests: Vec<ConnectionTest>,
}

/// The view of `config`, which serves its tenant (the tools act on no other).
pub fn view(config: &TenantMcpConfig) -> ConfigView {
    view_claimed(config, &Verdict::Serves)
}

/// The view of `config` with the binding rule's `verdict` on it.
pub fn view_claimed(config: &TenantMcpConfig, verdict: &Verdict) -> ConfigView {
    let status = config.status.clone().unwrap_or_default();
    let active = serde_json::to_value(&status.active).unwrap_or_default();
    let servers = status
        .servers
        .iter()
        .map(|(server, health)| {
            let active_hash = ServerKey::parse(server)
                .and_then(|key| entry(&status.active, &key))
                .map(|(hash, _)| hash);
            ServerView {
                server: server.clone(),
                state: serde_json::to_value(health.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned)),
                reason: health.reason.clone(),
                desired_is_active: health.spec_hash.is_some() && health.spec_hash == active_hash,
            }
        })
        .collect();
    ConfigView {
        namespace: config.namespace().unwrap_or_default(),
        name: config.name_any(),
        tenant_id: config.spec.tenant_id.clone(),
        resource_version: config.resource_version(),
        spec: serde_json::to_value(&config.spec).unwrap_or_default(),
        active,
        servers,
        conditions: serde_json::to_value(&status.conditions).unwrap_or_default(),
        serving: verdict.serves(),
        not_serving_because: (!verdict.serves()).then(|| verdict.message(&config.spec.tenant_id)),
    }
}
