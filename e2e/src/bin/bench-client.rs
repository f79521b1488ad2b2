//! Benchmark of the client library's lookups. Not a test: it measures and writes the results
//! to `docs/benchmarks.md`.
//!
//! - hot: 10,000 tenants with a cached Postgres pool each; two threads look up random tenants;
//!   p50/p99 of one `TenantClients::postgres` call;
//! - cold: building a tenant's three clients (lazy Postgres pool, S3 client, MCP client: no
//!   network I/O) against resolving and building them on every request without a cache, the
//!   baseline, in the same run;
//! - memory: RSS with 10,000 tenant configs loaded, then with 1,000 tenants' clients cached;
//! - churn: 100,000 cycles of a tenant taken into a full cache (1,000 tenants), used and
//!   another evicted; RSS after warm-up against the end;
//! - propagation: a config's `status.active` changed on the API stand-in until
//!   `TenantClients` hands out the client of the new endpoint.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::FutureExt as _;
use tenant_mcp::client::{ClientSettings, TenantClients};
use tenant_mcp_e2e::bench::{self, measured_line, quantile, us};

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Tenants cached for the hot lookups.
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
    /// Where to write the results (a section of this Markdown file is replaced).
    #[arg(long, env = "BENCH_OUTPUT", default_value = "docs/benchmarks.md")]
    output: std::path::PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tenant_mcp_e2e::stack::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    write_manifests(dir.path(), args.tenants)?;
    let names: Vec<String> = (0..args.tenants).map(tenant).collect();

    // Memory and churn first, while the process holds nothing else.
    let memory = memory_and_churn(dir.path(), &names, args.cached, args.churn).await?;
    let propagation = propagation(args.changes).await?;

    // Room for every tenant and no idle eviction during the run.
    let settings = ClientSettings {
        max_cached_tenants: args.tenants * 2,
        idle_ttl: Duration::from_secs(3600),
        ..ClientSettings::default()
    };
    let clients = TenantClients::from_directory(dir.path(), settings.clone())?;
    // Warm: one pool per tenant (lazy: no connection is opened).
    for name in &names {
        clients.postgres(name).await.context("warming")?;
    }
    anyhow::ensure!(clients.cached_tenants() == args.tenants);

    let hot = {
        let mut threads = Vec::new();
        for seed in 0..2u64 {
            let clients = clients.clone();
            let names = names.clone();
            let lookups = args.lookups;
            threads.push(std::thread::spawn(move || {
                hot_lookups(&clients, &names, lookups, seed)
            }));
        }
        let mut all = Vec::new();
        for t in threads {
            all.extend(
                t.join()
                    .map_err(|_| anyhow::anyhow!("a lookup thread panicked"))??,
            );
        }
        all.sort_unstable();
        all
    };

    // Cold: a fresh tenant each time (every lookup builds), vs no cache at all.
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
    let mut uncached = Vec::with_capacity(cold.len());
    for name in names.iter().take(cold.len()) {
        let started = Instant::now();
        let fresh = tenant_mcp::client::build::Shared::new(100).map_err(anyhow::Error::msg)?;
        for key in [
            tenant_mcp::config::candidate::ServerKey::Postgres,
            tenant_mcp::config::candidate::ServerKey::Minio,
            tenant_mcp::config::candidate::ServerKey::AiMcp,
        ] {
            let endpoint = clients.endpoint(name, &key)?;
            tenant_mcp::client::build::build(&fresh, &key, &endpoint, Some(name))
                .map_err(anyhow::Error::msg)?;
        }
        uncached.push(started.elapsed());
    }
    uncached.sort_unstable();

    let mut report = render(args.tenants, &hot, &cold, &uncached);
    report.push_str(&render_memory(&memory, args.tenants));
    report.push_str(&render_propagation(&propagation));
    println!("{report}");
    write_section(&args.output, &report)?;
    clients.shutdown().await;
    cold_clients.shutdown().await;
    Ok(())
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

/// RSS at each step of the memory and churn measurements.
struct Memory {
    start: u64,
    configs: u64,
    cached: u64,
    cached_tenants: usize,
    churn_cycles: usize,
    churn_warm: u64,
    churn_end: u64,
    churn_seconds: f64,
}

