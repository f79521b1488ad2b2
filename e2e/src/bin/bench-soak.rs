//! Soak of the whole product under injected faults, on the local stack. Not a test (not in
//! `scripts/test`): it runs for minutes and writes its figures to `docs/benchmarks.md`.
//!
//! 1,000 tenants, each on a Postgres login of its own behind one of ten TCP fault proxies, and
//! a global server on another login; the controller binary (with the mirror) and, in this
//! process, a real control plane (etcd, kube-apiserver, kube-controller-manager) and one client library instance with workers asking for random
//! tenants' pools as fast as they can. Every two seconds one fault, chosen by a seeded
//! generator: a config edit (pool size), a credential rotation (the role's password, then the
//! Secret), a bad edit (a port nothing listens on, reverted after 6 s), an outage of a tenth of
//! the tenants' servers (4 s), or a tenant of the last tenth disabled (6 s, it falls back to
//! global). At the end: requests by outcome, wrong-tenant answers (must be 0), resources at
//! the start and end with growth per hour, and `tenant-mcp mirror verify` after the faults stop
//! (configs whose mirror row disagrees with status: must be 0).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::client::{ClientSettings, TenantClients};
use tenant_mcp_e2e::bench::{measured_line, write_section};
use tenant_mcp_e2e::controller_process::{ControllerOptions, ControllerProcess};
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::stack::fault_proxy::{FaultProxy, Mode};
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Tenants.
    #[arg(long, env = "BENCH_TENANTS", default_value_t = 1000)]
    tenants: usize,
    /// How long the faults run, in seconds.
    #[arg(long, env = "BENCH_SOAK_SECONDS", default_value_t = 600)]
    seconds: u64,
    /// Concurrent requesting workers.
    #[arg(long, env = "BENCH_SOAK_WORKERS", default_value_t = 16)]
    workers: usize,
    /// Load before the first sample, in seconds (default: a tenth of the run, 5 to 300).
    #[arg(long, env = "BENCH_SOAK_WARM_UP")]
    warm_up: Option<u64>,
    /// Seconds between samples of the resources.
    #[arg(long, env = "BENCH_SOAK_SAMPLE_EVERY", default_value_t = 60)]
    sample_every: u64,
    /// Where to draw the samples (SVG).
    #[arg(long, default_value = "docs/soak.svg")]
    plot: std::path::PathBuf,
    /// Seed of the fault sequence.
    #[arg(long, env = "BENCH_SOAK_SEED", default_value_t = 22)]
    seed: u64,
    /// Where to write the results (a section of this Markdown file is replaced).
    #[arg(long, env = "BENCH_OUTPUT", default_value = "docs/benchmarks.md")]
    output: std::path::PathBuf,
}

const GROUPS: usize = 10;

/// A small seeded generator (xorshift64*): the same seed makes the same faults.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

/// Names of tenant `i`.
struct Tenant {
    id: String,
    namespace: String,
    login: String,
}

fn tenant(i: usize, suffix: &str) -> Tenant {
    Tenant {
        id: format!("s{i:04}"),
        namespace: format!("soak-{i:04}"),
        login: format!("s{i:04}_{suffix}"),
    }
}

/// One process's resources at a moment.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    cached: u64,
    rss_kib: u64,
    fds: u64,
    tasks: u64,
    connections: u64,
    relays: u64,
    pg_open: u64,
    pg_idle: u64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Connections Postgres sees from `application`.
async fn connections(admin: &sqlx::PgPool, application: &str) -> u64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(application)
    .fetch_one(admin)
    .await
    .map_or(0, |n| n.max(0) as u64)
}

/// What a request ended as: served by its own login, by the global one, by another tenant's
/// (wrong), or failed, by kind; a failure says which injected fault explains it, if one does.
fn classify(
    result: Result<Result<String, String>, tokio::time::error::Elapsed>,
    own: &str,
    global: &str,
    may_be_global: bool,
    explained: Option<&'static str>,
) -> String {
    let failed = |kind: &str| match explained {
        Some(fault) => format!("failed in a fault ({fault}): {kind}"),
        None => format!("FAILED OUTSIDE ANY FAULT: {kind}"),
    };
    match result {
        Ok(Ok(user)) if user == own => "served: own".into(),
        Ok(Ok(user)) if user == global && may_be_global => "served: global (disabled)".into(),
        Ok(Ok(user)) if user == global => "WRONG: global while enabled".into(),
        Ok(Ok(user)) => format!("WRONG: served as {user}"),
        Ok(Err(kind)) => failed(&kind),
        Err(_) => failed("no answer in 10 s"),
    }
}

