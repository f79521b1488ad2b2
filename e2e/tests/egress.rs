//! The endpoint policy holds at connect time (`shared/THREAT-MODEL.md`, rule 2), tried as a
//! tenant who controls its endpoint's DNS would: the names resolve to an allowed address while
//! the controller checks and promotes them, and to a denied one afterwards. The client
//! library's next Postgres connection, S3 request and MCP call must be refused with
//! `PolicyDenied`, and nothing may reach the denied address — a listener there counts the
//! connections it gets. Names resolve through a table the test controls (the resolver is
//! injectable; `real_dns.rs`-style coverage with the system resolver is in
//! `a_hosts_file_change_is_caught_by_the_sample_app_on_its_next_connection`).
//!
//! The "denied" address is 127.0.0.2, denied by `deniedCidrs` while loopback is otherwise
//! allowed, so decoy listeners can run there on this machine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::client::{ClientSettings, KubeSource, TenantClients};
use tenant_mcp::controller::{self, Settings};
use tenant_mcp::egress::{Lookup, StaticLookup};
use tenant_mcp::services::{ServiceError, TenantServices};
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer};
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tenant_mcp_e2e::stack::s3::S3Server;
use tokio_util::sync::CancellationToken;

const ALLOWED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const DENIED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A listener on the denied address that counts every connection it gets.
struct Decoy {
    accepted: Arc<AtomicUsize>,
}

impl Decoy {
    async fn start(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind((DENIED, port)).await.unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((_stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self { accepted }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The port of `http://host:PORT[/path]`.
fn port_of(url: &str) -> u16 {
    let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

/// A control plane with acme's namespace, the three real servers, and a GlobalMcpConfig whose
/// policy allows loopback but denies 127.0.0.2.
struct World {
    cluster: Cluster,
    pg: Postgres,
    db: String,
    user: String,
    s3: S3Server,
    ai: AiMcpServer,
    lookup: Arc<StaticLookup>,
}

async fn world() -> World {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::local(Default::default()).await.unwrap();
    cluster.install_crds().await.unwrap();
    cluster
        .create_namespace("tenant-acme", Some("acme"))
        .await
        .unwrap();
    cluster
        .create_namespace("tenant-mcp-credentials", None)
        .await
        .unwrap();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("acme").await.unwrap();
    let user = format!("acme_{}", &db[db.len() - 6..]);
    for statement in [
        format!("CREATE ROLE {user} LOGIN PASSWORD 'pw'"),
        // The sample app creates its table: the tenant's login owns its database.
        format!("ALTER DATABASE {db} OWNER TO {user}"),
    ] {
        execute(&pg.admin_url("postgres"), &statement)
            .await
            .unwrap();
    }
    let s3 = S3Server::start("acme-access", "acme-secret-key").unwrap();
    s3.client()
        .create_bucket()
        .bucket("acme-docs")
        .send()
        .await
        .unwrap();
    let ai = AiMcpServer::start(AiMcpConfig::new("acme-ai", Vec::new())).unwrap();
    let lookup = Arc::new(StaticLookup::new());
    for name in ["acme-db.test", "acme-s3.test", "acme-ai.test"] {
        lookup.set(name, &[ALLOWED]);
    }
    let w = World {
        cluster,
        pg,
        db,
        user,
        s3,
        ai,
        lookup,
    };
    w.global(&json!({"allowLoopback": true, "deniedCidrs": ["127.0.0.2/32"]}));
    w
}

impl World {
    fn apply(&self, yaml: &str) {
        let out = self.cluster.kubectl_stdin(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            yaml,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn global(&self, policy: &serde_json::Value) {
        self.apply(&format!(
            "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {{name: default}}\n\
             spec: {{credentialsNamespace: tenant-mcp-credentials, endpointPolicy: {policy}}}\n"
        ));
    }

    /// acme's config, by name: Postgres with `ssl_mode`, its own bucket, its own AI server.
    fn acme(&self, ssl_mode: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: pg, namespace: tenant-acme}}\n\
             stringData: {{username: {user}, password: pw}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: s3, namespace: tenant-acme}}\n\
             stringData: {{accessKeyId: acme-access, secretAccessKey: acme-secret-key}}\n---\n\
             apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\n\
             metadata: {{name: acme, namespace: tenant-acme}}\nspec:\n  tenantId: acme\n  servers:\n\
             \x20   postgres: {{host: acme-db.test, port: {pg_port}, database: {db}, sslMode: {ssl_mode}, \
             pool: {{maxConnections: 4}}, credentialsSecretRef: {{name: pg}}}}\n\
             \x20   minio: {{endpoint: 'http://acme-s3.test:{s3_port}', bucket: acme-docs, \
             credentialsSecretRef: {{name: s3}}}}\n\
             \x20   aiMcpServer: {{url: 'http://acme-ai.test:{ai_port}/mcp'}}\n",
            user = self.user,
            pg_port = self.pg.port(),
            db = self.db,
            s3_port = port_of(&self.s3.endpoint()),
            ai_port = port_of(&self.ai.url()),
        ));
    }

    fn controller(&self) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let stop = CancellationToken::new();
        let (client, until) = (self.cluster.client(), stop.clone());
        let lookup: Arc<dyn Lookup> = self.lookup.clone();
        let task = tokio::spawn(async move {
            controller::run(
                client,
                Settings {
                    identity: "egress-test".into(),
                    retry_interval: Duration::from_secs(1),
                    lookup,
                    ..Settings::default()
                },
                None,
                until,
                None,
            )
            .await
            .unwrap();
        });
        (stop, task)
    }

    async fn clients(&self) -> TenantClients {
        TenantClients::from_kube(
            self.cluster.client(),
            ClientSettings {
                kube: KubeSource::default(),
                lookup: self.lookup.clone(),
                ..ClientSettings::default()
            },
        )
        .await
        .unwrap()
    }

    /// `status.active` and the Ready condition of acme's config.
    async fn acme_status(&self) -> (serde_json::Value, String) {
        let config = Api::<TenantMcpConfig>::namespaced(self.cluster.client(), "tenant-acme")
            .get("acme")
            .await
            .unwrap();
        let status = config.status.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| format!("{} {} {}", c.status, c.reason, c.message))
            .unwrap_or_default();
        (serde_json::to_value(&status.active).unwrap(), ready)
    }

