//! The client library end to end: the controller (in-process) promotes tenant configs on the
//! real control plane (or `E2E_KUBECONFIG`'s cluster), and `TenantClients` watching the same API
//! hands out Postgres pools of a real Postgres server: the tenant's own login, the global one
//! for tenants without a config, a switch to new credentials after a change, and closed
//! connections after eviction, each checked on the server in `pg_stat_activity`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use sqlx::Connection as _;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::client::{ClientError, ClientSettings, KubeSource, Origin, TenantClients};
use tenant_mcp::config::candidate::ServerKey;
use tenant_mcp::controller::{self, Settings};
use tenant_mcp_e2e::harness::{Cluster, create_namespace, wait_for};
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tokio_util::sync::CancellationToken;

/// Connections the client library holds open as `user` (its pools name themselves
/// `tenant-mcp-client`).
async fn client_connections(pg: &Postgres, user: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(&pg.admin_url("postgres"))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND application_name = 'tenant-mcp-client'",
    )
    .bind(user)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    n
}

async fn apply_secret(client: &kube::Client, ns: &str, name: &str, pairs: &[(&str, &str)]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let data: serde_json::Map<String, serde_json::Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": data,
    });
    api.patch(
        name,
        &PatchParams::apply("client-test").force(),
        &Patch::Apply(&secret),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_get_their_own_pool_others_the_global_one_and_changes_and_evictions_close_pools() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    let pg = Postgres::start().unwrap();
    let acme_db = pg.create_database("acme").await.unwrap();
    let global_db = pg.create_database("global").await.unwrap();
    let suffix = &acme_db[acme_db.len() - 6..];
    let (acme_user, acme_user2, platform) = (
        format!("acme_{suffix}"),
        format!("acme2_{suffix}"),
        format!("platform_{suffix}"),
    );
    for (user, pass) in [
        (&acme_user, "acme-pass-1"),
        (&acme_user2, "acme-pass-2"),
        (&platform, "platform-pass"),
    ] {
        execute(
            &pg.admin_url("postgres"),
            &format!("CREATE ROLE {user} LOGIN PASSWORD '{pass}'"),
        )
        .await
        .unwrap();
    }

    // The global server, with its credentials in the credentials namespace.
    let creds_ns = format!("tenant-mcp-system-{suffix}");
    create_namespace(&client, &creds_ns, None).await.unwrap();
    apply_secret(
        &client,
        &creds_ns,
        "global-pg",
        &[("username", &platform), ("password", "platform-pass")],
    )
    .await;
    let global = serde_json::json!({
        "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
        "metadata": {"name": "default"},
        "spec": {
            "credentialsNamespace": creds_ns,
            "endpointPolicy": {"allowLoopback": true},
            "servers": {"postgres": {
                "host": "127.0.0.1", "port": pg.port(), "database": global_db, "sslMode": "disable",
                "credentialsSecretRef": {"name": "global-pg"}
            }}
        }
    });
    Api::<tenant_mcp::api::GlobalMcpConfig>::all(client.clone())
        .patch(
            "default",
            &PatchParams::apply("client-test").force(),
            &Patch::Apply(&global),
        )
        .await
        .unwrap();

    // Tenant acme brings its own Postgres login.
    let ns = format!("acme-{suffix}");
    let tenant = format!("acme-{suffix}");
    create_namespace(&client, &ns, Some(&tenant)).await.unwrap();
    apply_secret(
        &client,
        &ns,
        "pg",
        &[("username", &acme_user), ("password", "acme-pass-1")],
    )
    .await;
    let configs: Api<TenantMcpConfig> = Api::namespaced(client.clone(), &ns);
    configs
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                "metadata": {"name": "config"},
                "spec": {"tenantId": tenant, "servers": {"postgres": {
                    "host": "127.0.0.1", "port": pg.port(), "database": acme_db, "sslMode": "disable",
                    "credentialsSecretRef": {"name": "pg"}
                }}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let controller_task = tokio::spawn(controller::run(
        client.clone(),
        Settings {
            identity: "client-test".into(),
            snapshot_grace: Duration::from_secs(1),
            ..Settings::default()
        },
        None,
        stop.clone(),
        None,
    ));

    let settings = ClientSettings {
        kube: KubeSource {
            ..KubeSource::default()
        },
        ..ClientSettings::default()
    };
    let clients = TenantClients::from_kube(client.clone(), settings)
        .await
        .unwrap();

    // The tenant's own login once the controller promoted it.
    let first = wait_for("acme's own Postgres", Duration::from_secs(60), async || {
        clients
            .endpoint(&tenant, &ServerKey::Postgres)
            .ok()
            .filter(|e| e.origin == Origin::Tenant)
    })
    .await;
    let pool = clients.postgres(&tenant).await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, acme_user);
    // A tenant without a config: the global login; an unknown server type: NotConfigured.
    let other = clients.postgres("someone-else").await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&other)
        .await
        .unwrap();
    assert_eq!(user, platform);
    assert!(
        matches!(
            clients.s3(&tenant).await,
            Err(ClientError::NotConfigured { .. })
        ),
        "no S3 server anywhere"
    );
    // A cached lookup hands out the same pool (no second pool, no new connection).
    let again = clients.postgres(&tenant).await.unwrap();
    assert!(pool.same_pool(&again));

    // Hold a transaction on the old pool across the change: it must finish normally.
    let mut in_flight = pool.begin().await.unwrap();
    sqlx::query("SELECT 1")
        .execute(&mut *in_flight)
        .await
        .unwrap();
    apply_secret(
        &client,
        &ns,
        "pg",
        &[("username", &acme_user2), ("password", "acme-pass-2")],
    )
    .await;
    wait_for(
        "the new credentials promoted",
        Duration::from_secs(60),
        async || {
            clients
                .endpoint(&tenant, &ServerKey::Postgres)
                .ok()
                .filter(|e| e.fingerprint != first.fingerprint)
        },
    )
    .await;
    let new_pool = clients.postgres(&tenant).await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&new_pool)
        .await
        .unwrap();
    assert_eq!(user, acme_user2, "new requests use the new credentials");
    let still: i32 = sqlx::query_scalar("SELECT 2")
        .fetch_one(&mut *in_flight)
        .await
        .unwrap();
    assert_eq!(still, 2, "in-flight work on the old pool completes");
    in_flight.commit().await.unwrap();
    drop(pool);
    drop(again);
    wait_for(
        "the old pool's connections to close",
        Duration::from_secs(30),
        async || (client_connections(&pg, &acme_user).await == 0).then_some(()),
    )
    .await;
    assert!(client_connections(&pg, &acme_user2).await >= 1);

    // Eviction: a short idle TTL closes the pool's connections on the server (long enough
    // that counting them comes first on a loaded machine).
    let short = TenantClients::from_kube(
        client.clone(),
        ClientSettings {
            idle_ttl: Duration::from_secs(3),
            kube: KubeSource {
                ..KubeSource::default()
            },
            ..ClientSettings::default()
        },
    )
    .await
    .unwrap();
    let evictable = short.postgres(&tenant).await.unwrap();
    sqlx::query("SELECT 1").execute(&evictable).await.unwrap();
    drop(evictable);
    let before = client_connections(&pg, &acme_user2).await;
    assert!(before >= 2, "both libraries hold a connection: {before}");
    wait_for(
        "the idle tenant's eviction",
        Duration::from_secs(10),
        async || (short.cached_tenants() == 0).then_some(()),
    )
    .await;
    wait_for(
        "the evicted pool's connection to close",
        Duration::from_secs(10),
        async || (client_connections(&pg, &acme_user2).await == before - 1).then_some(()),
    )
    .await;

    clients.shutdown().await;
    short.shutdown().await;
    wait_for("every pool closed", Duration::from_secs(10), async || {
        (client_connections(&pg, &acme_user2).await == 0
            && client_connections(&pg, &platform).await == 0)
            .then_some(())
    })
    .await;
    stop.cancel();
    controller_task.await.unwrap().unwrap();
}

