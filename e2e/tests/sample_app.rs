//! The sample app on the client library and services, on real servers: Postgres (row-level
//! security on the shared global database), an S3 server that checks credentials (s3s-fs),
//! and two AI MCP servers (a dedicated one for acme, a shared one routing by header).
//! Tenant configs come from a directory of manifests (the Kubernetes source is covered by
//! `client.rs`). acme has its own Postgres database and login, bucket and AI MCP server;
//! globex and initech have no config and use the global servers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::Connection as _;
use tenant_mcp::client::{ClientSettings, Origin, TenantClients};
use tenant_mcp::services::{ServiceError, TenantServices};
use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer, Routing, Token};
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tenant_mcp_e2e::stack::s3::S3Server;
use tenant_mcp_sample_app::App;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

struct World {
    pg: Postgres,
    s3: S3Server,
    ai_global: AiMcpServer,
    ai_acme: AiMcpServer,
    acme_db: String,
    global_db: String,
    acme_user: String,
    platform_user: String,
    clients: TenantClients,
    base: String,
    _dir: tempfile::TempDir,
}

/// A login that owns the public schema of `db` (so it can create the app's table) and is
/// no superuser (superusers bypass row-level security).
async fn owner_login(pg: &Postgres, db: &str, user: &str, password: &str) {
    execute(
        &pg.admin_url("postgres"),
        &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
    )
    .await
    .unwrap();
    execute(
        &pg.admin_url(db),
        &format!("ALTER SCHEMA public OWNER TO {user}"),
    )
    .await
    .unwrap();
}