    async fn wait_all_active(&self) {
        let waited = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let (active, ready) = self.acme_status().await;
                let all = ["postgres", "minio", "aiMcpServer"]
                    .iter()
                    .all(|k| active.get(k).is_some());
                if all && ready.starts_with("True") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if waited.is_err() {
            let config = Api::<TenantMcpConfig>::namespaced(self.cluster.client(), "tenant-acme")
                .get("acme")
                .await
                .unwrap();
            panic!(
                "acme not promoted: {}",
                serde_json::to_string_pretty(&config.status).unwrap()
            );
        }
        #[allow(unreachable_code)]
        wait_for("acme promoted", Duration::from_secs(60), async || {
            let (active, ready) = self.acme_status().await;
            let all = ["postgres", "minio", "aiMcpServer"]
                .iter()
                .all(|k| active.get(k).is_some());
            (all && ready.starts_with("True")).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_that_resolves_to_a_denied_address_after_promotion_reaches_nothing() {
    let w = world().await;
    w.acme("disable");
    let (stop, controller) = w.controller();
    w.wait_all_active().await;

    let clients = w.clients().await;
    let services = TenantServices::new(clients.clone());
    // Postgres works while the name points where it was checked; the connection stays
    // checked out, so the next request needs a new one.
    let pool = clients.postgres("acme").await.unwrap();
    let mut held = pool.acquire().await.unwrap();
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *held)
        .await
        .unwrap();
    assert_eq!(who, w.user);

    let decoys = [
        Decoy::start(w.pg.port()).await,
        Decoy::start(port_of(&w.s3.endpoint())).await,
        Decoy::start(port_of(&w.ai.url())).await,
    ];
    // The tenant now points its names inside the platform.
    for name in ["acme-db.test", "acme-s3.test", "acme-ai.test"] {
        w.lookup.set(name, &[DENIED]);
    }

    // Postgres: a request that needs a new connection is refused.
    let err = match services.postgres.begin("acme").await {
        Err(e) => e,
        Ok(_) => panic!("a new Postgres connection was made to a denied address"),
    };
    assert!(
        matches!(
            err,
            ServiceError::PolicyDenied {
                server: "postgres",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("127.0.0.2"), "{err}");
    drop(held);
    // S3 and MCP: their first connections are refused.
    let err = services
        .objects
        .put("acme", "k", b"v".to_vec(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::PolicyDenied {
                server: "minio",
                ..
            }
        ),
        "{err}"
    );
    let err = services.ai.list_tools("acme").await.unwrap_err();
    assert!(
        matches!(err, ServiceError::PolicyDenied { server: "mcp", .. }),
        "{err}"
    );
    assert_eq!(err.reason(), "PolicyDenied");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (decoy, what) in decoys.iter().zip(["postgres", "s3", "mcp"]) {
        assert_eq!(
            decoy.connections(),
            0,
            "{what}: a connection reached 127.0.0.2"
        );
    }

    // The controller's next check demotes the entries (its probes resolve the same way). A
    // policy edit makes every server due at once; the re-validation interval would too, later.
    w.global(&json!({"allowLoopback": true, "deniedCidrs": ["127.0.0.2/32", "127.0.0.3/32"]}));
    let demoted = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (active, ready) = w.acme_status().await;
            if active == json!({}) && ready.contains("PolicyDenied") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(demoted.is_ok(), "not demoted: {:?}", w.acme_status().await);
    for decoy in &decoys {
        assert_eq!(decoy.connections(), 0);
    }

    clients.shutdown().await;
    stop.cancel();
    let _ = controller.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tightening_the_policy_demotes_within_one_reconcile_and_loosening_promotes_again() {
    let w = world().await;
    w.acme("disable");
    let (stop, controller) = w.controller();
    w.wait_all_active().await;
    let clients = w.clients().await;
    let app = tenant_mcp_sample_app::App::new(clients.clone(), "generate").router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let put = async || {
        let response = http
            .put(format!("{base}/documents/report"))
            .header("x-tenant-id", "acme")
            .body("hello")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    };
    let (status, body) = put().await;
    assert_eq!(status, 200, "{body}");

    // requireTls: acme's Postgres (sslMode disable) and its http endpoints fall short.
    let started = std::time::Instant::now();
    w.global(&json!({"allowLoopback": true, "requireTls": true}));
    wait_for("every entry demoted", Duration::from_secs(30), async || {
        let (active, ready) = w.acme_status().await;
        (active == json!({}) && ready.contains("PolicyDenied")).then_some(())
    })
    .await;
    let took = started.elapsed();
    let (_, ready) = w.acme_status().await;
    assert!(ready.contains("requireTls"), "{ready}");
    let (status, body) = put().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("PolicyDenied"), "{body}");
    let events = w.cluster.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        "tenant-acme",
        "-o",
        "json",
    ]);
    assert!(events.contains("Demoted"), "{events}");

    // Loosened again: promoted again, and served.
    w.global(&json!({"allowLoopback": true}));
    w.wait_all_active().await;
    wait_for(
        "the app served again",
        Duration::from_secs(30),
        async || (put().await.0 == 200).then_some(()),
    )
    .await;
    eprintln!("demoted {took:?} after the policy changed");

    clients.shutdown().await;
    stop.cancel();
    let _ = controller.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn require_tls_refuses_plain_endpoints_in_validate_the_tools_and_the_controller() {
    let w = world().await;
    w.global(&json!({"allowLoopback": true, "requireTls": true}));
    let (stop, controller) = w.controller();
    // The controller never promotes an http endpoint or sslMode prefer.
    w.acme("prefer");
    wait_for(
        "refused by validation",
        Duration::from_secs(30),
        async || {
            let config = Api::<TenantMcpConfig>::namespaced(w.cluster.client(), "tenant-acme")
                .get("acme")
                .await
                .ok()?;
            let status = config.status?;
            let validated = status.conditions.iter().find(|c| c.type_ == "Validated")?;
            (validated.reason == "PolicyDenied").then(|| status.active.clone())
        },
    )
    .await;
    let (active, _) = w.acme_status().await;
    assert_eq!(active, json!({}));

    // The tools refuse them by field.
    let server = tenant_mcp_e2e::mcp_admin::AdminServer::start(
        w.cluster.client(),
        tenant_mcp::mcp_server::limits::Limits::default(),
    )
    .await
    .unwrap();
    let uber = tenant_mcp_e2e::mcp_admin::token(&["uber_admin"], None);
    let tested = tenant_mcp_e2e::mcp_admin::call(
        &server.url,
        &uber,
        "rag_test_tenant_mcp_config",
        json!({"tenantId": "acme", "servers": {
            "postgres": {"host": "db.example.com", "database": "d", "sslMode": "prefer",
                         "credentialsSecretRef": {"name": "pg"}},
            "minio": {"endpoint": "http://s3.example.com", "bucket": "b",
                      "credentialsSecretRef": {"name": "s3"}},
            "aiMcpServer": {"url": "http://ai.example.com/mcp"}}}),
    )
    .await
    .unwrap();
    assert_eq!(tested["passed"], false);
    let paths: Vec<&str> = tested["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["message"]
                .as_str()
                .unwrap_or_default()
                .contains("requireTls")
        })
        .filter_map(|p| p["path"].as_str())
        .collect();
    for path in [
        "servers.postgres.sslMode",
        "servers.minio.endpoint",
        "servers.aiMcpServer.url",
    ] {
        assert!(paths.contains(&path), "{path} not refused: {tested}");
    }

    // validate, offline.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(
        &file,
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {name: default}\n\
         spec: {endpointPolicy: {requireTls: true}}\n---\n\
         apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: a, namespace: t}\n\
         spec:\n  tenantId: a\n  servers:\n    aiMcpServer: {url: 'http://ai.example.com/mcp'}\n\
         \x20   postgres: {host: db.example.com, database: d, sslMode: require, credentialsSecretRef: {name: pg}}\n",
    )
    .unwrap();
    let out = std::process::Command::new(tenant_mcp_e2e::stack::tenant_mcp_binary().unwrap())
        .args(["validate", "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("spec.servers.aiMcpServer.url: the endpoint policy requires verified TLS"),
        "{text}"
    );
    assert!(
        text.contains("spec.servers.postgres.sslMode: the endpoint policy requires verified TLS"),
        "{text}"
    );

    stop.cancel();
    let _ = controller.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_virtual_host_bucket_name_that_resolves_to_a_denied_address_is_refused() {
    let w = world().await;
    let s3_port = port_of(&w.s3.endpoint());
    // The endpoint's own name is fine; the bucket's virtual-host name is not.
    w.lookup.set("s3.test", &[ALLOWED]);
    w.lookup.set("evil.s3.test", &[DENIED]);
    let decoy = Decoy::start(s3_port).await;
    let minio = json!({"endpoint": format!("http://s3.test:{s3_port}"), "bucket": "evil",
                       "forcePathStyle": false, "credentialsSecretRef": {"name": "s3"}});

    // The tools' connection test.
    let server = tenant_mcp_e2e::mcp_admin::AdminServer::start_with(
        w.cluster.client(),
        tenant_mcp::mcp_server::limits::Limits::default(),
        tenant_mcp::probe::Prober::with_lookup(4, w.lookup.clone()),
    )
    .await
    .unwrap();
    let uber = tenant_mcp_e2e::mcp_admin::token(&["uber_admin"], None);
    let tested = tenant_mcp_e2e::mcp_admin::call(
        &server.url,
        &uber,
        "rag_test_tenant_mcp_config",
        json!({"tenantId": "acme", "servers": {"minio": minio},
               "credentials": {"minio": {"accessKeyId": "acme-access", "secretAccessKey": "acme-secret-key"}}}),
    )
    .await
    .unwrap();
    assert_eq!(tested["passed"], false, "{tested}");
    assert!(tested.to_string().contains("PolicyDenied"), "{tested}");
    assert!(tested.to_string().contains("127.0.0.2"), "{tested}");

    // The controller does not promote it.
    let (stop, controller) = w.controller();
    w.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s3, namespace: tenant-acme}}\n\
         stringData: {{accessKeyId: acme-access, secretAccessKey: acme-secret-key}}\n---\n\
         apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {{name: acme, namespace: tenant-acme}}\n\
         spec: {{tenantId: acme, servers: {{minio: {minio}}}}}\n"
    ));
    wait_for(
        "refused by the probe",
        Duration::from_secs(30),
        async || {
            let config = Api::<TenantMcpConfig>::namespaced(w.cluster.client(), "tenant-acme")
                .get("acme")
                .await
                .ok()?;
            let health = config.status?.servers.get("minio")?.clone();
            (health.reason.as_deref() == Some("PolicyDenied")).then_some(())
        },
    )
    .await;
    let (active, _) = w.acme_status().await;
    assert_eq!(active, json!({}));
    stop.cancel();
    let _ = controller.await;

    // The client library, served from the spec by a directory source (no controller).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acme.yaml"),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: tenant-acme, labels: {{tenantmcp.dev/tenant: acme}}}}\n---\n\
             apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {{name: default}}\n\
             spec: {{endpointPolicy: {{allowLoopback: true, deniedCidrs: [127.0.0.2/32]}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: s3, namespace: tenant-acme}}\n\
             stringData: {{accessKeyId: acme-access, secretAccessKey: acme-secret-key}}\n---\n\
             apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {{name: acme, namespace: tenant-acme}}\n\
             spec: {{tenantId: acme, servers: {{minio: {minio}}}}}\n"
        ),
    )
    .unwrap();
    let clients = TenantClients::from_directory(
        dir.path(),
        ClientSettings {
            lookup: w.lookup.clone(),
            ..ClientSettings::default()
        },
    )
    .unwrap();
    let objects = tenant_mcp::services::objects::TenantObjects::new(clients.clone());
    let err = objects.get("acme", "k").await.unwrap_err();
    assert!(
        matches!(
            err,
            ServiceError::PolicyDenied {
                server: "minio",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("127.0.0.2"), "{err}");
    assert_eq!(decoy.connections(), 0);
    clients.shutdown().await;
}

/// The same attack through the system resolver (glibc reading `/etc/hosts`): the sample app
/// runs in a mount namespace of its own whose `/etc/hosts` the test writes. The name points at
/// 127.0.0.1 while the app serves, then at 127.0.0.2 (denied); once its idle connection is
/// gone, the app's next request needs a new connection and gets 503 `PolicyDenied`, and a
/// listener on 127.0.0.2 sees nothing. Needs root for `unshare --mount` (CI runs as root).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hosts_file_change_is_caught_by_the_sample_app_on_its_next_connection() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("acme").await.unwrap();
    let user = format!("acme_{}", &db[db.len() - 6..]);
    for statement in [
        format!("CREATE ROLE {user} LOGIN PASSWORD 'pw'"),
        format!("ALTER DATABASE {db} OWNER TO {user}"),
    ] {
        execute(&pg.admin_url("postgres"), &statement)
            .await
            .unwrap();
    }
    let s3 = S3Server::start("platform", "platform-secret").unwrap();
    s3.client()
        .create_bucket()
        .bucket("shared")
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    let point_at = |ip: IpAddr| {
        // Written in place: the bind mount shows the file's new content.
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n{ip} acme-db.e2e.test\n"),
        )
        .unwrap();
    };
    point_at(ALLOWED);
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(
        manifests.join("all.yaml"),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: tenant-acme, labels: {{tenantmcp.dev/tenant: acme}}}}\n---\n\
             apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {{name: default}}\n\
             spec:\n  credentialsNamespace: creds\n  endpointPolicy: {{allowLoopback: true, deniedCidrs: [127.0.0.2/32]}}\n\
             \x20 servers:\n    minio: {{endpoint: '{s3}', bucket: shared, credentialsSecretRef: {{name: s3}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: s3, namespace: creds}}\n\
             stringData: {{accessKeyId: platform, secretAccessKey: platform-secret}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: pg, namespace: tenant-acme}}\n\
             stringData: {{username: {user}, password: pw}}\n---\n\
             apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {{name: acme, namespace: tenant-acme}}\n\
             spec:\n  tenantId: acme\n  servers:\n\
             \x20   postgres: {{host: acme-db.e2e.test, port: {port}, database: {db}, sslMode: disable, \
             pool: {{idleTimeoutSeconds: 1}}, credentialsSecretRef: {{name: pg}}}}\n",
            s3 = s3.endpoint(),
            port = pg.port(),
        ),
    )
    .unwrap();
    let app_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let binary = tenant_mcp_e2e::stack::workspace_binary("tenant-mcp-sample-app").unwrap();
    let script = format!(
        "mount --bind {hosts} /etc/hosts && exec {binary} --listen 127.0.0.1:{app_port} --manifests {manifests}",
        hosts = hosts.display(),
        binary = binary.display(),
        manifests = manifests.display(),
    );
    let mut app = tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .kill_on_drop(true)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs the app in a mount namespace of its own");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{app_port}");
    let list = async || {
        let response = http
            .get(format!("{base}/documents"))
            .header("x-tenant-id", "acme")
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    };
    let first = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(answer) = list().await {
                return answer;
            }
            if let Ok(Some(exit)) = app.try_wait() {
                panic!("the sample app exited: {exit} (unshare needs root)");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the sample app answers");
    assert_eq!(first.0, 200, "{}", first.1);

    let decoy = Decoy::start(pg.port()).await;
    point_at(DENIED);
    // The pool's idle connection (to the address checked before) closes after a second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = list().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("PolicyDenied") && body.contains("127.0.0.2"),
        "{body}"
    );
    assert_eq!(decoy.connections(), 0, "a connection reached 127.0.0.2");
    let _ = app.kill().await;
}

