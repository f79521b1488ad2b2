//! Benchmark of the controller reconciling many tenants on the local stack (API stand-in, real
//! Postgres as both the tenants' database and the mirror). Not a test: it measures and writes
//! the results to `docs/benchmarks.md`.
//!
//! Two runs in one process, same machine, same moment:
//! - baseline: N configs that declare no server (finalizer, gate, status write: the
//!   controller's fixed cost per tenant);
//! - full: N configs with a Postgres server each (Secret read, probe, snapshot Secret,
//!   encrypted mirror row, status).
//!
//! For each: configs per second from controller start until all N are `Ready=True`, and
//! p50/p99 of the time one reconcile took minus the wall time of its probes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tenant_mcp_e2e::bench::{self, measured_line, ms, quantile};

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::controller::{self, ReconcileTiming, Settings};
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::Postgres;
use tokio_util::sync::CancellationToken;

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Tenants per run.
    #[arg(long, env = "BENCH_TENANTS", default_value_t = 1000)]
    tenants: usize,
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
    probe_p50: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    tenant_mcp_e2e::stack::install_crypto_provider();
    let pg = Postgres::start()?;
    let mut results = Vec::new();
    for with_postgres in [false, true] {
        results.push(run(&pg, args.tenants, with_postgres).await?);
    }
    let report = render(&results);
    println!("{report}");
    write_section(&args.output, &report)?;
    Ok(())
}

async fn run(pg: &Postgres, n: usize, with_postgres: bool) -> anyhow::Result<RunResult> {
    let cluster = Cluster::stand_in(Default::default()).await?;
    cluster.install_crds().await?;
    let client = cluster.client();
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
    for i in 0..n {
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
    }
    eprintln!("created {n} tenants in {:?}", started.elapsed());

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
    let started = Instant::now();
    let task = tokio::spawn(controller::run(
        client.clone(),
        settings,
        Some(writer),
        shutdown.clone(),
        Some(timings.clone()),
    ));
    let all: Api<TenantMcpConfig> = Api::all(client.clone());
    wait_all_ready(&all, n, started).await?;
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await.context("controller task")??;
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
    Ok(RunResult {
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
        probe_p50: quantile(&probes, 0.50),
    })
}

/// How long without a single config turning Ready before the run is declared stalled.
const STALL: Duration = Duration::from_secs(120);

/// Polls until all `n` configs are `Ready=True`. Prints progress every 10 s with the configs
/// counted by their Ready reason; when nothing turns Ready for [`STALL`], prints the stuck
/// configs' finalizers, generations and conditions and fails, so a stall can be diagnosed.
async fn wait_all_ready(
    all: &Api<TenantMcpConfig>,
    n: usize,
    started: Instant,
) -> anyhow::Result<()> {
    let mut last_ready = 0;
    let mut last_progress = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let list = all.list(&ListParams::default()).await?;
        let not_ready: Vec<&TenantMcpConfig> = list.items.iter().filter(|c| !is_ready(c)).collect();
        let ready = list.items.len() - not_ready.len();
        if ready == n {
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
        tokio::time::sleep(Duration::from_millis(250)).await;
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

fn render(results: &[RunResult]) -> String {
    let mut out = String::from(
        "| run | tenants | until all Ready | configs/s | reconciles | p50 reconcile (excl. probes) | p99 reconcile (excl. probes) | p50 probe wall time |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {:.1} s | {:.0} | {} | {} | {} | {} |\n",
            r.label,
            r.tenants,
            r.elapsed.as_secs_f64(),
            r.tenants as f64 / r.elapsed.as_secs_f64(),
            r.reconciles,
            ms(r.p50),
            ms(r.p99),
            if r.probe_p50.is_zero() {
                "–".into()
            } else {
                ms(r.probe_p50)
            },
        ));
    }
    if let [base, full] = results {
        out.push_str(&format!(
            "\nRatios full / baseline: time until all Ready ×{:.2}, p50 reconcile ×{:.2}, p99 reconcile ×{:.2}.\n",
            full.elapsed.as_secs_f64() / base.elapsed.as_secs_f64(),
            full.p50.as_secs_f64() / base.p50.as_secs_f64().max(1e-9),
            full.p99.as_secs_f64() / base.p99.as_secs_f64().max(1e-9),
        ));
    }
    out
}

fn write_section(path: &std::path::Path, table: &str) -> anyhow::Result<()> {
    let body = format!(
        "{}\n\n\
Method: one process starts the API stand-in, a real Postgres (the tenants' database and the mirror) and \
the controller in-process (reconcile concurrency 16, probe cap 32). Per run, N labelled namespaces with \
a TenantMcpConfig each (and, in the full run, a Secret and a Postgres server) exist before the \
controller starts; the clock runs from controller start until a list shows all N `Ready=True`. \
Reconcile times are every reconcile the controller ran (adding the finalizer, the promoting one, and the \
one its own status write triggers), each minus the wall time of its probes; the full run also \
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
