//! What every phase of a reconcile shares: the [`Context`] (clients, caches, settings), the
//! [`Run`] a reconcile builds up, the global settings in force, the leadership fence, and the
//! names the controller writes under.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aes_gcm::aead::Generate as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use tokio::sync::mpsc;

use super::claim_index::ClaimIndex;
use super::error::Error;
use super::metrics::Metrics;
use super::namespace_index::NamespaceIndex;
use super::own_writes::OwnWrites;
use super::plan::{self, Gate, Intervals};
use super::secret_index::SecretIndex;
use super::settings::Settings;
use super::snapshot_index::SnapshotIndex;
use crate::api::{GlobalMcpConfig, GlobalMcpConfigSpec, McpConfigStatus, TenantMcpConfig};
use crate::config::EndpointPolicy;
use crate::config::candidate::ServerKey;
use crate::mirror::MirrorWriter;
use crate::probe::Prober;

/// The finalizer that removes a config's mirror data and snapshots before it goes.
pub const FINALIZER: &str = "tenantmcp.dev/cleanup";

/// Annotation that lets a config go although its mirror data could not be removed.
pub const FORCE_DELETE_ANNOTATION: &str = "tenantmcp.dev/force-delete";

/// The field manager of everything the controller writes.
pub const MANAGER: &str = "tenant-mcp-controller";

/// The only `GlobalMcpConfig` that is used.
pub const GLOBAL_NAME: &str = crate::api::GLOBAL_CONFIG_NAME;

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
    /// Each namespace's tenant binding, from the namespace metadata watch.
    pub namespaces: NamespaceIndex,
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
pub(super) fn fence(ctx: &Context) -> Result<(), Error> {
    ctx.leadership.check().map_err(|_| Error::LostLeadership)
}

tokio::task_local! {
    /// Wall time the current reconcile spent in connection tests, for its timing.
    pub(super) static TIMES: std::cell::RefCell<(Duration, Vec<(&'static str, Duration)>)>;
}

/// The global settings that apply to every tenant config.
pub(super) struct Globals {
    pub(super) spec: Option<GlobalMcpConfigSpec>,
    pub(super) policy: EndpointPolicy,
    /// A stable hash of the policy in force, recorded with every check.
    pub(super) policy_hash: String,
    pub(super) resource_version: Option<i64>,
}

pub(super) fn globals(ctx: &Context) -> Globals {
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

/// One reconcile's working state, passed through the phases of [`apply`]: what was read at
/// the start, the status being built, and what the phases found along the way.
pub(super) struct Run<'a> {
    pub(super) config: &'a TenantMcpConfig,
    pub(super) ns: String,
    pub(super) id: String,
    pub(super) now: Timestamp,
    /// The status as read; `status` is compared with it before writing.
    pub(super) previous: McpConfigStatus,
    pub(super) status: McpConfigStatus,
    pub(super) global: Globals,
    pub(super) gate: Gate,
    pub(super) declared: Vec<ServerKey>,
    pub(super) secrets_api: Api<Secret>,
    /// Each Secret the spec reads, with the server type that reads it.
    pub(super) uses: Vec<(Option<ServerKey>, String)>,
    /// Validation errors, config-wide and per server.
    pub(super) split: plan::SplitErrors,
    /// Server types whose active entry is the spec as it is now.
    pub(super) in_sync: BTreeSet<ServerKey>,
    /// The spec's revalidation interval and the controller's retry interval.
    pub(super) intervals: Intervals,
    /// When the next scheduled check is due.
    pub(super) next_check: Option<Duration>,
    /// Wall time of the probes.
    pub(super) probing: Duration,
    /// Snapshot Secrets read or written, by name.
    pub(super) snapshots: HashMap<String, Secret>,
    /// Server types promoted by this reconcile.
    pub(super) promoted: Vec<String>,
    /// Server types taken out of status.active, with why.
    pub(super) demoted: Vec<(String, String)>,
}

impl Run<'_> {
    /// Schedules the next check no later than `after` from now.
    pub(super) fn check_again_in(&mut self, after: Duration) {
        self.next_check = Some(self.next_check.map_or(after, |n| n.min(after)));
    }
}

/// An object's `resourceVersion` as a number (etcd revisions are); `None` otherwise.
pub(crate) fn resource_version<K: Resource>(object: &K) -> Option<i64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

/// `d` plus up to 10 % random jitter, so many configs do not all come due at once.
pub fn jitter(d: Duration) -> Duration {
    let [r] = <[u8; 1]>::generate();
    d + d.mul_f64(f64::from(r) / 255.0 / 10.0)
}
