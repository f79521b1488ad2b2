//! The controller end to end, driven by kubectl like a platform team would: the real
//! `tenant-mcp controller` binary against a real control plane (or `E2E_KUBECONFIG`'s cluster), a
//! real Postgres (tenant database and mirror), a real S3 server and the test AI MCP server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use sqlx::Connection as _;
use tenant_mcp::api::{McpConfigStatus, TenantMcpConfig};
use tenant_mcp_e2e::controller_process::{ControllerOptions, ControllerProcess};
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer, Token};
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tenant_mcp_e2e::stack::s3::S3Server;

/// A controller with the tests' short Lease, against `cluster`.
fn start_controller(
    cluster: &Cluster,
    dir: &Path,
    identity: &str,
    lease_ns: &str,
    mirror: Option<(&str, &Path)>,
) -> ControllerProcess {
    ControllerProcess::start(&ControllerOptions {
        kubeconfig: cluster.kubeconfig(),
        dir,
        identity,
        lease_namespace: lease_ns,
        mirror,
        lease_seconds: 3,
    })
}

async fn status(api: &Api<TenantMcpConfig>, name: &str) -> McpConfigStatus {
    api.get(name)
        .await
        .ok()
        .and_then(|c| c.status)
        .unwrap_or_default()
}

fn condition(s: &McpConfigStatus, type_: &str) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn write_keys(dir: &Path) -> std::path::PathBuf {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("k1"), tenant_mcp::crypto::generate_key()).unwrap();
    std::fs::write(keys.join("active"), "k1").unwrap();
    keys
}

fn global_yaml() -> &'static str {
    // The whole local stack listens on loopback, which the default policy denies.
    "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata:\n  name: default\nspec:\n  endpointPolicy:\n    allowLoopback: true\n"
}

/// acme's config in `ns`: a Postgres server at `port` with database `db`, credentials from
/// Secret `acme-pg`.
fn acme_config_yaml(ns: &str, port: u16, db: &str) -> String {
    format!(
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {{name: acme, namespace: {ns}}}\nspec:\n  tenantId: acme\n  servers:\n    postgres: {{host: 127.0.0.1, port: {port}, database: {db}, sslMode: disable, credentialsSecretRef: {{name: acme-pg}}}}\n"
    )
}