/// When an injected fault may make a tenant's requests fail: from its start to its end plus
/// the time the system takes to carry the repair (a watch, a promotion, a pool rebuilt, a
/// request that was waiting out its acquire timeout).
#[derive(Clone, Copy, Debug)]
struct Window {
    /// A tenant, or every tenant of a proxy group.
    tenants: Affected,
    start: Instant,
    end: Instant,
    fault: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Affected {
    Tenant(usize),
    Group(usize),
}

/// The fault that explains a failure of tenant `i`'s request made over `made`, if any.
fn explaining(
    windows: &Mutex<Vec<Window>>,
    i: usize,
    made: (Instant, Instant),
) -> Option<&'static str> {
    let windows = windows.lock().ok()?;
    windows
        .iter()
        .find(|w| {
            let hits = match w.tenants {
                Affected::Tenant(t) => t == i,
                Affected::Group(g) => i % GROUPS == g,
            };
            hits && made.0 <= w.end && made.1 >= w.start
        })
        .map(|w| w.fault)
}

/// Records that `fault`, starting now, may make `tenants`' requests fail for `lasting`.
fn open_window(
    windows: &Mutex<Vec<Window>>,
    tenants: Affected,
    lasting: Duration,
    fault: &'static str,
) {
    let start = Instant::now();
    if let Ok(mut w) = windows.lock() {
        w.push(Window {
            tenants,
            start,
            end: start + lasting,
            fault,
        });
    }
}

/// How long after a fault ends its effects may still be seen.
const REPAIR: Duration = Duration::from_secs(15);

/// A credential rotation's window: the password changes first, the Secret next, and the
/// controller promotes the new snapshot after probing it.
const ROTATION: Duration = Duration::from_secs(30);

