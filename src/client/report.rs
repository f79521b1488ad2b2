//! What `tenant-mcp status` and `tenant-mcp route` report, built from a [`ClusterView`]: per
//! tenant and server type, where requests go now and why (the client library's own routing),
//! the desired against the active spec, and the controller's last check. Pure: the commands do
//! the reading and the printing.

use jiff::Timestamp;
use serde::Serialize;

use super::ClientError;
use super::inspect::ClusterView;
use super::routes::Explanation;
use crate::api::conditions;
use crate::config::candidate::ServerKey;
use crate::config::validate::ServerSpecRef;

/// The whole report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// The GlobalMcpConfig's feature flag.
    pub tenant_configs_enabled: bool,
    /// The endpoint policy in force, in one line.
    pub policy: String,
    /// Whether every tenant is served as declared: no server unavailable, every serving config
    /// Ready (or disabled), no config refused by the binding rule.
    pub healthy: bool,
    /// One entry per tenant some config claims.
    pub tenants: Vec<TenantStatus>,
}

/// One tenant.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The tenant id.
    pub tenant: String,
    /// `namespace/name` of the config that serves it, if any.
    pub config: Option<String>,
    /// That config's Ready condition: `True`/`False` and the reason.
    pub ready: Option<String>,
    /// Every server type the tenant's config or the global config declares.
    pub servers: Vec<ServerStatus>,
    /// Every config that claims the tenant, with the binding rule's verdict.
    pub claims: Vec<ClaimStatus>,
    /// Whether this tenant needs attention.
    pub degraded: bool,
}

/// One server type of one tenant.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    /// `postgres`, `minio`, `aiMcpServer` or `mcpServers.<name>`.
    pub server: String,
    /// `tenant`, `global`, `unavailable` or `notConfigured`.
    pub served_from: &'static str,
    /// Which branch of the routing rule decided it.
    pub because: String,
    /// Where requests go (no credentials), when they go anywhere.
    pub endpoint: Option<String>,
    /// Why requests cannot be served, when they cannot.
    pub reason: Option<String>,
    /// Short hash of the desired (declared) spec, when the tenant declares it.
    pub desired: Option<String>,
    /// Short hash of the active (promoted) spec, if any.
    pub active: Option<String>,
    /// Whether a declared change is not active yet.
    pub pending_change: bool,
    /// The controller's last check: `Healthy`, `Failing`, `Pending`.
    pub state: Option<String>,
    /// Its reason, when failing.
    pub check_reason: Option<String>,
    /// When it ran.
    pub last_check: Option<Timestamp>,
    /// Its round trip, when it passed.
    pub latency_ms: Option<i64>,
    /// The snapshot Secret the active entry reads its credentials from.
    pub snapshot: Option<String>,
}

/// One config claiming a tenant.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatus {
    /// `namespace/name`.
    pub config: String,
    /// Whether it serves the tenant.
    pub serving: bool,
    /// The binding rule's verdict, in words.
    pub verdict: String,
}

/// The first 7 characters of a `sha256:…` hash.
fn short(hash: &str) -> String {
    hash.trim_start_matches("sha256:").chars().take(7).collect()
}

/// What requests for `key` of `tenant` get, as a [`ServerStatus`] without the controller's
/// columns.
fn routed(server: String, explanation: &Explanation) -> ServerStatus {
    let (served_from, endpoint, reason) = match &explanation.outcome {
        Ok(e) => (e.origin.as_str(), Some(e.describe()), None),
        Err(ClientError::Unavailable { reason, .. }) => ("unavailable", None, Some(reason.clone())),
        Err(ClientError::NotConfigured { .. }) => {
            ("notConfigured", None, Some("NotConfigured".to_owned()))
        }
        Err(other) => ("unavailable", None, Some(other.to_string())),
    };
    ServerStatus {
        server,
        served_from,
        because: explanation.because.to_string(),
        endpoint,
        reason,
        desired: None,
        active: None,
        pending_change: false,
        state: None,
        check_reason: None,
        last_check: None,
        latency_ms: None,
        snapshot: None,
    }
}

