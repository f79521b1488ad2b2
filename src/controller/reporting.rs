//! The report phase: the snapshot readers' Role, the status write, Events for what changed,
//! the tenant's state in the metrics, and when to come back.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::context::{Context, MANAGER, Run, TIMES, fence, jitter, resource_version};
use super::error::Error;
use super::metrics::TenantState;
use super::plan::{self, ConditionInputs, Gate};
use super::snapshot_store::collect_snapshots;
use super::{active, readers};
use crate::api::conditions::{self};
use crate::api::{McpConfigStatus, TenantMcpConfig};
use crate::config::candidate::ServerKey;
use crate::config::failure::Failure;

/// Report: conditions, the snapshot readers' Role, the status write, Events and metrics for
/// what changed, and the old snapshots' collection; returns when to look again.
pub(super) async fn report(
    run: Run<'_>,
    ctx: &Context,
    mirror_outcome: Option<Result<(), Failure>>,
) -> Result<Action, Error> {
    let Run {
        config,
        id,
        now,
        previous,
        mut status,
        gate,
        declared,
        split,
        in_sync,
        next_check,
        probing,
        promoted,
        demoted,
        ..
    } = run;
    plan::update_conditions(
        &mut status,
        &ConditionInputs {
            gate: &gate,
            declared: &declared,
            config_wide: &split.config_wide,
            invalid: &split.per_server,
            in_sync: &in_sync,
            mirror: mirror_outcome.as_ref(),
            generation: config.metadata.generation,
            now,
        },
    );

    grant_readers(ctx, config, &previous, &status).await?;
    if status != previous {
        write_status(ctx, config, &status).await?;
    }

    publish_transitions(ctx, config, &previous, &status, &promoted).await;
    for key in &promoted {
        ctx.metrics.promoted(
            ServerKey::parse(key)
                .as_ref()
                .map_or("unknown", ServerKey::server_type),
        );
    }
    for (key, why) in &demoted {
        warn!(config = %id, server = %key, "demoted: {why}");
        ctx.metrics.demoted(
            ServerKey::parse(key)
                .as_ref()
                .map_or("unknown", ServerKey::server_type),
        );
        event(
            ctx,
            config,
            (EventType::Warning, "Demoted"),
            format!("Demote {key}"),
            None,
            &format!(
                "{key} was taken out of service: the endpoint policy now denies it ({why}); its tenant gets PolicyDenied until it is fixed"
            ),
        )
        .await;
    }
    let state = tenant_state(&gate, &status);
    ctx.metrics.config_state(
        &id,
        state,
        declared.iter().map(ServerKey::server_type).collect(),
    );

    let mut requeue = next_check.map(jitter);
    if let Some(Err(f)) = &mirror_outcome
        && f.retryable
    {
        requeue = Some(requeue.map_or(ctx.settings.retry_interval, |r| {
            r.min(ctx.settings.retry_interval)
        }));
    }
    if let Some(wait) = collect_snapshots(ctx, config, &status, now).await? {
        requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
    }
    let _ = TIMES.try_with(|t| t.borrow_mut().0 = probing);
    info!(config = %id, state = ?state, promoted = ?promoted, "reconciled");
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Lets the snapshot readers get the snapshots `status` is about to point at (and those
/// `previous` pointed at, which clients may still be reading): writes the config's reader Role
/// when that set differs from what it last granted.
pub(super) async fn grant_readers(
    ctx: &Context,
    config: &TenantMcpConfig,
    previous: &McpConfigStatus,
    status: &McpConfigStatus,
) -> Result<(), Error> {
    if ctx.settings.snapshot_readers.is_empty() {
        return Ok(());
    }
    let names: BTreeSet<String> = active::snapshots(&status.active)
        .into_iter()
        .chain(active::snapshots(&previous.active))
        .collect();
    let uid = config.uid().unwrap_or_default();
    let granted = ctx
        .readers_granted
        .lock()
        .ok()
        .and_then(|g| g.get(&uid).cloned());
    if granted.as_ref() == Some(&names) {
        return Ok(());
    }
    fence(ctx)?;
    let ns = config.namespace().unwrap_or_default();
    let (role, binding) = readers::objects(config, &names, &ctx.settings.snapshot_readers);
    let name = role.metadata.name.clone().unwrap_or_default();
    let params = PatchParams::apply(MANAGER).force();
    Api::<Role>::namespaced(ctx.client.clone(), &ns)
        .patch(&name, &params, &Patch::Apply(&role))
        .await
        .map_err(|e| Error::kube(format!("writing the snapshot reader Role {ns}/{name}"), e))?;
    Api::<RoleBinding>::namespaced(ctx.client.clone(), &ns)
        .patch(&name, &params, &Patch::Apply(&binding))
        .await
        .map_err(|e| {
            Error::kube(
                format!("writing the snapshot reader RoleBinding {ns}/{name}"),
                e,
            )
        })?;
    if let Ok(mut g) = ctx.readers_granted.lock() {
        g.insert(uid, names);
    }
    Ok(())
}

/// Writes `status` with server-side apply, as the controller's field manager.
pub(super) async fn write_status(
    ctx: &Context,
    config: &TenantMcpConfig,
    status: &McpConfigStatus,
) -> Result<(), Error> {
    fence(ctx)?;
    let api: Api<TenantMcpConfig> =
        Api::namespaced(ctx.client.clone(), &config.namespace().unwrap_or_default());
    // The config's resourceVersion is a precondition: a status decided on an older version
    // (by a replica that has since lost the Lease, say) is refused with 409, not written over
    // what the current leader wrote.
    let patch = json!({
        "apiVersion": "tenantmcp.dev/v1alpha1",
        "kind": "TenantMcpConfig",
        "metadata": {"resourceVersion": config.resource_version()},
        "status": status,
    });
    match api
        .patch_status(
            &config.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(written) => {
            if let (Some(uid), Some(version)) =
                (written.metadata.uid.as_deref(), resource_version(&written))
            {
                ctx.status_written.wrote(uid, version);
            }
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::Stale("writing status".into())),
        Err(e) => Err(Error::kube("writing status".into(), e)),
    }
}

/// Events only for what a person must see: Ready flipped or changed reason (but not a new
/// config turning Ready at its first reconcile, which its status and printer columns say), or a
/// server was promoted.
pub(super) async fn publish_transitions(
    ctx: &Context,
    config: &TenantMcpConfig,
    before: &McpConfigStatus,
    after: &McpConfigStatus,
    promoted: &[String],
) {
    let ready = |s: &McpConfigStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == conditions::READY)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (old, new) = (ready(before), ready(after));
    let first_success = old.is_none() && new.as_ref().is_some_and(|(s, _, _)| s == "True");
    if let Some((status, reason, message)) = &new
        && old.as_ref().map(|(s, r, _)| (s, r)) != Some((status, reason))
        && !first_success
    {
        let kind = if status == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        event(
            ctx,
            config,
            (kind, reason),
            "Reconcile".into(),
            None,
            message,
        )
        .await;
    }
    for key in promoted {
        let (hash, snapshot) = ServerKey::parse(key)
            .and_then(|k| active::entry(&after.active, &k))
            .unwrap_or_default();
        let related = snapshot.map(|name| ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            namespace: config.namespace(),
            name: Some(name),
            ..ObjectReference::default()
        });
        event(
            ctx,
            config,
            (EventType::Normal, "Promoted"),
            format!("Promote {key}"),
            related,
            &format!(
                "{key} passed its connection test and is now active (spec {})",
                &hash[..hash.len().min(12)]
            ),
        )
        .await;
    }
}

