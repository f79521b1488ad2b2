//! The management MCP server driven by a client nobody here wrote: the official MCP Python
//! SDK (`e2e/python/admin_client.py`, installed into `.tools/python` by `scripts/test`), over
//! Streamable HTTP, against the local stack: a real control plane, a real Postgres, a real S3
//! server that checks credentials, and the controller. A tenant admin registers a config
//! (after a refused attempt with a wrong password), adds MinIO, waits for the controller to
//! promote both (the controller mirrors them, sealed, into Postgres), fails to break MinIO with
//! a wrong key (the config, its Secrets and the mirror row stay as they were), and deletes the
//! config.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::controller::{self, Settings};
use tenant_mcp::crypto::Keyring;
use tenant_mcp::mcp_server::limits::Limits;
use tenant_mcp::mirror::MirrorWriter;
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::mcp_admin::{AdminServer, SdkTenant, python_client, token};
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::Postgres;
use tenant_mcp_e2e::stack::s3::S3Server;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_registers_updates_reads_and_deletes_a_config_on_the_local_stack() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();

    let pg = Postgres::start().unwrap();
    let SdkTenant {
        tenant,
        user,
        database: db,
        namespace: ns,
        ..
    } = SdkTenant::create(&cluster, &pg).await.unwrap();
    let s3 = tokio::task::spawn_blocking(|| S3Server::start("acme-access", "acme-secret-key"))
        .await
        .unwrap()
        .unwrap();
    s3.client()
        .create_bucket()
        .bucket("acme-docs")
        .send()
        .await
        .unwrap();

    // The controller mirrors into a migrated database, sealed with a key of this test.
    let mirror_db = MirrorDatabase::create(&pg, "mirror").await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("k1"), tenant_mcp::crypto::generate_key()).unwrap();
    std::fs::write(keys.path().join("active"), "k1").unwrap();
    let keyring = Arc::new(Keyring::from_dir(keys.path()).unwrap());
    let controller_pool = sqlx::PgPool::connect(&mirror_db.controller_url)
        .await
        .unwrap();
    let writer = MirrorWriter::new(controller_pool, keyring.clone())
        .await
        .unwrap();
    let uber_pool = sqlx::PgPool::connect(&mirror_db.uber_admin_url)
        .await
        .unwrap();
    let reader = MirrorWriter::new(uber_pool.clone(), keyring).await.unwrap();
    let mirrored = async || -> Option<String> {
        sqlx::query_scalar(
            "SELECT mcp_server_config::text FROM tenant_configs WHERE tenant_id = $1",
        )
        .bind(&tenant)
        .fetch_optional(&uber_pool)
        .await
        .unwrap()
    };

    let stop = CancellationToken::new();
    let controller_task = tokio::spawn(controller::run(
        client.clone(),
        Settings {
            identity: "mcp-python-test".into(),
            snapshot_grace: Duration::from_secs(1),
            ..Settings::default()
        },
        Some(writer),
        stop.clone(),
        None,
    ));
    let server = AdminServer::start(client.clone(), Limits::default())
        .await
        .unwrap();

    let admin = token(&["tenant_admin"], Some(&tenant));
    let postgres = json!({"host": "127.0.0.1", "port": pg.port(), "database": db, "sslMode": "disable",
                          "credentialsSecretRef": {"name": "acme-postgres"}});
    let minio = json!({"endpoint": s3.endpoint(), "bucket": "acme-docs",
                       "credentialsSecretRef": {"name": "acme-minio"}});
    let step = |tool: &str, arguments: Value| json!({"token": admin, "tool": tool, "arguments": arguments});
    let mut ready = step("rag_get_tenant_mcp_config", json!({"tenantId": tenant}));
    ready["until_ready"] = json!(true);
    ready["timeout"] = json!(60);
    let steps = json!([
        {"token": admin},
        step("rag_register_tenant_mcp_config", json!({
            "tenantId": tenant, "servers": {"postgres": postgres},
            "credentials": {"postgres": {"username": user, "password": "wrong-pass"}}})),
        step("rag_register_tenant_mcp_config", json!({
            "tenantId": tenant, "servers": {"postgres": postgres},
            "credentials": {"postgres": {"username": user, "password": "acme-pass"}}})),
        step("rag_update_tenant_mcp_config", json!({
            "tenantId": tenant, "servers": {"minio": minio},
            "credentials": {"minio": {"accessKeyId": "acme-access", "secretAccessKey": "acme-secret-key"}}})),
        ready,
    ]);
    let run = async |steps: Value| {
        let url = server.url.clone();
        tokio::task::spawn_blocking(move || python_client(&[url.as_str()], &[], &steps))
            .await
            .unwrap()
    };
    let first = run(steps).await;
    // What the tools stored reached the mirror, sealed: the password given to register.
    let row = wait_for(
        "the mirror row of both servers",
        Duration::from_secs(30),
        async || {
            reader
                .read(&tenant)
                .await
                .unwrap()
                .filter(|r| r.document.servers.minio.is_some())
        },
    )
    .await;
    let pg_row = row.document.servers.postgres.clone().unwrap();
    assert_eq!(pg_row.credentials.password.expose(), "acme-pass");
    let sealed = mirrored().await.unwrap();
    assert!(!sealed.contains("acme-pass") && !sealed.contains("acme-secret-key"));

    let steps = json!([
        step(
            "rag_update_tenant_mcp_config",
            json!({
            "tenantId": tenant,
            "credentials": {"minio": {"accessKeyId": "acme-access", "secretAccessKey": "not-the-key"}}})
        ),
        step("rag_get_tenant_mcp_config", json!({"tenantId": tenant})),
    ]);
    let second = run(steps).await;
    // Give a wrongly promoted change time to reach the mirror before looking.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        mirrored().await.unwrap(),
        sealed,
        "a refused update changed the mirror"
    );
    let steps = json!([
        step("rag_delete_tenant_mcp_config", json!({"tenantId": tenant})),
        step("rag_get_tenant_mcp_config", json!({"tenantId": tenant})),
    ]);
    let third = run(steps).await;
    let all: Vec<Value> = [&first, &second, &third]
        .iter()
        .flat_map(|r| r["results"].as_array().unwrap().clone())
        .collect();
    let report = json!({"tools": first["tools"], "results": all});

    // The tools, with input schemas from the CRD types.
    let tools = report["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "rag_delete_tenant_mcp_config",
            "rag_get_tenant_mcp_config",
            "rag_list_tenant_mcp_configs",
            "rag_register_tenant_mcp_config",
            "rag_test_tenant_mcp_config",
            "rag_update_tenant_mcp_config",
        ]
    );
    let register = tools
        .iter()
        .find(|t| t["name"] == "rag_register_tenant_mcp_config")
        .unwrap();
    let schema = register["input_schema"].to_string();
    for field in [
        "credentialsSecretRef",
        "sslMode",
        "bearerTokenSecretRef",
        "secretAccessKey",
    ] {
        assert!(
            schema.contains(field),
            "register's schema lacks {field}: {schema}"
        );
    }

    let results = report["results"].as_array().unwrap();
    let [
        refused,
        registered,
        updated,
        ready,
        broken,
        after,
        deleted,
        gone,
    ] = results.as_slice()
    else {
        panic!("{report}")
    };
    // A wrong password: refused by the connection test, by field, and nothing stored.
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["is_error"], true, "not a tool result: {refused}");
    assert_eq!(refused["data"]["reason"], "Invalid", "{refused}");
    assert_eq!(
        refused["data"]["errors"][0]["path"], "servers.postgres",
        "{refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("AuthFailed"),
        "{refused}"
    );
    assert!(!refused.to_string().contains("wrong-pass"));

    assert_eq!(registered["ok"], true, "{registered}");
    assert_eq!(
        registered["value"]["secretsWritten"],
        json!(["acme-postgres"])
    );
    assert_eq!(registered["value"]["connectionTests"][0]["ok"], true);
    assert_eq!(updated["ok"], true, "{updated}");
    let tested: Vec<&str> = updated["value"]["connectionTests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["server"].as_str())
        .collect();
    assert_eq!(tested, ["minio"], "only the changed server is tested");
    assert!(updated["value"]["config"]["spec"]["servers"]["postgres"].is_object());

    // The controller's verdict, as the get tool reports it.
    let view = &ready["value"];
    let servers: Vec<(&str, &str, bool)> = view["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["server"].as_str().unwrap(),
                s["state"].as_str().unwrap_or_default(),
                s["desiredIsActive"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        servers,
        [("minio", "Healthy", true), ("postgres", "Healthy", true)],
        "{view}"
    );
    let ready_condition = view["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready_condition["status"], "True", "{view}");
    assert_eq!(
        view["active"]["postgres"]["spec"]["host"], "127.0.0.1",
        "{view}"
    );

    // A wrong S3 key is refused and changes nothing.
    assert_eq!(broken["ok"], false, "{broken}");
    assert_eq!(
        broken["data"]["errors"][0]["path"], "servers.minio",
        "{broken}"
    );
    // The desired config, not the resourceVersion: the controller may still be writing the
    // status of the promotion that made it ready (a Mirrored condition, its own follow-up
    // reconcile), and each status write moves the resourceVersion.
    assert_eq!(
        after["value"]["spec"], view["spec"],
        "the refused update changed the config: {after}"
    );
    assert!(view["spec"]["servers"]["minio"].is_object(), "{view}");

    assert_eq!(deleted["ok"], true, "{deleted}");
    let mut secrets_deleted: Vec<&str> = deleted["value"]["secretsDeleted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    secrets_deleted.sort_unstable();
    assert_eq!(secrets_deleted, ["acme-minio", "acme-postgres"]);
    assert_eq!(gone["ok"], false);
    assert_eq!(gone["is_error"], true, "not a tool result: {gone}");
    assert_eq!(gone["data"]["reason"], "NotFound", "{gone}");
    let configs = Api::<TenantMcpConfig>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(configs.items.is_empty());
    let left = Api::<Secret>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=tenant-mcp-mcp-server"))
        .await
        .unwrap();
    assert!(
        left.items.is_empty(),
        "the tool's Secrets outlived the config"
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller_task).await;
}
