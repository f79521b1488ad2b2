//! The management MCP server over Streamable HTTP, driven by an rmcp client, with configs on
//! a real control plane (or `E2E_KUBECONFIG`'s cluster): the authorization matrix over every tool,
//! and bad input refused by field with nothing stored or changed. Connection tests are turned
//! off here (`connectionTest: false`) or fail on the policy before connecting; the ones against
//! real servers are in `mcp_server_python.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::mcp_server::limits::Limits;
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::mcp_admin::{AdminServer, CallError, SECRET, call, claims, sign, token};

struct World {
    _cluster: Cluster,
    client: kube::Client,
    server: AdminServer,
    acme: String,
    globex: String,
}

fn ns(tenant: &str) -> String {
    format!("tenant-{tenant}")
}

async fn world() -> World {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let (acme, globex) = (format!("acme{suffix}"), format!("globex{suffix}"));
    for tenant in [&acme, &globex] {
        cluster
            .create_namespace(&ns(tenant), Some(tenant))
            .await
            .unwrap();
    }
    // Each MCP session is a few HTTP requests; the rate limit has a test of its own.
    let limits = Limits {
        requests_per_minute: 100_000,
        burst: 10_000,
        ..Limits::default()
    };
    let server = AdminServer::start(client.clone(), limits).await.unwrap();
    World {
        _cluster: cluster,
        client,
        server,
        acme,
        globex,
    }
}

fn postgres(host: &str) -> Value {
    json!({"host": host, "database": "rag", "credentialsSecretRef": {"name": "pg"}})
}

/// Every object of the tenant's namespace that a tool could change, by name and version.
async fn state(client: &kube::Client, tenant: &str) -> Vec<String> {
    let configs = Api::<TenantMcpConfig>::namespaced(client.clone(), &ns(tenant))
        .list(&ListParams::default())
        .await
        .unwrap();
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns(tenant))
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut all: Vec<String> = configs
        .iter()
        .map(|c| format!("config {} {:?}", c.name_any(), c.resource_version()))
        .chain(
            secrets
                .iter()
                .map(|s| format!("secret {} {:?}", s.name_any(), s.resource_version())),
        )
        .collect();
    all.sort();
    all
}

