//! The controller: watches `TenantMcpConfig`s (and the Secrets, Namespaces and
//! `GlobalMcpConfig` they depend on), validates and connection-tests each declared server,
//! promotes passing ones into snapshot Secrets and `status.active`, mirrors the active config
//! into Postgres and reports conditions, events and metrics. Several replicas are safe: only
//! the holder of a Lease reconciles.
//!
//! The decisions live in pure modules ([`plan`], [`candidate`](crate::config::candidate), [`snapshot`], [`active`]);
//! [`reconcile`] does the I/O around them. This module and `client` are the only ones that
//! talk to the Kubernetes API.

mod checking;
pub mod claim_index;
mod context;
mod deletion;
mod error;
mod gating;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod mirrored;
mod mirroring;
pub mod namespace_index;
pub mod own_writes;
mod phases;
pub mod plan;
pub mod readers;
pub mod reconcile;
mod reporting;
pub mod secret_index;
mod settings;
pub mod snapshot;
pub mod snapshot_index;
mod snapshot_store;
mod sorted;
pub mod synced;
pub mod verify;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::watch_backoff::WatchBackoff;
use futures::StreamExt as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{GlobalMcpConfig, TenantMcpConfig};
/// `status.active`, read and changed by the same functions as the client reads it with.
pub use crate::config::active;
use crate::mirror::MirrorWriter;
use crate::probe::Prober;
pub use error::Error;
pub use reconcile::{Context, ReconcileTiming, Timings};
pub use settings::{LeaseSettings, Settings};

/// Runs the controller until `shutdown` is cancelled (then it finishes in-flight reconciles and
/// releases the Lease) or leadership is lost (an error: the process should exit and restart).
/// `timings`, when set, collects per-reconcile timings (benchmarks).
pub async fn run(
    client: Client,
    settings: Settings,
    mirror: Option<MirrorWriter>,
    shutdown: CancellationToken,
    timings: Option<Timings>,
) -> Result<(), Error> {
    crate::probe::install_crypto_provider();
    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(http::Health::default());
    if let Some(addr) = settings.listen {
        http::serve(addr, metrics.clone(), health.clone(), shutdown.clone()).await?;
    }

    // Stand by until this replica holds the Lease.
    let (lease, leadership) = lease_lock(&client, &settings);
    let lost = CancellationToken::new();
    if let (Some(lock), Some(l)) = (&lease, &settings.lease) {
        health.ready.store(true, Ordering::SeqCst);
        if !stand_by(lock, l, &settings.identity, &leadership, &shutdown).await {
            return Ok(());
        }
        info!(identity = %settings.identity, "leading");
        health.leading.store(true, Ordering::SeqCst);
        keep_renewing(
            lock.clone(),
            l.duration,
            leadership.clone(),
            lost.clone(),
            shutdown.clone(),
        );
    }

    let (ctx, writers, requeue_rx) =
        context(&client, &settings, metrics, mirror, timings, leadership);
    let synced = ctx.synced.clone();
    let configs = ctx.configs.clone();
    let Writers {
        configs: configs_writer,
        globals: globals_writer,
    } = writers;
    let config_stream = config_stream(&client, configs_writer, &ctx, &synced);
    let global_stream = global_stream(&client, globals_writer, &synced);
    let namespace_stream = namespace_stream(&client, &ctx, &synced);
    let secret_stream = secret_stream(&client, &ctx);

    let all = configs.clone();
    let in_namespace = ctx.clone();
    let index_ctx = ctx.clone();
    // Ready once the caches have listed: a replica that only stands by is ready at once.
    let (ready_flag, ready_synced) = (health.clone(), synced.clone());
    tokio::spawn(async move {
        ready_synced.wait().await;
        ready_flag.ready.store(true, Ordering::SeqCst);
    });
    let (stop, stop_lost) = (shutdown.clone(), lost.clone());
    Controller::for_stream(config_stream, configs)
        .with_config(controller::Config::default().concurrency(settings.reconcile_concurrency))
        // The Controller backs off its merged trigger stream on any watch's error, pausing
        // every trigger; with kube-runtime's default (30 s cap) an API restart stalled all
        // reconciles for minutes (each watch's first answer after it is 410 Gone).
        .trigger_backoff(WatchBackoff::capped(crate::watch_backoff::CONTROLLER_CAP))
        .watches_stream(global_stream, move |_global: GlobalMcpConfig| {
            all.state()
                .iter()
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches_stream(namespace_stream, move |ns: PartialObjectMeta<Namespace>| {
            in_namespace.claims.in_namespace(&ns.name_any())
        })
        .watches_stream(secret_stream, move |secret: PartialObjectMeta<Secret>| {
            configs_looking_at(&index_ctx, &secret)
        })
        .reconcile_on(tokio_stream_from(requeue_rx))
        .graceful_shutdown_on(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = stop_lost.cancelled() => {}
            }
        })
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|result| {
            // Reconcile failures are counted and retried by error_policy; anything else (an
            // object missing from the store, a watch or queue failure) would otherwise vanish.
            if let Err(e) = result
                && !matches!(e, controller::Error::ReconcilerFailed(..))
            {
                warn!("controller: {e}");
            }
            std::future::ready(())
        })
        .await;

    health.leading.store(false, Ordering::SeqCst);
    match &lease {
        Some(_) if lost.is_cancelled() => Err(Error::LostLeadership),
        Some(lock) => {
            release(lock).await;
            Ok(())
        }
        None => Ok(()),
    }
}