/// Publishes an Event about `config`. The recorder folds Events with the same type, reason,
/// action and related object into one series that keeps the first note (kube-runtime, as
/// client-go's events recorder), so `action` names the server an Event is about and
/// `related` the snapshot Secret a promotion made: each promoted server gets its own Event.
pub(super) async fn event(
    ctx: &Context,
    config: &TenantMcpConfig,
    (type_, reason): (EventType, &str),
    action: String,
    related: Option<ObjectReference>,
    note: &str,
) {
    if fence(ctx).is_err() {
        return;
    }
    let ev = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action,
        secondary: related,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &config.object_ref(&())).await {
        warn!("publishing event {reason}: {e}");
    }
}

pub(super) fn tenant_state(gate: &Gate, status: &McpConfigStatus) -> TenantState {
    let cond = |t: &str| status.conditions.iter().find(|c| c.type_ == t);
    match gate {
        Gate::Disabled(_) => TenantState::Disabled,
        Gate::Conflict(_) => TenantState::Conflict,
        Gate::NotBound(_) => TenantState::NotBound,
        Gate::Served => {
            if cond(conditions::READY).is_some_and(|c| c.status == "True") {
                TenantState::Ready
            } else if cond(conditions::VALIDATED).is_some_and(|c| c.status == "False") {
                TenantState::Invalid
            } else if cond(conditions::DEGRADED).is_some_and(|c| c.status == "True") {
                TenantState::Degraded
            } else {
                TenantState::Pending
            }
        }
    }
}
