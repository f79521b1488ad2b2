//! What the controller mirrors for a config: the document built from `status.active` and its
//! snapshot Secrets, the version it is written with, and whether it is mirrored at all. The
//! reconcile and `tenant-mcp mirror verify` call the same functions, so what verify expects is
//! what the controller writes.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;

use super::plan::Gate;
use crate::api::{McpConfigStatus, TenantMcpConfig};
use crate::config::Credential;
use crate::config::candidate;
use crate::config::failure::Failure;
use crate::mirror::{
    ConfigSource, McpSecrets, MirrorDocument, MirrorServers, MirrorState, MirroredServer,
    PostgresSecrets, S3Secrets,
};

/// Whether a config behind `gate` owns its tenant's row, and in which state: a served config
/// as `Active`, a switched-off one as `Disabled`; a losing or unbound claim leaves the row
/// alone (`None`).
pub fn state(gate: &Gate) -> Option<MirrorState> {
    match gate {
        Gate::Served => Some(MirrorState::Active),
        Gate::Disabled(_) => Some(MirrorState::Disabled),
        Gate::Conflict(_) | Gate::NotBound(_) => None,
    }
}

/// The version a document is written with: the newest `resourceVersion` among the objects it
/// was built from (the config, the GlobalMcpConfig, the namespace, the snapshot Secrets), so
/// it grows with the cluster state and a row never goes back to an older one.
pub fn version(resource_versions: impl IntoIterator<Item = Option<i64>>) -> i64 {
    resource_versions.into_iter().flatten().max().unwrap_or(0)
}

/// The document of `config`'s active servers, credentials from their snapshot Secrets (by
/// name).
pub fn document(
    config: &TenantMcpConfig,
    status: &McpConfigStatus,
    state: MirrorState,
    snapshots: &HashMap<String, Secret>,
) -> Result<MirrorDocument<Credential>, Failure> {
    let missing = |name: &Option<String>| {
        Failure::new(
            "SnapshotMissing",
            format!(
                "snapshot Secret {:?} is gone (or was recreated: its uid is not the recorded one); \
                 the server is checked again and a new snapshot written",
                name.as_deref().unwrap_or_default()
            ),
            true,
        )
    };
    // Only the Secret the entry recorded: one recreated under its name counts as missing.
    let snap = |name: &Option<String>, uid: &Option<String>| {
        name.as_ref()
            .and_then(|n| snapshots.get(n))
            .filter(|s| candidate::is_recorded_snapshot(s, uid.as_deref()))
    };
    let active = &status.active;
    let mut servers = MirrorServers::default();
    if let Some(a) = &active.postgres {
        let creds = snap(&a.snapshot_secret, &a.snapshot_uid)
            .and_then(candidate::postgres_from_snapshot)
            .ok_or_else(|| missing(&a.snapshot_secret))?;
        servers.postgres = Some(MirroredServer {
            active: a.as_ref().clone(),
            credentials: PostgresSecrets {
                username: creds.username,
                password: creds.password,
            },
        });
    }
    if let Some(a) = &active.minio {
        let creds = snap(&a.snapshot_secret, &a.snapshot_uid)
            .and_then(candidate::s3_from_snapshot)
            .ok_or_else(|| missing(&a.snapshot_secret))?;
        servers.minio = Some(MirroredServer {
            active: a.as_ref().clone(),
            credentials: S3Secrets {
                access_key_id: creds.access_key_id,
                secret_access_key: creds.secret_access_key,
            },
        });
    }
    let mcp = |a: &crate::api::ActiveServer<crate::api::McpServer>| {
        let creds = match &a.snapshot_secret {
            None => Default::default(),
            Some(_) => candidate::mcp_from_snapshot(
                snap(&a.snapshot_secret, &a.snapshot_uid)
                    .ok_or_else(|| missing(&a.snapshot_secret))?,
            ),
        };
        Ok::<_, Failure>(MirroredServer {
            active: a.clone(),
            credentials: McpSecrets {
                bearer_token: creds.bearer_token,
                headers: creds.headers,
            },
        })
    };
    if let Some(a) = &active.ai_mcp_server {
        servers.ai_mcp_server = Some(mcp(a)?);
    }
    for (name, a) in &active.mcp_servers {
        servers.mcp_servers.insert(name.clone(), mcp(a)?);
    }
    Ok(MirrorDocument {
        tenant_id: config.spec.tenant_id.clone(),
        state,
        source: ConfigSource {
            namespace: config.namespace().unwrap_or_default(),
            name: config.name_any(),
        },
        servers,
    })
}