/// A directory source serves manifests without a cluster, picks up an edit, and keeps the
/// previous configs when an edit does not parse. No server is contacted (pools are lazy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_source_reloads_edits_and_keeps_the_last_good_configs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acme.yaml");
    let manifest = |password: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: acme\n  labels: {{tenantmcp.dev/tenant: acme}}\n\
---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: pg\n  namespace: acme\nstringData:\n  username: acme\n  password: {password}\n\
---\napiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata:\n  name: default\nspec:\n  endpointPolicy:\n    allowLoopback: true\n\
---\napiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata:\n  name: config\n  namespace: acme\nspec:\n  tenantId: acme\n  servers:\n    postgres:\n      host: 127.0.0.1\n      database: acme\n      credentialsSecretRef:\n        name: pg\n"
        )
    };
    std::fs::write(&file, manifest("first")).unwrap();
    let clients = TenantClients::from_directory(
        dir.path(),
        ClientSettings {
            directory_poll: Duration::from_millis(50),
            ..ClientSettings::default()
        },
    )
    .unwrap();
    let first = clients.endpoint("acme", &ServerKey::Postgres).unwrap();
    assert_eq!(first.origin, Origin::Tenant);
    assert!(matches!(
        clients.endpoint("acme", &ServerKey::Minio),
        Err(ClientError::NotConfigured { .. })
    ));

    std::fs::write(&file, manifest("second-longer")).unwrap();
    let second = wait_for("the edit to load", Duration::from_secs(10), async || {
        clients
            .endpoint("acme", &ServerKey::Postgres)
            .ok()
            .filter(|e| e.fingerprint != first.fingerprint)
    })
    .await;

    std::fs::write(&file, "kind: [unterminated\n").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = clients.endpoint("acme", &ServerKey::Postgres).unwrap();
    assert_eq!(
        kept.fingerprint, second.fingerprint,
        "a bad edit changes nothing"
    );
    clients.shutdown().await;
}
