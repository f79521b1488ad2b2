//! The reconcile of one `TenantMcpConfig`, as a pipeline of phases, each in a module of its
//! own: gate (`gating`: binding, conflicts, flags) → resolve, probe what is due, promote passing
//! servers into snapshots and `status.active` (`checking`) → mirror (`mirroring`) → status,
//! events, snapshot cleanup (`reporting`, `snapshot_store`); a config being deleted goes
//! through `deletion`. What the phases share is in `context`. The decisions are in
//! [`super::plan`] (gate, when a check is due, conditions), `controller::phases` (resolve and
//! promote, per server type) and [`crate::config::binding`]; the phase modules do the I/O
//! around them, and this one runs them and retries what failed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as Finalizer};
use tracing::warn;

use super::checking::{probe_due, promote, resolve};
use super::context::TIMES;
use super::deletion::cleanup;
use super::error::Error;
use super::gating::{behind_own_write, gate_phase};
use super::mirroring::mirror_phase;
use super::plan::Gate;
use super::reporting::report;
use crate::api::TenantMcpConfig;

pub(crate) use super::context::resource_version;
pub use super::context::{
    Context, FINALIZER, FORCE_DELETE_ANNOTATION, GLOBAL_NAME, MANAGER, ReconcileTiming, Timings,
    jitter,
};

/// Entry point for kube-runtime: the finalizer dispatches to apply or cleanup.
pub async fn reconcile(config: Arc<TenantMcpConfig>, ctx: Arc<Context>) -> Result<Action, Error> {
    // The gate reads the namespace and global caches and the conflict check reads the config
    // cache: deciding before their first list would mark a bound tenant TenantNotBound or a
    // valid endpoint PolicyDenied, and those wait for a change that may never come.
    ctx.synced.wait().await;
    let _timer = ctx.metrics.reconcile();
    let ns = config.namespace().unwrap_or_default();
    let api: Api<TenantMcpConfig> = Api::namespaced(ctx.client.clone(), &ns);
    let id = format!("{ns}/{}", config.name_any());
    let started = Instant::now();
    let (result, (probing, phases)) = TIMES
        .scope(
            std::cell::RefCell::new((Duration::ZERO, Vec::new())),
            async {
                let result = finalizer::finalizer(&api, FINALIZER, config, |event| async {
                    match event {
                        Finalizer::Apply(config) => apply(&config, &ctx).await,
                        Finalizer::Cleanup(config) => cleanup(&config, &ctx).await,
                    }
                })
                .await;
                (result, TIMES.with(|t| t.take()))
            },
        )
        .await;
    // Every reconcile, whatever it did: adding the finalizer, applying, cleaning up, failing.
    if let Some(timings) = &ctx.timings
        && let Ok(mut t) = timings.lock()
    {
        t.push(ReconcileTiming {
            total: started.elapsed(),
            probing,
            phases,
        });
    }
    let result = result.map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        // The finalizer patch tests the list it read: it fails when the cached config is
        // older than the stored one.
        finalizer::Error::AddFinalizer(kube::Error::Api(s))
        | finalizer::Error::RemoveFinalizer(kube::Error::Api(s))
            if s.code == 409 || s.code == 422 =>
        {
            Error::Stale("patching the finalizer".into())
        }
        other => Error::Finalizer(other.to_string()),
    });
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&id);
    }
    result
}

/// What kube-runtime does after a failed reconcile: count it, and retry with a backoff that
/// grows per config (5 s doubling to 5 min) so a broken dependency is not hammered.
pub fn error_policy(config: Arc<TenantMcpConfig>, error: &Error, ctx: Arc<Context>) -> Action {
    let id = format!(
        "{}/{}",
        config.namespace().unwrap_or_default(),
        config.name_any()
    );
    if let Error::Stale(_) = error {
        // A cached config behind our own last write (common under load): not a failure.
        tracing::debug!(config = %id, "{error}; retrying with the newer version");
        return Action::requeue(jitter(STALE_RETRY));
    }
    ctx.metrics.error(error.reason());
    let attempt = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(id.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let base = if error.is_retryable() { 5 } else { 30 };
    let delay = Duration::from_secs((base << attempt.min(6)).min(300));
    warn!(config = %id, reason = error.reason(), attempt, retry_in = ?delay, "reconcile failed: {error}");
    Action::requeue(jitter(delay))
}

/// When a reconcile that read a stale config runs again (the watch usually delivers the newer
/// version, and its reconcile, before).
const STALE_RETRY: Duration = Duration::from_secs(1);

/// The reconcile of a config that is not being deleted, as a pipeline of phases: gate →
/// resolve → probe → promote → mirror → report. Each phase reads and extends the [`Run`].
async fn apply(config: &TenantMcpConfig, ctx: &Context) -> Result<Action, Error> {
    let mut clock = Instant::now();
    let mut mark = |phase: &'static str| {
        let now = Instant::now();
        let took = now - clock;
        clock = now;
        let _ = TIMES.try_with(|t| t.borrow_mut().1.push((phase, took)));
    };
    behind_own_write(config, ctx)?;
    let mut run = gate_phase(config, ctx);
    if run.gate.clears_active() {
        run.status.active = Default::default();
    }
    mark("gate");
    if run.gate == Gate::Served {
        let due = resolve(&mut run).await?;
        mark("resolve");
        let outcomes = probe_due(&mut run, ctx, &due).await;
        mark("probe");
        promote(&mut run, ctx, due, outcomes).await?;
        mark("promote");
    }
    let mirror_outcome = mirror_phase(&mut run, ctx).await?;
    mark("mirror");
    let action = report(run, ctx, mirror_outcome).await;
    mark("report");
    action
}

/// What of a config calls for a reconcile: everything but its status (which only the
/// controller writes, so its own status writes would otherwise each cost a reconcile and the
/// reads in it). Changes to the spec (generation), finalizers, labels, annotations and the
/// deletion mark all pass.
pub fn not_status(config: &TenantMcpConfig) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let meta = &config.metadata;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .hash(&mut hasher);
    Some(hasher.finish())
}
