//! The gate phase: the binding rule's verdict on a config and its rivals, the flags, and
//! which Secrets the spec reads; and the check that the cached config is not behind this
//! replica's own status write.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::context::{Context, Globals, Run, globals, resource_version};
use super::error::Error;
use super::plan::{self, Gate, Intervals};
use crate::api::TenantMcpConfig;
use crate::api::conditions::{self, reason};
use crate::config::binding::{self, Claim, Verdict};
use crate::config::candidate::ServerKey;

/// The binding rule's verdict on `config` and on every other config that claims its tenant,
/// from the controller's caches. `config` counts as it is given (its cached copy may be
/// older); with `as_live`, a config being deleted is judged as if it were not, which tells its
/// cleanup whether it was the one serving.
pub(super) fn binding_verdicts(
    config: &TenantMcpConfig,
    ctx: &Context,
    global: &Globals,
    as_live: bool,
) -> (Verdict, Vec<(Arc<TenantMcpConfig>, Verdict)>) {
    let allow_unbound = global
        .spec
        .as_ref()
        .is_some_and(|g| g.allow_unbound_namespaces);
    let tenant = &config.spec.tenant_id;
    let others: Vec<Arc<TenantMcpConfig>> = ctx
        .claims
        .claiming(tenant)
        .iter()
        .filter_map(|r| ctx.configs.get(r))
        .filter(|c| &c.spec.tenant_id == tenant && c.uid() != config.uid())
        .collect();
    let bound_to = |c: &TenantMcpConfig| {
        ctx.namespaces
            .tenant(c.metadata.namespace.as_deref().unwrap_or_default())
    };
    let own_binding = bound_to(config);
    let bindings: Vec<_> = others.iter().map(|c| bound_to(c)).collect();
    let mut me = Claim::bound(config, own_binding.as_deref());
    if as_live {
        me.deleting = false;
    }
    let claims: Vec<Claim<'_>> = std::iter::once(me)
        .chain(
            others
                .iter()
                .zip(&bindings)
                .map(|(c, b)| Claim::bound(c, b.as_deref())),
        )
        .collect();
    let mut verdicts = binding::decide(tenant, &claims, allow_unbound)
        .verdicts
        .into_iter();
    let mine = verdicts.next().unwrap_or(Verdict::Deleting);
    (mine, others.into_iter().zip(verdicts).collect())
}

/// Whether `config` may be served, given the binding rule's `verdict` and the flags.
pub(super) fn gate(
    config: &TenantMcpConfig,
    verdict: &Verdict,
    ctx: &Context,
    global: &Globals,
) -> Gate {
    plan::gate(
        config,
        verdict,
        global.spec.as_ref(),
        ctx.settings.tenant_configs_enabled,
    )
}

/// Asks for a reconcile of every other claim of the tenant whose status no longer matches
/// what the binding rule now says of it: a config that appears, goes or moves can change who
/// serves, and only the changed one would be reconciled otherwise.
pub(super) fn requeue_stale_claims(ctx: &Context, others: &[(Arc<TenantMcpConfig>, Verdict)]) {
    for (other, verdict) in others {
        let refused_now = !verdict.serves();
        let refused_before = other.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == conditions::READY
                    && (c.reason == reason::CONFLICT || c.reason == reason::TENANT_NOT_BOUND)
            })
        });
        if refused_now != refused_before && !matches!(verdict, Verdict::Deleting) {
            let _ = ctx.requeue.send(ObjectRef::from_obj(other.as_ref()));
        }
    }
}

/// Fails with `Stale` when the cached `config` is older than this replica's last status write
/// to it. kube-runtime hands a reconcile the cached object, and a reconcile triggered by
/// something else (a Secret, a rival config) can run before the watch delivers that write:
/// deciding on the older status would promote a server already active a second time, with a
/// second snapshot, and mirror that snapshot before the status write is refused.
pub(super) fn behind_own_write(config: &TenantMcpConfig, ctx: &Context) -> Result<(), Error> {
    let (Some(uid), Some(cached)) = (config.metadata.uid.as_deref(), resource_version(config))
    else {
        return Ok(());
    };
    ctx.status_written
        .check(uid, cached)
        .map_err(|last| {
            Error::Stale(format!(
                "the cached config (resourceVersion {cached}) is older than this controller's status write ({last})"
            ))
        })
}

/// Gate: the binding rule's verdict on this config and its rivals (requeueing those whose
/// status no longer matches), the flags, and which Secrets the spec reads.
pub(super) fn gate_phase<'a>(config: &'a TenantMcpConfig, ctx: &Context) -> Run<'a> {
    let ns = config.namespace().unwrap_or_default();
    let name = config.name_any();
    let global = globals(ctx);
    let (verdict, others) = binding_verdicts(config, ctx, &global, false);
    requeue_stale_claims(ctx, &others);
    let gate = gate(config, &verdict, ctx, &global);
    let spec = &config.spec;
    let uses: Vec<(Option<ServerKey>, String)> = spec
        .servers
        .secret_uses()
        .into_iter()
        .map(|u| {
            let key = plan::key_of_path(&format!("spec.servers.{}", u.field), &spec.servers);
            (key, u.name.to_owned())
        })
        .collect();
    let reads: BTreeSet<String> = uses.iter().map(|(_, n)| n.clone()).collect();
    ctx.secret_index.set(&ns, &name, reads);
    let previous = config.status.clone().unwrap_or_default();
    Run {
        config,
        id: format!("{ns}/{name}"),
        secrets_api: Api::namespaced(ctx.client.clone(), &ns),
        ns,
        now: Timestamp::now(),
        status: previous.clone(),
        previous,
        global,
        gate,
        declared: ServerKey::declared(&spec.servers),
        uses,
        split: plan::SplitErrors::default(),
        intervals: Intervals {
            revalidate: u64::try_from(spec.validation.revalidate_interval_seconds)
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            retry: ctx.settings.retry_interval,
        },
        in_sync: BTreeSet::new(),
        next_check: None,
        probing: Duration::ZERO,
        snapshots: HashMap::new(),
        promoted: Vec::new(),
        demoted: Vec::new(),
    }
}