/// A token signed with `alg: none` and no signature.
fn unsigned(roles: &[&str]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64.encode(claims(roles, None, 600).to_string());
    format!("{header}.{payload}.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_refuses_callers_outside_its_tenant_and_bad_tokens() {
    let w = world().await;
    let (acme, globex, url) = (&w.acme, &w.globex, &w.server.url);
    let uber = token(&["uber_admin"], None);
    let acme_admin = token(&["tenant_admin"], Some(acme));
    let globex_admin = token(&["tenant_admin"], Some(globex));
    let no_role = token(&["viewer"], Some(acme));
    let mut wrong_issuer = claims(&["uber_admin"], None, 600);
    wrong_issuer["iss"] = json!("https://someone-else.test");
    let bad_tokens = [
        (
            "expired",
            sign(&claims(&["uber_admin"], None, -3600), SECRET),
        ),
        ("wrong issuer", sign(&wrong_issuer, SECRET)),
        ("unsigned", unsigned(&["uber_admin"])),
        (
            "another key",
            sign(
                &claims(&["uber_admin"], None, 600),
                b"another-secret-of-32-bytes-or-more!!",
            ),
        ),
    ];

    let args = |tool: &str| -> Value {
        match tool {
            "rag_register_tenant_mcp_config" => json!({
                "tenantId": acme, "servers": {"postgres": postgres("db.example.com")},
                "credentials": {"postgres": {"username": "acme", "password": "s3cret-pw"}},
                "connectionTest": false}),
            "rag_update_tenant_mcp_config" => json!({
                "tenantId": acme, "servers": {"postgres": {"database": "rag2"}}, "connectionTest": false}),
            "rag_test_tenant_mcp_config" => json!({
                "tenantId": acme, "servers": {"postgres": postgres("169.254.169.254")},
                "credentials": {"postgres": {"username": "acme", "password": "pw"}}}),
            _ => json!({"tenantId": acme}),
        }
    };
    // In this order, so each allowed call meets a state it can act on.
    let tools = [
        "rag_test_tenant_mcp_config",
        "rag_register_tenant_mcp_config",
        "rag_get_tenant_mcp_config",
        "rag_list_tenant_mcp_configs",
        "rag_update_tenant_mcp_config",
        "rag_delete_tenant_mcp_config",
    ];
    // What the second allowed caller (acme's own admin) meets after the uber admin's call.
    let second = |tool: &str| match tool {
        "rag_register_tenant_mcp_config" => Some("AlreadyExists"),
        "rag_delete_tenant_mcp_config" => Some("NotFound"),
        _ => None,
    };
    for tool in tools {
        let before = state(&w.client, acme).await;
        let refused: Vec<(&str, &str, String)> = vec![
            (
                "globex's admin",
                "Forbidden",
                format!("a tenant_admin of \"{globex}\" may not act on tenant \"{acme}\""),
            ),
            (
                "no role",
                "Forbidden",
                "neither the uber_admin nor the tenant_admin role".to_owned(),
            ),
        ];
        for (who, reason, says) in refused {
            let bearer = if who == "no role" {
                &no_role
            } else {
                &globex_admin
            };
            let err = call(url, bearer, tool, args(tool)).await.unwrap_err();
            assert!(err.is_tool_result, "{tool} by {who}: {err}");
            assert_eq!(err.reason(), reason, "{tool} by {who}: {err}");
            assert!(err.message.contains(&says), "{tool} by {who}: {err}");
        }
        for (what, bad) in &bad_tokens {
            let err = call(url, bad, tool, args(tool)).await.unwrap_err();
            // Refused at the transport, before any tool runs: not a tool result.
            assert!(!err.is_tool_result, "{tool} with an {what} token: {err}");
            assert!(
                err.message.contains("Auth required"),
                "{tool} with an {what} token: {err}"
            );
        }
        assert_eq!(
            state(&w.client, acme).await,
            before,
            "{tool}: a refused call changed something"
        );

        let first = call(url, &uber, tool, args(tool)).await;
        let first = first.unwrap_or_else(|e| panic!("{tool} by the uber admin: {e}"));
        if tool == "rag_test_tenant_mcp_config" {
            // The test tool answers with its verdict (the metadata address is policy-denied).
            assert_eq!(first["passed"], false, "{first}");
            assert_eq!(
                first["problems"][0]["path"], "servers.postgres.host",
                "{first}"
            );
        }
        match (call(url, &acme_admin, tool, args(tool)).await, second(tool)) {
            (Ok(_), None) => {}
            (Err(e), Some(reason)) => assert_eq!(e.reason(), reason, "{tool} by acme's admin: {e}"),
            (other, expected) => panic!("{tool} by acme's admin: {other:?}, expected {expected:?}"),
        }
    }

    // A tenant admin listing without a filter sees its own tenant only; globex's config is
    // not among acme's admin's.
    call(
        url,
        &uber,
        "rag_register_tenant_mcp_config",
        json!({"tenantId": globex, "servers": {"postgres": postgres("db.example.com")},
               "credentials": {"postgres": {"username": "globex", "password": "pw"}}, "connectionTest": false}),
    )
    .await
    .unwrap();
    let all = call(url, &uber, "rag_list_tenant_mcp_configs", json!({}))
        .await
        .unwrap();
    assert_eq!(all["configs"].as_array().unwrap().len(), 1, "{all}");
    let own = call(url, &globex_admin, "rag_list_tenant_mcp_configs", json!({}))
        .await
        .unwrap();
    assert_eq!(own["configs"][0]["tenantId"], globex.as_str());
    let none = call(url, &acme_admin, "rag_list_tenant_mcp_configs", json!({}))
        .await
        .unwrap();
    assert_eq!(none["configs"], json!([]));

    // What a refused token hears over plain HTTP: 401 with the reason, and a challenge.
    let http = reqwest::Client::new();
    for (what, bad) in &bad_tokens {
        let response = http
            .post(url)
            .bearer_auth(bad)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{what}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
    }
}

/// Calls `rag_update_tenant_mcp_config` as the uber admin; the error it must give.
async fn refused_update(url: &str, arguments: Value) -> CallError {
    call(
        url,
        &token(&["uber_admin"], None),
        "rag_update_tenant_mcp_config",
        arguments,
    )
    .await
    .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_by_field_and_nothing_stored_changes() {
    let w = world().await;
    let (acme, globex, url) = (&w.acme, &w.globex, &w.server.url);
    let uber = token(&["uber_admin"], None);

    // acme registers through the tool: the password lands in a Secret, never in the config.
    let registered = call(
        url,
        &uber,
        "rag_register_tenant_mcp_config",
        json!({"tenantId": acme, "servers": {"postgres": postgres("db.example.com")},
               "credentials": {"postgres": {"username": "acme", "password": "s3cret-pw"}},
               "connectionTest": false}),
    )
    .await
    .unwrap();
    assert_eq!(registered["secretsWritten"], json!(["pg"]));
    assert!(!registered.to_string().contains("s3cret-pw"));
    let secret = Api::<Secret>::namespaced(w.client.clone(), &ns(acme))
        .get("pg")
        .await
        .unwrap();
    let data = secret.data.unwrap();
    assert_eq!(data["password"].0, b"s3cret-pw");
    assert_eq!(data["username"].0, b"acme");
    let config = Api::<TenantMcpConfig>::namespaced(w.client.clone(), &ns(acme))
        .get("tenant-mcp")
        .await
        .unwrap();
    assert!(
        !serde_json::to_string(&config)
            .unwrap()
            .contains("s3cret-pw")
    );
    let version = config.resource_version().unwrap();

    // globex's config belongs to a GitOps tool, and so does a Secret in its namespace.
    Api::<TenantMcpConfig>::namespaced(w.client.clone(), &ns(globex))
        .patch(
            "gitops",
            &PatchParams::apply("argocd"),
            &Patch::Apply(json!({
                "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                "metadata": {"name": "gitops"},
                "spec": {"tenantId": globex, "servers": {"postgres": postgres("db.example.com")}}
            })),
        )
        .await
        .unwrap();
    Api::<Secret>::namespaced(w.client.clone(), &ns(globex))
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "pg"}, "stringData": {"username": "u", "password": "gitops-pw"}}))
                .unwrap(),
        )
        .await
        .unwrap();

    let before = (state(&w.client, acme).await, state(&w.client, globex).await);
    let cases: Vec<(&str, Value, &str, Vec<&str>)> = vec![
        (
            "unknown fields",
            json!({"tenantId": acme, "tenant": acme, "servers": {"postgres": {"hostname": "x"}}}),
            "Invalid",
            vec!["tenant", "servers.postgres.hostname"],
        ),
        (
            "a bad URL",
            json!({"tenantId": acme, "servers": {"aiMcpServer": {"url": "ftp://ai.example.com"}}}),
            "Invalid",
            vec!["servers.aiMcpServer.url"],
        ),
        (
            "a host the endpoint policy denies",
            json!({"tenantId": acme, "servers": {"postgres": {"host": "169.254.169.254"}}}),
            "Invalid",
            vec!["servers.postgres.host"],
        ),
        (
            "an inline secret in servers",
            json!({"tenantId": acme, "servers": {"postgres": {"password": "hunter2"}}}),
            "Invalid",
            vec!["servers.postgres.password"],
        ),
        (
            "a wrong type",
            json!({"tenantId": acme, "servers": {"postgres": {"port": "5432x"}}}),
            "Invalid",
            vec!["servers.postgres.port"],
        ),
        (
            "credentials for a server that is not declared",
            json!({"tenantId": acme, "credentials": {"minio": {"accessKeyId": "a", "secretAccessKey": "b"}}}),
            "Invalid",
            vec!["credentials.minio"],
        ),
        (
            "a stale expectedVersion",
            json!({"tenantId": acme, "expectedVersion": "1", "servers": {"postgres": {"database": "rag2"}}, "connectionTest": false}),
            "Conflict",
            vec![],
        ),
        (
            "a change to a field a GitOps tool owns",
            json!({"tenantId": globex, "servers": {"postgres": {"database": "rag2"}}, "connectionTest": false}),
            "Conflict",
            vec![],
        ),
        (
            // The new Secret is written first, then put back (deleted) when the config write
            // meets the conflict.
            "a GitOps conflict after new credentials were written",
            json!({"tenantId": globex, "connectionTest": false,
                   "servers": {"postgres": {"host": "db2.example.com", "credentialsSecretRef": {"name": "pg-new"}}},
                   "credentials": {"postgres": {"username": "u", "password": "new-pw"}}}),
            "Conflict",
            vec![],
        ),
        (
            "removing a server a GitOps tool declared",
            json!({"tenantId": globex, "servers": {"postgres": null}, "connectionTest": false}),
            "Conflict",
            vec![],
        ),
        (
            "credentials into a Secret the tool did not make",
            json!({"tenantId": globex, "credentials": {"postgres": {"username": "u", "password": "new"}}, "connectionTest": false}),
            "Invalid",
            vec!["credentials"],
        ),
    ];
    for (what, arguments, reason, paths) in cases {
        let err = refused_update(url, arguments).await;
        // Wrong arguments and everything the tool finds later alike: a tool result the
        // model sees, naming every field.
        assert!(err.is_tool_result, "{what}: not a tool result: {err}");
        assert_eq!(err.reason(), reason, "{what}: {err}");
        for path in &paths {
            assert!(
                err.paths().iter().any(|p| p == path),
                "{what}: no {path} in {err}"
            );
            assert!(
                err.message.contains(&format!("{path}: ")),
                "{what}: the message does not name {path}: {err}"
            );
        }
        assert!(
            !err.to_string().contains("hunter2"),
            "{what}: the secret is repeated: {err}"
        );
        if what.contains("inline") {
            assert!(
                err.message.contains("give the value in `credentials`"),
                "{what}: {err}"
            );
        }
        if what.contains("GitOps") {
            assert!(err.message.contains("argocd"), "{what}: {err}");
        }
    }
    // Wrong types at the top and an unknown tenant on register.
    let err = call(
        url,
        &uber,
        "rag_register_tenant_mcp_config",
        json!({"tenantId": 5, "servers": {}}),
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("tenantId: "), "{err}");

    let after = (state(&w.client, acme).await, state(&w.client, globex).await);
    assert_eq!(after, before, "a refused call changed a config or Secret");
    let config = Api::<TenantMcpConfig>::namespaced(w.client.clone(), &ns(acme))
        .get("tenant-mcp")
        .await
        .unwrap();
    assert_eq!(config.resource_version().unwrap(), version);
    let gitops_secret = Api::<Secret>::namespaced(w.client.clone(), &ns(globex))
        .get("pg")
        .await
        .unwrap();
    assert_eq!(gitops_secret.data.unwrap()["password"].0, b"gitops-pw");

    // An oversized request is refused before its body is read.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"rag_get_tenant_mcp_config","arguments":{{"tenantId":"{}"}}}}}}"#,
        "a".repeat(300 * 1024)
    );
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(&uber)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // So is one without a declared length (chunked), cut off while it is read.
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let address = url.trim_start_matches("http://").trim_end_matches("/mcp");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
            "a".repeat(300 * 1024)
        );
        let head = format!(
            "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {uber}\r\n\
             content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             transfer-encoding: chunked\r\n\r\n{:x}\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(body.as_bytes()).await;
        let _ = stream.write_all(b"\r\n0\r\n\r\n").await;
        let mut answer = vec![0; 64];
        let n = stream.read(&mut answer).await.unwrap();
        let status = String::from_utf8_lossy(&answer[..n]);
        assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    }

    // A change with the current expectedVersion goes through, and moves the version on.
    let updated = call(
        url,
        &uber,
        "rag_update_tenant_mcp_config",
        json!({"tenantId": acme, "expectedVersion": version, "servers": {"postgres": {"database": "rag2"}}, "connectionTest": false}),
    )
    .await
    .unwrap();
    assert_eq!(
        updated["config"]["spec"]["servers"]["postgres"]["database"],
        "rag2"
    );
    assert_ne!(updated["config"]["resourceVersion"], version.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_rate_is_told_when_to_come_back() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let limits = Limits {
        requests_per_minute: 6,
        burst: 3,
        ..Limits::default()
    };
    let server = AdminServer::start(cluster.client(), limits).await.unwrap();
    let http = reqwest::Client::new();
    let ping = async |bearer: &str| {
        http.post(&server.url)
            .bearer_auth(bearer)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
            .send()
            .await
            .unwrap()
    };
    let alice = token(&["uber_admin"], None);
    for _ in 0..3 {
        assert_eq!(ping(&alice).await.status(), 200);
    }
    let limited = ping(&alice).await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    // Another caller is not affected.
    assert_eq!(
        ping(&token(&["tenant_admin"], Some("acme"))).await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_the_time_limit_is_cut_off_before_anything_is_stored() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    cluster
        .create_namespace("tenant-slow", Some("slow"))
        .await
        .unwrap();
    Api::<tenant_mcp::api::GlobalMcpConfig>::all(client.clone())
        .patch(
            "default",
            &PatchParams::apply("platform-team").force(),
            &Patch::Apply(json!({
                "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "GlobalMcpConfig",
                "metadata": {"name": "default"},
                "spec": {"endpointPolicy": {"allowLoopback": true}}
            })),
        )
        .await
        .unwrap();
    // A "Postgres" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let limits = Limits {
        tool_timeout: std::time::Duration::from_millis(500),
        ..Limits::default()
    };
    let server = AdminServer::start(client.clone(), limits).await.unwrap();
    let before = state(&client, "slow").await;
    let err = call(
        &server.url,
        &token(&["uber_admin"], None),
        "rag_register_tenant_mcp_config",
        json!({"tenantId": "slow",
               "servers": {"postgres": {"host": "127.0.0.1", "port": port, "database": "rag",
                                        "sslMode": "disable", "credentialsSecretRef": {"name": "pg"}}},
               "credentials": {"postgres": {"username": "u", "password": "p"}},
               "validation": {"connectTimeoutSeconds": 30}}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "Timeout", "{err}");
    assert!(err.message.contains("did not finish within"), "{err}");
    assert_eq!(state(&client, "slow").await, before);
}

/// Regression: the controller writes status between a tool's read and its write (it does so
/// right after every change), which moves resourceVersion. Without `expectedVersion` that must
/// not fail an update or a delete; with a stale one it must. The status writes run in a tight
/// loop during the calls, so the old behaviour (the read version as an implicit precondition)
/// failed here most runs; the fixed one cannot fail for this reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_do_not_get_in_the_way_of_updates_and_deletes() {
    let w = world().await;
    let (acme, url) = (&w.acme, &w.server.url);
    let uber = token(&["uber_admin"], None);
    call(
        url,
        &uber,
        "rag_register_tenant_mcp_config",
        json!({"tenantId": acme, "servers": {"postgres": postgres("db.example.com")},
               "credentials": {"postgres": {"username": "acme", "password": "pw"}}, "connectionTest": false}),
    )
    .await
    .unwrap();
    let configs = Api::<TenantMcpConfig>::namespaced(w.client.clone(), &ns(acme));
    let read = configs
        .get("tenant-mcp")
        .await
        .unwrap()
        .resource_version()
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn({
        let (configs, stop) = (configs.clone(), stop.clone());
        async move {
            let mut n = 0_u32;
            while !stop.is_cancelled() {
                n += 1;
                let _ = configs
                    .patch_status(
                        "tenant-mcp",
                        &PatchParams::apply("e2e-controller").force(),
                        &Patch::Apply(json!({
                            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
                            "status": {"observedGeneration": n}
                        })),
                    )
                    .await;
            }
            n
        }
    });
    for database in ["rag2", "rag3", "rag4"] {
        let updated = call(
            url,
            &uber,
            "rag_update_tenant_mcp_config",
            json!({"tenantId": acme, "servers": {"postgres": {"database": database}}, "connectionTest": false}),
        )
        .await
        .unwrap();
        assert_eq!(
            updated["config"]["spec"]["servers"]["postgres"]["database"],
            database
        );
    }
    // The version read before the status writes is stale now.
    let stale = call(
        url,
        &uber,
        "rag_delete_tenant_mcp_config",
        json!({"tenantId": acme, "expectedVersion": read}),
    )
    .await
    .unwrap_err();
    assert_eq!(stale.reason(), "Conflict", "{stale}");
    assert!(stale.message.contains("get it again"), "{stale}");
    call(
        url,
        &uber,
        "rag_delete_tenant_mcp_config",
        json!({"tenantId": acme}),
    )
    .await
    .unwrap();
    stop.cancel();
    let writes = writer.await.unwrap();
    assert!(writes > 10, "only {writes} status writes raced the calls");
    assert!(configs.get_opt("tenant-mcp").await.unwrap().is_none());
}