/// A tenant's server that answers with a redirect to an address the policy denies: neither
/// the MCP client nor the S3 client follows it, so nothing reaches the denied address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redirect_to_a_denied_address_is_not_followed() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let decoy_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let decoy = Decoy::start(decoy_port).await;
    let target = format!("http://127.0.0.2:{decoy_port}/internal");
    let redirect = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, redirect).await });

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acme.yaml"),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: tenant-acme, labels: {{tenantmcp.dev/tenant: acme}}}}\n---\n\
             apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {{name: default}}\n\
             spec: {{endpointPolicy: {{allowLoopback: true, deniedCidrs: [127.0.0.2/32]}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: s3, namespace: tenant-acme}}\n\
             stringData: {{accessKeyId: a, secretAccessKey: s}}\n---\n\
             apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {{name: acme, namespace: tenant-acme}}\n\
             spec:\n  tenantId: acme\n  servers:\n\
             \x20   minio: {{endpoint: 'http://127.0.0.1:{port}', bucket: docs, credentialsSecretRef: {{name: s3}}}}\n\
             \x20   aiMcpServer: {{url: 'http://127.0.0.1:{port}/mcp'}}\n"
        ),
    )
    .unwrap();
    let clients = TenantClients::from_directory(dir.path(), ClientSettings::default()).unwrap();
    let services = TenantServices::new(clients.clone());
    let mcp = services.ai.list_tools("acme").await.unwrap_err();
    assert!(matches!(mcp, ServiceError::Mcp { .. }), "{mcp}");
    let s3 = services.objects.get("acme", "k").await.unwrap_err();
    assert!(matches!(s3, ServiceError::S3 { .. }), "{s3}");
    // The probe (the controller's and the tools' connection test) does not follow it either.
    let server: tenant_mcp::api::McpServer =
        serde_json::from_value(json!({"url": format!("http://127.0.0.1:{port}/mcp")})).unwrap();
    let egress =
        tenant_mcp_e2e::stack::egress(tenant_mcp::config::EndpointPolicy::compile_or_strict(
            &serde_json::from_value(
                json!({"allowLoopback": true, "deniedCidrs": ["127.0.0.2/32"]}),
            )
            .unwrap(),
        ));
    let probed =
        tenant_mcp::probe::mcp::probe_mcp(&egress, &server, Some("acme"), &Default::default())
            .await
            .unwrap_err();
    assert_ne!(probed.reason(), "", "{probed}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        decoy.connections(),
        0,
        "a redirect was followed to 127.0.0.2"
    );
    clients.shutdown().await;
}
