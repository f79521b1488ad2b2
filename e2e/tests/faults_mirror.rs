//! Fault 2 of issue 22: the mirror's Postgres goes down while configs change. The mirror is
//! not on the serving path: configs still promote (a new tenant, a rotated password), the
//! configs say `Mirrored=False` with the reason and the metrics count the rows behind; a
//! controller restarted during the outage starts and promotes too; once the database is back
//! every row is written again and `tenant-mcp mirror verify` finds each equal to
//! `status.active` — nothing lost, nothing stale. (A row pushed ahead of the controller's
//! version is `e2e/tests/controller.rs` `a_mirror_row_pushed_ahead_is_reported_listed_and_repaired`.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp_e2e::controller_process::{ControllerOptions, ControllerProcess};
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::scenario::{self, apply};
use tenant_mcp_e2e::stack::fault_proxy::{FaultProxy, Mode};
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::Postgres;

fn start(
    cluster: &Cluster,
    dir: &Path,
    url: &str,
    keys: &Path,
    identity: &str,
) -> ControllerProcess {
    ControllerProcess::start(&ControllerOptions {
        kubeconfig: cluster.kubeconfig(),
        dir,
        identity,
        lease_namespace: "default",
        mirror: Some((url, keys)),
        lease_seconds: 15,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_promote_while_the_mirror_is_down_and_every_row_catches_up() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("tenants").await.unwrap();
    let mirror = MirrorDatabase::create(&pg, "mirror").await.unwrap();
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", pg.port()).parse().unwrap()).unwrap();
    // The controller reaches the mirror only through the proxy.
    let mirror_url = mirror
        .controller_url
        .replace(&format!(":{}/", pg.port()), &format!(":{}/", proxy.port()));
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("k1"), tenant_mcp::crypto::generate_key()).unwrap();
    std::fs::write(keys.join("active"), "k1").unwrap();

    apply(
        &client,
        &scenario::global("tenant-mcp-credentials", json!({})),
    )
    .await
    .unwrap();
    let tenant = async |name: &str, password: &str| {
        let ns = format!("tenant-{name}");
        let login = format!("{name}_{}", &db[db.len() - 6..]);
        pg.set_login(&login, password).await.unwrap();
        apply(&client, &scenario::namespace(&ns, Some(name)))
            .await
            .unwrap();
        apply(
            &client,
            &scenario::secret(&ns, "pg", &[("username", &login), ("password", password)]),
        )
        .await
        .unwrap();
        apply(
            &client,
            &scenario::config(
                &ns,
                name,
                name,
                json!({"postgres": {"host": "127.0.0.1", "port": pg.port(), "database": db,
                                    "sslMode": "disable", "credentialsSecretRef": {"name": "pg"}}}),
                json!({}),
            ),
        )
        .await
        .unwrap();
    };
    let api =
        |name: &str| Api::<TenantMcpConfig>::namespaced(client.clone(), &format!("tenant-{name}"));
    let snapshot_of = async |name: &str| {
        scenario::status(&api(name), name)
            .await
            .active
            .postgres
            .and_then(|a| a.snapshot_secret)
    };
    let conditions = async |name: &str| {
        let s = scenario::status(&api(name), name).await;
        (
            scenario::condition(&s, "Ready"),
            scenario::condition(&s, "Mirrored"),
        )
    };

    let mut controller = start(&cluster, dir.path(), &mirror_url, &keys, "first");
    tenant("acme", "acme-pass-1").await;
    wait_for(
        "acme Ready and mirrored",
        Duration::from_secs(60),
        async || {
            let (ready, mirrored) = conditions("acme").await;
            (ready.is_some_and(|r| r.0 == "True") && mirrored.is_some_and(|m| m.0 == "True"))
                .then_some(())
        },
    )
    .await;
    let acme_before = snapshot_of("acme").await.unwrap();

    // The mirror goes down; a tenant arrives and another rotates its password.
    proxy.set(Mode::Refuse);
    tenant("globex", "globex-pass-1").await;
    tenant("acme", "acme-pass-2").await;
    for name in ["acme", "globex"] {
        let mirrored = wait_for(
            &format!("{name} promoted, not mirrored"),
            Duration::from_secs(60),
            async || {
                let (ready, mirrored) = conditions(name).await;
                let promoted = snapshot_of(name).await.is_some_and(|s| s != acme_before);
                (promoted
                    && ready.is_some_and(|r| r.0 == "True")
                    && mirrored.as_ref().is_some_and(|m| m.0 == "False"))
                .then_some(mirrored)
            },
        )
        .await;
        assert_eq!(
            mirrored.map(|(_, reason)| reason).as_deref(),
            Some("DatabaseUnreachable"),
            "{name}"
        );
    }
    let metrics = controller.metrics();
    assert!(
        metrics.contains("tenant_mcp_mirror_rows_behind 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenant_mcp_mirror_writes_total{result=\"DatabaseUnreachable\"}"),
        "{metrics}"
    );

    // A controller (re)started while the database is down starts and promotes.
    controller.kill();
    let controller = start(&cluster, dir.path(), &mirror_url, &keys, "second");
    tenant("initech", "initech-pass-1").await;
    wait_for(
        "initech promoted by the new controller",
        Duration::from_secs(90),
        async || {
            let (ready, mirrored) = conditions("initech").await;
            (ready.is_some_and(|r| r.0 == "True") && mirrored.is_some_and(|m| m.0 == "False"))
                .then_some(())
        },
    )
    .await;

    // Back: every row is written, and each equals the cluster's active config.
    proxy.set(Mode::Forward);
    for name in ["acme", "globex", "initech"] {
        wait_for(
            &format!("{name} mirrored again"),
            Duration::from_secs(60),
            async || {
                let (_, mirrored) = conditions(name).await;
                mirrored.is_some_and(|m| m.0 == "True").then_some(())
            },
        )
        .await;
    }
    let (code, out) = tenant_mcp_e2e::stack::run_tenant_mcp(
        &["mirror", "verify", "-o", "json"],
        &[
            ("KUBECONFIG", cluster.kubeconfig().as_os_str()),
            ("TENANT_MCP_DATABASE_URL", mirror.uber_admin_url.as_ref()),
            ("TENANT_MCP_KEYS_DIR", keys.as_os_str()),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "[]", "{out}");
    let metrics = controller.metrics();
    assert!(
        metrics.contains("tenant_mcp_mirror_rows_behind 0"),
        "{metrics}"
    );
}