fn secret_yaml(ns: &str, name: &str, pairs: &[(&str, &str)]) -> String {
    let data: String = pairs
        .iter()
        .map(|(k, v)| format!("  {k}: {v:?}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\nstringData:\n{data}"
    )
}

/// What the mirror tests start from: a control plane with the CRDs, a Postgres with acme's
/// database and login (`acme_app` with `password`), a migrated mirror database, acme's
/// namespace bound to it, and the GlobalMcpConfig.
struct World {
    dir: tempfile::TempDir,
    cluster: Cluster,
    pg: Postgres,
    tenant_db: String,
    mirror: MirrorDatabase,
    ns: String,
}

impl World {
    async fn start(password: &str) -> Self {
        tenant_mcp_e2e::stack::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::start().await.unwrap();
        cluster.install_crds().await.unwrap();
        let pg = Postgres::start().unwrap();
        let tenant_db = pg.create_database("acme").await.unwrap();
        execute(
            &pg.admin_url(&tenant_db),
            &format!("CREATE ROLE acme_app LOGIN PASSWORD '{password}'"),
        )
        .await
        .unwrap();
        let mirror = MirrorDatabase::create(&pg, "mirror").await.unwrap();
        let ns = cluster.namespace("acme").await.unwrap();
        cluster.kubectl_ok(&["label", "namespace", &ns, "tenantmcp.dev/tenant=acme"]);
        cluster.kubectl_stdin(&["apply", "-f", "-"], global_yaml());
        Self {
            dir,
            cluster,
            pg,
            tenant_db,
            mirror,
            ns,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_promoted_keeps_its_last_known_good_config_and_is_cleaned_up() {
    let World {
        dir,
        cluster,
        pg,
        tenant_db,
        mirror,
        ns,
    } = World::start("first-pass-111").await;
    let s3 = S3Server::start("acme-access", "acme-secret-key-1").unwrap();
    s3.client()
        .create_bucket()
        .bucket("acme-docs")
        .send()
        .await
        .unwrap();
    let ai = AiMcpServer::start(AiMcpConfig::new(
        "shared-ai",
        vec![Token {
            token: "acme-ai-token-1".into(),
            tenant: Some("acme".into()),
        }],
    ))
    .unwrap();

    for (name, pairs) in [
        (
            "acme-pg",
            vec![("username", "acme_app"), ("password", "first-pass-111")],
        ),
        (
            "acme-s3",
            vec![
                ("accessKeyId", "acme-access"),
                ("secretAccessKey", "acme-secret-key-1"),
            ],
        ),
        ("acme-ai", vec![("token", "acme-ai-token-1")]),
    ] {
        let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &secret_yaml(&ns, name, &pairs));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let keys = write_keys(dir.path());
    let mut controller = start_controller(
        &cluster,
        dir.path(),
        "solo",
        &ns,
        Some((&mirror.controller_url, &keys)),
    );
    let config = format!(
        r#"apiVersion: tenantmcp.dev/v1alpha1
kind: TenantMcpConfig
metadata:
  name: acme
  namespace: {ns}
spec:
  tenantId: acme
  servers:
    postgres:
      host: 127.0.0.1
      port: {pg_port}
      database: {tenant_db}
      sslMode: disable
      credentialsSecretRef: {{name: acme-pg}}
    minio:
      endpoint: {s3}
      bucket: acme-docs
      credentialsSecretRef: {{name: acme-s3}}
    aiMcpServer:
      url: {ai}/mcp
      bearerTokenSecretRef: {{name: acme-ai, key: token}}
      tenantRouting: {{mode: PathPrefix}}
"#,
        pg_port = pg.port(),
        s3 = s3.endpoint(),
        ai = ai.base_url(),
    );
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Ready, with every server active and frozen in an immutable snapshot.
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    let ready = wait_for("Ready=True", Duration::from_secs(60), async || {
        let s = status(&api, "acme").await;
        (condition(&s, "Ready") == Some(("True".into(), "AllServersHealthy".into()))).then_some(s)
    })
    .await;
    let pg_active = ready.active.postgres.clone().expect("postgres active");
    let first_snapshot = pg_active.snapshot_secret.clone().expect("a snapshot");
    assert!(ready.active.minio.is_some() && ready.active.ai_mcp_server.is_some());
    assert_eq!(
        condition(&ready, "Mirrored"),
        Some(("True".into(), "Mirrored".into()))
    );
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let snap = secrets.get(&first_snapshot).await.unwrap();
    assert_eq!(snap.immutable, Some(true));
    assert_eq!(snap.type_.as_deref(), Some("tenantmcp.dev/snapshot"));
    let owner = &snap.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("TenantMcpConfig", "acme")
    );
    // No credential in the CR, its status or kubectl's view of it.
    let shown = cluster.kubectl_ok(&["get", "tenantmcpconfig", "-n", &ns, "acme", "-o", "yaml"]);
    for secret in ["first-pass-111", "acme-secret-key-1", "acme-ai-token-1"] {
        assert!(!shown.contains(secret), "{shown}");
    }
    // Each promoted server has its own Event naming it and its snapshot (the recorder folds
    // Events with the same reason and action into the first one's note).
    let promoted: std::collections::BTreeMap<String, Option<String>> =
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(cluster.client(), &ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Promoted"))
            .filter_map(|e| {
                let server = e.note?.split_whitespace().next()?.to_owned();
                Some((server, e.related.and_then(|r| r.name)))
            })
            .collect();
    assert_eq!(
        promoted.keys().map(String::as_str).collect::<Vec<_>>(),
        ["aiMcpServer", "minio", "postgres"],
        "{promoted:?}"
    );
    assert_eq!(
        promoted["postgres"].as_deref(),
        Some(first_snapshot.as_str())
    );
    let table = cluster.kubectl_ok(&["get", "tmc", "-n", &ns]);
    assert!(table.contains("acme") && table.contains("True"), "{table}");
    // The mirror row: sealed credentials, readable by the tenant's own key.
    let pool = sqlx::PgPool::connect(&mirror.uber_admin_url).await.unwrap();
    let keyring = std::sync::Arc::new(tenant_mcp::crypto::Keyring::from_dir(&keys).unwrap());
    let reader = tenant_mcp::mirror::MirrorWriter::new(pool.clone(), keyring)
        .await
        .unwrap();
    let row = reader.read("acme").await.unwrap().expect("a mirror row");
    let pg_row = row.document.servers.postgres.clone().unwrap();
    assert_eq!(pg_row.credentials.password.expose(), "first-pass-111");
    assert_eq!(
        pg_row.active.snapshot_secret.as_deref(),
        Some(first_snapshot.as_str())
    );
    let raw: String = sqlx::query_scalar(
        "SELECT mcp_server_config::text FROM tenant_configs WHERE tenant_id = 'acme'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!raw.contains("first-pass-111"), "{raw}");

    // A wrong password in the Secret: Ready=False with the reason, the active config and its
    // snapshot stay, and clients using the snapshot keep working.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &secret_yaml(
            &ns,
            "acme-pg",
            &[("username", "acme_app"), ("password", "wrong-pass-222")],
        ),
    );
    let degraded = wait_for("AuthFailed", Duration::from_secs(60), async || {
        let s = status(&api, "acme").await;
        (condition(&s, "Ready") == Some(("False".into(), "AuthFailed".into()))).then_some(s)
    })
    .await;
    assert_eq!(
        degraded
            .active
            .postgres
            .as_ref()
            .unwrap()
            .snapshot_secret
            .as_deref(),
        Some(first_snapshot.as_str())
    );
    assert_eq!(
        condition(&degraded, "Degraded"),
        Some(("True".into(), "AuthFailed".into()))
    );
    let message = &degraded.servers["postgres"]
        .message
        .clone()
        .unwrap_or_default();
    assert!(
        message.contains("password authentication failed") && !message.contains("wrong-pass-222"),
        "{message}"
    );
    let snap = secrets.get(&first_snapshot).await.unwrap();
    let frozen = String::from_utf8(snap.data.unwrap()["password"].0.clone()).unwrap();
    let still = sqlx::PgConnection::connect(&pg.url("acme_app", &frozen, &tenant_db))
        .await
        .unwrap();
    still.close().await.unwrap();
    let events = cluster.kubectl_ok(&["get", "events", "-n", &ns, "-o", "yaml"]);
    assert!(
        events.contains("AuthFailed") && events.contains("Promoted"),
        "{events}"
    );

    // A key rotation while it runs: k2 becomes active (`active` first, so the state in between
    // is broken rather than another keyring) and the controller loads it without a restart.
    std::fs::write(keys.join("active"), "k2").unwrap();
    std::fs::write(keys.join("k2"), tenant_mcp::crypto::generate_key()).unwrap();
    wait_for(
        "the controller to load k2",
        Duration::from_secs(30),
        async || {
            std::fs::read_to_string(&controller.log)
                .unwrap_or_default()
                .contains("loaded keys")
                .then_some(())
        },
    )
    .await;
    reader
        .use_keyring(std::sync::Arc::new(
            tenant_mcp::crypto::Keyring::from_dir(&keys).unwrap(),
        ))
        .await
        .unwrap();

    // Fixed: the database takes a new password and the Secret says it. Promoted to a new
    // snapshot; the old one goes after its grace period.
    execute(
        &pg.admin_url(&tenant_db),
        "ALTER ROLE acme_app PASSWORD 'second-pass-333'",
    )
    .await
    .unwrap();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &secret_yaml(
            &ns,
            "acme-pg",
            &[("username", "acme_app"), ("password", "second-pass-333")],
        ),
    );
    let fixed = wait_for(
        "promotion of the fix",
        Duration::from_secs(60),
        async || {
            let s = status(&api, "acme").await;
            let snap = s.active.postgres.as_ref()?.snapshot_secret.clone()?;
            (snap != first_snapshot && condition(&s, "Ready").is_some_and(|c| c.0 == "True"))
                .then_some(s)
        },
    )
    .await;
    let second_snapshot = fixed.active.postgres.unwrap().snapshot_secret.unwrap();
    wait_for(
        "the superseded snapshot to go",
        Duration::from_secs(30),
        async || {
            secrets
                .get_opt(&first_snapshot)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    let row = wait_for(
        "the mirror to follow",
        Duration::from_secs(30),
        async || {
            let row = reader.read("acme").await.unwrap()?;
            let pw = row
                .document
                .servers
                .postgres
                .as_ref()?
                .credentials
                .password
                .expose()
                .to_owned();
            (pw == "second-pass-333").then_some(row)
        },
    )
    .await;
    assert!(row.version > 0);
    let raw: String = sqlx::query_scalar(
        "SELECT mcp_server_config::text FROM tenant_configs WHERE tenant_id = 'acme'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        raw.contains(r#""kid": "k2""#),
        "the new write is sealed with k2: {raw}"
    );
    let metrics = controller.metrics();
    assert!(
        metrics.contains("tenant_mcp_probes_total{server_type=\"postgres\",result=\"AuthFailed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenant_mcp_tenants{state=\"Ready\"} 1"),
        "{metrics}"
    );
    // Promotions by server type; every mirror write landed, none is behind.
    assert!(
        metrics.contains("tenant_mcp_promotions_total{server_type=\"postgres\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenant_mcp_mirror_writes_total{result=\"Ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenant_mcp_mirror_rows_behind 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenant_mcp_mirror_lag_seconds 0.0"),
        "{metrics}"
    );

    // Deleted: snapshots and mirror data go with it.
    cluster.kubectl_ok(&[
        "delete",
        "tenantmcpconfig",
        "-n",
        &ns,
        "acme",
        "--wait=false",
    ]);
    wait_for("the config to go", Duration::from_secs(30), async || {
        api.get_opt("acme").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(secrets.get_opt(&second_snapshot).await.unwrap().is_none());
    let cleared: Option<String> = sqlx::query_scalar(
        "SELECT mcp_server_config::text FROM tenant_configs WHERE tenant_id = 'acme'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(cleared, None);
    assert!(controller.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_fail_over() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let ns = cluster.namespace("ha").await.unwrap();
    cluster.kubectl_ok(&["label", "namespace", &ns, "tenantmcp.dev/tenant=ha"]);
    let leases: Api<Lease> = Api::namespaced(cluster.client(), &ns);
    let holder = async || {
        leases
            .get_opt("tenant-mcp-controller")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let mut a = start_controller(&cluster, dir.path(), "replica-a", &ns, None);
    wait_for("replica-a to lead", Duration::from_secs(30), async || {
        (holder().await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let mut b = start_controller(&cluster, dir.path(), "replica-b", &ns, None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        holder().await.as_deref(),
        Some("replica-a"),
        "the standby must not take a held Lease"
    );

    // The leader serves: a config with no servers of its own is Ready at once.
    let apply = |name: &str| {
        format!(
            "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  tenantId: ha\n"
        )
    };
    cluster.kubectl_stdin(&["apply", "-f", "-"], &apply("first"));
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    wait_for("first Ready", Duration::from_secs(30), async || {
        condition(&status(&api, "first").await, "Ready").filter(|c| c.0 == "True")
    })
    .await;

    // The leader stops: it releases the Lease and the standby takes over and serves.
    assert!(a.terminate().success());
    wait_for("replica-b to lead", Duration::from_secs(20), async || {
        (holder().await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    cluster.kubectl_ok(&["delete", "tenantmcpconfig", "-n", &ns, "first"]);
    cluster.kubectl_stdin(&["apply", "-f", "-"], &apply("second"));
    wait_for(
        "second Ready under the new leader",
        Duration::from_secs(30),
        async || condition(&status(&api, "second").await, "Ready").filter(|c| c.0 == "True"),
    )
    .await;
    assert!(b.terminate().success());
}

/// `tenant-mcp mirror verify` with the test's kubeconfig, database URL and keys.
fn mirror_verify(cluster: &Cluster, url: &str, keys: &Path, extra: &[&str]) -> (i32, String) {
    let args: Vec<&str> = ["mirror", "verify"]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    tenant_mcp_e2e::stack::run_tenant_mcp(
        &args,
        &[
            ("KUBECONFIG", cluster.kubeconfig().as_os_str()),
            ("TENANT_MCP_DATABASE_URL", url.as_ref()),
            ("TENANT_MCP_KEYS_DIR", keys.as_os_str()),
        ],
    )
}

/// A row changed outside the controller (here by a superuser, the one role the column guard
/// lets through): its endpoint rewritten and its version pushed to i64::MAX, which would make
/// the controller's every later write a silent no-op. The config says `Mirrored=False
/// MirrorVersionAhead`, the metric counts it, `mirror verify` lists what is wrong, a repair
/// as the uber admin is refused, and `--repair` as the controller's role puts the row back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_row_pushed_ahead_is_reported_listed_and_repaired() {
    let World {
        dir,
        cluster,
        pg,
        tenant_db,
        mirror,
        ns,
    } = World::start("acme-pass-1").await;
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &secret_yaml(
            &ns,
            "acme-pg",
            &[("username", "acme_app"), ("password", "acme-pass-1")],
        ),
    );
    let keys = write_keys(dir.path());
    let controller = start_controller(
        &cluster,
        dir.path(),
        "solo",
        &ns,
        Some((&mirror.controller_url, &keys)),
    );
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &acme_config_yaml(&ns, pg.port(), &tenant_db),
    );
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    wait_for("Mirrored=True", Duration::from_secs(60), async || {
        let s = status(&api, "acme").await;
        (condition(&s, "Mirrored") == Some(("True".into(), "Mirrored".into()))).then_some(())
    })
    .await;
    let (code, out) = mirror_verify(&cluster, &mirror.uber_admin_url, &keys, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("every mirror row agrees with the cluster (1 rows)"),
        "{out}"
    );

    // The attack.
    execute(
        &mirror.admin_url,
        "UPDATE tenant_configs
            SET mcp_server_config = jsonb_set(mcp_server_config, '{servers,postgres,spec,host}', '\"db.evil.example\"'),
                mcp_config_version = 9223372036854775807
          WHERE tenant_id = 'acme'",
    )
    .await
    .unwrap();
    // Any reconcile now finds its write refused.
    cluster.kubectl_ok(&["annotate", "tmc", "-n", &ns, "acme", "touched=1"]);
    let s = wait_for(
        "Mirrored=False MirrorVersionAhead",
        Duration::from_secs(30),
        async || {
            let s = status(&api, "acme").await;
            (condition(&s, "Mirrored") == Some(("False".into(), "MirrorVersionAhead".into())))
                .then_some(s)
        },
    )
    .await;
    let message = &s
        .conditions
        .iter()
        .find(|c| c.type_ == "Mirrored")
        .unwrap()
        .message;
    assert!(message.contains("mirror verify --repair"), "{message}");
    let metrics = controller.metrics();
    assert!(
        metrics.contains("tenant_mcp_mirror_writes_total{result=\"MirrorVersionAhead\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenant_mcp_mirror_rows_behind 1"),
        "{metrics}"
    );

    // verify lists every problem of the row.
    let (code, out) = mirror_verify(&cluster, &mirror.uber_admin_url, &keys, &["-o", "json"]);
    assert_eq!(code, 1, "{out}");
    let findings: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(findings[0]["tenant"], "acme");
    assert_eq!(findings[0]["rowVersion"], i64::MAX);
    let kinds: Vec<&str> = findings[0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["versionAhead", "altered", "differs"], "{out}");
    assert_eq!(findings[0]["problems"][2]["parts"][0], "servers.postgres");
    // The uber admin may read, not repair.
    let (code, out) = mirror_verify(&cluster, &mirror.uber_admin_url, &keys, &["--repair"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("permission denied"), "{out}");
    // The controller's role repairs it.
    let (code, out) = mirror_verify(&cluster, &mirror.controller_url, &keys, &["--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("acme") && out.contains("repaired"), "{out}");
    let (code, out) = mirror_verify(&cluster, &mirror.uber_admin_url, &keys, &[]);
    assert_eq!(code, 0, "{out}");
    let (host, version): (String, i64) = sqlx::query_as(
        "SELECT mcp_server_config #>> '{servers,postgres,spec,host}', mcp_config_version
           FROM tenant_configs WHERE tenant_id = 'acme'",
    )
    .fetch_one(&sqlx::PgPool::connect(&mirror.admin_url).await.unwrap())
    .await
    .unwrap();
    assert_eq!(host, "127.0.0.1");
    assert!(version < i64::MAX);
    // And the controller writes again.
    cluster.kubectl_ok(&[
        "annotate",
        "tmc",
        "-n",
        &ns,
        "acme",
        "touched=2",
        "--overwrite",
    ]);
    wait_for("Mirrored=True again", Duration::from_secs(30), async || {
        let s = status(&api, "acme").await;
        (condition(&s, "Mirrored") == Some(("True".into(), "Mirrored".into()))).then_some(())
    })
    .await;
    assert!(
        controller
            .metrics()
            .contains("tenant_mcp_mirror_rows_behind 0")
    );
}

/// A reconcile triggered while the controller's own status write has not reached its cache
/// (here: the credential Secret touched over and over during the first promotion) decides on
/// the cached status. Before the controller checked that, it promoted the server a second
/// time: a second snapshot, mirrored, and then the status write refused with 409, so the
/// mirror row named a snapshot that `status.active` never did (seen in CI as "a refused update
/// changed the mirror"). Threat model: the mirror is a copy of `status.active`, nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciles_on_a_stale_cache_promote_once_and_mirror_what_status_says() {
    let World {
        dir,
        cluster,
        pg,
        tenant_db,
        mirror,
        ns,
    } = World::start("acme-pass-1").await;
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &secret_yaml(
            &ns,
            "acme-pg",
            &[("username", "acme_app"), ("password", "acme-pass-1")],
        ),
    );
    let keys = write_keys(dir.path());
    let _controller = start_controller(
        &cluster,
        dir.path(),
        "solo",
        &ns,
        Some((&mirror.controller_url, &keys)),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let touching: Vec<_> = (0..4)
        .map(|worker| {
            let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let patch = serde_json::json!({"metadata": {"annotations": {
                        format!("touched-{worker}"): i.to_string()}}});
                    secrets
                        .patch(
                            "acme-pg",
                            &kube::api::PatchParams::default(),
                            &kube::api::Patch::Merge(&patch),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &acme_config_yaml(&ns, pg.port(), &tenant_db),
    );
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    wait_for("Mirrored=True", Duration::from_secs(60), async || {
        let s = status(&api, "acme").await;
        (condition(&s, "Mirrored") == Some(("True".into(), "Mirrored".into()))).then_some(())
    })
    .await;
    // Reconciles on top of the promotion's status write, and after it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in touching {
        t.await.unwrap();
    }
    // Let the reconciles of the last touches finish.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let snapshots = cluster.kubectl_ok(&[
        "get",
        "secrets",
        "-n",
        &ns,
        "-l",
        "tenantmcp.dev/server-type=postgres",
        "-o",
        "name",
    ]);
    let active = status(&api, "acme")
        .await
        .active
        .postgres
        .and_then(|e| e.snapshot_secret)
        .unwrap();
    assert_eq!(
        snapshots.trim(),
        format!("secret/{active}"),
        "one promotion, one snapshot"
    );
    let mirrored: String = sqlx::query_scalar(
        "SELECT mcp_server_config #>> '{servers,postgres,snapshotSecret}'
           FROM tenant_configs WHERE tenant_id = 'acme'",
    )
    .fetch_one(&sqlx::PgPool::connect(&mirror.admin_url).await.unwrap())
    .await
    .unwrap();
    assert_eq!(
        mirrored, active,
        "the mirror names status.active's snapshot"
    );
}

/// Issue 27, item 9 (threat model: the mirror must never point a tenant at endpoints it is no
/// longer served): when acme's namespace stops being bound to acme, clients fall back to the
/// global servers at once; the mirror row must not keep the old endpoints. And a config that
/// never served (a second one claiming acme in an unbound namespace) must not clear the row
/// the serving config wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_stops_serving_clears_its_mirror_row_and_only_its_own() {
    let World {
        dir,
        cluster,
        pg,
        tenant_db,
        mirror,
        ns,
    } = World::start("acme-pass-1").await;
    let config = |ns: &str| {
        format!(
            "{}---\n{}",
            secret_yaml(
                ns,
                "acme-pg",
                &[("username", "acme_app"), ("password", "acme-pass-1")]
            ),
            acme_config_yaml(ns, pg.port(), &tenant_db)
        )
    };
    let keys = write_keys(dir.path());
    let _controller = start_controller(
        &cluster,
        dir.path(),
        "solo",
        &ns,
        Some((&mirror.controller_url, &keys)),
    );
    let pool = sqlx::PgPool::connect(&mirror.admin_url).await.unwrap();
    let row = async || -> Option<String> {
        sqlx::query_scalar(
            "SELECT mcp_server_config #>> '{source,namespace}' FROM tenant_configs WHERE tenant_id = 'acme'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap()
        .flatten()
    };
    cluster.kubectl_stdin(&["apply", "-f", "-"], &config(&ns));
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    wait_for("acme mirrored", Duration::from_secs(60), async || {
        (row().await.as_deref() == Some(ns.as_str())).then_some(())
    })
    .await;

    // A second config claiming acme where nothing binds it: refused, and the row stays.
    let other = cluster.namespace("other").await.unwrap();
    cluster.kubectl_stdin(&["apply", "-f", "-"], &config(&other));
    let others: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &other);
    wait_for(
        "the impostor refused",
        Duration::from_secs(30),
        async || {
            let s = status(&others, "acme").await;
            (condition(&s, "Ready").is_some_and(|(_, r)| r == "TenantNotBound")).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        row().await.as_deref(),
        Some(ns.as_str()),
        "the impostor cleared acme's row"
    );

    // acme's namespace unbound: the config stops serving, and its row goes.
    cluster.kubectl_ok(&["label", "namespace", &ns, "tenantmcp.dev/tenant-"]);
    wait_for("the row cleared", Duration::from_secs(30), async || {
        row().await.is_none().then_some(())
    })
    .await;
    wait_for(
        "Mirrored gone from status",
        Duration::from_secs(30),
        async || {
            let s = status(&api, "acme").await;
            condition(&s, "Mirrored").is_none().then_some(())
        },
    )
    .await;
    let version: Option<i64> = sqlx::query_scalar(
        "SELECT mcp_config_version FROM tenant_configs WHERE tenant_id = 'acme'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(version.is_some(), "the row keeps its version");

    // Bound again: it serves, and mirrors again.
    cluster.kubectl_ok(&["label", "namespace", &ns, "tenantmcp.dev/tenant=acme"]);
    wait_for("acme mirrored again", Duration::from_secs(60), async || {
        (row().await.as_deref() == Some(ns.as_str())).then_some(())
    })
    .await;
}

/// Issue 27, item 7. Threat model, namespace admin: "never make an application use credentials
/// the controller did not test". The admin deletes acme's snapshot and recreates it under its
/// name, type and owner reference with a password of their own. The controller takes the
/// recreated Secret for a missing snapshot (its uid is not the one `status.active` recorded):
/// it checks the server again with the config's own Secret, freezes the credentials in a new
/// snapshot, and mirrors that one; the forged password never reaches the mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_recreated_under_its_name_is_replaced_not_mirrored() {
    let World {
        dir,
        cluster,
        pg,
        tenant_db,
        mirror,
        ns,
    } = World::start("acme-pass-1").await;
    let keys = write_keys(dir.path());
    let _controller = start_controller(
        &cluster,
        dir.path(),
        "solo",
        &ns,
        Some((&mirror.controller_url, &keys)),
    );
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "{}---\n{}",
            secret_yaml(
                &ns,
                "acme-pg",
                &[("username", "acme_app"), ("password", "acme-pass-1")]
            ),
            acme_config_yaml(&ns, pg.port(), &tenant_db)
        ),
    );
    let api: Api<TenantMcpConfig> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let pool = sqlx::PgPool::connect(&mirror.admin_url).await.unwrap();
    let mirrored = async || -> Option<String> {
        sqlx::query_scalar(
            "SELECT mcp_server_config #>> '{servers,postgres,snapshotSecret}' FROM tenant_configs WHERE tenant_id = 'acme'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap()
        .flatten()
    };
    let active = async || {
        let s = status(&api, "acme").await;
        s.active
            .postgres
            .map(|a| (a.snapshot_secret.unwrap_or_default(), a.snapshot_uid))
    };
    let (first, recorded) = wait_for("acme promoted", Duration::from_secs(60), async || {
        active().await
    })
    .await;
    let genuine = secrets.get(&first).await.unwrap();
    assert_eq!(
        recorded, genuine.metadata.uid,
        "status.active records the snapshot's uid"
    );
    wait_for("acme mirrored", Duration::from_secs(60), async || {
        (mirrored().await.as_deref() == Some(first.as_str())).then_some(())
    })
    .await;

    let mut forged = genuine.clone();
    forged.metadata = kube::api::ObjectMeta {
        name: genuine.metadata.name.clone(),
        namespace: genuine.metadata.namespace.clone(),
        labels: genuine.metadata.labels.clone(),
        annotations: genuine.metadata.annotations.clone(),
        owner_references: genuine.metadata.owner_references.clone(),
        ..Default::default()
    };
    forged.data = None;
    forged.string_data = Some(
        [("username", "acme_app"), ("password", "attackers-own")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    secrets.delete(&first, &Default::default()).await.unwrap();
    secrets
        .create(&kube::api::PostParams::default(), &forged)
        .await
        .unwrap();

    let mut found = None;
    for _ in 0..60 {
        found = active().await.filter(|(name, _)| *name != first);
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if found.is_none() {
        let s = status(&api, "acme").await;
        panic!(
            "no new snapshot promoted: servers {:?}, conditions {:?}",
            s.servers, s.conditions
        );
    }
    let (second, uid) = found.unwrap_or_default();
    let made = secrets.get(&second).await.unwrap();
    assert_eq!(uid, made.metadata.uid);
    assert_eq!(
        made.data.unwrap()["password"].0,
        b"acme-pass-1",
        "the new snapshot holds the config's own credentials"
    );
    wait_for(
        "the new snapshot mirrored",
        Duration::from_secs(60),
        async || (mirrored().await.as_deref() == Some(second.as_str())).then_some(()),
    )
    .await;
}
