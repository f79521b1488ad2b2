//! Snapshot Secrets: the exact credentials a probe tested, frozen in an immutable Secret owned
//! by the config, which `status.active` points at and the client library reads. A snapshot that
//! `status.active` no longer points at is marked superseded and deleted after a grace period,
//! so clients that still use it can switch first.

use std::collections::BTreeMap;
use std::time::Duration;

use aes_gcm::aead::Generate as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Resource as _;
use kube::api::ObjectMeta;

use crate::api::TenantMcpConfig;
use crate::config::candidate::{Candidate, ServerKey};

pub use crate::api::SNAPSHOT_TYPE;
/// Label: which config (by uid) a snapshot belongs to.
pub const CONFIG_UID_LABEL: &str = "tenantmcp.dev/config-uid";
/// Label: the server type of a snapshot (`postgres`, `minio`, `aiMcpServer`, `mcpServer`).
pub const SERVER_TYPE_LABEL: &str = "tenantmcp.dev/server-type";
/// Label: the component that manages snapshots.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Annotation: the full server key (`mcpServers.search`).
pub const SERVER_ANNOTATION: &str = "tenantmcp.dev/server";
/// Annotation: when `status.active` stopped pointing at the snapshot.
pub const SUPERSEDED_ANNOTATION: &str = "tenantmcp.dev/superseded-at";

/// The label selector of every snapshot of `config`.
pub fn selector(config: &TenantMcpConfig) -> String {
    format!(
        "{MANAGED_BY_LABEL}=tenant-mcp,{CONFIG_UID_LABEL}={}",
        config.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// A new snapshot Secret of `candidate`, server `key` of `config`, with a random name suffix
/// (a name derived from the credentials would leak a hash of them).
pub fn build(config: &TenantMcpConfig, key: &ServerKey, candidate: &Candidate) -> Secret {
    let suffix = hex::encode(<[u8; 5]>::generate());
    let slug = match key {
        ServerKey::Postgres => "postgres".to_owned(),
        ServerKey::Minio => "minio".to_owned(),
        ServerKey::AiMcp => "aimcp".to_owned(),
        ServerKey::Mcp(name) => format!("mcp-{name}"),
    };
    let base = config.metadata.name.as_deref().unwrap_or("config");
    // Names are at most 253 characters; keep room for the slug and suffix.
    let base: String = base
        .chars()
        .take(253 - slug.len() - suffix.len() - 2)
        .collect();
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), "tenant-mcp".to_owned()),
        (
            CONFIG_UID_LABEL.to_owned(),
            config.metadata.uid.clone().unwrap_or_default(),
        ),
        (
            crate::api::conditions::TENANT_LABEL.to_owned(),
            config.spec.tenant_id.clone(),
        ),
        (SERVER_TYPE_LABEL.to_owned(), key.server_type().to_owned()),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("{base}-{slug}-{suffix}")),
            namespace: config.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                SERVER_ANNOTATION.to_owned(),
                key.as_string(),
            )])),
            owner_references: config.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        immutable: Some(true),
        type_: Some(SNAPSHOT_TYPE.to_owned()),
        data: Some(candidate.snapshot_data()),
        ..Secret::default()
    }
}

/// Whether `snapshot` holds exactly the credentials of `candidate`.
pub fn holds(snapshot: &Secret, candidate: &Candidate) -> bool {
    snapshot.data.clone().unwrap_or_default() == candidate.snapshot_data()
}

/// What to do with a snapshot that `status.active` no longer points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Record when it was superseded.
    MarkSuperseded(String),
    /// Its grace period is over: delete it.
    Delete(String),
    /// Still in its grace period; look again after this long.
    Wait(Duration),
}

/// The cleanup of the snapshots whose metadata is `owned`, given the ones still `referenced`.
pub fn cleanup(
    owned: &[ObjectMeta],
    referenced: &[String],
    now: Timestamp,
    grace: Duration,
) -> Vec<Cleanup> {
    let mut actions = Vec::new();
    for meta in owned {
        let Some(name) = meta.name.clone() else {
            continue;
        };
        if referenced.contains(&name) {
            continue;
        }
        let superseded = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(SUPERSEDED_ANNOTATION))
            .and_then(|t| t.parse::<Timestamp>().ok());
        match superseded {
            None => actions.push(Cleanup::MarkSuperseded(name)),
            Some(at) => {
                let age = now.duration_since(at).unsigned_abs();
                if age >= grace {
                    actions.push(Cleanup::Delete(name));
                } else {
                    actions.push(Cleanup::Wait(grace - age));
                }
            }
        }
    }
    actions
}
