//! Status shared by both custom resources: conditions, per-server health and the
//! last-known-good (`active`) config that clients build from. Never holds a credential value.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::flat_map::FlatMap;
use super::servers::{McpServer, PostgresServer, S3Server};

/// Observed state of a `TenantMcpConfig` or `GlobalMcpConfig`, written only by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpConfigStatus {
    /// The `metadata.generation` the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Validated`, `Mirrored` and `Degraded`, each with a reason and message.
    #[serde(default)]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Health of each declared server, keyed `postgres`, `minio`, `aiMcpServer` or
    /// `mcpServers.<name>`.
    #[serde(default, skip_serializing_if = "FlatMap::is_empty")]
    #[schemars(extend("maxProperties" = super::MAX_SERVER_KEYS))]
    // A flat map (the same YAML and schema): a B-tree's first node has room for eleven
    // entries, so one server's health took 2.1 KiB in every cached config.
    pub servers: FlatMap<ServerHealth>,
    /// The last config of each server type that passed validation and connection tests:
    /// what clients use.
    ///
    /// Only the controller writes status, and only what passed validation, so the spec's CEL
    /// rules are left out of this copy: they would only spend the API server's rule budget.
    #[serde(default)]
    #[schemars(transform = super::schema::without_cel_rules)]
    pub active: ActiveConfig,
}

/// Health of one declared server, from its latest check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerHealth {
    /// `Pending`, `Healthy` or `Failing`.
    pub state: ServerState,
    /// Machine-readable cause, e.g. `AuthFailed` or `Unreachable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened and what to do about it; never contains a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the server was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<Time>,
    /// Round-trip time of the last successful check, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Hash of the spec that was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// `resourceVersion` of each Secret read for the last check, by Secret name: a change to
    /// any of them means the check is out of date.
    #[serde(default, skip_serializing_if = "FlatMap::is_empty")]
    pub secret_versions: FlatMap<String>,
    /// Hash of the endpoint policy the last check ran under: a changed policy means the check
    /// is out of date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
}

/// The state of one declared server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ServerState {
    /// Not checked yet.
    Pending,
    /// The last check passed.
    Healthy,
    /// The last check failed; see `reason` and `message`.
    Failing,
}

/// The last-known-good config per server type. The three server types are boxed: most configs
/// declare one or two, and inline they were most of a config's size in the controller's cache.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveConfig {
    /// The active Postgres server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<Box<ActiveServer<PostgresServer>>>,
    /// The active MinIO/S3 server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minio: Option<Box<ActiveServer<S3Server>>>,
    /// The active AI MCP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_mcp_server: Option<Box<ActiveServer<McpServer>>>,
    /// The active further MCP servers, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = super::MAX_NAMED_MCP_SERVERS))]
    pub mcp_servers: BTreeMap<String, ActiveServer<McpServer>>,
}

/// A server config that passed validation and connection tests, with the exact credentials
/// that were tested frozen in a snapshot Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveServer<T> {
    /// The spec that was promoted.
    pub spec: T,
    /// Immutable Secret (in the config's namespace) holding the tested credentials; absent for
    /// servers that need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_secret: Option<String>,
    /// The uid of that Secret when the controller made it: a Secret recreated under its name
    /// has another uid, and the client and the mirror refuse it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_uid: Option<String>,
    /// Hash of `spec`, to tell configs apart without comparing them field by field.
    pub spec_hash: String,
    /// When this config was promoted.
    pub promoted_at: Time,
}