async fn ask(clients: &TenantClients, tenant: &str) -> Result<String, String> {
    let pool = clients
        .postgres(tenant)
        .await
        .map_err(|e| e.reason().to_owned())?;
    sqlx::query_scalar::<_, String>("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) => format!("database {}", d.code().unwrap_or_default()),
            sqlx::Error::PoolTimedOut => "PoolTimedOut".into(),
            sqlx::Error::PoolClosed => "PoolClosed".into(),
            sqlx::Error::Io(_) => "Io".into(),
            other => format!("{:?}", std::mem::discriminant(other)),
        })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tenant_mcp_e2e::bench::start();
    let n = args.tenants;
    let dir = tempfile::tempdir()?;
    let pg = Postgres::start()?;
    let admin = sqlx::PgPool::connect(&pg.admin_url("postgres")).await?;
    let database = pg.create_database("soak").await?;
    let suffix = database[database.len() - 6..].to_owned();
    let global_login = format!("global_{suffix}");
    execute(
        &pg.admin_url("postgres"),
        &format!(
            "DO $$ BEGIN FOR i IN 0..{last} LOOP \
             EXECUTE format('CREATE ROLE s%s_{suffix} LOGIN PASSWORD %L', lpad(i::text, 4, '0'), 'pw-' || i || '-0'); \
             END LOOP; CREATE ROLE {global_login} LOGIN PASSWORD 'global-pw'; END $$",
            last = n - 1
        ),
    )
    .await?;
    let proxies: Vec<FaultProxy> = (0..GROUPS)
        .map(|_| FaultProxy::start(format!("127.0.0.1:{}", pg.port()).parse()?).map_err(Into::into))
        .collect::<anyhow::Result<_>>()?;

    let cluster = Cluster::local(Default::default()).await?;
    cluster.install_crds().await?;
    let client = cluster.client();
    let creds = "tenant-mcp-credentials";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = |name: &str, tenant: Option<&str>| -> anyhow::Result<Namespace> {
        let labels = tenant.map(|t| [("tenantmcp.dev/tenant".to_owned(), t.to_owned())].into());
        Ok(Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels,
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        })
    };
    namespaces
        .create(&PostParams::default(), &ns(creds, None)?)
        .await?;
    let secret = |name: &str, user: &str, password: &str| -> anyhow::Result<Secret> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {"username": user, "password": password}
        }))?)
    };
    Api::<Secret>::namespaced(client.clone(), creds)
        .create(
            &PostParams::default(),
            &secret("global-pg", &global_login, "global-pw")?,
        )
        .await?;
    Api::<tenant_mcp::api::GlobalMcpConfig>::all(client.clone())
        .patch(
            "default",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(json!({
                "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
                "metadata": {"name": "default"},
                "spec": {"credentialsNamespace": creds, "endpointPolicy": {"allowLoopback": true},
                         "servers": {"postgres": {"host": "127.0.0.1", "port": pg.port(),
                            "database": database, "sslMode": "disable",
                            "credentialsSecretRef": {"name": "global-pg"}}}}
            })),
        )
        .await?;
    let postgres_of = |port: u16| {
        json!({"host": "127.0.0.1", "port": port, "database": database, "sslMode": "disable",
               "pool": {"maxConnections": 1, "acquireTimeoutSeconds": 5, "idleTimeoutSeconds": 30},
               "credentialsSecretRef": {"name": "pg"}})
    };
    let started = Instant::now();
    for i in 0..n {
        let t = tenant(i, &suffix);
        namespaces
            .create(&PostParams::default(), &ns(&t.namespace, Some(&t.id))?)
            .await?;
        Api::<Secret>::namespaced(client.clone(), &t.namespace)
            .create(
                &PostParams::default(),
                &secret("pg", &t.login, &format!("pw-{i}-0"))?,
            )
            .await?;
        let server = postgres_of(proxies[i % GROUPS].port());
        Api::<TenantMcpConfig>::namespaced(client.clone(), &t.namespace)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                    "metadata": {"name": "config"},
                    "spec": {"tenantId": t.id, "servers": {"postgres": server}}
                }))?,
            )
            .await?;
    }
    eprintln!("created {n} tenants in {:?}", started.elapsed());

    let mirror = MirrorDatabase::create(&pg, "mirror").await?;
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys)?;
    std::fs::write(keys.join("k1"), tenant_mcp::crypto::generate_key())?;
    std::fs::write(keys.join("active"), "k1")?;
    let mut controller = ControllerProcess::start_logging(
        &ControllerOptions {
            kubeconfig: cluster.kubeconfig(),
            dir: dir.path(),
            identity: "soak",
            lease_namespace: "default",
            mirror: Some((&mirror.controller_url, &keys)),
            lease_seconds: 15,
        },
        "warn",
    );
    let configs: Api<TenantMcpConfig> = Api::all(client.clone());
    let ready = wait_until(&configs, n, Duration::from_secs(300), false).await?;
    eprintln!("all {n} Ready after {ready:?}");

    let clients = TenantClients::from_kube(
        client.clone(),
        ClientSettings {
            max_postgres_connections: 64,
            ..ClientSettings::default()
        },
    )
    .await?;
    // Every tenant served once before the clock starts: a cached tenant's pool (its relay
    // socket and tasks) is expected, not growth.
    let warmed = Instant::now();
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(args.workers.max(1)) {
        let asks = chunk.iter().map(|&i| {
            let (clients, id) = (clients.clone(), tenant(i, &suffix).id);
            async move { tokio::time::timeout(Duration::from_secs(10), ask(&clients, &id)).await }
        });
        futures::future::join_all(asks).await;
    }
    eprintln!(
        "every tenant asked once in {:?}; {} cached",
        warmed.elapsed(),
        clients.cached_tenants()
    );
    let running = Arc::new(AtomicBool::new(true));
    let outcomes: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let windows: Arc<Mutex<Vec<Window>>> = Arc::default();
    // Tenants of the last tenth may be disabled (and then served by global); no other may.
    let may_disable = n - n / 10;
    let mut workers = Vec::new();
    for w in 0..args.workers {
        let (clients, running, outcomes, windows) = (
            clients.clone(),
            running.clone(),
            outcomes.clone(),
            windows.clone(),
        );
        let (suffix, global_login) = (suffix.clone(), global_login.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
            let mut local: BTreeMap<String, u64> = BTreeMap::new();
            while running.load(Ordering::Relaxed) {
                let i = rng.below(n);
                let t = tenant(i, &suffix);
                let made = Instant::now();
                let result =
                    tokio::time::timeout(Duration::from_secs(10), ask(&clients, &t.id)).await;
                let failed = !matches!(result, Ok(Ok(_)));
                let explained = if failed {
                    explaining(&windows, i, (made, Instant::now()))
                } else {
                    None
                };
                let kind = classify(result, &t.login, &global_login, i >= may_disable, explained);
                *local.entry(kind).or_default() += 1;
                if failed {
                    // As an application would: back off a little after a failure.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            if let Ok(mut all) = outcomes.lock() {
                for (k, v) in local {
                    *all.entry(k).or_default() += v;
                }
            }
        }));
    }

    let me = std::process::id();
    let controller_pid = controller.pid();
    let sample = {
        let (clients, admin) = (clients.clone(), admin.clone());
        move || {
            let (clients, admin) = (clients.clone(), admin.clone());
            async move {
                let r = clients.resources();
                (
                    Sample {
                        cached: r.cached_tenants as u64,
                        rss_kib: rss_kib(me),
                        fds: fds(me),
                        tasks: tokio::runtime::Handle::current()
                            .metrics()
                            .num_alive_tasks() as u64,
                        connections: connections(&admin, "tenant-mcp-client").await,
                        relays: r.relays,
                        pg_open: u64::from(r.postgres.open),
                        pg_idle: u64::from(r.postgres.idle),
                    },
                    Sample {
                        rss_kib: rss_kib(controller_pid),
                        fds: fds(controller_pid),
                        ..Sample::default()
                    },
                )
            }
        }
    };
    // Load before the first sample: what a cached tenant holds is expected, not growth.
    let warm_up = Duration::from_secs(args.warm_up.unwrap_or((args.seconds / 10).clamp(5, 300)));
    tokio::time::sleep(warm_up).await;
    let start = sample().await;
    let sampled_at = Instant::now();
    let series: Arc<Mutex<Vec<(f64, Sample)>>> = Arc::new(Mutex::new(vec![(0.0, start.0)]));
    let sampler = {
        let (series, running, sample) = (series.clone(), running.clone(), sample.clone());
        let every = Duration::from_secs(args.sample_every.max(1));
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                let (s, _) = sample().await;
                if let Ok(mut series) = series.lock() {
                    series.push((sampled_at.elapsed().as_secs_f64(), s));
                }
            }
        })
    };

    // The faults.
    let mut rng = Rng(args.seed.max(1));
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut generation = vec![0u32; n];
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut pending = Vec::new();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let i = rng.below(n);
        let t = tenant(i, &suffix);
        let api: Api<TenantMcpConfig> = Api::namespaced(client.clone(), &t.namespace);
        let port = proxies[i % GROUPS].port();
        let kind = match rng.below(5) {
            0 => {
                let max = 1 + rng.below(3) as u32;
                edit_config(
                    &api,
                    json!({"servers": {"postgres": {"pool": {"maxConnections": max}}}}),
                )
                .await;
                "config edit (pool size)"
            }
            1 => {
                open_window(
                    &windows,
                    Affected::Tenant(i),
                    ROTATION,
                    "credential rotation",
                );
                generation[i] += 1;
                let password = format!("pw-{i}-{}", generation[i]);
                let _ = pg.set_login(&t.login, &password).await;
                let _ = Api::<Secret>::namespaced(client.clone(), &t.namespace)
                    .patch(
                        "pg",
                        &PatchParams::default(),
                        &Patch::Merge(
                            json!({"data": {"password": ByteString(password.into_bytes())}}),
                        ),
                    )
                    .await;
                "credential rotation"
            }
            2 => {
                open_window(
                    &windows,
                    Affected::Tenant(i),
                    Duration::from_secs(6) + REPAIR,
                    "bad edit",
                );
                pending.push(
                    edit_for_a_while(
                        api,
                        json!({"servers": {"postgres": {"port": 1}}}),
                        json!({"servers": {"postgres": {"port": port}}}),
                    )
                    .await,
                );
                "bad edit (a closed port, reverted after 6 s)"
            }
            3 => {
                let g = rng.below(GROUPS);
                let proxy = &proxies[g];
                open_window(
                    &windows,
                    Affected::Group(g),
                    Duration::from_secs(4) + REPAIR,
                    "outage",
                );
                proxy.set(Mode::Refuse);
                tokio::time::sleep(Duration::from_secs(4)).await;
                proxy.set(Mode::Forward);
                "outage of a tenth of the servers (4 s)"
            }
            _ => {
                let j = may_disable + rng.below(n - may_disable);
                let other = tenant(j, &suffix);
                let api: Api<TenantMcpConfig> = Api::namespaced(client.clone(), &other.namespace);
                pending.push(
                    edit_for_a_while(api, json!({"enabled": false}), json!({"enabled": true}))
                        .await,
                );
                "tenant disabled (6 s)"
            }
        };
        *faults.entry(kind).or_default() += 1;
    }
    for p in pending {
        let _ = p.await;
    }
    let end = sample().await;
    let measured = sampled_at.elapsed();
    running.store(false, Ordering::Relaxed);
    sampler.abort();
    let series = series.lock().map(|s| s.clone()).unwrap_or_default();
    for w in workers {
        let _ = w.await;
    }
    clients.shutdown().await;

    // After the faults: every config Ready and mirrored, and every row what status says.
    for proxy in &proxies {
        proxy.set(Mode::Forward);
    }
    let settled = wait_until(&configs, n, Duration::from_secs(300), true).await;
    let verify = || {
        tenant_mcp_e2e::stack::run_tenant_mcp(
            &["mirror", "verify"],
            &[
                ("KUBECONFIG", cluster.kubeconfig().as_os_str()),
                ("TENANT_MCP_DATABASE_URL", mirror.uber_admin_url.as_ref()),
                ("TENANT_MCP_KEYS_DIR", keys.as_os_str()),
            ],
        )
    };
    let (mut code, mut text) = verify();
    if code != 0 {
        // Printed, then looked at again: a row still being written is not a lost one.
        eprintln!("mirror verify right after settling:\n{text}");
        tokio::time::sleep(Duration::from_secs(10)).await;
        (code, text) = verify();
    }
    let disagreeing = if code == 0 {
        "0".to_owned()
    } else {
        eprintln!("mirror verify 10 s later:\n{text}");
        format!("{} (exit {code})", text.lines().last().unwrap_or_default())
    };
    controller.terminate();

    let outcomes = outcomes.lock().map(|o| o.clone()).unwrap_or_default();
    let mut report = render(
        &args,
        &outcomes,
        &faults,
        (start, end),
        measured,
        settled.as_ref().map_err(ToString::to_string),
        &disagreeing,
    );
    report.push_str(&series_table(&series, args.sample_every, &args.plot));
    if let Err(e) = std::fs::write(&args.plot, plot(&series)) {
        eprintln!("writing {}: {e}", args.plot.display());
    }
    println!("{report}");
    write_section(
        &args.output,
        "bench-soak",
        "Soak: 1,000 tenants under faults",
        &report,
    )
    .context("writing the results")?;
    let wrong: u64 = outcomes
        .iter()
        .filter(|(k, _)| k.starts_with("WRONG"))
        .map(|(_, v)| v)
        .sum();
    anyhow::ensure!(
        wrong == 0,
        "{wrong} requests were served by the wrong login"
    );
    anyhow::ensure!(disagreeing == "0", "mirror rows disagree: {disagreeing}");
    let unexplained: u64 = outcomes
        .iter()
        .filter(|(k, _)| k.starts_with("FAILED OUTSIDE"))
        .map(|(_, v)| v)
        .sum();
    anyhow::ensure!(
        unexplained == 0,
        "{unexplained} requests failed outside any injected fault"
    );
    Ok(())
}

