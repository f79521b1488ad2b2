//! The cleanup of a config being deleted: its mirror row (if it was the one serving), its
//! snapshots and reader Role, then the finalizer goes.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::info;

use super::context::{Context, FORCE_DELETE_ANNOTATION, fence, globals, resource_version};
use super::error::Error;
use super::gating::binding_verdicts;
use super::plan::{self};
use super::readers;
use super::reporting::{event, write_status};
use super::snapshot_store::{delete_snapshot, list_snapshots};
use crate::api::TenantMcpConfig;
use crate::api::conditions::{self, reason};

pub(super) async fn cleanup(config: &TenantMcpConfig, ctx: &Context) -> Result<Action, Error> {
    let ns = config.namespace().unwrap_or_default();
    let name = config.name_any();
    let global = globals(ctx);
    let served = binding_verdicts(config, ctx, &global, true).0.serves();
    if let (Some(writer), true) = (&ctx.mirror, served) {
        let version = resource_version(config).unwrap_or(0);
        fence(ctx)?;
        if let Err(e) = writer.remove(&config.spec.tenant_id, version).await {
            let forced = config
                .annotations()
                .get(FORCE_DELETE_ANNOTATION)
                .is_some_and(|v| v == "true");
            if forced {
                event(ctx, config, (EventType::Warning, "MirrorCleanupSkipped"), "Delete".into(), None, &format!(
                    "deleted without removing the mirror row of tenant {:?} ({FORCE_DELETE_ANNOTATION}=true): {e}; remove it with SQL when the database is back",
                    config.spec.tenant_id
                )).await;
            } else {
                let message = format!(
                    "cannot remove the mirror data yet ({e}); retrying with backoff. To delete without it: kubectl annotate tenantmcpconfig -n {ns} {name} {FORCE_DELETE_ANNOTATION}=true"
                );
                event(
                    ctx,
                    config,
                    (EventType::Warning, reason::CLEANUP_PENDING),
                    "Delete".into(),
                    None,
                    &message,
                )
                .await;
                let mut status = config.status.clone().unwrap_or_default();
                plan::set_condition(
                    &mut status.conditions,
                    conditions::READY,
                    false,
                    reason::CLEANUP_PENDING,
                    message,
                    config.metadata.generation,
                    Timestamp::now(),
                );
                // The object is going away; a failed status write changes nothing here.
                let _ = write_status(ctx, config, &status).await;
                return Err(Error::Mirror(e));
            }
        }
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    // A config going away lists its snapshots from the API, not the index: nothing of it may
    // stay behind.
    for secret in list_snapshots(&api, config).await? {
        delete_snapshot(&api, &secret.name_any()).await?;
        ctx.snapshots.forget(&ns, &secret.name_any());
    }
    if !ctx.settings.snapshot_readers.is_empty() {
        let object = readers::object_name(&name);
        let params = DeleteParams::default();
        for result in [
            Api::<Role>::namespaced(ctx.client.clone(), &ns)
                .delete(&object, &params)
                .await
                .map(|_| ()),
            Api::<RoleBinding>::namespaced(ctx.client.clone(), &ns)
                .delete(&object, &params)
                .await
                .map(|_| ()),
        ] {
            match result {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::kube(format!("deleting {ns}/{object}"), e)),
            }
        }
        if let Ok(mut g) = ctx.readers_granted.lock() {
            g.remove(&config.uid().unwrap_or_default());
        }
    }
    ctx.secret_index.remove(&ns, &name);
    ctx.status_written.forget(&config.uid().unwrap_or_default());
    ctx.metrics.config_gone(&format!("{ns}/{name}"));
    // Another config of the same tenant may now be the one to serve it.
    for other in ctx.claims.claiming(&config.spec.tenant_id) {
        if other.name != name || other.namespace.as_deref() != Some(ns.as_str()) {
            let _ = ctx.requeue.send(other);
        }
    }
    info!(config = %format!("{ns}/{name}"), "cleaned up");
    Ok(Action::await_change())
}
