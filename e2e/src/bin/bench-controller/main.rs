//! Benchmark of the controller reconciling many tenants on the local stack (a real control
//! plane — etcd, kube-apiserver, kube-controller-manager — and a real Postgres as both the
//! tenants' database and the mirror). Not a test: it measures and writes the results to
//! `docs/benchmarks.md`.
//!
//! Two runs in one process, same machine, same moment:
//! - baseline: N configs that declare no server (finalizer, gate, status write: the
//!   controller's fixed cost per tenant);
//! - full: N configs with a Postgres server each (Secret read, probe, snapshot Secret,
//!   encrypted mirror row, status).
//!
//! For each: configs per second from controller start until all N are `Ready=True`, and
//! p50/p99 of the time one reconcile took minus the wall time of its probes, and the API
//! requests the run cost per tenant, by verb and resource (the API server's own
//! `apiserver_request_total`, before and after). Both runs are repeated (`--runs`, 5 by
//! default) for their spread; then both at 10,000 tenants (`--large`), after which a
//! `tenant-mcp controller` process (the release binary, so `cargo build --release -p
//! tenant-mcp` first) takes over the same 10,000 configs and its RSS is read once it has
//! reconciled them all.

mod memory;

use futures::{StreamExt as _, TryStreamExt as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenant_mcp_e2e::bench::{self, measured_line, ms, quantile};

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::controller::{self, ReconcileTiming, Settings};
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::Postgres;
use tokio_util::sync::CancellationToken;

// Counts live heap bytes for the stores' breakdown ([`memory`]): an atomic add per allocation.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Tenants per run.
    #[arg(long, env = "BENCH_TENANTS", default_value_t = 1000)]
    tenants: usize,
    /// Times each run is repeated.
    #[arg(long, env = "BENCH_RUNS", default_value_t = 5)]
    runs: usize,
    /// Tenants of the large runs (0: none).
    #[arg(long, env = "BENCH_LARGE", default_value_t = 10_000)]
    large: usize,
    /// Also the large full run (with a Postgres server per tenant), not only the baseline.
    #[arg(long, env = "BENCH_LARGE_FULL", default_value_t = true, action = clap::ArgAction::Set)]
    large_full: bool,
    /// Also the large baseline run (no servers), not only the full one.
    #[arg(long, env = "BENCH_LARGE_BASELINE", default_value_t = true, action = clap::ArgAction::Set)]
    large_baseline: bool,
    /// After the large full run, keep its control plane up and print its kubeconfig (for
    /// profiling a controller process by hand); ends on Ctrl-C.
    #[arg(long, env = "BENCH_HOLD")]
    hold: bool,
    /// Only the memory at `--large` configs: one large full run, then each process measured
    /// (three controller runs), written to its own section.
    #[arg(long, env = "BENCH_MEMORY")]
    memory: bool,
    /// Only the memory measurement, on the cluster of this kubeconfig (one `--hold` kept up,
    /// with `--large` configs reconciled); prints it and writes nothing.
    #[arg(long, env = "BENCH_MEMORY_ON")]
    memory_on: Option<std::path::PathBuf>,
    /// Where to write the results (a section of this Markdown file is replaced).
    #[arg(long, env = "BENCH_OUTPUT", default_value = "docs/benchmarks.md")]
    output: std::path::PathBuf,
}

