//! Benchmark of the client library. Not a test: it measures and writes the results to
//! `docs/benchmarks.md`.
//!
//! - memory (directory source): RSS with 10,000 tenant configs loaded, then with 1,000
//!   tenants' clients cached;
//! - churn: 100,000 cycles of a tenant taken into a full cache (1,000 tenants), used and
//!   another evicted; RSS at each quarter after warm-up, growth in bytes per cycle;
//! - memory (Kubernetes source): the same 10,000 tenants on a real control plane, the client in a
//!   child process ([`kube_source`]); then lookups while statuses are edited;
//! - propagation: a config's `status.active` changed on the control plane until
//!   `TenantClients` hands out the client of the new endpoint;
//! - hot: lookups of cached pools, for tenants on their own servers and on the global ones;
//! - cold: building a tenant's three clients against two baselines without a cache: building
//!   them per request with one shared connector and pool (what code without this library
//!   would do), and with a new connector each time;
//! - connection set-up on real servers, cold and warm ([`setup`]).

// The allocator is the application's choice; `--features mimalloc` measures the library
// under mimalloc instead of the system's (glibc) malloc.
// Either is wrapped by `cap` to count live heap bytes (RSS also holds what the allocator
// keeps after a free, so the memory table reports both; an atomic add per allocation, and the
// lookups allocate nothing).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);
#[cfg(not(feature = "mimalloc"))]
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