/// A server that records every byte it is sent, and answers as one that wants a password:
/// an HTTP request gets a 401; a Postgres client gets `N` to its TLS request and a request for
/// the password in cleartext after its startup message. Plays the attacker's server.
struct Trap {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut all = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut answered_http = false;
                    loop {
                        let read = tokio::time::timeout(
                            std::time::Duration::from_secs(3),
                            socket.read(&mut buf),
                        );
                        let n = match read.await {
                            Ok(Ok(n)) if n > 0 => n,
                            _ => break,
                        };
                        let chunk = &buf[..n];
                        recorded.lock().unwrap().extend_from_slice(chunk);
                        all.extend_from_slice(chunk);
                        let http = all.starts_with(b"POST")
                            || all.starts_with(b"GET")
                            || all.starts_with(b"DELETE");
                        let reply: &[u8] = if http {
                            if answered_http || !all.windows(4).any(|w| w == b"\r\n\r\n") {
                                continue;
                            }
                            answered_http = true;
                            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"
                        } else if chunk == [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f] {
                            b"N"
                        } else if chunk.len() >= 8 && chunk[4..8] == [0, 3, 0, 0] {
                            &[b'R', 0, 0, 0, 8, 0, 0, 0, 3]
                        } else {
                            continue;
                        };
                        if socket.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, seen, task }
    }

    /// Whether nothing at all reached this server.
    fn is_untouched(&self) -> bool {
        self.seen.lock().unwrap().is_empty()
    }

    /// Whether `secret` reached this server.
    fn received(&self, secret: &str) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.windows(secret.len()).any(|w| w == secret.as_bytes())
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Issue 27, item 3. Threat model, uber admin: "never read credentials back through the
/// tools". With acme's credentials stored, the uber admin points acme's servers (by test or
/// update, with acme's own Secret references and no `credentials`) at a server of theirs: the
/// stored token and password must not reach it, and the update must not be stored (the
/// controller's probe would send them next). Unchanged endpoints may still use the stored
/// credentials (the positive control that shows the trap would see them), and credentials the
/// call supplies go where the call says. A Postgres server that asks for the password in
/// cleartext over a connection whose certificate was not verified never gets it, even at the
/// stored endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_credentials_never_follow_an_endpoint_change() {
    let w = world().await;
    let (acme, url) = (&w.acme, &w.server.url);
    tenant_mcp_e2e::harness::create_global_config(
        &w.client,
        json!({"endpointPolicy": {"allowLoopback": true}}),
    )
    .await
    .unwrap();
    let uber = token(&["uber_admin"], None);
    let (own, own_pg, theirs, their_pg) = (
        Trap::start().await,
        Trap::start().await,
        Trap::start().await,
        Trap::start().await,
    );
    let ai = |port: u16| {
        json!({"url": format!("http://127.0.0.1:{port}/mcp"),
               "bearerTokenSecretRef": {"name": "ai", "key": "token"}})
    };
    let pg = |port: u16| {
        json!({"host": "127.0.0.1", "port": port, "sslMode": "disable", "database": "rag",
               "credentialsSecretRef": {"name": "pg"}})
    };
    call(
        url,
        &uber,
        "rag_register_tenant_mcp_config",
        json!({"tenantId": acme,
               "servers": {"aiMcpServer": ai(own.port), "postgres": pg(own_pg.port)},
               "credentials": {"aiMcpServer": {"bearerToken": "acme-stored-token"},
                               "postgres": {"username": "acme", "password": "acme-stored-pw"}},
               "connectionTest": false}),
    )
    .await
    .unwrap();
    let before = state(&w.client, acme).await;
    let problems = |tested: &Value| -> Vec<String> {
        tested["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path"].as_str().unwrap().to_owned())
            .collect()
    };

    // The test tool, pointed elsewhere with acme's Secret references.
    let tested = call(
        url,
        &uber,
        "rag_test_tenant_mcp_config",
        json!({"tenantId": acme,
               "servers": {"aiMcpServer": ai(theirs.port), "postgres": pg(their_pg.port)}}),
    )
    .await
    .unwrap();
    assert_eq!(tested["passed"], false, "{tested}");
    assert_eq!(
        problems(&tested),
        ["credentials.postgres", "credentials.aiMcpServer"],
        "{tested}"
    );
    // Another of acme's Secrets behind an unchanged endpoint is a move too.
    let tested = call(
        url,
        &uber,
        "rag_test_tenant_mcp_config",
        json!({"tenantId": acme, "servers": {"postgres": {
            "host": "127.0.0.1", "port": own_pg.port, "sslMode": "disable", "database": "rag",
            "credentialsSecretRef": {"name": "ai", "passwordKey": "token"}}}}),
    )
    .await
    .unwrap();
    assert_eq!(problems(&tested), ["credentials.postgres"], "{tested}");

    // The update, pointed elsewhere: refused, nothing stored.
    for servers in [
        json!({"aiMcpServer": {"url": format!("http://127.0.0.1:{}/mcp", theirs.port)}}),
        json!({"postgres": {"port": their_pg.port}}),
        json!({"postgres": {"sslMode": "prefer"}}),
        json!({"postgres": {"credentialsSecretRef": {"name": "ai", "passwordKey": "token"}}}),
        json!({"mcpServers": {"new": ai(theirs.port)}}),
    ] {
        let err = refused_update(url, json!({"tenantId": acme, "servers": servers})).await;
        assert_eq!(err.reason(), "Invalid", "{servers}: {err}");
        assert!(
            err.paths().iter().all(|p| p.starts_with("credentials.")) && !err.paths().is_empty(),
            "{servers}: {err}"
        );
        assert!(err.message.contains("nothing changed"), "{err}");
    }
    assert_eq!(
        state(&w.client, acme).await,
        before,
        "a refused update changed something"
    );
    assert!(
        !theirs.received("acme-stored-token"),
        "the stored token reached the new URL"
    );
    assert!(
        !their_pg.received("acme-stored-pw"),
        "the stored password reached the new host"
    );
    assert!(
        theirs.is_untouched() && their_pg.is_untouched(),
        "a connection reached the new endpoint"
    );

    // Credentials the call supplies go where the call says.
    let tested = call(
        url,
        &uber,
        "rag_test_tenant_mcp_config",
        json!({"tenantId": acme, "servers": {"aiMcpServer": ai(theirs.port)},
               "credentials": {"aiMcpServer": {"bearerToken": "callers-own-token"}}}),
    )
    .await
    .unwrap();
    assert_eq!(
        tested["connectionTests"][0]["reason"], "AuthFailed",
        "{tested}"
    );
    assert!(theirs.received("callers-own-token"));
    assert!(!theirs.received("acme-stored-token"));

    // Unchanged endpoints use the stored credentials (so the trap does see what it is sent);
    // the Postgres server asking for the password in cleartext over plain TCP is refused it.
    let tested = call(
        url,
        &uber,
        "rag_test_tenant_mcp_config",
        json!({"tenantId": acme,
               "servers": {"aiMcpServer": ai(own.port), "postgres": pg(own_pg.port)}}),
    )
    .await
    .unwrap();
    assert!(
        problems(&tested).iter().all(|p| p.starts_with("servers.")),
        "{tested}"
    );
    assert!(own.received("acme-stored-token"), "{tested}");
    let reasons: Vec<&str> = tested["connectionTests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["InsecureAuth", "AuthFailed"], "{tested}");
    assert!(
        own_pg.received("acme"),
        "the probe did not reach acme's Postgres"
    );
    assert!(
        !own_pg.received("acme-stored-pw"),
        "the password went out in cleartext"
    );
}

