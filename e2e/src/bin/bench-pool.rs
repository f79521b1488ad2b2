//! Pooling under a connection cap, against the baselines a user would compare: N tenants, each
//! with its own Postgres login, 16 workers asking for random tenants' `SELECT current_user`
//! as fast as they can, tenants chosen uniformly or skewed (Zipf, s = 1.1).
//!
//! - **tenant-mcp**: the client library (directory source), all pools under a cap of 64
//!   connections, each tenant's pool at the default `maxConnections: 10`.
//! - **connect per request**: connect with the tenant's login, query, close: what a service
//!   without pooling does.
//! - **PgBouncer** (Debian's): transaction mode, a pool per tenant login (`default_pool_size =
//!   10`), `max_db_connections = 64` (every tenant uses the same database, so this caps the
//!   server connections of all pools together, as our cap does), `server_idle_timeout = 1`
//!   (its shortest useful setting: PgBouncer frees a place under `max_db_connections` only when
//!   an idle server connection times out), `query_wait_timeout = 5` (our acquire timeout).
//!   The application keeps a sqlx pool of client connections to PgBouncer per tenant.
//!
//! Every system runs the same query with the simple protocol (PgBouncer 1.18 in transaction
//! mode cannot keep prepared statements), for a warm-up and then the measured seconds. Not a
//! test: it writes `docs/benchmarks.md`.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tenant_mcp::client::{ClientSettings, TenantClients};
use tenant_mcp_e2e::bench::{measured_line, quantile, write_section};
use tenant_mcp_e2e::scenario::postgres_tenant_yaml;
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tenant_mcp_e2e::stack::process::free_port;

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Tenant counts, one set of rows each.
    #[arg(long, value_delimiter = ',', default_values_t = [50, 200, 1000, 5000])]
    tenants: Vec<usize>,
    /// Measured seconds per row.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// Warm-up seconds per row (not measured).
    #[arg(long, default_value_t = 3)]
    warm_up: u64,
    /// Concurrent workers.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// The connection cap (ours and PgBouncer's `max_db_connections`).
    #[arg(long, default_value_t = 64)]
    cap: u32,
    /// Where to write the results (a section of this Markdown file is replaced).
    #[arg(long, default_value = "docs/benchmarks.md")]
    output: std::path::PathBuf,
}

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";
const QUERY: &str = "SELECT current_user::text";
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Uniform,
    Zipf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    TenantMcp,
    ConnectPerRequest,
    PgBouncer,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::TenantMcp => "tenant-mcp",
            Self::ConnectPerRequest => "connect per request",
            Self::PgBouncer => "PgBouncer",
        }
    }
}

/// What one row measured.
struct Row {
    system: System,
    tenants: usize,
    choice: Choice,
    per_second: f64,
    latencies: Vec<Duration>,
    timeouts: u64,
    errors: HashMap<String, u64>,
}

/// A seeded xorshift64* generator, one per worker.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks tenant indexes: uniform, or Zipf with s = 1.1 (tenant 0 the most asked for).
struct Picker {
    cdf: Option<Vec<f64>>,
    n: usize,
}

impl Picker {
    fn new(n: usize, choice: Choice) -> Self {
        let cdf = (choice == Choice::Zipf).then(|| {
            let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(1.1)).collect();
            let total: f64 = weights.iter().sum();
            weights
                .iter()
                .scan(0.0, |acc, w| {
                    *acc += w / total;
                    Some(*acc)
                })
                .collect()
        });
        Self { cdf, n }
    }

    fn pick(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        match &self.cdf {
            None => ((u * self.n as f64) as usize).min(self.n - 1),
            Some(cdf) => cdf.partition_point(|&c| c < u).min(self.n - 1),
        }
    }
}

/// Tenant `i`'s login and password.
fn login(i: usize, suffix: &str) -> (String, String) {
    (format!("p{i}_{suffix}"), format!("pw-{i}"))
}