struct RunResult {
    label: &'static str,
    tenants: usize,
    elapsed: Duration,
    reconciles: usize,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    probe_p50: Duration,
    /// RSS of this whole process (controller, its caches, clients) when all were Ready.
    bench_rss: u64,
    /// API requests from controller start until all were Ready, by (verb, resource).
    requests: std::collections::BTreeMap<(String, String), u64>,
    /// Wall time per reconcile phase, over every reconcile that ran the phase, and for the
    /// rest of each reconcile ("finalizer and the rest": the finalizer patch, the wait for
    /// the caches, and every reconcile that only added the finalizer).
    phases: Vec<(&'static str, Vec<Duration>)>,
}

/// Every reconcile's time split by phase.
fn by_phase(timings: &[ReconcileTiming]) -> Vec<(&'static str, Vec<Duration>)> {
    let mut out: Vec<(&'static str, Vec<Duration>)> = Vec::new();
    let mut rest = Vec::with_capacity(timings.len());
    for t in timings {
        let mut accounted = Duration::ZERO;
        for (phase, took) in &t.phases {
            accounted += *took;
            match out.iter_mut().find(|(p, _)| p == phase) {
                Some((_, v)) => v.push(*took),
                None => out.push((phase, vec![*took])),
            }
        }
        rest.push(t.total.saturating_sub(accounted));
    }
    out.push(("finalizer and the rest", rest));
    for (_, v) in &mut out {
        v.sort_unstable();
    }
    out
}

/// Where the reconcile time of `r` went, by phase.
fn render_phases(r: &RunResult) -> String {
    let total: f64 = r
        .phases
        .iter()
        .flat_map(|(_, v)| v.iter())
        .map(Duration::as_secs_f64)
        .sum();
    let mut out = format!(
        "\nWhere the reconcile time of the {}-tenant run went ({}; `probe` is the connection tests' wall time):\n\n\
| phase | reconciles that ran it | p50 | p99 | share of all reconcile time |\n|---|---|---|---|---|\n",
        r.tenants, r.label
    );
    for (phase, v) in &r.phases {
        let sum: f64 = v.iter().map(Duration::as_secs_f64).sum();
        out.push_str(&format!(
            "| {phase} | {} | {} | {} | {:.0} % |\n",
            v.len(),
            ms(quantile(v, 0.5)),
            ms(quantile(v, 0.99)),
            sum / total.max(1e-12) * 100.0
        ));
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tenant_mcp_e2e::bench::start();
    if let Some(kubeconfig) = &args.memory_on {
        let cluster = Cluster::from_kubeconfig(kubeconfig.clone()).await?;
        let m = memory::measure(&cluster, args.large, 3, || ALLOCATOR.allocated()).await?;
        println!("{}", memory::render_memory(&m, args.large));
        for over in memory::over_limit(&m)? {
            eprintln!("over the limit: {over}");
        }
        return Ok(());
    }
    let pg = Postgres::start()?;
    if args.memory {
        eprintln!("memory: {} tenants, postgres true", args.large);
        let (r, m) = run(&pg, args.large, true, true, args.hold).await?;
        let m = m.context("the memory run measured no process")?;
        let body = format!(
            "{}\n\nMethod: a real control plane and Postgres as in the section above; {} tenants \
each with a labelled namespace, a credential Secret and a TenantMcpConfig with a Postgres server, \
reconciled by the controller in this process until all were Ready ({:.1} s: snapshot Secrets, \
mirror rows and statuses written). Then each `tenant-mcp` process the chart runs (the release \
binary, `TENANT_MCP_BIN` or `target/release/tenant-mcp`) is started alone on that cluster and driven \
through its heaviest work there; its memory is read from `/proc/<pid>/status` when done.{}",
            measured_line(
                "cargo run --release -p tenant-mcp-e2e --bin bench-controller -- --memory"
            ),
            r.tenants,
            r.elapsed.as_secs_f64(),
            memory::render_memory(&m, r.tenants)
        );
        println!("{body}");
        bench::write_section(
            &args.output,
            "bench-controller-memory",
            &format!(
                "Memory at {} tenants: the controller, the webhook and the management server",
                r.tenants
            ),
            &body,
        )?;
        let over = memory::over_limit(&m)?;
        anyhow::ensure!(
            over.is_empty(),
            "the chart's default memory limits do not hold what was measured:\n{}",
            over.join("\n")
        );
        return Ok(());
    }
    let mut results = Vec::new();
    for round in 0..args.runs {
        for with_postgres in [false, true] {
            eprintln!(
                "round {}: {} tenants, postgres {with_postgres}",
                round + 1,
                args.tenants
            );
            let (result, _) = run(&pg, args.tenants, with_postgres, false, false).await?;
            results.push(result);
        }
    }
    let mut large = Vec::new();
    if args.large > 0 {
        for with_postgres in [false, true] {
            if (with_postgres && !args.large_full) || (!with_postgres && !args.large_baseline) {
                continue;
            }
            eprintln!(
                "large run: {} tenants, postgres {with_postgres}",
                args.large
            );
            large.push(run(&pg, args.large, with_postgres, with_postgres, args.hold).await?);
        }
    }
    let report = render(&results, &large);
    println!("{report}");
    write_section(&args.output, &report)?;
    // Written first, so the figures that fail are on record.
    let over: Vec<String> = large
        .iter()
        .filter_map(|(_, m)| m.as_ref())
        .map(memory::over_limit)
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat();
    anyhow::ensure!(
        over.is_empty(),
        "the chart's default memory limits do not hold what was measured:\n{}",
        over.join("\n")
    );
    Ok(())
}

/// Resident set size of process `pid` (`self` for this one), in bytes.
fn rss_of(pid: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    tenant_mcp_e2e::stack::process::status_bytes(&status, "VmRSS").context("no VmRSS")
}

async fn run(
    pg: &Postgres,
    n: usize,
    with_postgres: bool,
    measure_process: bool,
    hold: bool,
) -> anyhow::Result<(RunResult, Option<memory::Memory>)> {
    let cluster = Cluster::local(Default::default()).await?;
    cluster.install_crds().await?;
    let client = cluster.client();
    let counts = || {
        let plane = cluster.control_plane().context("a local control plane")?;
        tokio::task::block_in_place(|| plane.request_counts()).map_err(anyhow::Error::msg)
    };
    let global: serde_json::Value = serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
        "metadata": {"name": "default"},
        "spec": {"endpointPolicy": {"allowLoopback": true}}
    });
    let globals: Api<tenant_mcp::api::GlobalMcpConfig> = Api::all(client.clone());
    globals
        .patch(
            "default",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&global),
        )
        .await?;
    let mirror_db = MirrorDatabase::create(pg, "bench").await?;
    let database = pg.create_database("tenants").await?;
    let started = Instant::now();
    let create = |i: usize| {
        let (client, database) = (client.clone(), database.clone());
        async move { create_tenant(&client, pg, &database, i, with_postgres).await }
    };
    futures::stream::iter(0..n)
        .map(create)
        .buffer_unordered(32)
        .try_collect::<()>()
        .await?;
    eprintln!("created {n} tenants in {:?}", started.elapsed());
    // kube-controller-manager gives each new namespace its `default` ServiceAccount and
    // `kube-root-ca.crt` ConfigMap: let it finish, so its requests are not counted as the
    // controller's.
    settle(&counts, n).await?;

