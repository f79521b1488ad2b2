//! Client pods restarting under load, on a real Postgres: 200 tenants, each on a login of its
//! own, and a global server on yet another; workers ask for random tenants' pools as fast as
//! they can while the client library is shut down and started again, five times. Every request
//! must be served by its own tenant's login or fail with a clear error (the instance is shut
//! down, or its pool was closed under the request); none may be served as another tenant or
//! as the global login.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tenant_mcp::client::{ClientError, ClientSettings, TenantClients};
use tenant_mcp_e2e::scenario;
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tokio::sync::RwLock;

const TENANTS: usize = 200;
const WORKERS: usize = 16;
const RESTARTS: usize = 5;

/// What one request ended as.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Served,
    /// Served by another login: must never happen.
    Wrong(String),
    /// A clear failure, by kind.
    Failed(&'static str),
    /// Anything else: must never happen.
    Unclear(String),
}

async fn request(clients: &TenantClients, tenant: &str, expected: &str) -> Outcome {
    let pool = match clients.postgres(tenant).await {
        Ok(pool) => pool,
        Err(ClientError::ShutDown) => return Outcome::Failed("ShutDown"),
        Err(e) => return Outcome::Unclear(e.to_string()),
    };
    match sqlx::query_scalar::<_, String>("SELECT current_user::text")
        .fetch_one(&pool)
        .await
    {
        Ok(user) if user == expected => Outcome::Served,
        Ok(user) => Outcome::Wrong(format!("{tenant} served as {user}")),
        Err(sqlx::Error::PoolClosed) => Outcome::Failed("PoolClosed"),
        Err(e) => Outcome::Unclear(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_restarts_under_load_never_serve_a_tenant_with_another_tenants_client() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("restart").await.unwrap();
    let suffix = db[db.len() - 6..].to_owned();
    let login = move |i: usize| format!("t{i}_{suffix}");
    let global = format!("global_{}", &db[db.len() - 6..]);
    execute(
        &pg.admin_url("postgres"),
        &format!(
            "DO $$ BEGIN FOR i IN 0..{last} LOOP \
             EXECUTE format('CREATE ROLE t%s_{suffix} LOGIN PASSWORD %L', i, 'pw-' || i); \
             END LOOP; CREATE ROLE {global} LOGIN PASSWORD 'global-pw'; END $$",
            last = TENANTS - 1,
            suffix = &db[db.len() - 6..],
        ),
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {{name: default}}\n\
         spec:\n  credentialsNamespace: creds\n  endpointPolicy: {{allowLoopback: true}}\n  servers:\n\
         \x20   postgres: {{host: 127.0.0.1, port: {port}, database: {db}, sslMode: disable, \
         credentialsSecretRef: {{name: pg}}}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: pg, namespace: creds}}\n\
         stringData: {{username: {global}, password: global-pw}}\n",
        port = pg.port(),
    );
    for i in 0..TENANTS {
        text.push_str(&scenario::postgres_tenant_yaml(
            &format!("t{i}"),
            &login(i),
            &format!("pw-{i}"),
            (pg.port(), &db),
            "{maxConnections: 1, acquireTimeoutSeconds: 30}",
        ));
    }
    std::fs::write(dir.path().join("tenants.yaml"), text).unwrap();
    let start = || {
        let settings = ClientSettings {
            max_postgres_connections: 40,
            ..ClientSettings::default()
        };
        TenantClients::from_directory(dir.path(), settings).unwrap()
    };

    let current = Arc::new(RwLock::new(start()));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (current, running) = (current.clone(), running.clone());
        let login = login.clone();
        workers.push(tokio::spawn(async move {
            let mut outcomes: BTreeMap<Outcome, u64> = BTreeMap::new();
            let mut i = w * 7919;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                i = (i * 31 + 17) % TENANTS;
                let clients = current.read().await.clone();
                let outcome = request(&clients, &format!("t{i}"), &login(i)).await;
                if outcome == Outcome::Failed("ShutDown") {
                    // As a caller would: back off until the new instance is in place.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                *outcomes.entry(outcome).or_default() += 1;
            }
            outcomes
        }));
    }
    for _ in 0..RESTARTS {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // The old instance goes down with requests in flight on it; the new one takes over.
        let old = current.read().await.clone();
        let shutting = tokio::spawn(async move { old.shutdown().await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        *current.write().await = start();
        shutting.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut all: BTreeMap<Outcome, u64> = BTreeMap::new();
    for w in workers {
        for (outcome, n) in w.await.unwrap() {
            *all.entry(outcome).or_default() += n;
        }
    }
    let last = current.read().await.clone();
    last.shutdown().await;
    // A shut-down instance hands out nothing, not even a pool it would build anew.
    assert!(
        matches!(last.postgres("t1").await, Err(ClientError::ShutDown)),
        "a shut down instance still hands out pools"
    );
    drop(last);
    eprintln!("{TENANTS} tenants, {WORKERS} workers, {RESTARTS} restarts: {all:?}");
    // Every instance is shut down: none of their connections may stay open (a pool built by
    // a request that raced a shutdown would, until its idle timeout).
    let open =
        async || -> i64 {
            sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenant-mcp-client'",
        )
        .fetch_one(&sqlx::PgPool::connect(&pg.admin_url("postgres")).await.unwrap())
        .await
        .unwrap()
        };
    let left = tenant_mcp_e2e::harness::wait_for(
        "the shut down instances' connections to close",
        Duration::from_secs(10),
        async || {
            let n = open().await;
            (n == 0).then_some(n)
        },
    )
    .await;
    assert_eq!(left, 0);
    let wrong: Vec<_> = all
        .keys()
        .filter(|o| matches!(o, Outcome::Wrong(_)))
        .collect();
    assert!(wrong.is_empty(), "served by another login: {wrong:?}");
    let unclear: Vec<_> = all
        .keys()
        .filter(|o| matches!(o, Outcome::Unclear(_)))
        .collect();
    assert!(
        unclear.is_empty(),
        "failed without a clear error: {unclear:?}"
    );
    // How many requests fit in the run depends on the machine's load: only that the
    // instances served is asserted, not how fast.
    assert!(
        all.get(&Outcome::Served).copied().unwrap_or(0) >= TENANTS as u64 / 4,
        "{all:?}"
    );
    assert!(
        all.keys().any(|o| matches!(o, Outcome::Failed(_))),
        "no request was caught by a restart: the test did not test it: {all:?}"
    );
}
