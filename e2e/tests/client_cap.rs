//! The cap on open Postgres connections across all tenant pools, on a real Postgres server:
//! 300 tenants, each with its own pool (up to 2 connections, idle timeout 5 minutes), all
//! running transactions at once under a cap of 20. Every transaction must complete, and the
//! server must never see more than 20 of the library's connections. Pools built while the cap
//! is full wait for permits that idle pools hold until they are closed, so this also checks
//! that the library closes idle pools under pressure (idle timeouts alone would take 5
//! minutes).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use sqlx::Connection as _;
use tenant_mcp::client::{ClientSettings, TenantClients};
use tenant_mcp::services::TenantServices;
use tenant_mcp_e2e::scenario;
use tenant_mcp_e2e::stack::postgres::Postgres;

const TENANTS: usize = 300;
const CAP: u32 = 20;
const ROUNDS: usize = 3;

/// A directory of `n` tenants named `prefix` + index on database `db` with one login.
fn tenants_directory(
    pg: &Postgres,
    db: &str,
    login: (&str, &str),
    (prefix, n): (&str, usize),
    pool: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    scenario::write_postgres_tenants(dir.path(), (pg.port(), db), login, (prefix, n), pool)
        .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_with_300_active_tenants_and_every_transaction_completes() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("cap").await.unwrap();
    let user = format!("cap_{}", &db[db.len() - 8..]);
    pg.set_login(&user, "cap-pass").await.unwrap();
    let dir = tenants_directory(
        &pg,
        &db,
        (&user, "cap-pass"),
        ("t", TENANTS),
        "{maxConnections: 2, acquireTimeoutSeconds: 60, idleTimeoutSeconds: 300}",
    );
    let settings = ClientSettings {
        max_postgres_connections: CAP,
        ..ClientSettings::default()
    };
    let clients = TenantClients::from_directory(dir.path(), settings).unwrap();
    let services = TenantServices::new(clients.clone());

    // Watch the server's view of the library's connections while the tenants work.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicI64::new(0));
    let watcher = {
        let (done, peak, url) = (done.clone(), peak.clone(), pg.admin_url("postgres"));
        tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut samples = 0u32;
            while !done.load(Ordering::Relaxed) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenant-mcp-client'",
                )
                .fetch_one(&mut conn)
                .await
                .unwrap();
                peak.fetch_max(n, Ordering::Relaxed);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples
        })
    };

    let mut tasks = Vec::new();
    for i in 0..TENANTS {
        let services = services.clone();
        tasks.push(tokio::spawn(async move {
            let tenant = format!("t{i}");
            for _ in 0..ROUNDS {
                let mut tx = services.postgres.begin(&tenant).await?;
                let seen: String = sqlx::query_scalar(
                    "SELECT current_setting('app.tenant_id') FROM pg_sleep(0.01)",
                )
                .fetch_one(tx.conn())
                .await
                .map_err(|e| tx.error(e))?;
                assert_eq!(seen, tenant);
                tx.commit().await?;
            }
            Ok::<_, tenant_mcp::services::ServiceError>(())
        }));
    }
    let mut failures = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if let Err(e) = task.await.unwrap() {
            failures.push(format!("t{i}: {e}"));
        }
    }
    done.store(true, Ordering::Relaxed);
    let samples = watcher.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let peak = peak.load(Ordering::Relaxed);
    assert!(samples > 10, "the watcher sampled {samples} times");
    assert!(peak > 0, "the watcher saw the connections");
    assert!(
        peak <= i64::from(CAP),
        "peak {peak} connections over the cap {CAP}"
    );
    let (open, _, global_open, _) = clients.postgres_connections();
    assert!(open + global_open <= CAP);
    clients.shutdown().await;
}

/// Thirty active tenants with the default pool (up to 10 connections each) under the default
/// cap of 100, each using one connection: 30 connections fit, so no tenant's pool may be
/// closed to make room, and each tenant's second query runs on the connection of its first
/// (same backend pid). Counting every pool that ever connected at its maximum (10), as the
/// cache once did, closed the pools of all but ten tenants and made the others reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_within_the_cap_keep_their_connections() {
    const ACTIVE: usize = 30;
    tenant_mcp_e2e::stack::install_crypto_provider();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("keep").await.unwrap();
    let user = format!("keep_{}", &db[db.len() - 8..]);
    pg.set_login(&user, "keep-pass").await.unwrap();
    let dir = tenants_directory(&pg, &db, (&user, "keep-pass"), ("k", ACTIVE), "{}");
    let clients = TenantClients::from_directory(dir.path(), ClientSettings::default()).unwrap();
    let pid = |tenant: String| {
        let clients = clients.clone();
        async move {
            let pool = clients.postgres(&tenant).await.unwrap();
            sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let mut first = Vec::new();
    for i in 0..ACTIVE {
        first.push(pid(format!("k{i}")).await);
    }
    // Several pressure checks (every 100 ms) run in between.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut moved = Vec::new();
    for (i, before) in first.iter().enumerate() {
        let after = pid(format!("k{i}")).await;
        if after != *before {
            moved.push(format!("k{i}"));
        }
    }
    assert!(
        moved.is_empty(),
        "{} of {ACTIVE} tenants reconnected although 30 connections fit under the cap of 100: {moved:?}",
        moved.len()
    );
    clients.shutdown().await;
}