async fn memory_and_churn(
    dir: &std::path::Path,
    names: &[String],
    cached: usize,
    churn: usize,
) -> anyhow::Result<Memory> {
    let start = rss()?;
    let settings = ClientSettings {
        max_cached_tenants: cached,
        idle_ttl: Duration::from_secs(3600),
        ..ClientSettings::default()
    };
    let clients = TenantClients::from_directory(dir, settings)?;
    let configs = rss()?;
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
    let cached_rss = rss()?;
    let cached_tenants = clients.cached_tenants();
    // Churn: every cycle takes a tenant not cached into the full cache (building its three
    // clients) and evicts the least recently used one (closing them).
    let warm_up = churn / 10;
    let mut churn_warm = 0;
    let started = Instant::now();
    for cycle in 0..churn {
        use_tenant(&names[(cached + cycle) % names.len()]).await?;
        if cycle + 1 == warm_up {
            // Let the background closes of evicted clients run.
            tokio::time::sleep(Duration::from_millis(200)).await;
            churn_warm = rss()?;
        }
    }
    let churn_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let churn_end = rss()?;
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
        churn_warm,
        churn_end,
        churn_seconds,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn render_memory(m: &Memory, tenants: usize) -> String {
    let growth = (m.churn_end as f64 - m.churn_warm as f64) / m.churn_warm.max(1) as f64 * 100.0;
    format!(
        "\n| memory | RSS | per tenant |\n|---|---|---|\n\
| process before loading configs (baseline) | {} | |\n\
| {tenants} tenant configs loaded, nothing cached | {} | {:.1} KiB per config |\n\
| and {} tenants with 3 cached clients each | {} | {:.1} KiB per cached tenant |\n\
\nChurn: {} cycles (a tenant taken into the full cache of {}, its three clients built, the \
least recently used tenant evicted and its clients closed) in {:.1} s ({:.0} cycles/s); RSS \
{} after the first {} cycles (warm-up), {} at the end: {growth:+.2}% (target under 5%).\n",
        mib(m.start),
        mib(m.configs),
        (m.configs.saturating_sub(m.start)) as f64 / tenants as f64 / 1024.0,
        m.cached_tenants,
        mib(m.cached),
        (m.cached.saturating_sub(m.configs)) as f64 / m.cached_tenants.max(1) as f64 / 1024.0,
        m.churn_cycles,
        m.cached_tenants,
        m.churn_seconds,
        m.churn_cycles as f64 / m.churn_seconds.max(1e-9),
        mib(m.churn_warm),
        m.churn_cycles / 10,
        mib(m.churn_end),
    )
}

/// Timed status changes: the config's active Postgres database renamed on the API stand-in,
/// until `TenantClients` resolves and builds the client of the new one.
async fn propagation(changes: usize) -> anyhow::Result<Vec<Duration>> {
    use k8s_openapi::api::core::v1::{Namespace, Secret};
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use tenant_mcp::api::TenantMcpConfig;
    use tenant_mcp::config::candidate::ServerKey;

    let cluster = tenant_mcp_e2e::harness::Cluster::start().await?;
    cluster.install_crds().await?;
    let client = cluster.client();
    let ns = "bench-propagation";
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": ns, "labels": {"tenantmcp.dev/tenant": "acme"}}
            }))?,
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "snap", "namespace": ns,
                    "labels": {"app.kubernetes.io/managed-by": "tenant-mcp"}},
                "stringData": {"username": "u", "password": "p"}
            }))?,
        )
        .await?;
    let configs: Api<TenantMcpConfig> = Api::namespaced(client.clone(), ns);
    let spec = |db: &str| {
        serde_json::json!({"host": "127.0.0.1", "database": db, "sslMode": "disable",
            "credentialsSecretRef": {"name": "creds"}})
    };
    configs
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                "metadata": {"name": "acme", "namespace": ns},
                "spec": {"tenantId": "acme", "servers": {"postgres": spec("db0")}}
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
        "\nPropagation ({} status changes on the API stand-in, each timed from the PATCH until \
`postgres(tenant)` returns the new database's pool; includes the PATCH round trip and a 1 ms \
poll): p50 {}, p99 {}, max {} (target p99 under 1 s).\n",
        times.len(),
        ms(quantile(times, 0.5)),
        ms(quantile(times, 0.99)),
        ms(times.last().copied().unwrap_or_default()),
    )
}

