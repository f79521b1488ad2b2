//! Faults 3 and 4 of issue 22: a tenant's own Postgres, S3 and MCP servers go down, or hang
//! (accept and never answer), after its config was promoted. Real servers behind fault proxies
//! (`stack::fault_proxy`), the real controller binary, the client library in this process.
//!
//! Each failure must be a retryable error within the server's own timeout (a watchdog fails
//! the test on a hang; the measured times are printed, not asserted), never a request to the
//! global servers (decoys that count connections), and the tenant must recover when its
//! servers do; the controller marks the servers `Failing` on its re-check and keeps the
//! active entries. After each hang the pools and sessions work again, and neither tasks nor
//! connections pile up from one fault to the next.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kube::api::Api;
use serde_json::json;
use tenant_mcp::api::{ServerState, TenantMcpConfig};
use tenant_mcp::client::{ClientSettings, Origin, TenantClients};
use tenant_mcp::config::candidate::ServerKey;
use tenant_mcp::services::{ServiceError, TenantServices};
use tenant_mcp_e2e::controller_process::{ControllerOptions, ControllerProcess};
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::scenario::{self, apply};
use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer, Token};
use tenant_mcp_e2e::stack::fault_proxy::{FaultProxy, Mode};
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tenant_mcp_e2e::stack::s3::S3Server;

/// The timeouts the tenant's config sets: a Postgres acquire, an S3 operation, an MCP call.
const PG_TIMEOUT: Duration = Duration::from_secs(2);
const S3_TIMEOUT: Duration = Duration::from_secs(3);
const MCP_TIMEOUT: Duration = Duration::from_secs(3);
/// A call still running this long past its timeout has hung.
const WATCHDOG: Duration = Duration::from_secs(15);

/// `host:port` of an `http://host:port/...` URL.
fn addr_of(url: &str) -> SocketAddr {
    let rest = url.trim_start_matches("http://");
    rest.split('/').next().unwrap().parse().unwrap()
}

/// One call of each kind for `tenant`: its outcome and how long it took.
async fn each_kind(
    services: &TenantServices,
    tenant: &str,
    login: &str,
) -> Vec<(&'static str, Result<(), ServiceError>, Duration)> {
    let mut out = Vec::new();
    let started = Instant::now();
    let pg = tokio::time::timeout(PG_TIMEOUT + WATCHDOG, async {
        let mut tx = services.postgres.begin(tenant).await?;
        let user: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(tx.conn())
            .await
            .map_err(|e| tx.error(e))?;
        assert_eq!(user, login, "served by the tenant's own login");
        tx.commit().await
    })
    .await
    .expect("a Postgres call hung");
    out.push(("postgres", pg, started.elapsed()));
    let started = Instant::now();
    let s3 = tokio::time::timeout(S3_TIMEOUT + WATCHDOG, async {
        services
            .objects
            .put(tenant, "probe.txt", b"x".to_vec(), None)
            .await?;
        services.objects.get(tenant, "probe.txt").await.map(|_| ())
    })
    .await
    .expect("an S3 call hung");
    out.push(("minio", s3, started.elapsed()));
    let started = Instant::now();
    let ai = tokio::time::timeout(MCP_TIMEOUT + WATCHDOG, services.ai.list_tools(tenant))
        .await
        .expect("an MCP call hung")
        .map(|_| ());
    out.push(("aiMcpServer", ai, started.elapsed()));
    out
}

fn assert_all_ok(results: &[(&str, Result<(), ServiceError>, Duration)], what: &str) {
    for (kind, result, _) in results {
        assert!(
            result.is_ok(),
            "{what}: {kind}: {:?}",
            result.as_ref().err()
        );
    }
}

