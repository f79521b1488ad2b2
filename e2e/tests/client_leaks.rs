//! Nothing a tenant's clients held outlives them, on a real Postgres server: tenants evicted
//! from a full cache and pools rebuilt after a config change leave no tokio task, no socket
//! and no relay behind. The counts are this process's own (`/proc/self/fd`, the runtime's alive
//! tasks), taken with the same tenants cached before and after the churn.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use tenant_mcp::client::{ClientSettings, TenantClients};
use tenant_mcp::config::candidate::ServerKey;
use tenant_mcp_e2e::scenario;
use tenant_mcp_e2e::stack::postgres::Postgres;

const CACHED: usize = 8;
const TENANTS: usize = 40;
const ROUNDS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    tasks: usize,
    fds: usize,
    open: u32,
    relays: u64,
}

fn held(clients: &TenantClients) -> Held {
    let (open, _, global, _) = clients.postgres_connections();
    Held {
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
        open: open + global,
        relays: clients.resources().relays,
    }
}

async fn serve(clients: &TenantClients, tenant: &str) {
    let pool = clients.postgres(tenant).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{tenant}: {e}"));
    assert_eq!(one, 1);
}

/// The first `CACHED` tenants, one at a time, twice: each ends with one idle connection.
async fn serve_the_cached_set(clients: &TenantClients) {
    for _ in 0..2 {
        for i in 0..CACHED {
            serve(clients, &format!("l{i}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_tenants_and_rebuilt_pools_leave_no_task_or_socket_behind() {
    churn_and_count(100).await;
}

/// The same under a cap of half the cached tenants: connections are reclaimed from idle
/// tenants to serve others all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reclaimed_under_the_cap_leave_no_task_or_socket_behind() {
    churn_and_count(CACHED as u32 / 2).await;
}

async fn churn_and_count(cap: u32) {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("leak").await.unwrap();
    let login = format!("leak_{}", &db[db.len() - 8..]);
    pg.set_login(&login, "leak-pass").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |idle: u32| {
        scenario::write_postgres_tenants(
            dir.path(),
            (pg.port(), &db),
            (&login, "leak-pass"),
            ("l", TENANTS),
            &format!("{{maxConnections: 2, idleTimeoutSeconds: {idle}}}"),
        )
        .unwrap();
    };
    write(300);
    let clients = TenantClients::from_directory(
        dir.path(),
        ClientSettings {
            max_cached_tenants: CACHED,
            max_postgres_connections: cap,
            directory_poll: Duration::from_millis(100),
            ..ClientSettings::default()
        },
    )
    .unwrap();

    serve_the_cached_set(&clients).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = held(&clients);
    assert_eq!(before.open, cap.min(CACHED as u32), "{before:?}");
    assert_eq!(
        before.relays, CACHED as u64,
        "one relay per cached pool: {before:?}"
    );

    for round in 0..ROUNDS {
        // Every tenant once: each past the eighth evicts the least recently used.
        for i in 0..TENANTS {
            serve(&clients, &format!("l{i}")).await;
        }
        // A changed pool setting: every cached tenant's pool is rebuilt on its next use.
        let fingerprint = clients
            .endpoint("l39", &ServerKey::Postgres)
            .unwrap()
            .fingerprint;
        write(301 + u32::try_from(round).unwrap());
        let changed = async {
            while clients
                .endpoint("l39", &ServerKey::Postgres)
                .unwrap()
                .fingerprint
                == fingerprint
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), changed)
            .await
            .expect("the directory source saw the edit");
        for i in TENANTS - CACHED..TENANTS {
            serve(&clients, &format!("l{i}")).await;
        }
    }
    serve_the_cached_set(&clients).await;

    // Closing is in the background: give it time, then compare.
    let mut after = held(&clients);
    let settling = std::time::Instant::now();
    for _ in 0..100 {
        if after.tasks <= before.tasks && after.fds <= before.fds && after.relays == before.relays {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = held(&clients);
    }
    eprintln!(
        "before {before:?}, after {after:?} ({:?} later)",
        settling.elapsed()
    );
    assert_eq!(
        after.open, before.open,
        "before {before:?}, after {after:?}"
    );
    assert!(
        after.tasks <= before.tasks && after.fds <= before.fds && after.relays == before.relays,
        "after {} evictions and {ROUNDS} rebuilds of the same {CACHED} cached tenants, 20 s later: \
         before {before:?}, after {after:?}",
        ROUNDS * (TENANTS - CACHED) + CACHED,
    );
    clients.shutdown().await;
}

/// MCP sessions are bounded by the cached tenants: each tenant served by the global AI MCP
/// server gets a session of its own (its routing), and a tenant evicted from the full cache
/// has its session ended. Counted by `TenantClients::resources` (process-wide; nextest runs
/// each test in a process of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_tenants_mcp_session_is_closed() {
    use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer, Token};
    tenant_mcp_e2e::stack::install_crypto_provider();
    let ai = AiMcpServer::start(AiMcpConfig::new(
        "global",
        vec![Token {
            token: "platform".into(),
            tenant: None,
        }],
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("global.yaml"),
        format!(
            "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {{name: default}}\nspec:\n  endpointPolicy: {{allowLoopback: true}}\n  servers:\n    aiMcpServer:\n      url: {}\n      bearerTokenSecretRef: {{name: global, key: token}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: global, namespace: tenant-mcp-credentials}}\nstringData: {{token: platform}}\n",
            ai.url()
        ),
    )
    .unwrap();
    let clients = TenantClients::from_directory(
        dir.path(),
        ClientSettings {
            max_cached_tenants: 2,
            ..ClientSettings::default()
        },
    )
    .unwrap();
    let sessions = || clients.resources().mcp_sessions;
    assert_eq!(sessions(), 0);
    for (i, tenant) in ["m0", "m1", "m2", "m3", "m4"].iter().enumerate() {
        let client = clients.ai_mcp(tenant).await.unwrap();
        client.list_tools().await.unwrap();
        drop(client);
        // Every tenant past the second evicts one, whose session ends in the background.
        let expected = (i as u64 + 1).min(2);
        let mut seen = sessions();
        for _ in 0..50 {
            if seen == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen = sessions();
        }
        assert_eq!(seen, expected, "after {tenant}: {:?}", clients.resources());
    }
    clients.shutdown().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sessions(), 0, "shutdown ends every session");
}