    let keyring = tenant_mcp::crypto::Keyring::from_entries([
        ("active", "k1".to_owned()),
        ("k1", tenant_mcp::crypto::generate_key()),
    ])?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&mirror_db.controller_url)
        .await?;
    let writer = tenant_mcp::mirror::MirrorWriter::new(pool, Arc::new(keyring)).await?;
    let timings: controller::Timings = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let settings = Settings {
        identity: "bench".into(),
        ..Settings::default()
    };
    let all: Api<TenantMcpConfig> = Api::all(client.clone());
    let ready = ReadyWatch::start(all.clone());
    let before = counts()?;
    let started = Instant::now();
    let task = tokio::spawn(controller::run(
        client.clone(),
        settings,
        Some(writer),
        shutdown.clone(),
        Some(timings.clone()),
    ));
    ready.wait_all(n, started).await?;
    let elapsed = started.elapsed();
    let after = counts()?;
    let requests = after
        .into_iter()
        .filter_map(|(key, n)| {
            let delta = n - before.get(&key).copied().unwrap_or(0);
            (delta > 0).then_some((key, delta))
        })
        .collect();
    let bench_rss = rss_of("self")?;
    shutdown.cancel();
    task.await.context("controller task")??;
    let process = if measure_process {
        if hold {
            eprintln!(
                "holding: KUBECONFIG={} (Ctrl-C ends)",
                cluster.kubeconfig().display()
            );
            tokio::signal::ctrl_c().await?;
        }
        Some(memory::measure(&cluster, n, 3, || ALLOCATOR.allocated()).await?)
    } else {
        None
    };
    let timings: Vec<ReconcileTiming> = timings.lock().map(|t| t.clone()).unwrap_or_default();
    let mut overhead: Vec<Duration> = timings
        .iter()
        .map(|t| t.total.saturating_sub(t.probing))
        .collect();
    overhead.sort_unstable();
    let mut probes: Vec<Duration> = timings
        .iter()
        .filter(|t| !t.probing.is_zero())
        .map(|t| t.probing)
        .collect();
    probes.sort_unstable();
    Ok((
        RunResult {
            label: if with_postgres {
                "full: one Postgres server per tenant"
            } else {
                "baseline: no servers declared"
            },
            tenants: n,
            elapsed,
            reconciles: overhead.len(),
            p50: quantile(&overhead, 0.50),
            p99: quantile(&overhead, 0.99),
            p999: quantile(&overhead, 0.999),
            probe_p50: quantile(&probes, 0.50),
            bench_rss,
            requests,
            phases: by_phase(&timings),
        },
        process,
    ))
}

