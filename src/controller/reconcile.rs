//! The reconcile of one `TenantMcpConfig`: gate (binding, conflicts, flags) → validate →
//! resolve Secrets → probe what is due → promote passing servers into snapshots and
//! `status.active` → mirror → status → events → snapshot cleanup. The decisions are in
//! [`super::plan`] (gate, when a check is due, conditions), `controller::phases` (resolve and
//! promote, per server type) and [`crate::config::binding`]; this module does the I/O
//! around them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::Generate as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::claim_index::ClaimIndex;
use super::error::Error;
use super::metrics::{Metrics, TenantState};
use super::mirrored;
use super::own_writes::OwnWrites;
use super::phases::{self, Assessment, Resolved};
use super::plan::{self, ConditionInputs, Gate, Intervals};
use super::secret_index::SecretIndex;
use super::settings::Settings;
use super::snapshot::{self, Cleanup};
use super::snapshot_index::SnapshotIndex;
use super::{active, readers};
use crate::api::conditions::{self, reason};
use crate::api::{GlobalMcpConfig, GlobalMcpConfigSpec, McpConfigStatus, TenantMcpConfig};
use crate::config::binding::{self, Claim, Verdict};
use crate::config::candidate::{self, Candidate, ServerKey};
use crate::config::failure::Failure;
use crate::config::validate::policy_failure;
use crate::config::{EndpointPolicy, validate_tenant_spec};
use crate::mirror::{MirrorError, MirrorState, MirrorWriter, WriteOutcome};
use crate::probe::Prober;

/// The finalizer that removes a config's mirror data and snapshots before it goes.
pub const FINALIZER: &str = "tenantmcp.dev/cleanup";
/// Annotation that lets a config go although its mirror data could not be removed.
pub const FORCE_DELETE_ANNOTATION: &str = "tenantmcp.dev/force-delete";
/// The field manager of everything the controller writes.
pub const MANAGER: &str = "tenant-mcp-controller";
/// The only `GlobalMcpConfig` that is used.
pub const GLOBAL_NAME: &str = "default";

/// Where per-reconcile timings go when collected.
pub type Timings = Arc<std::sync::Mutex<Vec<ReconcileTiming>>>;

/// How long one reconcile took, how much of it was spent waiting on probes, and how long each
/// phase of the reconcile took (none for a reconcile that only added the finalizer or cleaned up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconcileTiming {
    /// The whole reconcile.
    pub total: Duration,
    /// Wall time of the probes (they run concurrently).
    pub probing: Duration,
    /// Each phase that ran, in order, with its wall time (`probe` includes `probing`).
    pub phases: Vec<(&'static str, Duration)>,
}

/// Everything a reconcile needs: clients, caches, settings, metrics.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Settings from the command line.
    pub settings: Settings,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The global probe cap.
    pub prober: Prober,
    /// The mirror writer, when a mirror database is configured.
    pub mirror: Option<MirrorWriter>,
    /// Every TenantMcpConfig (the controller's own cache).
    pub configs: Store<TenantMcpConfig>,
    /// GlobalMcpConfigs.
    pub globals: Store<GlobalMcpConfig>,
    /// Namespace metadata (for the tenant binding label).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Whether the three caches above completed their first list.
    pub synced: Arc<super::synced::Synced>,
    /// Which configs read which Secret.
    pub secret_index: SecretIndex,
    /// Each config's snapshot Secrets, from the Secret metadata watch.
    pub snapshots: SnapshotIndex,
    /// Configs by tenant and namespace, from the config watch.
    pub claims: ClaimIndex,
    /// Asks for other configs to be reconciled (e.g. the loser of a conflict when the winner
    /// goes).
    pub requeue: mpsc::UnboundedSender<ObjectRef<TenantMcpConfig>>,
    /// Consecutive failures per config, for the retry backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// This replica's status writes the cache has not caught up with yet.
    pub status_written: OwnWrites,
    /// The snapshot names each config's reader Role grants (by config uid), as last written.
    pub readers_granted: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Per-reconcile timings, collected only when set (benchmarks).
    pub timings: Option<Timings>,
    /// Whether this replica may still write as the leader.
    pub leadership: Arc<super::leader::Leadership>,
}

/// Fails when this replica can no longer be sure it leads: called before every write, so a
/// replica resumed after a pause past its Lease writes nothing.
fn fence(ctx: &Context) -> Result<(), Error> {
    ctx.leadership.check().map_err(|_| Error::LostLeadership)
}

