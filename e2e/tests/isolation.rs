//! Tenant isolation, tried the way a hostile tenant would (`shared/THREAT-MODEL.md`): evil's
//! tenant admin, who may write TenantMcpConfigs and Secrets in its own bound namespace, claims
//! tenant acme from there. Nothing acme does through the management tools may reach that
//! config, and acme's routes must be exactly what they would be without it — its own servers
//! where it has a config, the global ones where it has none.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde_json::json;
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::client::{ClientError, ClientSettings, KubeSource, Origin, TenantClients};
use tenant_mcp::config::candidate::ServerKey;
use tenant_mcp::controller::{self, Settings};
use tenant_mcp::mcp_server::limits::Limits;
use tenant_mcp_e2e::harness::{Cluster, wait_for};
use tenant_mcp_e2e::mcp_admin::{AdminServer, call, token};
use tenant_mcp_e2e::rbac::{self, Identity};
use tenant_mcp_e2e::stack::postgres::{Postgres, execute};
use tokio_util::sync::CancellationToken;

/// The Ready condition's reason of config `namespace/name`, once the controller wrote one.
async fn ready_reason(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    let config = Api::<TenantMcpConfig>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()??;
    let status = config.status?;
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
}

/// Every Secret value of `namespace`, as text.
async fn secret_values(client: &kube::Client, namespace: &str) -> Vec<String> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .flat_map(|s| s.data.unwrap_or_default().into_values())
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .collect()
}

