//! The chart's rendered manifests applied with kubectl to the API stand-in, which enforces
//! RBAC from them: each identity can do what it needs and no more. Beyond `kubectl auth
//! can-i`, the identities do their real jobs: the controller (as its service account) promotes
//! a tenant config against a real Postgres, the management tools (as theirs) register and delete
//! one, an application pod's account reads configs through the client library and cannot write,
//! and a tenant admin is refused another tenant's namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, PostParams};
use serde_json::json;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::controller::{self, LeaseSettings, Settings};
use tenant_mcp::mcp_server::auth::Caller;
use tenant_mcp_e2e::harness::wait_for;
use tenant_mcp_e2e::rbac::{self, CREDENTIALS_NS, NS, RbacWorld};
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tokio_util::sync::CancellationToken;

async fn world() -> RbacWorld {
    rbac::start(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_can_do_its_job_and_no_more() {
    let w = world().await;
    let all = "--all-namespaces";
    let tmc = "tenantmcpconfigs.tenantmcp.dev";
    let gmc = "globalmcpconfigs.tenantmcp.dev";
    let one_tmc = format!("{tmc}/x");
    // (token, what, allowed)
    let matrix: Vec<(&str, Vec<&str>, bool)> = vec![
        // The controller: what docs/controller.md lists.
        ("controller-token", vec!["watch", tmc, all], true),
        (
            "controller-token",
            vec!["patch", tmc, "-n", "tenant-acme"],
            true,
        ),
        (
            "controller-token",
            vec![
                "patch",
                &one_tmc,
                "--subresource",
                "status",
                "-n",
                "tenant-acme",
            ],
            true,
        ),
        ("controller-token", vec!["watch", gmc], true),
        ("controller-token", vec!["watch", "namespaces"], true),
        (
            "controller-token",
            vec!["create", "secrets", "-n", "tenant-acme"],
            true,
        ),
        (
            "controller-token",
            vec!["delete", "secrets", "-n", "tenant-acme"],
            true,
        ),
        (
            "controller-token",
            vec!["create", "events.events.k8s.io", "-n", "tenant-acme"],
            true,
        ),
        (
            "controller-token",
            vec!["update", "leases.coordination.k8s.io", "-n", NS],
            true,
        ),
        // … and no more.
        (
            "controller-token",
            vec!["create", tmc, "-n", "tenant-acme"],
            false,
        ),
        (
            "controller-token",
            vec!["delete", tmc, "-n", "tenant-acme"],
            false,
        ),
        ("controller-token", vec!["update", gmc], false),
        (
            "controller-token",
            vec!["update", "leases.coordination.k8s.io", "-n", "tenant-acme"],
            false,
        ),
        ("controller-token", vec!["create", "pods", "-n", NS], false),
        ("controller-token", vec!["delete", "namespaces"], false),
        (
            "controller-token",
            vec!["get", "configmaps", "-n", NS],
            false,
        ),
        (
            "controller-token",
            vec!["create", "clusterrolebindings.rbac.authorization.k8s.io"],
            false,
        ),
        // The per-config snapshot reader Roles.
        (
            "controller-token",
            vec![
                "patch",
                "roles.rbac.authorization.k8s.io",
                "-n",
                "tenant-acme",
            ],
            true,
        ),
        (
            "controller-token",
            vec![
                "patch",
                "rolebindings.rbac.authorization.k8s.io",
                "-n",
                "tenant-acme",
            ],
            true,
        ),
        (
            "controller-token",
            vec!["create", "clusterroles.rbac.authorization.k8s.io"],
            false,
        ),
        // The management server: configs and Secrets, never status or the global config.
        ("mcp-token", vec!["create", tmc, "-n", "tenant-acme"], true),
        ("mcp-token", vec!["patch", tmc, "-n", "tenant-acme"], true),
        ("mcp-token", vec!["delete", tmc, "-n", "tenant-acme"], true),
        (
            "mcp-token",
            vec!["patch", "secrets", "-n", "tenant-acme"],
            true,
        ),
        ("mcp-token", vec!["get", gmc], true),
        (
            "mcp-token",
            vec![
                "patch",
                &one_tmc,
                "--subresource",
                "status",
                "-n",
                "tenant-acme",
            ],
            false,
        ),
        ("mcp-token", vec!["update", gmc], false),
        (
            "mcp-token",
            vec!["create", "leases.coordination.k8s.io", "-n", NS],
            false,
        ),
        ("mcp-token", vec!["create", "pods", "-n", NS], false),
        // A tenant admin: its own namespace only.
        (
            "alice-token",
            vec!["create", tmc, "-n", "tenant-acme"],
            true,
        ),
        (
            "alice-token",
            vec!["create", "secrets", "-n", "tenant-acme"],
            true,
        ),
        (
            "alice-token",
            vec!["create", tmc, "-n", "tenant-globex"],
            false,
        ),
        (
            "alice-token",
            vec!["get", "secrets", "-n", "tenant-globex"],
            false,
        ),
        ("alice-token", vec!["list", tmc, all], false),
        ("alice-token", vec!["update", gmc], false),
        (
            "alice-token",
            vec![
                "patch",
                &one_tmc,
                "--subresource",
                "status",
                "-n",
                "tenant-acme",
            ],
            false,
        ),
        // An uber admin: every tenant and the global config, not the cluster.
        (
            "carol-token",
            vec!["create", tmc, "-n", "tenant-globex"],
            true,
        ),
        ("carol-token", vec!["update", gmc], true),
        (
            "carol-token",
            vec!["create", "secrets", "-n", "tenant-acme"],
            true,
        ),
        (
            "carol-token",
            vec!["create", "pods", "-n", "tenant-acme"],
            false,
        ),
        ("carol-token", vec!["delete", "namespaces"], false),
        // An application pod: reads configs and namespaces, never writes; Secrets only by
        // name: the global credentials it uses (and, through Roles the controller keeps per
        // config, the snapshots it serves). Nothing of the control plane.
        ("app-token", vec!["watch", tmc, all], true),
        ("app-token", vec!["watch", gmc], true),
        ("app-token", vec!["watch", "namespaces"], true),
        ("app-token", vec!["create", tmc, "-n", "tenant-acme"], false),
        ("app-token", vec!["patch", tmc, "-n", "tenant-acme"], false),
        ("app-token", vec!["delete", tmc, "-n", "tenant-acme"], false),
        (
            "app-token",
            vec!["create", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (
            "app-token",
            vec!["patch", "secrets", "-n", "tenant-acme"],
            false,
        ),
        ("app-token", vec!["update", gmc], false),
        (
            "app-token",
            vec!["get", "secrets/global-postgres", "-n", CREDENTIALS_NS],
            true,
        ),
        (
            "app-token",
            vec!["watch", "secrets/global-postgres", "-n", CREDENTIALS_NS],
            true,
        ),
        (
            "app-token",
            vec![
                "get",
                "secrets/not-a-global-credential",
                "-n",
                CREDENTIALS_NS,
            ],
            false,
        ),
        (
            "app-token",
            vec!["list", "secrets", "-n", CREDENTIALS_NS],
            false,
        ),
        ("app-token", vec!["watch", "secrets", all], false),
        (
            "app-token",
            vec!["list", "secrets", "-n", "tenant-acme"],
            false,
        ),
        ("app-token", vec!["list", "secrets", "-n", NS], false),
        // The control plane's own Secrets: mirror keys, the JWT signing secret, the
        // controller's database URL, Helm's release records.
        (
            "app-token",
            vec!["get", "secrets/t-tenant-mcp-keys", "-n", NS],
            false,
        ),
        (
            "app-token",
            vec!["get", "secrets/t-tenant-mcp-mcp-jwt", "-n", NS],
            false,
        ),
        (
            "app-token",
            vec!["get", "secrets/controller-database", "-n", NS],
            false,
        ),
        (
            "app-token",
            vec!["get", "secrets/sh.helm.release.v1.t.v1", "-n", NS],
            false,
        ),
        // An application pod whose client watches one namespace: configs there, Secrets there
        // by name, the global credentials it uses; nothing else.
        (
            "worker-token",
            vec!["watch", tmc, "-n", "tenant-acme"],
            true,
        ),
        (
            "worker-token",
            vec!["get", "secrets/acme-snapshot", "-n", "tenant-acme"],
            true,
        ),
        (
            "worker-token",
            vec!["list", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (
            "worker-token",
            vec!["get", "secrets/global-postgres", "-n", CREDENTIALS_NS],
            true,
        ),
        ("worker-token", vec!["watch", gmc], true),
        (
            "worker-token",
            vec!["watch", "namespaces/tenant-acme"],
            true,
        ),
        (
            "worker-token",
            vec!["get", "namespaces/tenant-globex"],
            false,
        ),
        (
            "worker-token",
            vec!["get", "secrets/x", "-n", "tenant-globex"],
            false,
        ),
        ("worker-token", vec!["watch", "secrets", all], false),
        ("worker-token", vec!["watch", tmc, all], false),
        (
            "worker-token",
            vec!["create", tmc, "-n", "tenant-acme"],
            false,
        ),
        (
            "worker-token",
            vec!["patch", "secrets", "-n", "tenant-acme"],
            false,
        ),
        (
            "worker-token",
            vec!["get", "secrets/t-tenant-mcp-keys", "-n", NS],
            false,
        ),
        (
            "worker-token",
            vec!["get", "secrets/t-tenant-mcp-mcp-jwt", "-n", NS],
            false,
        ),
        (
            "worker-token",
            vec!["get", "secrets/controller-database", "-n", NS],
            false,
        ),
        (
            "worker-token",
            vec!["get", "secrets/sh.helm.release.v1.t.v1", "-n", NS],
            false,
        ),
    ];
    let wrong: Vec<String> = matrix
        .iter()
        .filter(|(token, args, allowed)| w.can(token, args) != *allowed)
        .map(|(token, args, allowed)| format!("{token} {args:?}: expected {allowed}"))
        .collect();
    assert!(wrong.is_empty(), "RBAC differs:\n{}", wrong.join("\n"));

    // A tenant admin's kubectl is refused in another tenant's namespace.
    let foreign = w.dir.path().join("foreign.yaml");
    std::fs::write(
        &foreign,
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: x, namespace: tenant-globex}\nspec: {tenantId: globex}\n",
    )
    .unwrap();
    let out = w.kubectl("alice-token", &["apply", "-f", foreign.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_accounts_do_their_real_jobs_with_the_charts_rbac() {
    let w = world().await;
    let admin = w.client("admin-token").await;

    // A tenant with its own Postgres login, applied by the platform team.
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("acme").await.unwrap();
    let user = format!("acme_{}", &db[db.len() - 6..]);
    execute(
        &pg.admin_url("postgres"),
        &format!("CREATE ROLE {user} LOGIN PASSWORD 'pw'"),
    )
    .await
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), "tenant-acme")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "pg"},
                "stringData": {"username": user, "password": "pw"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    Api::<TenantMcpConfig>::namespaced(admin.clone(), "tenant-acme")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "acme"}, "spec": {"tenantId": "acme",
                "servers": {"postgres": {"host": "127.0.0.1", "port": pg.port(), "database": db,
                    "sslMode": "disable", "credentialsSecretRef": {"name": "pg"}}}}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();

    // The controller, as its service account, with leader election in its namespace.
    let stop = CancellationToken::new();
    let task = tokio::spawn(controller::run(
        w.client("controller-token").await,
        Settings {
            identity: "rbac-test".into(),
            // As the chart sets it from rbac.clientServiceAccounts.
            snapshot_readers: vec!["rag/rag-api".parse().unwrap()],
            lease: Some(LeaseSettings {
                namespace: NS.into(),
                name: "t-tenant-mcp-controller".into(),
                duration: Duration::from_secs(15),
            }),
            ..Settings::default()
        },
        None,
        stop.clone(),
        None,
    ));
    let configs: Api<TenantMcpConfig> = Api::namespaced(admin.clone(), "tenant-acme");
    wait_for(
        "acme promoted by the controller's account",
        Duration::from_secs(60),
        async || {
            let c = configs.get("acme").await.ok()?;
            let status = c.status?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && status.active.postgres.is_some()).then_some(())
        },
    )
    .await;

    // The application pod's account reads configs through the client library…
    let app = w.client("app-token").await;
    let clients = tenant_mcp::client::TenantClients::from_kube(
        app.clone(),
        tenant_mcp::client::ClientSettings {
            kube: tenant_mcp::client::KubeSource {
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let pool = wait_for(
        "acme's pool for the app",
        Duration::from_secs(30),
        async || clients.postgres("acme").await.ok(),
    )
    .await;
    let current: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, user);
    // An account scoped to tenant-acme does the same with a client that watches that namespace.
    let scoped = tenant_mcp::client::TenantClients::from_kube(
        w.client("worker-token").await,
        tenant_mcp::client::ClientSettings {
            kube: tenant_mcp::client::KubeSource {
                namespace: Some("tenant-acme".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let pool = wait_for(
        "acme's pool for the scoped app",
        Duration::from_secs(30),
        async || scoped.postgres("acme").await.ok(),
    )
    .await;
    let current: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, user);
    // …and neither can write.
    let refused = Api::<TenantMcpConfig>::namespaced(app, "tenant-acme")
        .delete("acme", &Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, kube::Error::Api(ref s) if s.code == 403),
        "{refused}"
    );

    // The management tools, as their account: register and delete a config with credentials.
    let tools = tenant_mcp::mcp_server::tools::ManagementTools::new(
        w.client("mcp-token").await,
        tenant_mcp::probe::Prober::new(4),
        Arc::new(tenant_mcp::mcp_server::limits::Limits::default()),
    )
    .for_caller(Caller {
        subject: "carol".into(),
        tenant: None,
        roles: [tenant_mcp::mcp_server::auth::Role::UberAdmin].into(),
    });
    let (client, server) = tokio::io::duplex(64 * 1024);
    let served = tokio::spawn(async move {
        use rmcp::ServiceExt as _;
        let running = tools.serve(server).await.unwrap();
        running.waiting().await.unwrap();
    });
    {
        use rmcp::ServiceExt as _;
        let session = ().serve(client).await.unwrap();
        let call = async |tool: &str, arguments: serde_json::Value| {
            session
                .call_tool(
                    rmcp::model::CallToolRequestParams::new(tool.to_owned())
                        .with_arguments(arguments.as_object().cloned().unwrap()),
                )
                .await
                .map(|r| r.structured_content)
        };
        let registered = call(
            "rag_register_tenant_mcp_config",
            json!({"tenantId": "globex", "connectionTest": false,
                   "servers": {"postgres": {"host": "db.example.com", "database": "rag",
                                            "credentialsSecretRef": {"name": "globex-pg"}}},
                   "credentials": {"postgres": {"username": "g", "password": "p"}}}),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(registered["secretsWritten"], json!(["globex-pg"]));
        let deleted = call(
            "rag_delete_tenant_mcp_config",
            json!({"tenantId": "globex"}),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(deleted["secretsDeleted"], json!(["globex-pg"]));
        session.cancel().await.unwrap();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