tokio::task_local! {
    /// Wall time the current reconcile spent in connection tests, for its timing.
    static TIMES: std::cell::RefCell<(Duration, Vec<(&'static str, Duration)>)>;
}

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

/// `d` plus up to 10 % random jitter, so many configs do not all come due at once.
pub fn jitter(d: Duration) -> Duration {
    let [r] = <[u8; 1]>::generate();
    d + d.mul_f64(f64::from(r) / 255.0 / 10.0)
}

/// The global settings that apply to every tenant config.
struct Globals {
    spec: Option<GlobalMcpConfigSpec>,
    policy: EndpointPolicy,
    /// A stable hash of the policy in force, recorded with every check.
    policy_hash: String,
    resource_version: Option<i64>,
}

fn globals(ctx: &Context) -> Globals {
    let global = ctx.globals.get(&ObjectRef::new(GLOBAL_NAME));
    let spec = global.as_ref().map(|g| g.spec.clone());
    let policy = spec
        .as_ref()
        .map(|s| EndpointPolicy::compile_or_strict(&s.endpoint_policy))
        .unwrap_or_default();
    // The compiled policy (what is enforced), so an edit that changes nothing enforced (or a
    // malformed one replaced by the strict default) hashes as what it does.
    let policy_hash = crate::config::spec_hash(&format!("{policy:?}")).unwrap_or_default();
    Globals {
        spec,
        policy,
        policy_hash,
        resource_version: global.as_ref().and_then(|g| resource_version(g.as_ref())),
    }
}

/// The binding rule's verdict on `config` and on every other config that claims its tenant,
/// from the controller's caches. `config` counts as it is given (its cached copy may be
/// older); with `as_live`, a config being deleted is judged as if it were not, which tells its
/// cleanup whether it was the one serving.
fn binding(
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
    let namespace = |c: &TenantMcpConfig| {
        ctx.namespaces
            .get(&ObjectRef::new(&c.namespace().unwrap_or_default()))
    };
    let own_namespace = namespace(config);
    let namespaces: Vec<_> = others.iter().map(|c| namespace(c)).collect();
    let mut me = Claim::of(config, labels_of(&own_namespace));
    if as_live {
        me.deleting = false;
    }
    let claims: Vec<Claim<'_>> = std::iter::once(me)
        .chain(
            others
                .iter()
                .zip(&namespaces)
                .map(|(c, n)| Claim::of(c, labels_of(n))),
        )
        .collect();
    let mut verdicts = binding::decide(tenant, &claims, allow_unbound)
        .verdicts
        .into_iter();
    let mine = verdicts.next().unwrap_or(Verdict::Deleting);
    (mine, others.into_iter().zip(verdicts).collect())
}

fn labels_of(
    namespace: &Option<Arc<PartialObjectMeta<Namespace>>>,
) -> Option<&BTreeMap<String, String>> {
    namespace.as_ref().and_then(|n| n.metadata.labels.as_ref())
}

/// Whether `config` may be served, given the binding rule's `verdict` and the flags.
fn gate(config: &TenantMcpConfig, verdict: &Verdict, ctx: &Context, global: &Globals) -> Gate {
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
fn requeue_stale_claims(ctx: &Context, others: &[(Arc<TenantMcpConfig>, Verdict)]) {
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

/// One reconcile's working state, passed through the phases of [`apply`]: what was read at
/// the start, the status being built, and what the phases found along the way.
struct Run<'a> {
    config: &'a TenantMcpConfig,
    ns: String,
    id: String,
    now: Timestamp,
    /// The status as read; `status` is compared with it before writing.
    previous: McpConfigStatus,
    status: McpConfigStatus,
    global: Globals,
    gate: Gate,
    declared: Vec<ServerKey>,
    secrets_api: Api<Secret>,
    /// Each Secret the spec reads, with the server type that reads it.
    uses: Vec<(Option<ServerKey>, String)>,
    /// Validation errors, config-wide and per server.
    split: plan::SplitErrors,
    /// Server types whose active entry is the spec as it is now.
    in_sync: BTreeSet<ServerKey>,
    /// The spec's revalidation interval and the controller's retry interval.
    intervals: Intervals,
    /// When the next scheduled check is due.
    next_check: Option<Duration>,
    /// Wall time of the probes.
    probing: Duration,
    /// Snapshot Secrets read or written, by name.
    snapshots: HashMap<String, Secret>,
    /// Server types promoted by this reconcile.
    promoted: Vec<String>,
    /// Server types taken out of status.active, with why.
    demoted: Vec<(String, String)>,
}

impl Run<'_> {
    /// Schedules the next check no later than `after` from now.
    fn check_again_in(&mut self, after: Duration) {
        self.next_check = Some(self.next_check.map_or(after, |n| n.min(after)));
    }
}

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

/// Fails with `Stale` when the cached `config` is older than this replica's last status write
/// to it. kube-runtime hands a reconcile the cached object, and a reconcile triggered by
/// something else (a Secret, a rival config) can run before the watch delivers that write:
/// deciding on the older status would promote a server already active a second time, with a
/// second snapshot, and mirror that snapshot before the status write is refused.
fn behind_own_write(config: &TenantMcpConfig, ctx: &Context) -> Result<(), Error> {
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
fn gate_phase<'a>(config: &'a TenantMcpConfig, ctx: &Context) -> Run<'a> {
    let ns = config.namespace().unwrap_or_default();
    let name = config.name_any();
    let global = globals(ctx);
    let (verdict, others) = binding(config, ctx, &global, false);
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

/// Resolve: validates the spec, takes out of service an active entry the policy now denies,
/// reads the Secrets and snapshots, and decides per server type whether it is due for a
/// check now; returns those that are.
async fn resolve(run: &mut Run<'_>) -> Result<Vec<(ServerKey, Resolved)>, Error> {
    let spec = &run.config.spec;
    let now = run.now;
    run.split = plan::split_errors(
        &validate_tenant_spec(spec, &run.global.policy),
        &spec.servers,
    );
    // An active entry the policy in force denies leaves service now (a policy tightened,
    // `requireTls` set): its tenant gets PolicyDenied, never the old server.
    for key in &run.declared {
        let denied = active::spec(&run.status.active, key)
            .and_then(|server| policy_failure(server, &run.global.policy))
            .filter(|f| f.reason == reason::POLICY_DENIED);
        if let Some(f) = denied
            && active::demote(&mut run.status.active, key)
        {
            run.demoted.push((key.as_string(), f.message));
        }
    }
    let mut fetched: HashMap<String, Option<Secret>> = HashMap::new();
    for (_, secret) in &run.uses {
        if fetched.contains_key(secret) {
            continue;
        }
        let found = run
            .secrets_api
            .get_opt(secret)
            .await
            .map_err(|e| Error::kube(format!("reading Secret {}/{secret}", run.ns), e))?;
        fetched.insert(secret.clone(), found);
    }
    read_snapshots(&run.secrets_api, &run.status, &mut run.snapshots).await?;
    active::record_snapshot_uids(&mut run.status.active, &run.snapshots);
    let lookup = |n: &str| fetched.get(n).cloned().flatten();
    let mut due_now: Vec<(ServerKey, Resolved)> = Vec::new();
    for key in run.declared.clone() {
        let assessment = phases::assess(
            &key,
            &phases::Inputs {
                servers: &spec.servers,
                split: &run.split,
                uses: &run.uses,
                secret: &lookup,
                status: &run.status,
                snapshots: &run.snapshots,
                checking: phases::Checking {
                    policy_hash: &run.global.policy_hash,
                    now,
                    intervals: run.intervals,
                },
            },
        );
        match assessment {
            Assessment::Failing(health) => {
                run.status.servers.insert(key.as_string(), health);
            }
            Assessment::Due(resolved) => {
                if resolved.in_sync {
                    run.in_sync.insert(key.clone());
                }
                due_now.push((key, resolved));
            }
            Assessment::Current { in_sync, again } => {
                if in_sync {
                    run.in_sync.insert(key);
                }
                if let Some(after) = again {
                    run.check_again_in(after);
                }
            }
        }
    }
    Ok(due_now)
}

/// Probe: connection-tests everything due at once; the global cap bounds the concurrency.
async fn probe_due(
    run: &mut Run<'_>,
    ctx: &Context,
    due: &[(ServerKey, Resolved)],
) -> Vec<Result<Duration, Failure>> {
    let started = Instant::now();
    let timeout = Duration::from_secs(
        u64::try_from(run.config.spec.validation.connect_timeout_seconds).unwrap_or(5),
    );
    let outcomes = futures::future::join_all(due.iter().map(|(key, r)| {
        probe(
            ctx,
            &run.global.policy,
            &run.config.spec.tenant_id,
            key,
            &r.candidate,
            timeout,
        )
    }))
    .await;
    if !outcomes.is_empty() {
        run.probing = started.elapsed();
    }
    outcomes
}

/// Promote: a passing server not yet active gets a snapshot Secret and becomes the active
/// entry; every probed server's health is recorded; an active entry that now connects where
/// the policy denies is taken out of service; entries of undeclared types go.
async fn promote(
    run: &mut Run<'_>,
    ctx: &Context,
    due: Vec<(ServerKey, Resolved)>,
    outcomes: Vec<Result<Duration, Failure>>,
) -> Result<(), Error> {
    for ((key, resolved), outcome) in due.into_iter().zip(outcomes) {
        let snapshot = if phases::needs_snapshot(&resolved, &outcome) {
            let secret = snapshot::build(run.config, &key, &resolved.candidate);
            fence(ctx)?;
            let created = run
                .secrets_api
                .create(&PostParams::default(), &secret)
                .await
                .map_err(|e| {
                    Error::kube(
                        format!("creating a snapshot Secret for {}", key.as_string()),
                        e,
                    )
                })?;
            ctx.snapshots.record(&created.metadata);
            run.snapshots.insert(created.name_any(), created.clone());
            Some(created)
        } else {
            None
        };
        let recorded = phases::record_check(
            &mut run.status,
            &key,
            resolved,
            outcome,
            snapshot.as_ref(),
            &phases::Checking {
                policy_hash: &run.global.policy_hash,
                now: run.now,
                intervals: run.intervals,
            },
        );
        if recorded.promoted {
            run.promoted.push(key.as_string());
            run.in_sync.insert(key.clone());
        }
        if let Some(why) = recorded.demoted {
            run.in_sync.remove(&key);
            run.demoted.push((key.as_string(), why));
        }
        if let Some(after) = recorded.again {
            run.check_again_in(after);
        }
    }
    active::retain_declared(&mut run.status.active, &run.declared);
    let declared = &run.declared;
    run.status
        .servers
        .retain(|k, _| ServerKey::parse(k).is_some_and(|k| declared.contains(&k)));
    Ok(())
}

/// Mirror: the served (or disabled) config's row. A config that stopped serving (unbound, or
/// the loser of a conflict) and had mirrored clears the tenant's row if the row is still its
/// own, and otherwise leaves it alone.
async fn mirror_phase(
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
            ctx.namespaces
                .get(&ObjectRef::new(&run.ns))
                .and_then(|n| resource_version(n.as_ref())),
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

/// Report: conditions, the snapshot readers' Role, the status write, Events and metrics for
/// what changed, and the old snapshots' collection; returns when to look again.
async fn report(
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

async fn probe(
    ctx: &Context,
    policy: &EndpointPolicy,
    tenant: &str,
    key: &ServerKey,
    candidate: &Candidate,
    timeout: Duration,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    let result = ctx
        .prober
        .test(policy, tenant, &key.as_string(), candidate, timeout)
        .await;
    let label = match &result {
        Ok(_) => "Healthy",
        Err(e) => e.reason(),
    };
    ctx.metrics
        .probe(key.server_type(), label, started.elapsed());
    result.map_err(Failure::from)
}

/// Writes the mirror document of `status.active` with the credentials of its snapshots.
async fn mirror(
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

/// Lets the snapshot readers get the snapshots `status` is about to point at (and those
/// `previous` pointed at, which clients may still be reading): writes the config's reader Role
/// when that set differs from what it last granted.
async fn grant_readers(
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

/// Marks snapshots `status.active` left behind and deletes those past their grace period;
/// when to look again.
async fn collect_snapshots(
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
async fn list_snapshots(api: &Api<Secret>, config: &TenantMcpConfig) -> Result<Vec<Secret>, Error> {
    let list = api
        .list(&ListParams::default().labels(&snapshot::selector(config)))
        .await
        .map_err(|e| Error::kube("listing snapshot Secrets".into(), e))?;
    Ok(list.items)
}

/// Deletes snapshot `name`; one already gone is as good.
async fn delete_snapshot(api: &Api<Secret>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("deleting snapshot {name}"), e)),
    }
}

/// Reads the snapshot Secrets `status.active` points at into `into` (missing ones, and Secrets
/// whose uid is not the recorded one, are left out: the mirror then reports them, and their
/// servers are checked again).
async fn read_snapshots(
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

/// Writes `status` with server-side apply, as the controller's field manager.
async fn write_status(
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

async fn cleanup(config: &TenantMcpConfig, ctx: &Context) -> Result<Action, Error> {
    let ns = config.namespace().unwrap_or_default();
    let name = config.name_any();
    let global = globals(ctx);
    let served = binding(config, ctx, &global, true).0.serves();
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

/// Events only for what a person must see: Ready flipped or changed reason (but not a new
/// config turning Ready at its first reconcile, which its status and printer columns say), or a
/// server was promoted.
async fn publish_transitions(
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
async fn event(
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

fn tenant_state(gate: &Gate, status: &McpConfigStatus) -> TenantState {
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

/// An object's `resourceVersion` as a number (etcd revisions are); `None` otherwise.
pub(crate) fn resource_version<K: Resource>(object: &K) -> Option<i64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}