mod kube_source;
mod manifests;
mod setup;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::FutureExt as _;
use tenant_mcp::client::build::Shared;
use tenant_mcp::client::routes::Origin;
use tenant_mcp::client::{ClientSettings, TenantClients};
use tenant_mcp::config::candidate::ServerKey;
use tenant_mcp_e2e::bench::{self, measured_line, quantile, us};

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Tenants cached for the hot lookups, and on the control plane.
    #[arg(long, env = "BENCH_TENANTS", default_value_t = 10_000)]
    tenants: usize,
    /// Lookups per thread.
    #[arg(long, env = "BENCH_LOOKUPS", default_value_t = 1_000_000)]
    lookups: usize,
    /// Tenants with cached clients for the memory measurement and the churn's cache size.
    #[arg(long, env = "BENCH_CACHED", default_value_t = 1_000)]
    cached: usize,
    /// Churn cycles.
    #[arg(long, env = "BENCH_CHURN", default_value_t = 100_000)]
    churn: usize,
    /// Status changes timed for propagation.
    #[arg(long, env = "BENCH_CHANGES", default_value_t = 100)]
    changes: usize,
    /// Tenants whose first connections are timed on real servers.
    #[arg(long, env = "BENCH_SETUP_TENANTS", default_value_t = 200)]
    setup_tenants: usize,
    /// Milliseconds between status edits during the edited lookups.
    #[arg(long, env = "BENCH_EDIT_EVERY_MS", default_value_t = 2)]
    edit_every_ms: u64,
    /// Measure the hot lookups only, print them and write nothing (for profiling).
    #[arg(long, env = "BENCH_ONLY_LOOKUPS")]
    only_lookups: bool,
    /// Measure memory only (both sources), print it and write nothing.
    #[arg(long, env = "BENCH_ONLY_MEMORY")]
    only_memory: bool,
    /// Populate the control plane, print its kubeconfig and hold it until Ctrl-C (for
    /// profiling `--kube-memory-child` runs against one cluster); then measure memory as usual.
    #[arg(long, env = "BENCH_HOLD")]
    hold: bool,
    /// Internal: run as the Kubernetes-source memory child against this kubeconfig.
    #[arg(long, env = "BENCH_KUBE_MEMORY_CHILD", hide = true)]
    kube_memory_child: Option<std::path::PathBuf>,
    /// Where to write the results (a section of this Markdown file is replaced).
    #[arg(long, env = "BENCH_OUTPUT", default_value = "docs/benchmarks.md")]
    output: std::path::PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tenant_mcp_e2e::stack::install_crypto_provider();
    if let Some(kubeconfig) = &args.kube_memory_child {
        return kube_source::memory_child(kubeconfig).await;
    }
    let dir = tempfile::tempdir()?;
    manifests::write(dir.path(), "t", args.tenants, &manifests::Servers::unused())?;
    let names: Vec<String> = (0..args.tenants)
        .map(|i| manifests::tenant("t", i))
        .collect();

    if args.only_lookups {
        let (clients, _, hot, hot_fallback) = hot_lookups(dir.path(), &names, &args).await?;
        clients.shutdown().await;
        print!(
            "{}{}",
            timing_row("hot lookup, own servers", &hot),
            timing_row("hot lookup, fallback", &hot_fallback)
        );
        return Ok(());
    }
    // Memory and churn first, while the process holds nothing else.
    eprintln!("memory and churn (directory source)");
    let memory = memory_and_churn(dir.path(), &names, args.cached, args.churn).await?;
    eprintln!("{} tenants on a real control plane", args.tenants);
    let populated = kube_source::populate(args.tenants).await?;
    if args.hold {
        eprintln!(
            "holding: KUBECONFIG={} BENCH_SAMPLE={} (Ctrl-C ends)",
            populated.cluster.kubeconfig().display(),
            populated.sample()
        );
        tokio::signal::ctrl_c().await?;
    }
    let kube_memory = kube_source::measure_memory(&populated).await?;
    if args.only_memory {
        println!("{}", render_memory(&memory, args.tenants, &kube_memory));
        return Ok(());
    }
    eprintln!("lookups while statuses are edited");
    let during_edits = kube_source::lookups_during_edits(
        &populated,
        args.lookups,
        Duration::from_millis(args.edit_every_ms),
    )
    .await?;
    drop(populated);
    eprintln!("propagation");
    let propagation = propagation(args.changes).await?;

    let (clients, settings, hot, hot_fallback) = hot_lookups(dir.path(), &names, &args).await?;
    // Each cached Postgres pool holds a descriptor (its egress relay's socket): close these
    // 10,000 before the cold run builds 10,000 more. The routes stay for the baselines.
    clients.shutdown().await;

    // Cold: a fresh tenant each time (every lookup builds), vs no cache at all.
    eprintln!("cold builds and baselines");
    let cold_n = 20_000.min(args.tenants * 2);
    let cold_clients = TenantClients::from_directory(dir.path(), settings)?;
    let mut cold = Vec::with_capacity(cold_n);
    for name in names.iter().take(cold_n) {
        let started = Instant::now();
        cold_clients.postgres(name).await?;
        cold_clients.s3(name).await?;
        cold_clients.ai_mcp(name).await?;
        cold.push(started.elapsed());
    }
    cold.sort_unstable();
    cold_clients.shutdown().await;
    // Fair baseline: what code without this library would do, resolving and building the
    // clients per request but sharing one HTTPS connector and parent pool.
    let shared = Shared::new(100).map_err(anyhow::Error::msg)?;
    let per_request = per_request_builds(&clients, &names, cold.len(), || Ok(shared.clone()))?;
    // The same with a new connector and pool every time (the earlier, unfair baseline).
    let new_connector = per_request_builds(&clients, &names, cold.len(), || {
        Shared::new(100).map_err(anyhow::Error::msg)
    })?;

    eprintln!("connection set-up on real servers");
    let mut setup = setup::measure(args.setup_tenants).await?;

    let mut report = render(
        args.tenants,
        &Lookups {
            hot: &hot,
            hot_fallback: &hot_fallback,
            cold: &cold,
            per_request: &per_request,
            new_connector: &new_connector,
        },
    );
    report.push_str(&render_edits(
        &during_edits,
        args.tenants,
        args.edit_every_ms,
    ));
    report.push_str(&setup::render(&mut setup));
    report.push_str(&render_memory(&memory, args.tenants, &kube_memory));
    report.push_str(&render_propagation(&propagation));
    println!("{report}");
    write_section(&args.output, &report)?;
    Ok(())
}

/// xorshift: a cheap, deterministic pseudo-random order of tenants.
pub struct Picker(u64);

impl Picker {
    /// The order of lookup thread `seed` (a different one per seed).
    pub fn for_thread(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The order that starts from `state` (not zero).
    pub fn from_state(state: u64) -> Self {
        Self(state)
    }

    /// The next tenant of `names`.
    pub fn pick<'a>(&mut self, names: &'a [String]) -> &'a str {
        let x = &mut self.0;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        &names[usize::try_from(*x % names.len() as u64).unwrap_or(0)]
    }
}