/// Issue 27, item 4. Threat model, tenant admin: "never reach another tenant's credentials".
/// Under `allowUnboundNamespaces` two tenants' configs share a namespace, so acme's admin can
/// name globex's Secret: by update, by test, or as the target of new credentials. None of them
/// makes the server read or write a Secret acme could not name through `register` (which
/// places configs in bound namespaces only): a reference to a Secret acme's stored config does
/// not use is a move, which needs credentials in the call, and the tool writes only Secrets it
/// made for the caller's own config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cannot_use_another_tenants_secret_in_a_shared_namespace() {
    let w = world().await;
    let (acme, globex, url) = (&w.acme, &w.globex, &w.server.url);
    tenant_mcp_e2e::harness::create_global_config(
        &w.client,
        json!({"allowUnboundNamespaces": true, "endpointPolicy": {"allowLoopback": true}}),
    )
    .await
    .unwrap();
    let shared = format!("shared-{acme}");
    tenant_mcp_e2e::harness::create_namespace(&w.client, &shared, None)
        .await
        .unwrap();
    let (globex_pg, trap) = (Trap::start().await, Trap::start().await);
    let pg = |port: u16, secret: &str| {
        json!({"host": "127.0.0.1", "port": port, "sslMode": "disable", "database": "rag",
               "credentialsSecretRef": {"name": secret}})
    };
    let acme_admin = token(&["tenant_admin"], Some(acme));
    // The tools place configs in bound namespaces only: these come from GitOps.
    let secrets = Api::<Secret>::namespaced(w.client.clone(), &shared);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "globex-pg"},
        "stringData": {"username": "globex", "password": "globex-stored-pw"}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let configs = Api::<TenantMcpConfig>::namespaced(w.client.clone(), &shared);
    for (name, tenant, servers) in [
        (
            "globex",
            globex,
            json!({"postgres": pg(globex_pg.port, "globex-pg")}),
        ),
        (
            "acme",
            acme,
            json!({"aiMcpServer": {"url": format!("http://127.0.0.1:{}/mcp", trap.port)}}),
        ),
    ] {
        let config: TenantMcpConfig = serde_json::from_value(json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": name},
            "spec": {"tenantId": tenant, "servers": servers}}))
        .unwrap();
        configs
            .create(&PostParams::default(), &config)
            .await
            .unwrap();
    }
    let stored = secrets
        .get("globex-pg")
        .await
        .unwrap()
        .metadata
        .resource_version;

    // Globex's Secret behind acme's server, and behind globex's own endpoint: both moves.
    for (what, postgres) in [
        ("a server of acme's choosing", pg(trap.port, "globex-pg")),
        ("globex's own endpoint", pg(globex_pg.port, "globex-pg")),
    ] {
        let err = call(
            url,
            &acme_admin,
            "rag_update_tenant_mcp_config",
            json!({"tenantId": acme, "servers": {"postgres": postgres.clone()}}),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.paths(),
            ["credentials.postgres"],
            "update, {what}: {err}"
        );
        let tested = call(
            url,
            &acme_admin,
            "rag_test_tenant_mcp_config",
            json!({"tenantId": acme, "servers": {"postgres": postgres}}),
        )
        .await
        .unwrap();
        assert_eq!(tested["passed"], false, "test, {what}: {tested}");
        assert_eq!(
            tested["problems"][0]["path"], "credentials.postgres",
            "test, {what}: {tested}"
        );
    }
    // Credentials of acme's own into globex's Secret: refused, the Secret untouched.
    let err = call(
        url,
        &acme_admin,
        "rag_update_tenant_mcp_config",
        json!({"tenantId": acme, "connectionTest": false,
               "servers": {"postgres": pg(trap.port, "globex-pg")},
               "credentials": {"postgres": {"username": "acme", "password": "overwrite"}}}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "Invalid", "{err}");
    assert!(
        err.paths().iter().any(|p| p.starts_with("credentials")),
        "{err}"
    );
    assert_eq!(
        secrets
            .get("globex-pg")
            .await
            .unwrap()
            .metadata
            .resource_version,
        stored,
        "globex's Secret was written"
    );
    assert!(
        !trap.received("globex-stored-pw") && !globex_pg.received("globex-stored-pw"),
        "globex's password was sent"
    );
    assert!(
        globex_pg.is_untouched(),
        "acme's calls reached globex's Postgres"
    );
}

