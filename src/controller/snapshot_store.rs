//! Snapshot Secrets in the API: read, listed, and deleted once superseded past their grace
//! (which ones is [`super::snapshot::cleanup`]'s decision).

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use super::active;
use super::context::{Context, fence};
use super::error::Error;
use super::snapshot::{self, Cleanup};
use crate::api::{McpConfigStatus, TenantMcpConfig};
use crate::config::candidate::{self};

/// Marks snapshots `status.active` left behind and deletes those past their grace period;
/// when to look again.
pub(super) async fn collect_snapshots(
    ctx: &Context,
    config: &TenantMcpConfig,
    status: &McpConfigStatus,
    now: Timestamp,
) -> Result<Option<Duration>, Error> {
    let ns = config.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = ctx
        .snapshots
        .owned(&ns, config.metadata.uid.as_deref().unwrap_or_default());
    let referenced = active::snapshots(&status.active);
    let mut wait: Option<Duration> = None;
    for action in snapshot::cleanup(&owned, &referenced, now, ctx.settings.snapshot_grace) {
        match action {
            Cleanup::MarkSuperseded(name) => {
                let patch = json!({"metadata": {"annotations": {snapshot::SUPERSEDED_ANNOTATION: now.to_string()}}});
                let marked = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Error::kube(format!("marking snapshot {name} superseded"), e))?;
                ctx.snapshots.record(&marked.metadata);
                let grace = ctx.settings.snapshot_grace;
                wait = Some(wait.map_or(grace, |w| w.min(grace)));
            }
            Cleanup::Delete(name) => {
                fence(ctx)?;
                delete_snapshot(&api, &name).await?;
                ctx.snapshots.forget(&ns, &name);
            }
            Cleanup::Wait(d) => wait = Some(wait.map_or(d, |w| w.min(d))),
        }
    }
    Ok(wait)
}

/// Every snapshot Secret of `config`.
pub(super) async fn list_snapshots(
    api: &Api<Secret>,
    config: &TenantMcpConfig,
) -> Result<Vec<Secret>, Error> {
    let list = api
        .list(&ListParams::default().labels(&snapshot::selector(config)))
        .await
        .map_err(|e| Error::kube("listing snapshot Secrets".into(), e))?;
    Ok(list.items)
}

/// Deletes snapshot `name`; one already gone is as good.
pub(super) async fn delete_snapshot(api: &Api<Secret>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("deleting snapshot {name}"), e)),
    }
}

/// Reads the snapshot Secrets `status.active` points at into `into` (missing ones, and Secrets
/// whose uid is not the recorded one, are left out: the mirror then reports them, and their
/// servers are checked again).
pub(super) async fn read_snapshots(
    api: &Api<Secret>,
    status: &McpConfigStatus,
    into: &mut HashMap<String, Secret>,
) -> Result<(), Error> {
    for (snap, uid) in active::snapshot_refs(&status.active) {
        if into.contains_key(&snap) {
            continue;
        }
        let found = api
            .get_opt(&snap)
            .await
            .map_err(|e| Error::kube(format!("reading snapshot Secret {snap}"), e))?;
        // A Secret recreated under the snapshot's name is not the snapshot: as if missing,
        // so its server is checked again and frozen in a new one.
        if let Some(found) = found.filter(|f| candidate::is_recorded_snapshot(f, uid.as_deref())) {
            into.insert(snap, found);
        }
    }
    Ok(())
}