/// Merges `spec` into the spec of the config named `config` in `api`'s namespace (errors ignored: a
/// fault that does not land is only a fault less).
async fn edit_config(api: &Api<TenantMcpConfig>, spec: serde_json::Value) {
    let _ = api
        .patch(
            "config",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await;
}

/// Applies the edit `now`, and `then` 6 s later from a task of its own (awaited at the end).
async fn edit_for_a_while(
    api: Api<TenantMcpConfig>,
    now: serde_json::Value,
    then: serde_json::Value,
) -> tokio::task::JoinHandle<()> {
    edit_config(&api, now).await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(6)).await;
        edit_config(&api, then).await;
    })
}

/// Waits until all `n` configs are `Ready=True` (and `Mirrored=True` with `mirrored`); how
/// long it took.
async fn wait_until(
    configs: &Api<TenantMcpConfig>,
    n: usize,
    limit: Duration,
    mirrored: bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let list = configs.list(&ListParams::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|c| {
                // True, and decided on the current spec: a change made just before (the last
                // fault's revert) is not judged by the status of the one before it.
                let status = |t: &str| {
                    c.status.as_ref().is_some_and(|s| {
                        s.conditions.iter().any(|x| {
                            x.type_ == t
                                && x.status == "True"
                                && x.observed_generation == c.metadata.generation
                        })
                    })
                };
                status("Ready") && (!mirrored || status("Mirrored"))
            })
            .count();
        if done == n {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "{done}/{n} configs settled after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn per_hour(start: u64, end: u64, over: Duration) -> String {
    let delta = end as f64 - start as f64;
    format!("{:+.0}", delta / over.as_secs_f64() * 3600.0)
}

fn render(
    args: &Args,
    outcomes: &BTreeMap<String, u64>,
    faults: &BTreeMap<&'static str, u64>,
    (start, end): ((Sample, Sample), (Sample, Sample)),
    measured: Duration,
    settled: Result<&Duration, String>,
    disagreeing: &str,
) -> String {
    let total: u64 = outcomes.values().sum();
    let mut out = format!(
        "{}\n\nMethod: see `e2e/src/bin/bench-soak.rs`: {} tenants, {} workers, faults every 2 s for {} s (seed {}).\n\n",
        measured_line("cargo run --release -p tenant-mcp-e2e --bin bench-soak"),
        args.tenants,
        args.workers,
        args.seconds,
        args.seed
    );
    out.push_str("| requests | count | share |\n|---|---|---|\n");
    for (kind, count) in outcomes {
        out.push_str(&format!(
            "| {kind} | {count} | {:.2} % |\n",
            *count as f64 * 100.0 / total.max(1) as f64
        ));
    }
    out.push_str(&format!("| total | {total} | |\n\n"));
    out.push_str("| fault injected | times |\n|---|---|\n");
    for (kind, count) in faults {
        out.push_str(&format!("| {kind} | {count} |\n"));
    }
    let ((bs, cs), (be, ce)) = (start, end);
    out.push_str(&format!(
        "\nResources, first sample after the warm-up and last at the end of the faults ({:.0} s apart), growth extrapolated per hour:\n\n\
         | process | measure | start | end | per hour |\n|---|---|---|---|---|\n\
         | bench (client library) | RSS KiB | {} | {} | {} |\n\
         | bench | tenants with cached clients | {} | {} | {} |\n\
         | bench | open file descriptors | {} | {} | {} |\n\
         | bench | tokio tasks | {} | {} | {} |\n\
         | bench | client connections seen by Postgres | {} | {} | {} |\n\
         | controller | RSS KiB | {} | {} | {} |\n\
         | controller | open file descriptors | {} | {} | {} |\n\n",
        measured.as_secs_f64(),
        bs.rss_kib, be.rss_kib, per_hour(bs.rss_kib, be.rss_kib, measured),
        bs.cached, be.cached, per_hour(bs.cached, be.cached, measured),
        bs.fds, be.fds, per_hour(bs.fds, be.fds, measured),
        bs.tasks, be.tasks, per_hour(bs.tasks, be.tasks, measured),
        bs.connections, be.connections, per_hour(bs.connections, be.connections, measured),
        cs.rss_kib, ce.rss_kib, per_hour(cs.rss_kib, ce.rss_kib, measured),
        cs.fds, ce.fds, per_hour(cs.fds, ce.fds, measured),
    ));
    out.push_str(&format!(
        "After the faults stopped: all configs Ready and Mirrored {}; configs whose mirror row disagrees with status (`tenant-mcp mirror verify`): {disagreeing}.\n",
        match settled {
            Ok(d) => format!("after {:.1} s", d.as_secs_f64()),
            Err(e) => format!("NOT reached: {e}"),
        }
    ));
    out
}

/// A measure's name and how to read it from a sample.
type Measure = (&'static str, fn(&Sample) -> f64);

/// The measures drawn and fitted.
const MEASURES: [Measure; 7] = [
    ("RSS MiB", |s| s.rss_kib as f64 / 1024.0),
    ("open file descriptors", |s| s.fds as f64),
    ("tokio tasks", |s| s.tasks as f64),
    ("live relays", |s| s.relays as f64),
    ("cached tenants", |s| s.cached as f64),
    ("Postgres connections (pool)", |s| s.pg_open as f64),
    ("of them idle", |s| s.pg_idle as f64),
];

/// Least-squares slope of `ys` over `xs` (per unit of x).
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

/// Each measure's level, range and fitted slope per hour (also as a share of its level).
fn series_table(series: &[(f64, Sample)], every: u64, plot: &std::path::Path) -> String {
    let xs: Vec<f64> = series.iter().map(|(t, _)| t / 3600.0).collect();
    let mut out = format!(
        "\nSamples of the client (this process) every {} s after the warm-up ({} samples, drawn in `{}`); slope fitted by least squares:\n\n| measure | mean | min | max | slope per hour | slope per hour / mean |\n|---|---|---|---|---|---|\n",
        every,
        series.len(),
        plot.display()
    );
    for (name, get) in MEASURES {
        let ys: Vec<f64> = series.iter().map(|(_, s)| get(s)).collect();
        let mean = ys.iter().sum::<f64>() / ys.len().max(1) as f64;
        let (min, max) = ys
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(*y), b.max(*y)));
        let k = slope(&xs, &ys);
        out.push_str(&format!(
            "| {name} | {mean:.1} | {min:.1} | {max:.1} | {k:+.2} | {:+.2} % |\n",
            if mean == 0.0 { 0.0 } else { k / mean * 100.0 }
        ));
    }
    out
}

