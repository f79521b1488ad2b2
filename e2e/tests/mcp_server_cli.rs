//! `tenant-mcp mcp-server`, the binary, against a real control plane: over Streamable HTTP it
//! audits every call (who, tenant, tool, outcome) and never logs a credential; over stdio the
//! official MCP Python SDK drives it as the holder of TENANT_MCP_STDIO_TOKEN.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::mcp_admin::{AUDIENCE, ISSUER, SECRET, call, python_client, token};
use tenant_mcp_e2e::stack::tenant_mcp_binary;

async fn cluster_with(tenants: &[&str]) -> Cluster {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    for tenant in tenants {
        cluster
            .create_namespace(&format!("tenant-{tenant}"), Some(tenant))
            .await
            .unwrap();
    }
    cluster
}

/// The binary's environment: the cluster, the token settings and info logs as JSON.
fn env(cluster: &Cluster, secret_file: &std::path::Path) -> Vec<(String, String)> {
    [
        ("KUBECONFIG", cluster.kubeconfig().display().to_string()),
        (
            "TENANT_MCP_JWT_SECRET_FILE",
            secret_file.display().to_string(),
        ),
        ("TENANT_MCP_JWT_ISSUER", ISSUER.to_owned()),
        ("TENANT_MCP_JWT_AUDIENCE", AUDIENCE.to_owned()),
        ("TENANT_MCP_LOG", "info".to_owned()),
        ("TENANT_MCP_LOG_FORMAT", "json".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_http_and_audits_every_call_without_secrets() {
    let cluster = cluster_with(&["acme", "globex"]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("stderr.log");
    let child = Command::new(tenant_mcp_binary().unwrap())
        .args(["mcp-server", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--allowed-host", "tenant-mcp.example,127.0.0.1"])
        .envs(env(&cluster, &secret_file))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The probes' endpoint needs no token; /mcp does.
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let anonymous = reqwest::Client::new()
        .post(&url)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let uber = token(&["uber_admin"], None);
    call(
        &url,
        &uber,
        "rag_register_tenant_mcp_config",
        json!({"tenantId": "acme", "connectionTest": false,
               "servers": {"postgres": {"host": "db.example.com", "database": "rag",
                                        "credentialsSecretRef": {"name": "pg"}}},
               "credentials": {"postgres": {"username": "acme", "password": "audit-pw-123"}}}),
    )
    .await
    .unwrap();
    let refused = call(
        &url,
        &token(&["tenant_admin"], Some("globex")),
        "rag_get_tenant_mcp_config",
        json!({"tenantId": "acme"}),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.reason(), "Forbidden");

    // The calls and the refusal, as Prometheus sees them (no tenant or caller in a label).
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"tenant_mcp_management_calls_total{tool="rag_register_tenant_mcp_config",outcome="Ok"} 1"#,
        r#"tenant_mcp_management_calls_total{tool="rag_get_tenant_mcp_config",outcome="Forbidden"} 1"#,
        r#"tenant_mcp_management_refused_requests_total{reason="unauthenticated"} 1"#,
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    assert!(
        !metrics.contains("acme") && !metrics.contains("globex"),
        "{metrics}"
    );

    // Stateless: a call needs no session from an earlier request, so any replica behind a
    // Service can answer it; and only the allowed Host names are answered (DNS rebinding).
    let raw = async |host: &str| {
        reqwest::Client::new()
            .post(&url)
            .header("host", host)
            .bearer_auth(&uber)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"rag_get_tenant_mcp_config","arguments":{"tenantId":"acme"}}}"#)
            .send()
            .await
            .unwrap()
    };
    let answered = raw("tenant-mcp.example").await;
    assert_eq!(answered.status(), 200);
    let body = answered.text().await.unwrap();
    assert!(body.contains(r#""tenantId":"acme""#), "{body}");
    let rebound = raw("evil.example").await;
    assert!(rebound.status().is_client_error(), "{}", rebound.status());

    // SIGTERM: a graceful stop.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("audit-pw-123"),
        "a credential reached the log:\n{text}"
    );
    let audit: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "tenant_mcp::audit")
        .map(|l| l["fields"].clone())
        .collect();
    let seen: Vec<(&str, &str, &str, &str)> = audit
        .iter()
        .map(|f| {
            (
                f["subject"].as_str().unwrap_or_default(),
                f["tenant"].as_str().unwrap_or_default(),
                f["tool"].as_str().unwrap_or_default(),
                f["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "uber_admin@platform",
                "acme",
                "rag_register_tenant_mcp_config",
                "Ok"
            ),
            (
                "tenant_admin@globex",
                "acme",
                "rag_get_tenant_mcp_config",
                "Forbidden"
            ),
            (
                "uber_admin@platform",
                "acme",
                "rag_get_tenant_mcp_config",
                "Ok"
            ),
        ],
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_one_caller_on_stdio() {
    let cluster = cluster_with(&["acme"]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let binary = tenant_mcp_binary().unwrap().display().to_string();
    let mut vars = env(&cluster, &secret_file);
    vars.push((
        "TENANT_MCP_STDIO_TOKEN".into(),
        token(&["tenant_admin"], Some("acme")),
    ));
    let steps = json!([
        {"token": ""},
        {"token": "", "tool": "rag_register_tenant_mcp_config", "arguments": {
            "tenantId": "acme", "connectionTest": false,
            "servers": {"postgres": {"host": "db.example.com", "database": "rag",
                                     "credentialsSecretRef": {"name": "pg"}}},
            "credentials": {"postgres": {"username": "acme", "password": "pw"}}}},
        {"token": "", "tool": "rag_list_tenant_mcp_configs", "arguments": {}},
        {"token": "", "tool": "rag_get_tenant_mcp_config", "arguments": {"tenantId": "globex"}},
    ]);
    let report = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        python_client(&["stdio", &binary, "mcp-server", "--stdio"], &env, &steps)
    })
    .await
    .unwrap();
    assert_eq!(report["tools"].as_array().unwrap().len(), 6, "{report}");
    let results = report["results"].as_array().unwrap();
    assert_eq!(results[0]["ok"], true, "{report}");
    assert_eq!(
        results[1]["value"]["configs"][0]["tenantId"], "acme",
        "{report}"
    );
    assert_eq!(results[2]["data"]["reason"], "Forbidden", "{report}");
}

#[test]
fn the_token_subcommand_mints_what_the_server_accepts() {
    use tenant_mcp::mcp_server::auth::{AuthSettings, Authenticator, Role};
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, [SECRET, b"\n"].concat()).unwrap();
    let mint = |args: &[&str]| {
        Command::new(tenant_mcp_binary().unwrap())
            .args(["token", "--secret-file", secret_file.to_str().unwrap()])
            .args(["--issuer", ISSUER, "--audience", AUDIENCE])
            .args(args)
            .output()
            .unwrap()
    };
    let out = mint(&[
        "--subject",
        "alice",
        "--role",
        "tenant-admin",
        "--tenant",
        "acme",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let auth = Authenticator::hs256(
        SECRET,
        AuthSettings {
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            ..AuthSettings::default()
        },
    )
    .unwrap();
    let caller = auth
        .authenticate(Some(&format!("Bearer {}", token.trim())))
        .unwrap();
    assert_eq!(caller.subject, "alice");
    assert_eq!(caller.tenant.as_deref(), Some("acme"));
    assert!(caller.roles.contains(&Role::TenantAdmin));
    // A tenant admin without a tenant is refused at the command line.
    let out = mint(&["--subject", "bob", "--role", "tenant-admin"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenant"));
}