fn tenant(i: usize) -> String {
    format!("t{i:05}")
}

/// One TenantMcpConfig per tenant with its own Postgres, S3 and AI MCP server and their
/// Secrets, served from the spec (no controller in a directory source).
fn write_manifests(dir: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let mut text = String::from(
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata:\n  name: default\nspec:\n  endpointPolicy:\n    allowLoopback: true\n",
    );
    for i in 0..n {
        let t = tenant(i);
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: {t}\nstringData:\n  username: u{i}\n  password: p{i}\n  accessKeyId: a{i}\n  secretAccessKey: s{i}\n  token: tok{i}\n\
---\napiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata:\n  name: config\n  namespace: {t}\nspec:\n  tenantId: {t}\n  servers:\n    postgres:\n      host: 127.0.0.1\n      database: db{i}\n      sslMode: disable\n      credentialsSecretRef:\n        name: creds\n    minio:\n      endpoint: http://127.0.0.1:9000\n      bucket: bucket-{i}\n      credentialsSecretRef:\n        name: creds\n    aiMcpServer:\n      url: http://127.0.0.1:8080/mcp\n      bearerTokenSecretRef:\n        name: creds\n        key: token\n"
        ));
    }
    std::fs::write(dir.join("tenants.yaml"), text)?;
    Ok(())
}

fn hot_lookups(
    clients: &TenantClients,
    names: &[String],
    lookups: usize,
    seed: u64,
) -> anyhow::Result<Vec<Duration>> {
    // xorshift: cheap, deterministic tenant order, different per thread.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(lookups);
    for _ in 0..lookups {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let name = &names[usize::try_from(x % names.len() as u64).unwrap_or(0)];
        let started = Instant::now();
        let pool = clients
            .postgres(name)
            .now_or_never()
            .context("a cached lookup awaited")??;
        let elapsed = started.elapsed();
        drop(pool);
        out.push(elapsed);
    }
    Ok(out)
}

fn render(tenants: usize, hot: &[Duration], cold: &[Duration], uncached: &[Duration]) -> String {
    let row = |label: &str, n: usize, s: &[Duration]| {
        format!(
            "| {label} | {n} | {} | {} | {} |\n",
            us(quantile(s, 0.5)),
            us(quantile(s, 0.99)),
            us(quantile(s, 0.999))
        )
    };
    let mut out =
        String::from("| measurement | samples | p50 | p99 | p99.9 |\n|---|---|---|---|---|\n");
    out.push_str(&row(
        &format!("hot lookup, {tenants} tenants cached, 2 threads"),
        hot.len(),
        hot,
    ));
    out.push_str(&row(
        "cold build of a tenant's three clients (cache miss)",
        cold.len(),
        cold,
    ));
    out.push_str(&row(
        "baseline: resolve and build the three clients per request, no cache",
        uncached.len(),
        uncached,
    ));
    out.push_str(&format!(
        "\nRatios: hot lookup p99 vs per-request build p99 ×{:.4}; cold build p99 vs per-request build p99 ×{:.2}.\n",
        quantile(hot, 0.99).as_secs_f64() / quantile(uncached, 0.99).as_secs_f64().max(1e-12),
        quantile(cold, 0.99).as_secs_f64() / quantile(uncached, 0.99).as_secs_f64().max(1e-12),
    ));
    out
}

fn write_section(path: &std::path::Path, table: &str) -> anyhow::Result<()> {
    let body = format!(
        "{}\n\n\
Method: a directory source with N tenants, each declaring its own Postgres, S3 and AI MCP server \
(loopback addresses; nothing connects: pools are lazy, MCP sessions open on first call). \
Memory, churn and propagation run first, then the lookups. Hot: every tenant's pool is built first, then two OS threads each run 1,000,000 `postgres(tenant)` \
lookups of pseudo-random tenants, timing each call (timer overhead included, ~20–40 ns). Cold: the \
three clients of a tenant not cached yet (routing, cache insert, building). Baseline: resolving and \
building the three clients (and their HTTP connectors and pool) on every request with no cache, as code without this library would, in the same run.\n\n{table}",
        measured_line("cargo run --release -p tenant-mcp-e2e --bin bench-client")
    );
    Ok(bench::write_section(
        path,
        "bench-client",
        "Client library: lookups and builds",
        &body,
    )?)
}