/// The samples as an SVG: one panel per measure, each scaled to its own range from zero.
fn plot(series: &[(f64, Sample)]) -> String {
    let (w, h, pad) = (640.0, 110.0, 36.0);
    let t_max = series.last().map_or(1.0, |(t, _)| t.max(1.0));
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        h * MEASURES.len() as f64 + 20.0
    );
    for (row, (name, get)) in MEASURES.iter().enumerate() {
        let top = row as f64 * h + 10.0;
        let ys: Vec<f64> = series.iter().map(|(_, s)| get(s)).collect();
        let y_max = ys.iter().copied().fold(1.0, f64::max) * 1.1;
        let points: Vec<String> = series
            .iter()
            .zip(&ys)
            .map(|((t, _), y)| {
                format!(
                    "{:.1},{:.1}",
                    pad + t / t_max * (w - 2.0 * pad),
                    top + (h - 30.0) * (1.0 - y / y_max) + 14.0
                )
            })
            .collect();
        out.push_str(&format!(
            "<text x=\"{pad}\" y=\"{:.0}\">{name} (0 to {y_max:.0}), over {:.0} min</text>\n             <line x1=\"{pad}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#bbb\"/>\n             <polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\" points=\"{}\"/>\n",
            top + 10.0,
            t_max / 60.0,
            top + h - 16.0,
            w - pad,
            top + h - 16.0,
            points.join(" ")
        ));
    }
    out.push_str("</svg>\n");
    out
}