/// Issue 27, item 5. Threat model, tenant admin: "never degrade another tenant's service".
/// Acme's admin connection-tests a config of MCP servers that accept and never answer (a
/// tarpit) with the longest timeout; globex's test, started while acme's probes hang, still gets
/// a probe slot and its answer. With one global semaphore acme's probes held every slot (8 in
/// this server), and globex's test waited until acme's timed out — after acme's call ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_tarpit_does_not_hold_up_another_tenants_connection_test() {
    let w = world().await;
    let (acme, globex, url) = (&w.acme, &w.globex, &w.server.url);
    tenant_mcp_e2e::harness::create_global_config(
        &w.client,
        json!({"endpointPolicy": {"allowLoopback": true}}),
    )
    .await
    .unwrap();
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tarpit_port = tarpit.local_addr().unwrap().port();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = tarpit.accept().await {
            held.push(socket);
            let _ = accepted_tx.send(());
        }
    });
    let servers: Vec<Value> = (0..12)
        .map(|i| {
            json!({"name": format!("tarpit{i}"), "timeoutSeconds": 600,
                   "url": format!("http://127.0.0.1:{tarpit_port}/mcp")})
        })
        .collect();
    let load = tokio::spawn({
        let (url, acme) = (url.clone(), acme.clone());
        async move {
            call(
                &url,
                &token(&["tenant_admin"], Some(&acme)),
                "rag_test_tenant_mcp_config",
                json!({"tenantId": acme, "servers": {"mcpServers": servers},
                       "validation": {"connectTimeoutSeconds": 60}}),
            )
            .await
        }
    });
    // Acme's probes are hanging in the tarpit; give the rest of them time to take slots.
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), accepted.recv()).await;
    if first.is_err() {
        load.abort();
        panic!("no probe of acme's reached the tarpit: {:?}", load.await);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let answering = Trap::start().await;
    let tested = call(
        url,
        &token(&["tenant_admin"], Some(globex)),
        "rag_test_tenant_mcp_config",
        json!({"tenantId": globex, "servers": {"aiMcpServer": {
                   "url": format!("http://127.0.0.1:{}/mcp", answering.port),
                   "bearerTokenSecretRef": {"name": "ai", "key": "token"}}},
               "credentials": {"aiMcpServer": {"bearerToken": "globex-token"}}}),
    )
    .await
    .unwrap();
    assert_eq!(
        tested["connectionTests"][0]["reason"], "AuthFailed",
        "globex's server was not asked: {tested}"
    );
    assert!(answering.received("globex-token"));
    assert!(
        !load.is_finished(),
        "acme's tarpit test ended before globex's test got a slot"
    );
    let mut hanging = 1;
    while accepted.try_recv().is_ok() {
        hanging += 1;
    }
    assert!(
        hanging <= 8 / 4,
        "acme held {hanging} of the 8 probe slots at once"
    );
    load.abort();
    holder.abort();
}