/// Tenant `i`: its namespace (bound to `t<i>`), with a Postgres server its Secret, and its
/// config.
async fn create_tenant(
    client: &kube::Client,
    pg: &Postgres,
    database: &str,
    i: usize,
    with_postgres: bool,
) -> anyhow::Result<()> {
    let ns = format!("tenant-{i:05}");
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({
            "metadata": {"name": ns, "labels": {"tenantmcp.dev/tenant": format!("t{i:05}")}}
        }))?,
    )
    .await?;
    let mut servers = serde_json::json!({});
    if with_postgres {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({
                    "metadata": {"name": "pg"},
                    "stringData": {"username": Postgres::SUPERUSER, "password": pg.password()}
                }))?,
            )
            .await?;
        servers = serde_json::json!({"postgres": {
            "host": "127.0.0.1", "port": pg.port(), "database": database, "sslMode": "disable",
            "credentialsSecretRef": {"name": "pg"}
        }});
    }
    let configs: Api<TenantMcpConfig> = Api::namespaced(client.clone(), &ns);
    configs
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                "metadata": {"name": "config"},
                "spec": {"tenantId": format!("t{i:05}"), "servers": servers}
            }))?,
        )
        .await?;
    Ok(())
}

/// Waits until kube-controller-manager has set up every one of the `n` new namespaces (a
/// `default` ServiceAccount and a `kube-root-ca.crt` ConfigMap each), at most two minutes.
async fn settle(
    counts: &impl Fn() -> anyhow::Result<std::collections::BTreeMap<(String, String), u64>>,
    n: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let c = counts()?;
        let made = ["serviceaccounts", "configmaps"].map(|r| {
            c.get(&("POST".to_owned(), r.to_owned()))
                .copied()
                .unwrap_or(0)
        });
        if made.iter().all(|m| *m >= n as u64) {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!(
                "kube-controller-manager has set up {made:?} of {n} namespaces after two minutes; measuring anyway"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How long without a single config turning Ready before the run is declared stalled.
const STALL: Duration = Duration::from_secs(120);

/// Every config as a watch sees it: the bench counts Ready configs without listing them all
/// again and again (a list of 10,000 configs every 250 ms would load the API server it
/// measures).
struct ReadyWatch {
    store: kube::runtime::reflector::Store<TenantMcpConfig>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyWatch {
    fn start(api: Api<TenantMcpConfig>) -> Self {
        use futures::StreamExt as _;
        use kube::runtime::{WatchStreamExt as _, reflector, watcher};
        let (store, writer) = reflector::store();
        let task = tokio::spawn(
            watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .for_each(|_| std::future::ready(())),
        );
        Self { store, task }
    }

    /// Waits until all `n` configs are `Ready=True`. Prints progress every 10 s with the
    /// configs counted by their Ready reason; when nothing turns Ready for [`STALL`], prints the
    /// stuck configs' finalizers, generations and conditions and fails, so a stall can be
    /// diagnosed.
    async fn wait_all(self, n: usize, started: Instant) -> anyhow::Result<()> {
        let mut last_ready = 0;
        let mut last_progress = Instant::now();
        let mut last_print = Instant::now();
        loop {
            let state = self.store.state();
            let not_ready: Vec<&TenantMcpConfig> = state
                .iter()
                .map(AsRef::as_ref)
                .filter(|c| !is_ready(c))
                .collect();
            let ready = state.len() - not_ready.len();
            if ready == n {
                self.task.abort();
                return Ok(());
            }
            if ready > last_ready {
                last_ready = ready;
                last_progress = Instant::now();
            }
            if last_print.elapsed() >= Duration::from_secs(10) {
                last_print = Instant::now();
                eprintln!(
                    "{:>5.0} s: {ready}/{n} Ready; not ready by reason: {:?}",
                    started.elapsed().as_secs_f64(),
                    reasons(&not_ready)
                );
            }
            if last_progress.elapsed() >= STALL {
                for c in not_ready.iter().take(5) {
                    eprintln!(
                        "stuck: {}/{} generation {:?} finalizers {:?} status {}",
                        c.metadata.namespace.as_deref().unwrap_or(""),
                        c.metadata.name.as_deref().unwrap_or(""),
                        c.metadata.generation,
                        c.metadata.finalizers,
                        serde_json::to_string(&c.status).unwrap_or_default()
                    );
                }
                anyhow::bail!(
                    "stalled: {ready}/{n} Ready and none more for {} s",
                    STALL.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn is_ready(config: &TenantMcpConfig) -> bool {
    config.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Not-ready configs counted by their Ready condition's reason (`NoStatus` when none yet).
fn reasons(configs: &[&TenantMcpConfig]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for c in configs {
        let reason = c
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map_or_else(|| "NoStatus".to_owned(), |c| c.reason.clone());
        *counts.entry(reason).or_insert(0) += 1;
    }
    counts
}

fn row(r: &RunResult, run: &str) -> String {
    format!(
        "| {} | {run} | {} | {:.1} s | {:.0} | {} | {} | {} | {} | {} |\n",
        r.label,
        r.tenants,
        r.elapsed.as_secs_f64(),
        r.tenants as f64 / r.elapsed.as_secs_f64(),
        r.reconciles,
        ms(r.p50),
        ms(r.p99),
        ms(r.p999),
        if r.probe_p50.is_zero() {
            "–".into()
        } else {
            ms(r.probe_p50)
        },
    )
}

/// API requests per tenant by verb and resource, for each of `runs` (label, result).
fn render_requests(runs: &[(&str, &RunResult)]) -> String {
    let mut keys: Vec<&(String, String)> =
        runs.iter().flat_map(|(_, r)| r.requests.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::from(
        "\nAPI requests per tenant, from controller start until all were Ready (the API server's \
`apiserver_request_total`, before and after; everything the control plane served in that time, \
so kube-controller-manager's are in it too; rows under 0.01 per tenant, the initial lists and \
watches, are left out):\n\n| verb | resource |",
    );
    for (label, _) in runs {
        out.push_str(&format!(" {label} |"));
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(runs.len()));
    out.push('\n');
    for key in keys {
        // Requests that are not per tenant (the initial lists and watches) round to nothing.
        if runs
            .iter()
            .all(|(_, r)| r.requests.get(key).copied().unwrap_or(0) * 100 < r.tenants as u64)
        {
            continue;
        }
        out.push_str(&format!("| {} | {} |", key.0, key.1));
        for (_, r) in runs {
            let n = r.requests.get(key).copied().unwrap_or(0);
            out.push_str(&format!(" {:.2} |", n as f64 / r.tenants as f64));
        }
        out.push('\n');
    }
    out.push_str("| **all** | |");
    for (_, r) in runs {
        let total: u64 = r.requests.values().sum();
        out.push_str(&format!(" **{:.2}** |", total as f64 / r.tenants as f64));
    }
    out.push('\n');
    out
}

fn render(results: &[RunResult], large: &[(RunResult, Option<memory::Memory>)]) -> String {
    let mut out = String::from(
        "| run | # | tenants | until all Ready | configs/s | reconciles | p50 reconcile (excl. probes) | p99 | p99.9 | p50 probe wall time |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let rounds = results.len() / 2;
    for (i, pair) in results.chunks(2).enumerate() {
        for r in pair {
            out.push_str(&row(r, &format!("{}/{rounds}", i + 1)));
        }
    }
    for (r, _) in large {
        out.push_str(&row(r, "large"));
    }
    // Median (the upper one of an even count), lowest and highest of `f` over the rounds of
    // the runs labelled `with`.
    let stats = |with: &str, f: &dyn Fn(&RunResult) -> f64| {
        let mut values: Vec<f64> = results
            .iter()
            .filter(|r| r.label.starts_with(with))
            .map(f)
            .collect();
        values.sort_by(f64::total_cmp);
        let median = values.get(values.len() / 2).copied().unwrap_or(0.0);
        let lo = values.first().copied().unwrap_or(f64::MAX);
        let hi = values.last().copied().unwrap_or(f64::MIN);
        (median, lo, hi)
    };
    let spread = |with: &str, f: &dyn Fn(&RunResult) -> f64, unit: &str| {
        let (median, lo, hi) = stats(with, f);
        format!("{median:.1}{unit} (range {lo:.1}–{hi:.1})")
    };
    let rate = |r: &RunResult| r.tenants as f64 / r.elapsed.as_secs_f64();
    let p99 = |r: &RunResult| r.p99.as_secs_f64() * 1e3;
    if rounds > 0 {
        out.push_str(&format!(
            "\nOver {rounds} rounds, median and range: baseline {} configs/s, p99 {}; full {} \
configs/s, p99 {}.\n",
            spread("baseline", &rate, ""),
            spread("baseline", &p99, " ms"),
            spread("full", &rate, ""),
            spread("full", &p99, " ms"),
        ));
    }
    let last = |with: &str| results.iter().rev().find(|r| r.label.starts_with(with));
    let mut request_runs: Vec<(String, &RunResult)> = Vec::new();
    for with in ["baseline", "full"] {
        if let Some(r) = last(with) {
            request_runs.push((format!("{with} {}", r.tenants), r));
        }
    }
    for (r, _) in large {
        let with = if r.label.starts_with("full") {
            "full"
        } else {
            "baseline"
        };
        request_runs.push((format!("{with} {}", r.tenants), r));
    }
    let labelled: Vec<(&str, &RunResult)> =
        request_runs.iter().map(|(l, r)| (l.as_str(), *r)).collect();
    out.push_str(&render_requests(&labelled));
    if let Some(last_full) = last("full") {
        out.push_str(&render_phases(last_full));
    }
    for (r, process) in large {
        let with = if r.label.starts_with("full") {
            "full"
        } else {
            "baseline"
        };
        out.push_str(&render_phases(r));
        let (median, _, _) = stats(with, &rate);
        out.push_str(&format!(
            "\nLarge {with} run: {} tenants Ready in {:.1} s, {:.0} configs/s (×{:.2} the median {}-tenant {with} run); \
this process (the controller, its caches, Postgres clients) at {:.0} MiB RSS when all were Ready.",
            r.tenants,
            r.elapsed.as_secs_f64(),
            rate(r),
            rate(r) / median.max(1e-9),
            results.first().map_or(0, |r| r.tenants),
            r.bench_rss as f64 / (1024.0 * 1024.0),
        ));
        if let Some(m) = process {
            out.push_str(&memory::render_memory(m, r.tenants));
        }
        out.push('\n');
    }
    out
}

fn write_section(path: &std::path::Path, table: &str) -> anyhow::Result<()> {
    let body = format!(
        "{}\n\n\
Method: one process starts a real control plane per run (etcd, kube-apiserver and \
kube-controller-manager v1.36 on loopback, as `e2e/src/stack/kube.rs` runs them for the tests), a \
real Postgres (the tenants' database and the mirror) and the controller in-process (reconcile \
concurrency 16, probe cap 32); the control plane shares the machine's CPUs with it. Per run, N labelled namespaces with \
a TenantMcpConfig each (and, in the full run, a Secret and a Postgres server) exist before the \
controller starts; the clock runs from controller start until a watch shows all N `Ready=True`. \
Reconcile times are every reconcile the controller ran, timed around the whole finalizer call \
(the pass that only adds the finalizer, the promoting one, the one its own status write triggers, \
and any that failed and were retried), each minus the wall time of its probes; the full run also \
creates a snapshot Secret and writes an encrypted mirror row per tenant. The baseline run, in the same \
process and minute, is the controller's fixed cost per tenant; ratios compare the two.\n\n{table}",
        measured_line("cargo run --release -p tenant-mcp-e2e --bin bench-controller")
    );
    Ok(bench::write_section(
        path,
        "bench-controller",
        "Controller: reconciling many tenants",
        &body,
    )?)
}