/// `lookups` timed calls of `lookup` on tenants of `names` in a [`Picker`] order, on each of
/// two OS threads; all the timings, sorted. What `lookup` returns is dropped after its timing.
/// The threads are joined off the runtime's workers, so a lookup may block on the runtime.
async fn two_threads<T, F>(
    names: &[String],
    lookups: usize,
    lookup: F,
) -> anyhow::Result<Vec<Duration>>
where
    T: Send + 'static,
    F: Fn(&str) -> anyhow::Result<T> + Clone + Send + 'static,
{
    let mut threads = Vec::new();
    for seed in 0..2u64 {
        let (names, lookup) = (names.to_vec(), lookup.clone());
        threads.push(std::thread::spawn(move || {
            let mut picker = Picker::for_thread(seed);
            let mut out = Vec::with_capacity(lookups);
            for _ in 0..lookups {
                let name = picker.pick(&names);
                let started = Instant::now();
                let found = lookup(name)?;
                out.push(started.elapsed());
                drop(found);
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut all = Vec::new();
    for t in threads {
        all.extend(
            tokio::task::spawn_blocking(move || t.join())
                .await?
                .map_err(|_| anyhow::anyhow!("a lookup thread panicked"))??,
        );
    }
    all.sort_unstable();
    Ok(all)
}

/// Hot lookups: a client with every tenant's pool built (and one per tenant without a config:
/// the global pool), then [`two_threads`] of cached lookups of own tenants and of fallback
/// ones. Returns the client, its settings and both timings.
async fn hot_lookups(
    dir: &std::path::Path,
    names: &[String],
    args: &Args,
) -> anyhow::Result<(TenantClients, ClientSettings, Vec<Duration>, Vec<Duration>)> {
    // Room for every tenant and no idle eviction during the run.
    let settings = ClientSettings {
        max_cached_tenants: args.tenants * 3,
        idle_ttl: Duration::from_secs(3600),
        ..ClientSettings::default()
    };
    let clients = TenantClients::from_directory(dir, settings.clone())?;
    // Tenants without a config: served by the global servers.
    let fallback: Vec<String> = (0..args.tenants)
        .map(|i| manifests::tenant("f", i))
        .collect();
    // Warm: one pool per tenant (lazy: no connection is opened).
    for name in names.iter().chain(&fallback) {
        clients.postgres(name).await.context("warming")?;
    }
    // Tenants on the global servers share the global clients: only the own ones count.
    anyhow::ensure!(clients.cached_tenants() == args.tenants);
    anyhow::ensure!(
        clients.endpoint(&fallback[0], &ServerKey::Postgres)?.origin == Origin::Global,
        "a tenant without a config is not on the global server"
    );
    eprintln!("hot lookups");
    let hot = two_threads(names, args.lookups, cached_pool(&clients)).await?;
    let hot_fallback = two_threads(&fallback, args.lookups, cached_pool(&clients)).await?;
    Ok((clients, settings, hot, hot_fallback))
}

/// A lookup of a cached pool that must not wait: the hot path.
fn cached_pool(
    clients: &TenantClients,
) -> impl Fn(&str) -> anyhow::Result<tenant_mcp::client::TenantPool> + Clone + Send + 'static {
    let clients = clients.clone();
    move |name| {
        Ok(clients
            .postgres(name)
            .now_or_never()
            .context("a cached lookup awaited")??)
    }
}

/// A table row of timings: samples, p50, p99, p99.9.
fn timing_row(label: &str, s: &[Duration]) -> String {
    format!(
        "| {label} | {} | {} | {} | {} |\n",
        s.len(),
        us(quantile(s, 0.5)),
        us(quantile(s, 0.99)),
        us(quantile(s, 0.999))
    )
}

/// Resolving and building a tenant's three clients on every request, with the connector and
/// pool `shared` gives, for the first `n` of `names`.
fn per_request_builds(
    clients: &TenantClients,
    names: &[String],
    n: usize,
    shared: impl Fn() -> anyhow::Result<Shared>,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for name in names.iter().take(n) {
        let started = Instant::now();
        let fresh = shared()?;
        for key in [ServerKey::Postgres, ServerKey::Minio, ServerKey::AiMcp] {
            let endpoint = clients.endpoint(name, &key)?;
            tenant_mcp::client::build::build(&fresh, &key, &endpoint, Some(name))
                .map_err(anyhow::Error::msg)?;
        }
        out.push(started.elapsed());
    }
    out.sort_unstable();
    Ok(out)
}

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`).
fn rss() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("statm has no resident field")?
        .parse()?;
    Ok(pages * 4096)
}

/// Resident set size and live heap bytes at one moment.
#[derive(Clone, Copy, Debug)]
struct Footprint {
    rss: u64,
    live: u64,
}

/// This process's [`Footprint`] now.
fn footprint() -> anyhow::Result<Footprint> {
    Ok(Footprint {
        rss: rss()?,
        live: ALLOCATOR.allocated() as u64,
    })
}

/// RSS at each step of the memory and churn measurements.
struct Memory {
    start: Footprint,
    configs: Footprint,
    cached: Footprint,
    cached_tenants: usize,
    churn_cycles: usize,
    warm_up: usize,
    churn_warm: u64,
    /// RSS after 25 %, 50 %, 75 % and 100 % of the cycles after warm-up.
    churn_quarters: [u64; 4],
    churn_seconds: f64,
}

async fn memory_and_churn(
    dir: &std::path::Path,
    names: &[String],
    cached: usize,
    churn: usize,
) -> anyhow::Result<Memory> {
    let start = footprint()?;
    let settings = ClientSettings {
        max_cached_tenants: cached,
        idle_ttl: Duration::from_secs(3600),
        ..ClientSettings::default()
    };
    let clients = TenantClients::from_directory(dir, settings)?;
    let configs = footprint()?;
    let use_tenant = |name: &str| {
        let clients = clients.clone();
        let name = name.to_owned();
        async move {
            clients.postgres(&name).await?;
            clients.s3(&name).await?;
            clients.ai_mcp(&name).await?;
            Ok::<_, anyhow::Error>(())
        }
    };
    for name in names.iter().take(cached) {
        use_tenant(name).await?;
    }
    let cached_rss = footprint()?;
    let cached_tenants = clients.cached_tenants();
    // Churn: every cycle takes a tenant not cached into the full cache (building its three
    // clients) and evicts the least recently used one (closing them).
    let warm_up = churn / 10;
    let measured = churn - warm_up;
    let mut churn_warm = 0;
    let mut churn_quarters = [0; 4];
    let started = Instant::now();
    for cycle in 0..churn {
        use_tenant(&names[(cached + cycle) % names.len()]).await?;
        let done = cycle + 1;
        let quarter = (done > warm_up && ((done - warm_up) * 4).is_multiple_of(measured.max(1)))
            .then(|| (done - warm_up) * 4 / measured.max(1));
        if done == warm_up || quarter.is_some() {
            // Let the background closes of evicted clients run.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = rss()?;
            match quarter {
                Some(q @ 1..=4) => churn_quarters[q - 1] = now,
                _ => churn_warm = now,
            }
        }
    }
    let churn_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        clients.cached_tenants() <= cached,
        "the cache outgrew its bound"
    );
    clients.shutdown().await;
    Ok(Memory {
        start,
        configs,
        cached: cached_rss,
        cached_tenants,
        churn_cycles: churn,
        warm_up,
        churn_warm,
        churn_quarters,
        churn_seconds,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn render_memory(m: &Memory, tenants: usize, kube: &kube_source::ChildMemory) -> String {
    let kib_each =
        |from: u64, to: u64, n: usize| to.saturating_sub(from) as f64 / n.max(1) as f64 / 1024.0;
    let row = |what: String, at: Footprint, from: Option<(Footprint, usize, &str)>| match from {
        None => format!("| {what} | {} | {} | | |\n", mib(at.rss), mib(at.live)),
        Some((from, n, unit)) => format!(
            "| {what} | {} | {} | {:.1} KiB {unit} | {:.1} KiB {unit} |\n",
            mib(at.rss),
            mib(at.live),
            kib_each(from.rss, at.rss, n),
            kib_each(from.live, at.live, n),
        ),
    };
    let end = m.churn_quarters[3];
    let measured = (m.churn_cycles - m.warm_up).max(1);
    let per_cycle = (end as f64 - m.churn_warm as f64) / measured as f64;
    let growth = (end as f64 - m.churn_warm as f64) / m.churn_warm.max(1) as f64 * 100.0;
    let quarters: Vec<String> = m.churn_quarters.iter().map(|q| mib(*q)).collect();
    let mut table = String::from(
        "\n| memory | RSS | live heap | RSS per tenant | live heap per tenant |\n|---|---|---|---|---|\n",
    );
    table.push_str(&row(
        "directory source: process before loading configs (baseline)".into(),
        m.start,
        None,
    ));
    table.push_str(&row(
        format!("directory source: {tenants} tenant configs loaded, nothing cached"),
        m.configs,
        Some((m.start, tenants, "per config")),
    ));
    table.push_str(&row(
        format!(
            "and {} tenants with 3 cached clients each",
            m.cached_tenants
        ),
        m.cached,
        Some((m.configs, m.cached_tenants, "per cached tenant")),
    ));
    table.push_str(&row(
        "Kubernetes source (child process): before the client starts (baseline)".into(),
        kube.before,
        None,
    ));
    table.push_str(&row(
        format!("Kubernetes source: {tenants} configs, namespaces and snapshot Secrets in sync"),
        kube.loaded,
        Some((kube.before, tenants, "per config")),
    ));
    format!(
        "{table}\nChurn: {} cycles (a tenant taken into the full cache of {}, its three clients built, the \
least recently used tenant evicted and its clients closed) in {:.1} s ({:.0} cycles/s). RSS \
after {} warm-up cycles {}; after 25 %, 50 %, 75 % and 100 % of the remaining cycles {}: \
{per_cycle:+.1} bytes per cycle, {growth:+.2} % in all (target under 5 %).\n",
        m.churn_cycles,
        m.cached_tenants,
        m.churn_seconds,
        m.churn_cycles as f64 / m.churn_seconds.max(1e-9),
        m.warm_up,
        mib(m.churn_warm),
        quarters.join(", "),
    )
}

fn render_edits(e: &kube_source::DuringEdits, tenants: usize, every_ms: u64) -> String {
    let mut out = format!(
        "\nLookups while configs change (Kubernetes source, {tenants} tenants on a real control plane (kube-apiserver v1.36) \
in this process, every pool cached; each call driven to completion with `block_on` from two OS \
threads). Edited: one task patches a random tenant's `status.active` every {every_ms} ms \
({} edits landed, {:.0}/s); each edit moves the routes generation, so every tenant's next \
lookup checks its route again instead of taking the confirmed fast path, and the edited \
tenant's next lookup builds a new pool.\n\n\
| lookups | samples | p50 | p99 | p99.9 |\n|---|---|---|---|---|\n",
        e.edits,
        e.edits as f64 / e.seconds.max(1e-9),
    );
    out.push_str(&timing_row("no edits", &e.quiet));
    out.push_str(&timing_row("while statuses are edited", &e.edited));
    out
}

/// Timed status changes: the config's active Postgres database renamed on the control plane,
/// until `TenantClients` resolves and builds the client of the new one.
async fn propagation(changes: usize) -> anyhow::Result<Vec<Duration>> {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use tenant_mcp::api::TenantMcpConfig;
    use tenant_mcp::config::candidate::ServerKey;

    let cluster = tenant_mcp_e2e::harness::Cluster::start().await?;
    cluster.install_crds().await?;
    let client = cluster.client();
    kube_source::allow_loopback(&client).await?;
    let ns = "bench-propagation";
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": ns, "labels": {"tenantmcp.dev/tenant": "acme"}}
            }))?,
        )
        .await?;
    let configs: Api<TenantMcpConfig> = Api::namespaced(client.clone(), ns);
    let spec = |db: &str| {
        serde_json::json!({"host": "127.0.0.1", "database": db, "sslMode": "disable",
            "credentialsSecretRef": {"name": "creds"}})
    };
    let created = configs
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                "metadata": {"name": "acme", "namespace": ns},
                "spec": {"tenantId": "acme", "servers": {"postgres": spec("db0")}}
            }))?,
        )
        .await?;
    // The snapshot as the controller writes it: typed, owned by the config (the client uses
    // no other).
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "snap", "namespace": ns,
                    "labels": {"app.kubernetes.io/managed-by": "tenant-mcp"},
                    "ownerReferences": [{"apiVersion": "tenantmcp.dev/v1alpha1",
                        "kind": "TenantMcpConfig", "name": "acme",
                        "uid": created.metadata.uid, "controller": true}]},
                "type": tenant_mcp::api::SNAPSHOT_TYPE,
                "stringData": {"username": "u", "password": "p"}
            }))?,
        )
        .await?;
    let status = |db: &str| {
        serde_json::json!({"status": {"active": {"postgres": {
            "spec": spec(db), "snapshotSecret": "snap", "specHash": format!("hash-{db}"),
            "promotedAt": jiff::Timestamp::now().to_string()
        }}}})
    };
    configs
        .patch_status(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(status("db0")),
        )
        .await?;
    let clients = TenantClients::from_kube(client, ClientSettings::default()).await?;
    let serves = |db: &str| {
        clients
            .endpoint("acme", &ServerKey::Postgres)
            .is_ok_and(|e| e.describe().ends_with(&format!("/{db}")))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !serves("db0") {
        anyhow::ensure!(Instant::now() < deadline, "the first status never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut times = Vec::with_capacity(changes);
    for i in 1..=changes {
        let db = format!("db{i}");
        let before = clients.postgres("acme").await?;
        let started = Instant::now();
        configs
            .patch_status("acme", &PatchParams::default(), &Patch::Merge(status(&db)))
            .await?;
        while !serves(&db) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "change {i} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let after = clients.postgres("acme").await?;
        times.push(started.elapsed());
        anyhow::ensure!(
            after.connect_options().get_database() == Some(db.as_str())
                && before.connect_options().get_database() != Some(db.as_str()),
            "change {i}: the new pool is not the new database's (before {:?}, after {:?})",
            before.connect_options().get_database(),
            after.connect_options().get_database()
        );
    }
    clients.shutdown().await;
    times.sort_unstable();
    Ok(times)
}

fn render_propagation(times: &[Duration]) -> String {
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    format!(
        "\nPropagation ({} status changes on a real kube-apiserver, each timed from the PATCH until \
`postgres(tenant)` returns the new database's pool; includes the PATCH round trip and a 1 ms \
poll): p50 {}, p99 {}, max {} (target p99 under 1 s).\n",
        times.len(),
        ms(quantile(times, 0.5)),
        ms(quantile(times, 0.99)),
        ms(times.last().copied().unwrap_or_default()),
    )
}

/// The lookup and build timings.
struct Lookups<'a> {
    hot: &'a [Duration],
    hot_fallback: &'a [Duration],
    cold: &'a [Duration],
    per_request: &'a [Duration],
    new_connector: &'a [Duration],
}

fn render(tenants: usize, l: &Lookups<'_>) -> String {
    let mut out =
        String::from("| measurement | samples | p50 | p99 | p99.9 |\n|---|---|---|---|---|\n");
    out.push_str(&timing_row(
        &format!("hot lookup, {tenants} tenants on their own servers, 2 threads"),
        l.hot,
    ));
    out.push_str(&timing_row(
        &format!("hot lookup, {tenants} tenants on the global servers (fallback), 2 threads"),
        l.hot_fallback,
    ));
    out.push_str(&timing_row(
        "cold build of a tenant's three clients (cache miss)",
        l.cold,
    ));
    out.push_str(&timing_row(
        "baseline: resolve and build the three clients per request, one shared connector and pool",
        l.per_request,
    ));
    out.push_str(&timing_row(
        "the same with a new connector and pool per request",
        l.new_connector,
    ));
    let p99 = |s: &[Duration]| quantile(s, 0.99).as_secs_f64();
    out.push_str(&format!(
        "\nRatios (p99): hot lookup vs per-request build with a shared connector ×{:.4}; fallback \
hot lookup vs own ×{:.2}; cold build vs per-request build with a shared connector ×{:.2}.\n",
        p99(l.hot) / p99(l.per_request).max(1e-12),
        p99(l.hot_fallback) / p99(l.hot).max(1e-12),
        p99(l.cold) / p99(l.per_request).max(1e-12),
    ));
    out
}

fn write_section(path: &std::path::Path, table: &str) -> anyhow::Result<()> {
    let body = format!(
        "{}\n\n\
Method (`e2e/src/bin/bench-client/`): a directory source with N tenants, each in a namespace \
bound to it and declaring its own Postgres, S3 and AI MCP server, plus global servers for \
tenants without a config (loopback addresses; nothing connects except in the connection \
set-up table: pools are lazy, MCP sessions open on first call). Memory, churn, the Kubernetes \
source and propagation run first, then the lookups. Hot: every tenant's pool is built first, then \
two OS threads each run the given number of `postgres(tenant)` lookups of pseudo-random tenants, \
timing each call (timer overhead included, ~20–40 ns). Cold: the three clients of a tenant not \
cached yet (routing, cache insert, building). Baselines, in the same run: resolving and building \
the three clients on every request without a cache — with one HTTPS connector and parent pool \
shared by all requests, as code without this library would reasonably do, and with new ones \
per request. The Kubernetes source's memory is the client alone in a child process, synced \
with N configs (each with a `kubectl apply` annotation and a promoted status), their labelled \
namespaces and N snapshot Secrets served by a real control plane (etcd, kube-apiserver, kube-controller-manager v1.36) the parent started.\n\n{table}",
        measured_line("cargo run --release -p tenant-mcp-e2e --bin bench-client")
    );
    Ok(bench::write_section(
        path,
        "bench-client",
        "Client library: lookups, builds, connections and memory",
        &body,
    )?)
}