async fn world() -> World {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let pg = Postgres::start().unwrap();
    let acme_db = pg.create_database("acme").await.unwrap();
    let global_db = pg.create_database("global").await.unwrap();
    let suffix = acme_db[acme_db.len() - 8..].to_owned();
    let (acme_user, platform_user) = (format!("acme_{suffix}"), format!("platform_{suffix}"));
    owner_login(&pg, &acme_db, &acme_user, "acme-pass").await;
    owner_login(&pg, &global_db, &platform_user, "platform-pass").await;

    let s3 = S3Server::start("stack-access", "stack-secret-key").unwrap();
    for bucket in ["platform", "acme-docs"] {
        s3.client()
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
    }
    let ai_global = AiMcpServer::start(AiMcpConfig::new(
        "global",
        vec![Token {
            token: "platform-token".into(),
            tenant: None,
        }],
    ))
    .unwrap();
    let ai_acme = AiMcpServer::start(AiMcpConfig::new(
        "acme-dedicated",
        // A dedicated server: every request on it is acme's, none names a tenant.
        vec![Token {
            token: "acme-token".into(),
            tenant: None,
        }],
    ))
    .unwrap();

    let port = pg.port();
    let s3_endpoint = s3.endpoint();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("global.yaml"),
        format!(
            r"apiVersion: tenantmcp.dev/v1alpha1
kind: GlobalMcpConfig
metadata: {{name: default}}
spec:
  credentialsNamespace: tenant-mcp-credentials
  endpointPolicy: {{allowLoopback: true}}
  servers:
    postgres:
      host: 127.0.0.1
      port: {port}
      database: {global_db}
      sslMode: disable
      credentialsSecretRef: {{name: global-pg}}
    minio:
      endpoint: {s3_endpoint}
      bucket: platform
      credentialsSecretRef: {{name: global-s3}}
    aiMcpServer:
      url: {ai_global}
      bearerTokenSecretRef: {{name: global-ai, key: token}}
      tenantRouting: {{mode: Header, headerName: X-Tenant-Id}}
---
apiVersion: v1
kind: Secret
metadata: {{name: global-pg, namespace: tenant-mcp-credentials}}
stringData: {{username: {platform_user}, password: platform-pass}}
---
apiVersion: v1
kind: Secret
metadata: {{name: global-s3, namespace: tenant-mcp-credentials}}
stringData: {{accessKeyId: stack-access, secretAccessKey: stack-secret-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: global-ai, namespace: tenant-mcp-credentials}}
stringData: {{token: platform-token}}
",
            ai_global = ai_global.url(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("acme.yaml"),
        format!(
            r"apiVersion: v1
kind: Namespace
metadata: {{name: tenant-acme, labels: {{tenantmcp.dev/tenant: acme}}}}
---
apiVersion: tenantmcp.dev/v1alpha1
kind: TenantMcpConfig
metadata: {{name: acme, namespace: tenant-acme}}
spec:
  tenantId: acme
  servers:
    postgres:
      host: 127.0.0.1
      port: {port}
      database: {acme_db}
      sslMode: disable
      credentialsSecretRef: {{name: acme-pg}}
    minio:
      endpoint: {s3_endpoint}
      bucket: acme-docs
      credentialsSecretRef: {{name: acme-s3}}
    aiMcpServer:
      url: {ai_acme}
      bearerTokenSecretRef: {{name: acme-ai, key: token}}
---
apiVersion: v1
kind: Secret
metadata: {{name: acme-pg, namespace: tenant-acme}}
stringData: {{username: {acme_user}, password: acme-pass}}
---
apiVersion: v1
kind: Secret
metadata: {{name: acme-s3, namespace: tenant-acme}}
stringData: {{accessKeyId: stack-access, secretAccessKey: stack-secret-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: acme-ai, namespace: tenant-acme}}
stringData: {{token: acme-token}}
",
            ai_acme = ai_acme.url(),
        ),
    )
    .unwrap();
    // hooli's servers refuse its credentials: its requests fail, by reason, in the metrics.
    std::fs::write(
        dir.path().join("hooli.yaml"),
        format!(
            r"apiVersion: v1
kind: Namespace
metadata: {{name: tenant-hooli, labels: {{tenantmcp.dev/tenant: hooli}}}}
---
apiVersion: tenantmcp.dev/v1alpha1
kind: TenantMcpConfig
metadata: {{name: hooli, namespace: tenant-hooli}}
spec:
  tenantId: hooli
  servers:
    postgres:
      host: 127.0.0.1
      port: {port}
      database: {acme_db}
      sslMode: disable
      credentialsSecretRef: {{name: hooli-pg}}
    minio:
      endpoint: {s3_endpoint}
      bucket: acme-docs
      credentialsSecretRef: {{name: hooli-s3}}
    aiMcpServer:
      url: {ai_global}
      bearerTokenSecretRef: {{name: hooli-ai, key: token}}
---
apiVersion: v1
kind: Secret
metadata: {{name: hooli-pg, namespace: tenant-hooli}}
stringData: {{username: {acme_user}, password: wrong-pass}}
---
apiVersion: v1
kind: Secret
metadata: {{name: hooli-s3, namespace: tenant-hooli}}
stringData: {{accessKeyId: stack-access, secretAccessKey: wrong-secret-key}}
---
apiVersion: v1
kind: Secret
metadata: {{name: hooli-ai, namespace: tenant-hooli}}
stringData: {{token: wrong-token}}
",
            ai_global = ai_global.url(),
        ),
    )
    .unwrap();
    let clients = TenantClients::from_directory(dir.path(), ClientSettings::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = App::new(clients.clone(), "generate").router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    World {
        pg,
        s3,
        ai_global,
        ai_acme,
        acme_db,
        global_db,
        acme_user,
        platform_user,
        clients,
        base,
        _dir: dir,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn put(
    http: &reqwest::Client,
    base: &str,
    tenant: &str,
    name: &str,
    text: &str,
) -> serde_json::Value {
    let response = http
        .put(format!("{base}/documents/{name}"))
        .header("x-tenant-id", tenant)
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(status.is_success(), "{tenant} PUT {name}: {status} {body}");
    body
}

async fn get(http: &reqwest::Client, url: &str, tenant: &str) -> (u16, String) {
    let response = http
        .get(url)
        .header("x-tenant-id", tenant)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn count(url: &str, sql: &'static str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let n = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_hammering_concurrently_see_only_their_own_servers_rows_and_objects() {
    let w = world().await;
    let http = http();
    const WORKERS: usize = 4;
    const DOCS: usize = 10;

    // Three tenants, four workers each, all at once.
    let mut tasks = Vec::new();
    for tenant in TENANTS {
        for worker in 0..WORKERS {
            let (http, base) = (http.clone(), w.base.clone());
            tasks.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for doc in 0..DOCS {
                    let name = format!("{tenant}-{worker}-{doc}.txt");
                    let text = format!("report {doc} of {tenant}");
                    answers.push(put(&http, &base, tenant, &name, &text).await);
                }
                answers
            }));
        }
    }
    for task in tasks {
        for answer in task.await.unwrap() {
            let tenant = answer["tenant"].as_str().unwrap();
            let expected = if tenant == "acme" { "tenant" } else { "global" };
            assert_eq!(answer["postgres"], expected, "{answer}");
            assert_eq!(answer["storage"], expected, "{answer}");
            // The AI summary names the server and the tenant it was served for.
            let summary = answer["summary"]["Ok"].as_str().unwrap_or_default();
            let label = if tenant == "acme" {
                "[acme-dedicated/-]".to_owned()
            } else {
                format!("[global/{tenant}]")
            };
            assert!(summary.starts_with(&label), "{answer}");
            assert!(
                answer["name"].as_str().unwrap().starts_with(tenant),
                "{answer}"
            );
        }
    }

    // Each tenant sees exactly its own rows (RLS) and objects (bucket or prefix).
    for tenant in TENANTS {
        let (status, body) = get(&http, &format!("{}/documents", w.base), tenant).await;
        assert_eq!(status, 200, "{body}");
        let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
        let expected: BTreeSet<String> = (0..WORKERS)
            .flat_map(|wk| (0..DOCS).map(move |d| format!("{tenant}-{wk}-{d}.txt")))
            .collect();
        let rows: BTreeSet<String> = listing["rows"]
            .as_array()
            .unwrap()
            .iter()
            .inspect(|r| assert_eq!(r["tenant_id"], tenant, "{r}"))
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(rows, expected, "{tenant}'s rows");
        let objects: BTreeSet<String> = listing["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                o["key"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("documents/")
                    .to_owned()
            })
            .collect();
        assert_eq!(objects, expected, "{tenant}'s objects");
    }

    // Another tenant's document is not found, not served.
    let (status, body) = get(
        &http,
        &format!("{}/documents/initech-0-0.txt", w.base),
        "globex",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(
        &http,
        &format!("{}/documents/initech-0-0.txt", w.base),
        "initech",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "report 0 of initech"));

    // On the servers themselves: the global database holds globex's and initech's rows and
    // no acme row; its own login sees nothing without app.tenant_id (RLS); acme's database
    // holds only acme's rows.
    let global_admin = w.pg.admin_url(&w.global_db);
    assert_eq!(
        count(
            &global_admin,
            "SELECT count(*) FROM documents WHERE tenant_id = 'acme'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&global_admin, "SELECT count(*) FROM documents").await,
        (2 * WORKERS * DOCS) as i64
    );
    let platform = w.pg.url(&w.platform_user, "platform-pass", &w.global_db);
    assert_eq!(
        count(&platform, "SELECT count(*) FROM documents").await,
        0,
        "RLS without a tenant"
    );
    let acme_admin = w.pg.admin_url(&w.acme_db);
    assert_eq!(
        count(
            &acme_admin,
            "SELECT count(*) FROM documents WHERE tenant_id <> 'acme'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&acme_admin, "SELECT count(*) FROM documents").await,
        (WORKERS * DOCS) as i64
    );
    let acme_login = w.pg.url(&w.acme_user, "acme-pass", &w.acme_db);
    assert_eq!(
        count(&acme_login, "SELECT count(*) FROM documents").await,
        0,
        "RLS without a tenant"
    );

    // In S3: acme's objects in its own bucket, the others' under their prefixes.
    let s3 = w.s3.client();
    let keys = |bucket: &'static str| {
        let s3 = s3.clone();
        async move {
            let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    let acme_keys = keys("acme-docs").await;
    assert_eq!(acme_keys.len(), WORKERS * DOCS);
    assert!(
        acme_keys.iter().all(|k| k.starts_with("documents/acme-")),
        "{acme_keys:?}"
    );
    let platform_keys = keys("platform").await;
    assert_eq!(platform_keys.len(), 2 * WORKERS * DOCS);
    for k in &platform_keys {
        let tenant = k
            .strip_prefix("tenants/")
            .and_then(|r| r.split('/').next())
            .unwrap();
        assert!(
            k.starts_with(&format!("tenants/{tenant}/documents/{tenant}-")),
            "{k}"
        );
        assert_ne!(tenant, "acme");
    }

    // The AI MCP servers: the dedicated one served only acme; the shared one only the others,
    // each routed by header.
    let acme_served = w.ai_acme.served();
    assert_eq!(acme_served.len(), WORKERS * DOCS);
    assert!(acme_served.iter().all(|s| s.routing == Routing::None));
    let global_served = w.ai_global.served();
    assert_eq!(global_served.len(), 2 * WORKERS * DOCS);
    assert!(global_served.iter().all(|s| s.routing == Routing::Header
        && matches!(s.tenant.as_deref(), Some("globex" | "initech"))));

    w.clients.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rls_refuses_rows_for_another_tenant_and_presigned_urls_stay_in_the_prefix() {
    let w = world().await;
    let http = http();
    put(&http, &w.base, "globex", "plan.txt", "globex plan").await;
    let services = TenantServices::new(w.clients.clone());

    // A transaction of globex cannot write a row claiming initech (WITH CHECK), and sees no
    // initech row even when asking for it.
    put(&http, &w.base, "initech", "memo.txt", "initech memo").await;
    let mut tx = services.postgres.begin("globex").await.unwrap();
    assert_eq!(tx.origin(), Origin::Global);
    let denied = sqlx::query(
        "INSERT INTO documents (tenant_id, name, object_key, size) VALUES ('initech', 'x', 'x', 1)",
    )
    .execute(tx.conn())
    .await
    .unwrap_err();
    assert!(
        denied.to_string().contains("row-level security"),
        "{denied}"
    );
    tx.rollback().await.unwrap();
    let mut tx = services.postgres.begin("globex").await.unwrap();
    let seen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM documents WHERE tenant_id = 'initech'")
            .fetch_one(tx.conn())
            .await
            .unwrap();
    assert_eq!(seen, 0);
    // app.tenant_id is local to the transaction: the pooled connection forgets it.
    tx.commit().await.unwrap();
    let pool = w.clients.postgres("globex").await.unwrap();
    let after: Option<String> =
        sqlx::query_scalar("SELECT nullif(current_setting('app.tenant_id', true), '')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(after, None);

    // A presigned URL reads the object without credentials, under the tenant's prefix.
    let url = services
        .objects
        .presign_get("globex", "documents/plan.txt", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        url.contains("/platform/tenants/globex/documents/plan.txt"),
        "{url}"
    );
    let fetched = http.get(&url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.text().await.unwrap(), "globex plan");
    // A presigned upload lands under the prefix too.
    let upload = services
        .objects
        .presign_put("initech", "uploads/new.txt", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        http.put(&upload)
            .body("uploaded")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        services
            .objects
            .get("initech", "uploads/new.txt")
            .await
            .unwrap(),
        b"uploaded"
    );
    assert!(matches!(
        services.objects.get("globex", "uploads/new.txt").await,
        Err(ServiceError::NotFound { .. })
    ));
    // Keys that could leave the prefix are refused before any request.
    let err = services
        .objects
        .get("globex", "../initech/memo.txt")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no `.` or `..` segments"), "{err}");
    // Deleting removes only the tenant's own object.
    services
        .objects
        .delete("initech", "uploads/new.txt")
        .await
        .unwrap();
    assert!(
        services
            .objects
            .list("initech", "uploads/")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(services.objects.list("globex", "").await.unwrap().len(), 1);

    // AI MCP through the service: the tools of the tenant's server.
    let tools = services.ai.list_tools("acme").await.unwrap();
    assert!(tools.iter().any(|t| t.name == "generate"));

    // The endpoints table of the app.
    let (status, body) = get(&http, &format!("{}/endpoints", w.base), "acme").await;
    assert_eq!(status, 200);
    let used: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        used.as_array()
            .unwrap()
            .iter()
            .all(|u| u["origin"] == "tenant"),
        "{used}"
    );
    // A request without a tenant never reaches the services.
    let (status, body) = get(&http, &format!("{}/documents", w.base), "").await;
    assert_eq!(status, 400, "{body}");
    w.clients.shutdown().await;
}

/// The sum of the samples of `name` whose labels include every one of `labels`, in the
/// Prometheus text `text`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            (series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

/// What the application sees, from the sample app's `/metrics` after real requests: clients
/// handed out by origin (tenant-vs-global usage), first-connect times of each kind, and
/// failures by kind, stage, reason and origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_origin_connect_times_and_failures_by_reason() {
    let w = world().await;
    let http = http();
    for n in 0..3 {
        put(&http, &w.base, "acme", &format!("m{n}.txt"), "acme text").await;
    }
    put(&http, &w.base, "globex", "m.txt", "globex text").await;
    // hooli's S3 server refuses its key: the PUT fails at its first step.
    let refused = http
        .put(format!("{}/documents/m.txt", w.base))
        .header("x-tenant-id", "hooli")
        .body("hooli text")
        .send()
        .await
        .unwrap();
    assert!(!refused.status().is_success(), "{}", refused.status());
    let services = TenantServices::new(w.clients.clone());
    let err = services.postgres.begin("hooli").await.unwrap_err();
    assert!(err.to_string().contains("password"), "{err}");
    services.ai.list_tools("hooli").await.unwrap_err();
    // A tenant id that is no DNS label never reaches a server.
    services.objects.list("Not_A_Label", "").await.unwrap_err();

    let text = http
        .get(format!("{}/metrics", w.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name, labels: &[(&str, &str)]| sample(&text, name, labels);
    let requests = "tenant_mcp_client_requests_total";
    // Per PUT: one S3 and one AI MCP client; Postgres once for the schema check on the first
    // PUT of a server, then once for the transaction. hooli's pool, S3 and AI MCP clients
    // were handed out (their servers refused them).
    for (server, tenant_side, global_side) in [
        ("postgres", 3.0 + 1.0 + 1.0, 1.0 + 1.0),
        ("minio", 3.0 + 1.0, 1.0),
        ("aiMcpServer", 3.0 + 1.0, 1.0),
    ] {
        let of = |origin| value(requests, &[("server_type", server), ("origin", origin)]);
        assert_eq!(of("tenant"), tenant_side, "{server} tenant\n{text}");
        assert_eq!(of("global"), global_side, "{server} global\n{text}");
    }
    // Every kind that served a request has a first-connect time, on both sides.
    for server in ["postgres", "minio", "aiMcpServer"] {
        for origin in ["tenant", "global"] {
            let connects = value(
                "tenant_mcp_client_connect_seconds_count",
                &[("server_type", server), ("origin", origin)],
            );
            assert!(connects >= 1.0, "{server} {origin}: {connects}\n{text}");
        }
    }
    // S3 times only a client's first request: acme's three PUTs are one connection.
    let s3_connects = value(
        "tenant_mcp_client_connect_seconds_count",
        &[("server_type", "minio"), ("origin", "tenant")],
    );
    assert_eq!(s3_connects, 1.0, "{text}");
    // hooli's failures, by kind, stage and reason; nobody else failed.
    let errors = "tenant_mcp_client_errors_total";
    let failed = |server, stage, reason| {
        value(
            errors,
            &[
                ("server_type", server),
                ("stage", stage),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(failed("minio", "request", "AuthFailed"), 1.0, "{text}");
    assert_eq!(failed("postgres", "connect", "AuthFailed"), 1.0, "{text}");
    assert_eq!(
        failed("aiMcpServer", "connect", "AuthFailed"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            errors,
            &[
                ("server_type", "minio"),
                ("origin", "none"),
                ("stage", "lookup"),
                ("reason", "InvalidTenant")
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(value(errors, &[("origin", "global")]), 0.0, "{text}");
    assert_eq!(value(errors, &[]), 4.0, "{text}");
    // No tenant label unless asked for.
    assert!(!text.contains("tenant_requests"), "{text}");
    w.clients.shutdown().await;
}
