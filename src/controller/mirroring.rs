//! The mirror phase: the active config, sealed, into the Postgres `tenant_configs` row.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::context::{Context, Run, fence, resource_version};
use super::error::Error;
use super::mirrored;
use super::plan::Gate;
use super::snapshot_store::read_snapshots;
use crate::api::conditions::{self};
use crate::api::{McpConfigStatus, TenantMcpConfig};
use crate::config::failure::Failure;
use crate::mirror::{MirrorError, MirrorState, MirrorWriter, WriteOutcome};

/// Mirror: the served (or disabled) config's row. A config that stopped serving (unbound, or
/// the loser of a conflict) and had mirrored clears the tenant's row if the row is still its
/// own, and otherwise leaves it alone.
pub(super) async fn mirror_phase(
    run: &mut Run<'_>,
    ctx: &Context,
) -> Result<Option<Result<(), Failure>>, Error> {
    if let (Some(writer), Gate::NotBound(_) | Gate::Conflict(_)) = (&ctx.mirror, &run.gate) {
        ctx.metrics.mirror_released(&run.id);
        let mirrored_before = run
            .previous
            .conditions
            .iter()
            .any(|c| c.type_ == conditions::MIRRORED);
        if !mirrored_before {
            return Ok(None);
        }
        fence(ctx)?;
        let source = crate::mirror::document::ConfigSource {
            namespace: run.ns.clone(),
            name: run.config.name_any(),
        };
        // Cleared (or someone else's): the Mirrored condition goes. Failed: it says why, and
        // the release is tried again.
        return Ok(
            match writer.release(&run.config.spec.tenant_id, &source).await {
                Ok(_) => None,
                Err(e) => Some(Err(Failure::new(
                    e.reason(),
                    e.to_string(),
                    e.is_retryable(),
                ))),
            },
        );
    }
    let (Some(writer), Gate::Served | Gate::Disabled(_)) = (&ctx.mirror, &run.gate) else {
        ctx.metrics.mirror_released(&run.id);
        return Ok(None);
    };
    let state = mirrored::state(&run.gate).unwrap_or(MirrorState::Disabled);
    if run.gate != Gate::Served {
        read_snapshots(&run.secrets_api, &run.status, &mut run.snapshots).await?;
    }
    let version = mirrored::version(
        [
            resource_version(run.config),
            run.global.resource_version,
            ctx.namespaces.resource_version(&run.ns),
        ]
        .into_iter()
        .chain(run.snapshots.values().map(resource_version)),
    );
    fence(ctx)?;
    let outcome = mirror(
        writer,
        run.config,
        &run.status,
        state,
        &run.snapshots,
        version,
    )
    .await;
    ctx.metrics.mirror_written(
        &run.id,
        outcome.as_ref().map(|_| ()).map_err(|f| f.reason.as_str()),
    );
    Ok(Some(outcome))
}

/// Writes the mirror document of `status.active` with the credentials of its snapshots.
pub(super) async fn mirror(
    writer: &MirrorWriter,
    config: &TenantMcpConfig,
    status: &McpConfigStatus,
    state: MirrorState,
    snapshots: &HashMap<String, Secret>,
    version: i64,
) -> Result<(), Failure> {
    let document = mirrored::document(config, status, state, snapshots)?;
    let failure = |e: MirrorError| Failure::new(e.reason(), e.to_string(), e.is_retryable());
    match writer.write(&document, version).await.map_err(failure)? {
        // A newer row with other content: written outside the controller (or by a replica
        // still believing it leads); nothing this controller writes can replace it.
        WriteOutcome::Stale { stored_version } => Err(failure(MirrorError::VersionAhead {
            tenant: document.tenant_id.clone(),
            stored: stored_version,
            version,
        })),
        _ => Ok(()),
    }
}