/// Gives the Lease up, so another replica takes over at once instead of after it expires.
async fn release(lock: &leader::LeaseLock) {
    if let Err(e) = lock.release().await {
        warn!("releasing the Lease: {e}");
    }
    info!("released the Lease");
}

/// The writers of the controller's caches, for the watches that fill them.
struct Writers {
    configs: reflector::store::Writer<TenantMcpConfig>,
    globals: reflector::store::Writer<GlobalMcpConfig>,
}

/// The reconcile [`Context`] with empty caches: the writers that fill them, and the receiving
/// end of its requeue channel.
fn context(
    client: &Client,
    settings: &Settings,
    metrics: Arc<metrics::Metrics>,
    mirror: Option<MirrorWriter>,
    timings: Option<Timings>,
    leadership: Arc<leader::Leadership>,
) -> (
    Arc<Context>,
    Writers,
    mpsc::UnboundedReceiver<ObjectRef<TenantMcpConfig>>,
) {
    let (configs, configs_writer) = reflector::store::<TenantMcpConfig>();
    let (globals, globals_writer) = reflector::store::<GlobalMcpConfig>();
    let (requeue_tx, requeue_rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: reconcile::MANAGER.into(),
                instance: Some(settings.identity.clone()),
            },
        ),
        metrics,
        prober: Prober::with_lookup(settings.probe_concurrency, settings.lookup.clone()),
        mirror,
        configs,
        globals,
        namespaces: namespace_index::NamespaceIndex::default(),
        synced: Arc::new(synced::Synced::default()),
        secret_index: secret_index::SecretIndex::default(),
        snapshots: snapshot_index::SnapshotIndex::default(),
        claims: claim_index::ClaimIndex::default(),
        requeue: requeue_tx,
        failures: Default::default(),
        status_written: Default::default(),
        readers_granted: Default::default(),
        timings,
        leadership,
        settings: settings.clone(),
    });
    let writers = Writers {
        configs: configs_writer,
        globals: globals_writer,
    };
    (ctx, writers, requeue_rx)
}