/// The YAML of a config in `namespace` that claims `tenant`, with a Postgres server.
fn config_yaml(namespace: &str, name: &str, tenant: &str, port: u16, database: &str) -> String {
    format!(
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  tenantId: {tenant}\n  servers:\n    postgres: {{host: 127.0.0.1, port: {port}, database: {database}, \
         sslMode: disable, credentialsSecretRef: {{name: pg}}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_config_never_receives_a_tenants_credentials_through_the_tools() {
    let w = rbac::start(&[]).await;
    let admin = w.client(Identity::Admin).await;
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("acme").await.unwrap();
    let user = format!("acme_{}", &db[db.len() - 6..]);
    let (first_pw, second_pw) = ("first-pw-of-acme", "second-pw-of-acme");
    execute(
        &pg.admin_url("postgres"),
        &format!("CREATE ROLE {user} LOGIN PASSWORD '{first_pw}'"),
    )
    .await
    .unwrap();

    // evil's tenant admin, as its own Kubernetes identity, claims acme from evil's namespace
    // before acme has registered anything. RBAC allows it: the namespace is evil's. The
    // chart's admission webhook refuses it at the door …
    let impostor = config_yaml("tenant-evil", "default", "acme", pg.port(), &db);
    let out = w.apply_as(Identity::Eve, &impostor);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("denied the request")
            && stderr.contains(r#"namespace "tenant-evil" is bound to tenant "evil""#),
        "the webhook let the impostor in: {stderr}"
    );
    // … but the controller, the tools and the client must hold without it: such a config
    // can exist (written while the webhook was down under failurePolicy Ignore, or before it
    // was installed). Remove the webhook, as the cluster admin, and write it.
    let out = w.kubectl(
        Identity::Admin,
        &["delete", "validatingwebhookconfiguration", "t-tenant-mcp"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The API server drops the webhook from its calls shortly after the delete.
    wait_for(
        "the impostor written without the webhook",
        Duration::from_secs(30),
        async || {
            w.apply_as(Identity::Eve, &impostor)
                .status
                .success()
                .then_some(())
        },
    )
    .await;

    let stop = CancellationToken::new();
    let controller = tokio::spawn(controller::run(
        w.client(Identity::Controller).await,
        Settings {
            identity: "isolation-test".into(),
            ..Settings::default()
        },
        None,
        stop.clone(),
        None,
    ));
    let limits = Limits {
        requests_per_minute: 100_000,
        burst: 10_000,
        ..Limits::default()
    };
    let server = AdminServer::start(w.client(Identity::McpServer).await, limits)
        .await
        .unwrap();
    let url = &server.url;
    let acme = token(&["tenant_admin"], Some("acme"));
    let eve = token(&["tenant_admin"], Some("evil"));

    // evil's own token does not reach acme's tenant.
    let err = call(
        url,
        &eve,
        "rag_get_tenant_mcp_config",
        json!({"tenantId": "acme"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "Forbidden", "{err}");

    // acme has no config of its own yet: its tools must not see the impostor as one. An
    // update with credentials would otherwise write acme's password into tenant-evil.
    let login = |pw: &str| json!({"postgres": {"username": user, "password": pw}});
    let err = call(
        url,
        &acme,
        "rag_update_tenant_mcp_config",
        json!({"tenantId": "acme", "credentials": login(first_pw), "connectionTest": false}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.reason(),
        "NotFound",
        "an update reached the impostor: {err}"
    );
    let err = call(
        url,
        &acme,
        "rag_get_tenant_mcp_config",
        json!({"tenantId": "acme"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "NotFound", "get returned the impostor: {err}");

    // acme registers in its own bound namespace: the impostor does not block it.
    let servers = json!({"postgres": {"host": "127.0.0.1", "port": pg.port(), "database": db,
        "sslMode": "disable", "credentialsSecretRef": {"name": "pg"}}});
    let registered = call(
        url,
        &acme,
        "rag_register_tenant_mcp_config",
        json!({"tenantId": "acme", "servers": servers, "credentials": login(first_pw)}),
    )
    .await
    .unwrap_or_else(|e| panic!("acme's register: {e}"));
    assert_eq!(registered["config"]["namespace"], "tenant-acme");

    // A rotated password goes to acme's namespace only.
    execute(
        &pg.admin_url("postgres"),
        &format!("ALTER ROLE {user} PASSWORD '{second_pw}'"),
    )
    .await
    .unwrap();
    let updated = call(
        url,
        &acme,
        "rag_update_tenant_mcp_config",
        json!({"tenantId": "acme", "credentials": login(second_pw)}),
    )
    .await
    .unwrap_or_else(|e| panic!("acme's update: {e}"));
    assert_eq!(updated["config"]["namespace"], "tenant-acme", "{updated}");
    assert_eq!(updated["secretsWritten"], json!(["pg"]));
    let in_acme = secret_values(&admin, "tenant-acme").await;
    assert!(in_acme.iter().any(|v| v == second_pw), "{in_acme:?}");
    let in_evil = secret_values(&admin, "tenant-evil").await;
    assert!(
        !in_evil
            .iter()
            .any(|v| v == first_pw || v == second_pw || v == &user),
        "acme's credentials landed in tenant-evil"
    );

    // get and list show acme's own config, never the impostor.
    let got = call(
        url,
        &acme,
        "rag_get_tenant_mcp_config",
        json!({"tenantId": "acme"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (&got["namespace"], &got["name"]),
        (&json!("tenant-acme"), &registered["config"]["name"]),
        "{got}"
    );
    let listed = call(url, &acme, "rag_list_tenant_mcp_configs", json!({}))
        .await
        .unwrap();
    let namespaces: Vec<&str> = listed["configs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["namespace"].as_str())
        .collect();
    assert_eq!(namespaces, ["tenant-acme"], "{listed}");
    // evil's admin lists its own tenant: the impostor claims acme, so it is not evil's either,
    // and acme's config is never shown to evil.
    let listed = call(url, &eve, "rag_list_tenant_mcp_configs", json!({}))
        .await
        .unwrap();
    assert_eq!(listed["configs"], json!([]), "{listed}");

    // The controller serves acme's config and refuses the impostor.
    let own_name = registered["config"]["name"].as_str().unwrap();
    wait_for(
        "acme Ready and the impostor TenantNotBound",
        Duration::from_secs(60),
        async || {
            let own = ready_reason(&admin, "tenant-acme", own_name).await?;
            let impostor = ready_reason(&admin, "tenant-evil", "default").await?;
            (own == "AllServersHealthy" && impostor == "TenantNotBound").then_some(())
        },
    )
    .await;

    // delete removes acme's own config; the impostor stays where evil put it.
    let deleted = call(
        url,
        &acme,
        "rag_delete_tenant_mcp_config",
        json!({"tenantId": "acme"}),
    )
    .await
    .unwrap();
    assert_eq!(deleted["namespace"], "tenant-acme", "{deleted}");
    let configs = Api::<TenantMcpConfig>::namespaced(admin.clone(), "tenant-evil");
    assert!(configs.get_opt("default").await.unwrap().is_some());
    let err = call(
        url,
        &acme,
        "rag_get_tenant_mcp_config",
        json!({"tenantId": "acme"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "NotFound", "{err}");

    drop(server);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
}

/// Where `tenant`'s server `key` leads: `Ok(origin)` or the error's text.
fn origin(clients: &TenantClients, tenant: &str, key: &ServerKey) -> Result<Origin, String> {
    clients
        .endpoint(tenant, key)
        .map(|e| e.origin)
        .map_err(|e| e.to_string())
}

/// Applies a GlobalMcpConfig with a server of every type (validated offline by the client,
/// never connected to here) and `allow_unbound`.
async fn global(cluster: &Cluster, credentials_ns: &str, allow_unbound: bool) {
    let yaml = format!(
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {{name: default}}\nspec:\n\
         \x20 credentialsNamespace: {credentials_ns}\n  allowUnboundNamespaces: {allow_unbound}\n\
         \x20 endpointPolicy: {{allowLoopback: true}}\n  servers:\n\
         \x20   postgres: {{host: 127.0.0.1, port: 5999, database: rag, credentialsSecretRef: {{name: global-pg}}}}\n\
         \x20   minio: {{endpoint: 'http://127.0.0.1:9999', bucket: shared, credentialsSecretRef: {{name: global-s3}}}}\n\
         \x20   aiMcpServer: {{url: 'http://127.0.0.1:9998/mcp'}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: global-pg, namespace: {credentials_ns}}}\n\
         stringData: {{username: platform, password: pw}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: global-s3, namespace: {credentials_ns}}}\n\
         stringData: {{accessKeyId: platform, secretAccessKey: pw}}\n"
    );
    let out = cluster.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_config_never_changes_a_tenants_routes() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::local(Default::default()).await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    for (ns, tenant) in [
        ("tenant-mcp-credentials", None),
        ("tenant-acme", Some("acme")),
        ("tenant-evil", Some("evil")),
        ("shared", None),
    ] {
        cluster.create_namespace(ns, tenant).await.unwrap();
    }
    global(&cluster, "tenant-mcp-credentials", false).await;
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("acme").await.unwrap();
    let user = format!("acme_{}", &db[db.len() - 6..]);
    execute(
        &pg.admin_url("postgres"),
        &format!("CREATE ROLE {user} LOGIN PASSWORD 'pw'"),
    )
    .await
    .unwrap();
    let pg_secret = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: pg, namespace: {ns}}}\nstringData: {{username: {user}, password: pw}}\n"
        )
    };

    // The impostor in evil's namespace claims acme with every server type, pointing at servers
    // that work (so only the binding rule can refuse it).
    let impostor = format!(
        "{}    minio: {{endpoint: 'http://127.0.0.1:9000', bucket: evil, credentialsSecretRef: {{name: s3}}}}\n\
         \x20   aiMcpServer: {{url: 'http://127.0.0.1:9001/mcp'}}\n---\n{}",
        config_yaml("tenant-evil", "default", "acme", pg.port(), &db),
        pg_secret("tenant-evil")
    );
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &impostor);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let stop = CancellationToken::new();
    let controller = tokio::spawn(controller::run(
        client.clone(),
        Settings {
            identity: "isolation-routes".into(),
            ..Settings::default()
        },
        None,
        stop.clone(),
        None,
    ));
    wait_for(
        "the impostor refused",
        Duration::from_secs(30),
        async || {
            (ready_reason(&client, "tenant-evil", "default").await? == "TenantNotBound")
                .then_some(())
        },
    )
    .await;
    let clients = TenantClients::from_kube(
        client.clone(),
        ClientSettings {
            kube: KubeSource {
                ..KubeSource::default()
            },
            ..ClientSettings::default()
        },
    )
    .await
    .unwrap();
    let every = [ServerKey::Postgres, ServerKey::Minio, ServerKey::AiMcp];

    // Only the impostor claims acme: acme is served by the global servers, for every type.
    wait_for(
        "acme on the global servers",
        Duration::from_secs(30),
        async || {
            every
                .iter()
                .all(|k| origin(&clients, "acme", k) == Ok(Origin::Global))
                .then_some(())
        },
    )
    .await;
    for key in &every {
        assert_eq!(
            origin(&clients, "acme", key),
            Ok(Origin::Global),
            "{key:?} with only the impostor claiming acme"
        );
    }

    // acme's own config (Postgres only) serves acme; the rest stays global.
    let own = format!(
        "{}---\n{}",
        config_yaml("tenant-acme", "default", "acme", pg.port(), &db),
        pg_secret("tenant-acme")
    );
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &own);
    assert!(out.status.success(), "{out:?}");
    wait_for("acme's own Postgres", Duration::from_secs(30), async || {
        (origin(&clients, "acme", &ServerKey::Postgres) == Ok(Origin::Tenant)).then_some(())
    })
    .await;
    let own_endpoint = clients.endpoint("acme", &ServerKey::Postgres).unwrap();
    assert!(
        own_endpoint.describe().contains(&db),
        "{}",
        own_endpoint.describe()
    );
    assert_eq!(
        origin(&clients, "acme", &ServerKey::Minio),
        Ok(Origin::Global)
    );
    assert_eq!(
        origin(&clients, "acme", &ServerKey::AiMcp),
        Ok(Origin::Global)
    );

    // Unbound namespaces allowed: an unbound config claiming acme changes nothing while acme's
    // bound one exists...
    global(&cluster, "tenant-mcp-credentials", true).await;
    let unbound = format!(
        "{}    minio: {{endpoint: 'http://127.0.0.1:9000', bucket: shared, credentialsSecretRef: {{name: s3}}}}\n---\n{}",
        config_yaml("shared", "acme", "acme", pg.port(), &db),
        pg_secret("shared")
    );
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &unbound);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "the unbound config refused while a bound one exists",
        Duration::from_secs(30),
        async || (ready_reason(&client, "shared", "acme").await? == "TenantNotBound").then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        origin(&clients, "acme", &ServerKey::Minio),
        Ok(Origin::Global),
        "an unbound config replaced acme's routes although acme has a bound one"
    );
    let still = clients.endpoint("acme", &ServerKey::Postgres).unwrap();
    assert_eq!(still.fingerprint, own_endpoint.fingerprint);
    // ...and serves acme once the bound one is gone.
    Api::<TenantMcpConfig>::namespaced(client.clone(), "tenant-acme")
        .delete("default", &Default::default())
        .await
        .unwrap();
    wait_for(
        "the unbound config serving acme",
        Duration::from_secs(30),
        async || {
            // Its MinIO references a Secret that does not exist: unavailable, not global.
            let minio = clients.endpoint("acme", &ServerKey::Minio);
            matches!(
                minio,
                Err(ClientError::Unavailable {
                    origin: Origin::Tenant,
                    ..
                })
            )
            .then_some(())
        },
    )
    .await;
    // A bound config that appears takes over from the unbound one, which the controller then
    // refuses (only the new config was changed: the controller must look at the other too).
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &own);
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "the bound config back, the unbound one refused",
        Duration::from_secs(30),
        async || {
            let refused = ready_reason(&client, "shared", "acme").await? == "TenantNotBound";
            let global_minio = origin(&clients, "acme", &ServerKey::Minio) == Ok(Origin::Global);
            (refused && global_minio).then_some(())
        },
    )
    .await;
    // The impostor still changes nothing for evil's neighbour: another tenant without a config
    // is served by global throughout.
    for key in &every {
        assert_eq!(origin(&clients, "globex", key), Ok(Origin::Global));
    }

    clients.shutdown().await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
}

/// A tenant id that is not a DNS label reaches nothing: not the routes, not a cache slot, not
/// an S3 prefix or an MCP path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_ids_that_are_not_dns_labels_are_refused_by_every_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("global.yaml"),
        "apiVersion: tenantmcp.dev/v1alpha1\nkind: GlobalMcpConfig\nmetadata: {name: default}\n\
         spec:\n  credentialsNamespace: creds\n  endpointPolicy: {allowLoopback: true}\n  servers:\n\
         \x20   postgres: {host: 127.0.0.1, port: 5999, database: rag, credentialsSecretRef: {name: pg}}\n\
         \x20   minio: {endpoint: 'http://127.0.0.1:9999', bucket: shared, credentialsSecretRef: {name: s3}}\n\
         \x20   aiMcpServer: {url: 'http://127.0.0.1:9998/mcp', tenantRouting: {mode: PathPrefix}}\n\
         \x20   mcpServers: [{name: search, url: 'http://127.0.0.1:9997/mcp'}]\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: pg, namespace: creds}\nstringData: {username: u, password: p}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: s3, namespace: creds}\nstringData: {accessKeyId: a, secretAccessKey: s}\n",
    )
    .unwrap();
    let clients = TenantClients::from_directory(dir.path(), ClientSettings::default()).unwrap();
    let objects = tenant_mcp::services::objects::TenantObjects::new(clients.clone());
    let databases = tenant_mcp::services::postgres::TenantPostgres::new(clients.clone());
    let ai = tenant_mcp::services::ai::TenantAi::new(clients.clone());
    for bad in ["acme/x", "a/../b", "ACME", "", "acme.corp", "-acme", "a b"] {
        let refused = |what: &str, text: String| {
            assert!(
                text.contains("tenant id") && text.contains("DNS label"),
                "{what} with {bad:?}: {text}"
            );
        };
        refused(
            "endpoint",
            clients
                .endpoint(bad, &ServerKey::Postgres)
                .unwrap_err()
                .to_string(),
        );
        refused(
            "postgres",
            clients.postgres(bad).await.unwrap_err().to_string(),
        );
        refused("s3", clients.s3(bad).await.err().unwrap().to_string());
        refused(
            "ai_mcp",
            clients.ai_mcp(bad).await.err().unwrap().to_string(),
        );
        refused(
            "mcp",
            clients.mcp(bad, "search").await.err().unwrap().to_string(),
        );
        refused(
            "objects.put",
            objects
                .put(bad, "k", b"v".to_vec(), None)
                .await
                .unwrap_err()
                .to_string(),
        );
        refused(
            "objects.get",
            objects.get(bad, "k").await.unwrap_err().to_string(),
        );
        refused(
            "database.begin",
            databases.begin(bad).await.err().unwrap().to_string(),
        );
        refused(
            "ai.list_tools",
            ai.list_tools(bad).await.unwrap_err().to_string(),
        );
        // The task-local scope refuses it too, for the *_current entry points.
        let current = tenant_mcp::client::with_tenant(bad, async {
            objects.get_current("k").await.unwrap_err().to_string()
        })
        .await;
        refused("objects.get_current", current);
        assert_eq!(
            clients.cached_tenants(),
            0,
            "something was built for {bad:?}"
        );
    }
    // A valid id gets through to the routes.
    assert_eq!(
        origin(&clients, "acme", &ServerKey::Postgres),
        Ok(Origin::Global)
    );
    clients.shutdown().await;
}