/// Every call failed, retryably, and (printed) how long each took against its timeout.
fn assert_all_failed_retryably(results: &[(&str, Result<(), ServiceError>, Duration)], what: &str) {
    for (kind, result, took) in results {
        let err = result
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("{what}: {kind} succeeded"));
        assert!(
            err.is_retryable(),
            "{what}: {kind}: {err} ({})",
            err.reason()
        );
        eprintln!("{what}: {kind} failed after {took:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_servers_down_or_hung_fail_fast_never_fall_back_and_recover() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();

    // The tenant's own servers, each behind a proxy the test turns off or hangs.
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("acme").await.unwrap();
    let login = format!("acme_{}", &db[db.len() - 6..]);
    pg.set_login(&login, "acme-pass").await.unwrap();
    execute(
        &pg.admin_url(&db),
        &format!("GRANT ALL ON SCHEMA public TO {login}"),
    )
    .await
    .unwrap();
    let s3 = S3Server::start("acme-access", "acme-secret-key").unwrap();
    s3.client()
        .create_bucket()
        .bucket("acme-docs")
        .send()
        .await
        .unwrap();
    let ai = AiMcpServer::start(AiMcpConfig::new(
        "acme-ai",
        vec![Token {
            token: "acme-token".into(),
            tenant: None,
        }],
    ))
    .unwrap();
    let pg_proxy = FaultProxy::start(format!("127.0.0.1:{}", pg.port()).parse().unwrap()).unwrap();
    let s3_proxy = FaultProxy::start(addr_of(&s3.endpoint())).unwrap();
    let ai_proxy = FaultProxy::start(addr_of(&ai.url())).unwrap();
    let proxies = [&pg_proxy, &s3_proxy, &ai_proxy];

    // The global servers are decoys: nothing of acme's may ever reach them.
    let decoys: Vec<FaultProxy> = (0..3)
        .map(|_| {
            let decoy = FaultProxy::start("127.0.0.1:9".parse().unwrap()).unwrap();
            decoy.set(Mode::Refuse);
            decoy
        })
        .collect();
    let creds = "tenant-mcp-credentials";
    apply(&client, &scenario::namespace(creds, None))
        .await
        .unwrap();
    for (name, pairs) in [
        ("global-pg", vec![("username", "x"), ("password", "y")]),
        (
            "global-s3",
            vec![("accessKeyId", "x"), ("secretAccessKey", "y")],
        ),
        ("global-ai", vec![("token", "x")]),
    ] {
        apply(&client, &scenario::secret(creds, name, &pairs))
            .await
            .unwrap();
    }
    apply(
        &client,
        &scenario::global(
            creds,
            json!({
                "postgres": {"host": "127.0.0.1", "port": decoys[0].port(), "database": "global",
                             "sslMode": "disable", "credentialsSecretRef": {"name": "global-pg"}},
                "minio": {"endpoint": format!("http://127.0.0.1:{}", decoys[1].port()),
                          "bucket": "global", "credentialsSecretRef": {"name": "global-s3"}},
                "aiMcpServer": {"url": format!("http://127.0.0.1:{}/mcp", decoys[2].port()),
                                "bearerTokenSecretRef": {"name": "global-ai", "key": "token"}}
            }),
        ),
    )
    .await
    .unwrap();

    let ns = "tenant-acme";
    apply(&client, &scenario::namespace(ns, Some("acme")))
        .await
        .unwrap();
    apply(
        &client,
        &scenario::secret(
            ns,
            "acme-pg",
            &[("username", &login), ("password", "acme-pass")],
        ),
    )
    .await
    .unwrap();
    apply(
        &client,
        &scenario::secret(
            ns,
            "acme-s3",
            &[
                ("accessKeyId", "acme-access"),
                ("secretAccessKey", "acme-secret-key"),
            ],
        ),
    )
    .await
    .unwrap();
    apply(
        &client,
        &scenario::secret(ns, "acme-ai", &[("token", "acme-token")]),
    )
    .await
    .unwrap();
    apply(
        &client,
        &scenario::config(
            ns,
            "acme",
            "acme",
            json!({
                "postgres": {"host": "127.0.0.1", "port": pg_proxy.port(), "database": db,
                             "sslMode": "disable", "credentialsSecretRef": {"name": "acme-pg"},
                             "pool": {"acquireTimeoutSeconds": PG_TIMEOUT.as_secs()}},
                "minio": {"endpoint": format!("http://127.0.0.1:{}", s3_proxy.port()),
                          "bucket": "acme-docs", "timeoutSeconds": S3_TIMEOUT.as_secs(),
                          "credentialsSecretRef": {"name": "acme-s3"}},
                "aiMcpServer": {"url": format!("http://127.0.0.1:{}/mcp", ai_proxy.port()),
                                "timeoutSeconds": MCP_TIMEOUT.as_secs(),
                                "bearerTokenSecretRef": {"name": "acme-ai", "key": "token"}}
            }),
            json!({"validation": {"connectTimeoutSeconds": 2, "revalidateIntervalSeconds": 30}}),
        ),
    )
    .await
    .unwrap();

    let _controller = ControllerProcess::start(&ControllerOptions {
        kubeconfig: cluster.kubeconfig(),
        dir: dir.path(),
        identity: "faults",
        lease_namespace: ns,
        mirror: None,
        lease_seconds: 15,
    });
    let api: Api<TenantMcpConfig> = Api::namespaced(client.clone(), ns);
    let ready = wait_for("acme Ready", Duration::from_secs(60), async || {
        let s = scenario::status(&api, "acme").await;
        (scenario::condition(&s, "Ready") == Some(("True".into(), "AllServersHealthy".into())))
            .then_some(s)
    })
    .await;
    let clients = TenantClients::from_kube(client.clone(), ClientSettings::default())
        .await
        .unwrap();
    for key in [ServerKey::Postgres, ServerKey::Minio, ServerKey::AiMcp] {
        wait_for("acme's routes", Duration::from_secs(30), async || {
            clients
                .endpoint("acme", &key)
                .ok()
                .filter(|e| e.origin == Origin::Tenant)
        })
        .await;
    }
    let services = TenantServices::new(clients.clone());
    assert_all_ok(&each_kind(&services, "acme", &login).await, "healthy");
    let decoy_baseline: Vec<usize> = decoys.iter().map(FaultProxy::accepted).collect();
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };

    // Down: every kind fails fast and retryably, nothing goes to the global servers; the
    // controller's re-check marks them Failing and keeps the active entries.
    for proxy in proxies {
        proxy.set(Mode::Refuse);
    }
    for round in 0..3 {
        assert_all_failed_retryably(
            &each_kind(&services, "acme", &login).await,
            &format!("down #{round}"),
        );
    }
    let failing = wait_for("the servers Failing", Duration::from_secs(60), async || {
        let s = scenario::status(&api, "acme").await;
        ["postgres", "minio", "aiMcpServer"]
            .iter()
            .all(|k| {
                s.servers
                    .get(k)
                    .is_some_and(|h| h.state == ServerState::Failing)
            })
            .then_some(s)
    })
    .await;
    assert_eq!(failing.active, ready.active, "the active entries stay");
    for proxy in proxies {
        proxy.set(Mode::Forward);
    }
    wait_for("acme served again", Duration::from_secs(30), async || {
        let results = each_kind(&services, "acme", &login).await;
        results.iter().all(|(_, r, _)| r.is_ok()).then_some(())
    })
    .await;

    // Hung, three times over: each call ends within its timeout, and afterwards the same
    // pools and sessions serve again; tasks and connections do not grow from one to the next.
    let mut after_each = Vec::new();
    for round in 0..3 {
        for proxy in proxies {
            proxy.set(Mode::Hang);
        }
        let results = each_kind(&services, "acme", &login).await;
        assert_all_failed_retryably(&results, &format!("hung #{round}"));
        for proxy in proxies {
            proxy.set(Mode::Forward);
        }
        wait_for(
            "acme served after the hang",
            Duration::from_secs(30),
            async || {
                let results = each_kind(&services, "acme", &login).await;
                results.iter().all(|(_, r, _)| r.is_ok()).then_some(())
            },
        )
        .await;
        // Let closed connections and their tasks wind down.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let open: usize = proxies.iter().map(|p| p.open()).sum();
        after_each.push((tasks(), open));
    }
    eprintln!("tasks and open connections after each hang: {after_each:?}");
    let (first_tasks, first_open) = after_each[0];
    for (tasks, open) in &after_each[1..] {
        assert!(
            *tasks <= first_tasks + 2,
            "tasks grow per hang: {after_each:?}"
        );
        assert!(
            *open <= first_open + 1,
            "connections grow per hang: {after_each:?}"
        );
    }
    let decoys_now: Vec<usize> = decoys.iter().map(FaultProxy::accepted).collect();
    assert_eq!(
        decoys_now, decoy_baseline,
        "nothing of acme's reached a global server"
    );

    // The global servers down (the decoys refuse): a tenant they serve (globex, no config)
    // fails fast and retryably; acme, on its own servers, does not notice.
    for key in [ServerKey::Postgres, ServerKey::Minio, ServerKey::AiMcp] {
        let endpoint = clients.endpoint("globex", &key).unwrap();
        assert_eq!(endpoint.origin, Origin::Global);
    }
    assert_all_failed_retryably(&each_kind(&services, "globex", "none").await, "global down");
    let reached: usize = decoys.iter().map(FaultProxy::accepted).sum::<usize>()
        - decoy_baseline.iter().sum::<usize>();
    assert!(reached >= 3, "globex's calls went to the global servers");
    assert_all_ok(
        &each_kind(&services, "acme", &login).await,
        "acme while global is down",
    );
    clients.shutdown().await;
}