/// The configs that must look again when `secret` changed: those that read it, and the owner
/// of a snapshot.
fn configs_looking_at(
    ctx: &Context,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<TenantMcpConfig>> {
    let ns = secret.namespace().unwrap_or_default();
    let mut refs: Vec<ObjectRef<TenantMcpConfig>> = ctx
        .secret_index
        .readers(&ns, &secret.name_any())
        .into_iter()
        .map(|name| ObjectRef::new(&name).within(&ns))
        .collect();
    for owner in secret.owner_references() {
        if owner.kind == "TenantMcpConfig" && owner.api_version.starts_with("tenantmcp.dev/") {
            refs.push(ObjectRef::new(&owner.name).within(&ns));
        }
    }
    refs
}

/// The Lease lock of `settings.lease` (none without leader election), and the fence that
/// every write checks.
fn lease_lock(
    client: &Client,
    settings: &Settings,
) -> (Option<Arc<leader::LeaseLock>>, Arc<leader::Leadership>) {
    let lease = settings.lease.as_ref().map(|l| {
        Arc::new(leader::LeaseLock::new(
            Api::<Lease>::namespaced(client.clone(), &l.namespace),
            &l.name,
            &settings.identity,
            l.duration,
        ))
    });
    let leadership = Arc::new(if lease.is_some() {
        leader::Leadership::elected()
    } else {
        leader::Leadership::unelected()
    });
    (lease, leadership)
}

/// Waits until this replica holds the Lease (true), or until `shutdown` (false).
async fn stand_by(
    lock: &leader::LeaseLock,
    lease: &LeaseSettings,
    identity: &str,
    leadership: &leader::Leadership,
    shutdown: &CancellationToken,
) -> bool {
    let mut announced = None;
    loop {
        let started = tokio::time::Instant::now();
        match lock.try_acquire_or_renew().await {
            Ok(leader::Attempt::Leading) => {
                leadership.renewed(started, lease.duration);
                return true;
            }
            Ok(leader::Attempt::Following { holder }) => {
                if announced.as_ref() != Some(&holder) {
                    info!(%holder, %identity, "standing by: another replica holds the Lease");
                    announced = Some(holder);
                }
            }
            Err(e) => warn!("leader election: {e}"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(lease.duration / 3) => {}
        }
    }
}

/// Renews the Lease every third of its `duration` until `stop`; when another replica took it,
/// or renewals failed for so long that it could expire under us, lapses the fence and
/// cancels `lost`.
fn keep_renewing(
    lock: Arc<leader::LeaseLock>,
    duration: std::time::Duration,
    fence: Arc<leader::Leadership>,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let every = duration / 3;
    tokio::spawn(async move {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let started = tokio::time::Instant::now();
            match lock.try_acquire_or_renew().await {
                Ok(leader::Attempt::Leading) => {
                    fence.renewed(started, duration);
                    last_ok = started;
                }
                Ok(leader::Attempt::Following { holder }) => {
                    warn!(%holder, "lost the Lease");
                    fence.lapse();
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    warn!("renewing the Lease: {e}");
                    // Stop before the Lease can expire under us and another replica starts.
                    if last_ok.elapsed() + every >= duration {
                        fence.lapse();
                        lost.cancel();
                        return;
                    }
                }
            }
        }
    });
}

/// How the watches of many objects list them: in pages of 100, not kube-runtime's 500. A page is
/// read whole and turned into objects at once, before each is cut down to what the caches keep:
/// at 10,000 configs pages of 500 full configs were a few MB of short-lived memory, which the
/// allocator keeps.
fn list_pages() -> watcher::Config {
    watcher::Config::default().page_size(100)
}

/// The TenantMcpConfig watch: fills the config cache and the claim index, marks the first
/// list, and yields the configs to reconcile (not for the controller's own status writes).
fn config_stream(
    client: &Client,
    writer: reflector::store::Writer<TenantMcpConfig>,
    ctx: &Arc<Context>,
    synced: &Arc<synced::Synced>,
) -> impl futures::Stream<Item = Result<TenantMcpConfig, watcher::Error>> + Send + use<> {
    let ctx = ctx.clone();
    watcher(Api::<TenantMcpConfig>::all(client.clone()), list_pages())
        .backoff(WatchBackoff::capped(crate::watch_backoff::CONTROLLER_CAP))
        .modify(crate::api::slim::config)
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(event) = event {
                ctx.claims.observe(event);
            }
        })
        .inspect(synced::mark_on_init_done(synced, synced::Cache::Configs))
        .applied_objects()
        // Only the controller writes status: its own status writes trigger no reconcile.
        .predicate_filter(reconcile::not_status, Default::default())
}

/// The GlobalMcpConfig watch: fills its cache; any change reconciles every config.
fn global_stream(
    client: &Client,
    writer: reflector::store::Writer<GlobalMcpConfig>,
    synced: &Arc<synced::Synced>,
) -> impl futures::Stream<Item = Result<GlobalMcpConfig, watcher::Error>> + Send + use<> {
    watcher(
        Api::<GlobalMcpConfig>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::capped(crate::watch_backoff::CONTROLLER_CAP))
    .modify(crate::api::slim::global)
    .reflect(writer)
    .inspect(synced::mark_on_init_done(synced, synced::Cache::Globals))
    .touched_objects()
}

/// The namespace metadata watch (the tenant binding label): fills the namespace index.
fn namespace_stream(
    client: &Client,
    ctx: &Arc<Context>,
    synced: &Arc<synced::Synced>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<Namespace>, watcher::Error>> + Send + use<>
{
    let index = ctx.clone();
    watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        list_pages(),
    )
    .backoff(WatchBackoff::capped(crate::watch_backoff::CONTROLLER_CAP))
    .inspect(move |event| {
        if let Ok(event) = event {
            index.namespaces.observe(event);
        }
    })
    .inspect(synced::mark_on_init_done(synced, synced::Cache::Namespaces))
    .touched_objects()
}

/// Every Secret's metadata (never its data): a change reconciles the configs that read the
/// Secret or own the snapshot; the snapshot index keeps what the cleanup needs and drops the
/// events of the controller's own snapshot writes.
fn secret_stream(
    client: &Client,
    ctx: &Arc<Context>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + use<> {
    let snapshot_index = ctx.clone();
    watcher(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        list_pages(),
    )
    .backoff(WatchBackoff::capped(crate::watch_backoff::CONTROLLER_CAP))
    .flat_map(move |event| {
        let news: Vec<Result<PartialObjectMeta<Secret>, watcher::Error>> = match event {
            Ok(event) => snapshot_index
                .snapshots
                .observe(&event)
                .into_iter()
                .map(Ok)
                .collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(news)
    })
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod plan_tests;