/// A PgBouncer process, stopped when dropped.
struct PgBouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PgBouncer {
    /// PgBouncer in front of `pg`'s `database` for the first `n` logins.
    fn start(
        pg: &Postgres,
        database: &str,
        n: usize,
        suffix: &str,
        cap: u32,
    ) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        anyhow::ensure!(
            std::path::Path::new(PGBOUNCER).exists(),
            "{PGBOUNCER} is missing: apt-get install pgbouncer"
        );
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let users: String = (0..n)
            .map(|i| {
                let (user, password) = login(i, suffix);
                format!("\"{user}\" \"{password}\"\n")
            })
            .collect();
        std::fs::write(dir.path().join("users.txt"), users)?;
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\n{database} = host=127.0.0.1 port={pg_port} dbname={database}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = scram-sha-256\nauth_file = {dir}/users.txt\npool_mode = transaction\n\
                 default_pool_size = 10\nmax_db_connections = {cap}\nmax_client_conn = 20000\n\
                 server_idle_timeout = 1\nquery_wait_timeout = 5\nlogfile = {dir}/pgbouncer.log\n\
                 application_name_add_host = 0\nignore_startup_parameters = extra_float_digits,options\n",
                pg_port = pg.port(),
                dir = dir.path().display(),
            ),
        )?;
        // PgBouncer refuses to run as root: as root, it runs as the postgres user.
        for entry in std::fs::read_dir(dir.path())? {
            std::fs::set_permissions(entry?.path(), std::fs::Permissions::from_mode(0o644))?;
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
        let ini = dir.path().join("pgbouncer.ini");
        let root = Command::new("id")
            .arg("-u")
            .output()?
            .stdout
            .starts_with(b"0");
        let mut command = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", PGBOUNCER]);
            c
        } else {
            Command::new(PGBOUNCER)
        };
        let child = command
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pgbouncer")?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen on {port}: {}",
                std::fs::read_to_string(dir.path().join("pgbouncer.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }
}

/// How one system serves a request for tenant `i`.
#[derive(Clone)]
enum Target {
    TenantMcp(TenantClients),
    Direct {
        port: u16,
        database: String,
    },
    PgBouncer {
        port: u16,
        database: String,
        pools: Arc<Mutex<HashMap<usize, PgPool>>>,
    },
}

impl Target {
    async fn ask(&self, i: usize, suffix: &str) -> Result<String, sqlx::Error> {
        let (user, password) = login(i, suffix);
        let options = |port: u16, database: &str| {
            PgConnectOptions::new()
                .host("127.0.0.1")
                .port(port)
                .database(database)
                .username(&user)
                .password(&password)
                .application_name("bench-pool")
        };
        let query = || sqlx::raw_sql(QUERY);
        let row = match self {
            Self::TenantMcp(clients) => {
                let tenant = format!("p{i}");
                let pool = clients
                    .postgres(&tenant)
                    .await
                    .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                query().fetch_one(&pool).await?
            }
            Self::Direct { port, database } => {
                let mut conn = sqlx::PgConnection::connect_with(&options(*port, database)).await?;
                let row = query().fetch_one(&mut conn).await?;
                conn.close().await?;
                row
            }
            Self::PgBouncer {
                port,
                database,
                pools,
            } => {
                let pool = pools
                    .lock()
                    .map_err(|_| sqlx::Error::PoolClosed)?
                    .entry(i)
                    .or_insert_with(|| {
                        PgPoolOptions::new()
                            .max_connections(10)
                            .acquire_timeout(ACQUIRE_TIMEOUT)
                            .connect_lazy_with(options(*port, database))
                    })
                    .clone();
                query().fetch_one(&pool).await?
            }
        };
        sqlx::Row::try_get(&row, 0)
    }
}

/// Runs `workers` against `target` for the warm-up and then `seconds`.
async fn run(
    args: &Args,
    target: &Target,
    (n, choice): (usize, Choice),
    suffix: &str,
) -> (f64, Vec<Duration>, u64, HashMap<String, u64>) {
    let picker = Arc::new(Picker::new(n, choice));
    let measuring = Arc::new(AtomicBool::new(false));
    let running = Arc::new(AtomicBool::new(true));
    let mut handles = Vec::new();
    for w in 0..args.workers {
        let (target, picker, measuring, running) = (
            target.clone(),
            picker.clone(),
            measuring.clone(),
            running.clone(),
        );
        let suffix = suffix.to_owned();
        handles.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((w as u64 + 1) * 0x1000_0000_01B3));
            let mut latencies = Vec::new();
            let mut timeouts = 0u64;
            let mut errors: HashMap<String, u64> = HashMap::new();
            while running.load(Ordering::Relaxed) {
                let i = picker.pick(&mut rng);
                let started = Instant::now();
                let result = target.ask(i, &suffix).await;
                let took = started.elapsed();
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match result {
                    Ok(user) if user == login(i, &suffix).0 => latencies.push(took),
                    Ok(user) => *errors.entry(format!("WRONG login {user}")).or_default() += 1,
                    Err(sqlx::Error::PoolTimedOut) => timeouts += 1,
                    Err(e) if e.to_string().contains("query_wait_timeout") => timeouts += 1,
                    Err(e) => *errors.entry(e.to_string()).or_default() += 1,
                }
            }
            (latencies, timeouts, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.warm_up)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut timeouts = 0;
    let mut errors: HashMap<String, u64> = HashMap::new();
    for h in handles {
        if let Ok((l, t, e)) = h.await {
            all.extend(l);
            timeouts += t;
            for (k, v) in e {
                *errors.entry(k).or_default() += v;
            }
        }
    }
    all.sort_unstable();
    let per_second = all.len() as f64 / elapsed.as_secs_f64();
    (per_second, all, timeouts, errors)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tenant_mcp_e2e::bench::start();
    let most = args.tenants.iter().copied().max().unwrap_or(0);
    let pg = Postgres::start()?;
    let database = pg.create_database("pool").await?;
    let suffix = database[database.len() - 6..].to_owned();
    execute(
        &pg.admin_url("postgres"),
        &format!(
            "DO $$ BEGIN FOR i IN 0..{last} LOOP \
             EXECUTE format('CREATE ROLE p%s_{suffix} LOGIN PASSWORD %L', i, 'pw-' || i); \
             END LOOP; END $$",
            last = most.saturating_sub(1)
        ),
    )
    .await?;
    let bouncer = PgBouncer::start(&pg, &database, most, &suffix, args.cap)?;
    let mut rows = Vec::new();
    for &n in &args.tenants {
        let dir = tempfile::tempdir()?;
        let mut text = String::from(
            "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {name: default}\nspec:\n  endpointPolicy: {allowLoopback: true}\n",
        );
        for i in 0..n {
            let (user, password) = login(i, &suffix);
            text.push_str(&postgres_tenant_yaml(
                &format!("p{i}"),
                &user,
                &password,
                (pg.port(), &database),
                "{}",
            ));
        }
        std::fs::write(dir.path().join("tenants.yaml"), text)?;
        for choice in [Choice::Uniform, Choice::Zipf] {
            for system in [
                System::TenantMcp,
                System::ConnectPerRequest,
                System::PgBouncer,
            ] {
                let target = match system {
                    System::TenantMcp => Target::TenantMcp(TenantClients::from_directory(
                        dir.path(),
                        ClientSettings {
                            max_postgres_connections: args.cap,
                            max_cached_tenants: n,
                            idle_ttl: Duration::from_secs(3600),
                            ..ClientSettings::default()
                        },
                    )?),
                    System::ConnectPerRequest => Target::Direct {
                        port: pg.port(),
                        database: database.clone(),
                    },
                    System::PgBouncer => Target::PgBouncer {
                        port: bouncer.port,
                        database: database.clone(),
                        pools: Arc::default(),
                    },
                };
                let (per_second, latencies, timeouts, errors) =
                    run(&args, &target, (n, choice), &suffix).await;
                match &target {
                    Target::TenantMcp(clients) => clients.shutdown().await,
                    Target::PgBouncer { pools, .. } => {
                        let pools: Vec<PgPool> = pools
                            .lock()
                            .map(|p| p.values().cloned().collect())
                            .unwrap_or_default();
                        for p in pools {
                            p.close().await;
                        }
                    }
                    Target::Direct { .. } => {}
                }
                eprintln!(
                    "{n} tenants, {choice:?}, {}: {per_second:.0}/s, p99 {:?}, {timeouts} timeouts, errors {errors:?}",
                    system.name(),
                    quantile(&latencies, 0.99)
                );
                rows.push(Row {
                    system,
                    tenants: n,
                    choice,
                    per_second,
                    latencies,
                    timeouts,
                    errors,
                });
                // Let closed connections go before the next row.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    drop(bouncer);
    let report = render(&args, &rows);
    println!("{report}");
    write_section(
        &args.output,
        "bench-pool",
        "Pooling: tenants under a 64-connection cap, against connect-per-request and PgBouncer",
        &report,
    )
    .context("writing the results")?;
    let wrong: u64 = rows
        .iter()
        .flat_map(|r| r.errors.iter())
        .filter(|(k, _)| k.starts_with("WRONG"))
        .map(|(_, v)| v)
        .sum();
    anyhow::ensure!(
        wrong == 0,
        "{wrong} requests were answered by the wrong login"
    );
    Ok(())
}

fn render(args: &Args, rows: &[Row]) -> String {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "{}\n\nMethod: see `e2e/src/bin/bench-pool.rs`. {} workers, cap {} connections, {} s measured after {} s of warm-up per row; `SELECT current_user` with the tenant's own login, checked. Latency in ms; timeouts are requests that waited out the 5 s acquire timeout (PgBouncer: `query_wait_timeout`); errors are every other failure.\n\n\
         | tenants | choice | system | requests/s | p50 | p99 | p99.9 | timeouts | errors | × connect per request |\n|---|---|---|---|---|---|---|---|---|---|\n",
        measured_line("cargo run --release -p tenant-mcp-e2e --bin bench-pool"),
        args.workers,
        args.cap,
        args.seconds,
        args.warm_up,
    );
    for r in rows {
        let baseline = rows
            .iter()
            .find(|b| {
                b.system == System::ConnectPerRequest
                    && b.tenants == r.tenants
                    && b.choice == r.choice
            })
            .map_or(0.0, |b| b.per_second);
        let errors: u64 = r.errors.values().sum();
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.2} |\n",
            r.tenants,
            match r.choice {
                Choice::Uniform => "uniform",
                Choice::Zipf => "Zipf 1.1",
            },
            r.system.name(),
            r.per_second,
            ms(quantile(&r.latencies, 0.5)),
            ms(quantile(&r.latencies, 0.99)),
            ms(quantile(&r.latencies, 0.999)),
            r.timeouts,
            errors,
            r.per_second / baseline.max(f64::MIN_POSITIVE),
        ));
    }
    let mut kinds: HashMap<&str, u64> = HashMap::new();
    for r in rows {
        for (k, v) in &r.errors {
            *kinds.entry(k.as_str()).or_default() += v;
        }
    }
    if !kinds.is_empty() {
        out.push_str("\nErrors by message (all rows):\n\n");
        for (k, v) in kinds {
            out.push_str(&format!("- {v}× `{k}`\n"));
        }
    }
    out
}
