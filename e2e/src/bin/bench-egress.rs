//! Benchmark of the endpoint policy at connect time (`tenant_mcp::egress`). Not a test: it
//! measures on a real Postgres server and writes the results to `docs/benchmarks.md`.
//!
//! - the checked resolver against the plain system resolver, for a name (`localhost`, from
//!   `/etc/hosts`) and an IP literal: what the check adds to every new connection;
//! - a new Postgres connection (connect, login, `SELECT 1`) straight to the server against one
//!   through the egress relay, both with `sslMode disable`;
//! - `SELECT 1` on an open connection, straight against relayed: what the relay hop adds to
//!   every round trip.
//!
//! Baselines run in the same process, interleaved with the measured variant, so a busy
//! machine slows both alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tenant_mcp::api::{EndpointPolicySpec, PostgresServer};
use tenant_mcp::config::EndpointPolicy;
use tenant_mcp::egress::{CheckedResolver, Egress, Lookup, SystemLookup};
use tenant_mcp_e2e::bench::{self, measured_line, quantile, us};
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};

/// Options.
#[derive(Debug, Parser)]
struct Args {
    /// Resolutions timed per variant.
    #[arg(long, env = "BENCH_RESOLVES", default_value_t = 20_000)]
    resolves: usize,
    /// New Postgres connections timed per variant.
    #[arg(long, env = "BENCH_CONNECTS", default_value_t = 300)]
    connects: usize,
    /// Round trips timed per variant.
    #[arg(long, env = "BENCH_QUERIES", default_value_t = 20_000)]
    queries: usize,
    /// Where to write the results (a section of this Markdown file is replaced).
    #[arg(long, env = "BENCH_OUTPUT", default_value = "docs/benchmarks.md")]
    output: std::path::PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tenant_mcp_e2e::stack::install_crypto_provider();
    let spec = EndpointPolicySpec {
        allow_loopback: true,
        ..EndpointPolicySpec::default()
    };
    let policy = EndpointPolicy::compile_or_strict(&spec);
    let lookup: Arc<dyn Lookup> = Arc::new(SystemLookup);
    let resolver = CheckedResolver::new(Arc::new(policy.clone()), lookup.clone());

    let mut rows = Vec::new();
    for (what, host) in [
        ("a name (localhost)", "localhost"),
        ("an IP literal", "127.0.0.1"),
    ] {
        let (mut plain, mut checked) = (Vec::new(), Vec::new());
        for _ in 0..args.resolves {
            let started = Instant::now();
            if host.parse::<std::net::IpAddr>().is_err() {
                std::hint::black_box(lookup.lookup(host, 5432).await?);
            }
            plain.push(started.elapsed());
            let started = Instant::now();
            std::hint::black_box(resolver.resolve(host, 5432).await?);
            checked.push(started.elapsed());
        }
        rows.push((format!("resolve {what}: system resolver only"), plain));
        rows.push((format!("resolve {what}: checked resolver"), checked));
    }

    let pg = Postgres::start()?;
    let db = pg.create_database("bench").await?;
    let user = format!("bench_{}", &db[db.len() - 6..]);
    execute(
        &pg.admin_url("postgres"),
        &format!("CREATE ROLE {user} LOGIN PASSWORD 'pw'"),
    )
    .await?;
    let server: PostgresServer = serde_json::from_value(serde_json::json!({
        "host": "localhost", "port": pg.port(), "database": db, "sslMode": "disable",
        "credentialsSecretRef": {"name": "pg"}}))?;
    let egress = Egress::new(policy, lookup).map_err(anyhow::Error::msg)?;
    let relay = egress
        .postgres_relay(&server, None, Duration::from_secs(5), None)
        .map_err(anyhow::Error::msg)?;
    let base = PgConnectOptions::new()
        .port(pg.port())
        .database(&db)
        .username(&user)
        .password("pw")
        .ssl_mode(sqlx::postgres::PgSslMode::Disable);
    let direct = base.clone().host("localhost");
    let relayed = relay.connect_options(base.host("localhost"));
    let (mut new_direct, mut new_relayed) = (Vec::new(), Vec::new());
    for _ in 0..args.connects {
        for (options, out) in [(&direct, &mut new_direct), (&relayed, &mut new_relayed)] {
            let started = Instant::now();
            let mut conn = PgConnection::connect_with(options).await?;
            let _: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
            out.push(started.elapsed());
            conn.close().await?;
        }
    }
    rows.push((
        "new Postgres connection + login + SELECT 1: straight".into(),
        new_direct,
    ));
    rows.push((
        "new Postgres connection + login + SELECT 1: through the relay".into(),
        new_relayed,
    ));
    let mut a = PgConnection::connect_with(&direct).await?;
    let mut b = PgConnection::connect_with(&relayed).await?;
    let (mut rt_direct, mut rt_relayed) = (Vec::new(), Vec::new());
    for _ in 0..args.queries {
        for (conn, out) in [(&mut a, &mut rt_direct), (&mut b, &mut rt_relayed)] {
            let started = Instant::now();
            let _: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await?;
            out.push(started.elapsed());
        }
    }
    rows.push(("SELECT 1 round trip: straight".into(), rt_direct));
    rows.push(("SELECT 1 round trip: through the relay".into(), rt_relayed));

    let mut table = String::from("| measurement | samples | p50 | p99 |\n|---|---|---|---|\n");
    let mut p50s = Vec::new();
    for (label, mut samples) in rows {
        samples.sort();
        let (p50, p99) = (quantile(&samples, 0.5), quantile(&samples, 0.99));
        table.push_str(&format!(
            "| {label} | {} | {} | {} |\n",
            samples.len(),
            us(p50),
            us(p99)
        ));
        p50s.push(p50);
    }
    let added = |plain: Duration, checked: Duration| {
        format!(
            "+{} (×{:.2})",
            us(checked.saturating_sub(plain)),
            checked.as_secs_f64() / plain.as_secs_f64().max(1e-12)
        )
    };
    table.push_str(&format!(
        "\nAdded at p50: resolving a name {}; an IP literal {}; a new Postgres connection {}; a round trip on an open connection {}.\n",
        added(p50s[0], p50s[1]),
        added(p50s[2], p50s[3]),
        added(p50s[4], p50s[5]),
        added(p50s[6], p50s[7]),
    ));
    println!("{table}");
    let body = format!(
        "{}\n\nMethod: one process, a real Postgres on loopback, the policy allowing loopback. \
Each variant runs interleaved with its baseline. Resolving: `CheckedResolver::resolve` \
(the policy's name checks, the system resolver, every address checked) against the system \
resolver alone. Postgres: `PgConnection::connect_with` straight to `localhost` against the same \
through an egress relay socket (the relay resolves, checks and connects for each new \
connection), both `sslMode disable`; then `SELECT 1` on one open connection of each. S3 and \
MCP connections add only the resolver's check (their connectors ask it per new \
connection); they have no relay.\n\n{table}",
        measured_line("cargo run --release -p tenant-mcp-e2e --bin bench-egress")
    );
    bench::write_section(
        &args.output,
        "bench-egress",
        "Endpoint policy at connect time: added cost",
        &body,
    )?;
    Ok(())
}