impl StatusReport {
    /// The report of `view` (one tenant's when it was loaded for one).
    pub fn build(view: &ClusterView) -> Self {
        let tenants: Vec<TenantStatus> = view
            .tenants()
            .into_iter()
            .map(|tenant| tenant_status(view, &tenant))
            .collect();
        Self {
            tenant_configs_enabled: view.tenant_configs_enabled(),
            policy: view.policy.summary(),
            healthy: tenants.iter().all(|t| !t.degraded),
            tenants,
        }
    }
}

fn tenant_status(view: &ClusterView, tenant: &str) -> TenantStatus {
    let claims: Vec<ClaimStatus> = view
        .claims(tenant)
        .into_iter()
        .map(|(c, verdict)| ClaimStatus {
            config: format!(
                "{}/{}",
                c.metadata.namespace.as_deref().unwrap_or_default(),
                c.metadata.name.as_deref().unwrap_or_default()
            ),
            serving: verdict.serves(),
            verdict: verdict.message(tenant),
        })
        .collect();
    let serving = view.serving(tenant);
    let status = serving.and_then(|c| c.status.clone()).unwrap_or_default();
    let ready_condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY);
    let servers: Vec<ServerStatus> = view
        .server_keys(tenant)
        .into_iter()
        .map(|key| {
            let mut row = routed(key.as_string(), &view.explain(tenant, &key));
            let declared = serving.and_then(|c| ServerSpecRef::of(&c.spec.servers, &key));
            row.desired = declared.map(|s| short(&s.spec_hash()));
            if let Some((hash, snapshot)) =
                crate::config::candidate::active_entry(&status.active, &key)
            {
                row.active = Some(short(&hash));
                row.snapshot = snapshot;
            }
            row.pending_change = row.desired.is_some() && row.desired != row.active;
            if let Some(h) = serving.and(status.servers.get(&key.as_string())) {
                row.state = serde_json::to_value(h.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned));
                row.check_reason.clone_from(&h.reason);
                row.last_check = h.last_checked_at.as_ref().map(|t| t.0);
                row.latency_ms = h.latency_ms;
            }
            row
        })
        .collect();
    let disabled = ready_condition.is_some_and(|c| c.reason == conditions::reason::DISABLED);
    let degraded = servers
        .iter()
        .any(|s| matches!(s.served_from, "unavailable") || s.pending_change)
        || claims.iter().any(|c| !c.serving)
        || serving.is_some_and(|_| !disabled && ready_condition.is_none_or(|c| c.status != "True"));
    TenantStatus {
        tenant: tenant.to_owned(),
        config: claims.iter().find(|c| c.serving).map(|c| c.config.clone()),
        ready: ready_condition.map(|c| format!("{} {}", c.status, c.reason)),
        servers,
        claims,
        degraded,
    }
}

/// What `tenant-mcp route` answers for one server type.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteAnswer {
    /// The server type.
    pub server: String,
    /// `tenant`, `global`, `unavailable` or `notConfigured`.
    pub served_from: &'static str,
    /// Where requests go (no credentials), when they go anywhere.
    pub endpoint: Option<String>,
    /// Why requests cannot be served, when they cannot.
    pub reason: Option<String>,
    /// Why this answer, in words.
    pub because: String,
}

/// Where each of `keys` (every type that matters when empty) of `tenant` is served from now.
pub fn route(view: &ClusterView, tenant: &str, keys: &[ServerKey]) -> Vec<RouteAnswer> {
    let keys = if keys.is_empty() {
        view.server_keys(tenant)
    } else {
        keys.to_vec()
    };
    keys.into_iter()
        .map(|key| {
            let row = routed(key.as_string(), &view.explain(tenant, &key));
            RouteAnswer {
                server: row.server,
                served_from: row.served_from,
                endpoint: row.endpoint,
                reason: row.reason,
                because: row.because,
            }
        })
        .collect()
}