/// Sends `initialize` asking for protocol version `asked`, as a client pinned to it would
/// (raw JSON-RPC over Streamable HTTP: the SDKs here all ask for their newest); the answer.
async fn initialize(url: &str, bearer: &str, asked: &str) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(bearer)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": asked, "capabilities": {},
                       "clientInfo": {"name": "pinned", "version": "0"}}
        }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{asked}: {response:?}");
    let body = response.text().await.unwrap();
    // A JSON body, or server-sent events whose `data:` line carries it.
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .chain(std::iter::once(body.as_str()))
        .find_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .unwrap_or_else(|| panic!("{asked}: no JSON-RPC answer in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_the_protocol_version_it_asks_for_or_the_servers_own() {
    let w = world().await;
    let bearer = token(&["uber_admin"], None);
    // The server's own: what it answers a version it does not know, the newest it speaks
    // over `initialize`.
    const OWN: &str = "2025-11-25";
    for (asked, expected) in [
        ("2024-11-05", "2024-11-05"),
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("1999-01-01", OWN),
        ("not-a-version", OWN),
    ] {
        let answer = initialize(&w.server.url, &bearer, asked).await;
        assert_eq!(
            answer["result"]["protocolVersion"], expected,
            "asked for {asked}: {answer}"
        );
        assert_eq!(
            answer["result"]["serverInfo"]["name"], "tenant-mcp",
            "{answer}"
        );
    }
}

/// An uber admin's listing of every tenant comes in pages (what kept a 10,000-config answer
/// from taking 34 MiB and the server 775 MiB): every config exactly once across the pages, no
/// page over its limit, and each verdict decided on all of its tenant's claims even when the
/// rival claim is on another page. A bad `limit` or `continue` is refused by path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_every_tenant_comes_in_pages_with_verdicts_from_all_claims() {
    let w = world().await;
    let url = &w.server.url;
    let uber = token(&["uber_admin"], None);
    let suffix = &w.acme[4..];
    let config = |tenant: &str| -> TenantMcpConfig {
        serde_json::from_value(json!({
            "apiVersion": "tenantmcp.dev/v1alpha1", "kind": "TenantMcpConfig",
            "metadata": {"name": "config"},
            "spec": {"tenantId": tenant}
        }))
        .unwrap()
    };
    let mut expected = Vec::new();
    for i in 0..12 {
        let (namespace, tenant) = (format!("p{i:02}-{suffix}"), format!("p{i:02}{suffix}"));
        w._cluster
            .create_namespace(&namespace, Some(&tenant))
            .await
            .unwrap();
        Api::<TenantMcpConfig>::namespaced(w.client.clone(), &namespace)
            .create(&PostParams::default(), &config(&tenant))
            .await
            .unwrap();
        expected.push(namespace);
    }
    // A rival claim of p00's tenant from a namespace bound to no tenant, sorting last: it
    // lands on another page than the config that serves the tenant.
    let rival = format!("zz-{suffix}");
    w._cluster.create_namespace(&rival, None).await.unwrap();
    Api::<TenantMcpConfig>::namespaced(w.client.clone(), &rival)
        .create(&PostParams::default(), &config(&format!("p00{suffix}")))
        .await
        .unwrap();
    expected.push(rival.clone());

    let mut seen: Vec<(String, bool)> = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = json!({"limit": 5});
        if let Some(token) = &next {
            args["continue"] = json!(token);
        }
        let page = call(url, &uber, "rag_list_tenant_mcp_configs", args)
            .await
            .unwrap();
        let listed = page["configs"].as_array().unwrap();
        assert!(listed.len() <= 5, "{page}");
        seen.extend(listed.iter().map(|c| {
            (
                c["namespace"].as_str().unwrap().to_owned(),
                c["serving"].as_bool().unwrap(),
            )
        }));
        pages += 1;
        match page["continue"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => break,
        }
    }
    let mut namespaces: Vec<String> = seen.iter().map(|(n, _)| n.clone()).collect();
    namespaces.sort();
    expected.sort();
    assert_eq!(
        namespaces, expected,
        "every config once across {pages} pages"
    );
    assert!(pages >= 3, "13 configs in pages of 5: {pages}");
    let serving = |ns: &str| seen.iter().find(|(n, _)| n == ns).unwrap().1;
    assert!(serving(&format!("p00-{suffix}")), "{seen:?}");
    assert!(!serving(&rival), "the rival on the last page: {seen:?}");

    for (args, path) in [
        (json!({"limit": 0}), "limit"),
        (json!({"limit": 501}), "limit"),
        (json!({"continue": "not-a-token"}), "continue"),
    ] {
        let refused = call(url, &uber, "rag_list_tenant_mcp_configs", args.clone())
            .await
            .expect_err("refused");
        assert_eq!(refused.reason(), "Invalid", "{args}: {refused}");
        assert_eq!(refused.paths(), [path], "{args}: {refused}");
    }
}
