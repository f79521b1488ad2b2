//! The management server under load and hostile input, driven by a client nobody here wrote:
//! the official MCP Python SDK (`e2e/python/load_client.py`) over Streamable HTTP, on a real
//! control plane and a real Postgres.
//!
//! Every refusal (401, 413, 429) must reach the client as a complete response on a connection
//! it can reuse or is told to close: a refusal written before the request body was read, on a
//! connection then dropped, showed up as "Server disconnected without sending a response".
//! Fuzzed tool arguments must never take the server down, never outlast a call's time limit,
//! and never change anything when the call is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use tenant_mcp::api::TenantMcpConfig;
use tenant_mcp::mcp_server::limits::Limits;
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::mcp_admin::{
    AUDIENCE, AdminServer, ISSUER, SECRET, call, load_client, python_client, token,
};
use tenant_mcp_e2e::scenario;
use tenant_mcp_e2e::stack::admission_hold::{AdmissionHold, HoldHandle, HoldRule, Release};
use tenant_mcp_e2e::stack::postgres::Postgres;
use tenant_mcp_e2e::stack::process::{Service, Workdir, free_port};

/// Runs the SDK load client off the async runtime.
async fn load(args: Vec<String>, input: Value) -> Value {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        load_client(&args, &input)
    })
    .await
    .unwrap()
}

fn count(report: &Value, kind: &str) -> u64 {
    report["outcomes"][kind].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_under_load_reaches_the_sdk_as_a_complete_response() {
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    // The default limits: 600 requests a minute, 120 at once; a call is about three requests,
    // so most of 600 calls as fast as the SDK sends them are refused.
    let server = AdminServer::start(cluster.client(), Limits::default())
        .await
        .unwrap();
    let admin = token(&["uber_admin"], None);
    let report = load(
        ["burst", &server.url, &admin, "600", "16", "acme"]
            .map(String::from)
            .to_vec(),
        Value::Null,
    )
    .await;
    eprintln!("600 calls at full speed: {report}");
    assert_eq!(
        report["transport_errors"],
        json!([]),
        "calls that ended without a response: {report}"
    );
    assert!(
        report["statuses"]["429"].as_u64().unwrap_or(0) > 0,
        "the rate limit never refused: {report}"
    );
    assert_eq!(report["retry_after_missing"], 0, "{report}");
    assert!(count(&report, "jsonrpc_error") + count(&report, "tool_error") > 0);
    let total: u64 = ["result", "tool_error", "jsonrpc_error", "http_refusal"]
        .iter()
        .map(|k| count(&report, k))
        .sum();
    assert_eq!(total, 600, "{report}");

    // A token that does not verify: every call is a 401, none a transport error.
    let report = load(
        ["burst", &server.url, "not-a-token", "600", "16", "acme"]
            .map(String::from)
            .to_vec(),
        Value::Null,
    )
    .await;
    assert_eq!(report["transport_errors"], json!([]), "{report}");
    assert_eq!(report["statuses"]["401"], 600, "{report}");
    assert_eq!(count(&report, "http_refusal"), 600, "{report}");
}

/// A client whose request body arrives 200 ms after its head: what a slow link or a loaded
/// machine does by chance. Returns the refusal, and, unless that told the client to close, the
/// answer to a second request on the same connection (empty if the server dropped it).
async fn refused_then_reused(url: &str, authorization: &str) -> (String, Option<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = url.trim_start_matches("http://").trim_end_matches("/mcp");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nAuthorization: {authorization}\r\n\
         Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let read_answer = async |stream: &mut tokio::net::TcpStream| -> String {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .map_or(0, Result::unwrap_or_default);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if answer.len() >= end + 4 + length {
                    break;
                }
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    };
    let refusal = read_answer(&mut stream).await;
    if refusal.to_lowercase().contains("connection: close") {
        return (refusal, None);
    }
    let second = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n");
    let _ = stream.write_all(second.as_bytes()).await;
    let answer = read_answer(&mut stream).await;
    (refusal, Some(answer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_sent_before_the_body_leaves_a_connection_the_client_can_use_or_close() {
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let small = Limits {
        max_request_bytes: 16,
        ..Limits::default()
    };
    let small = AdminServer::start(cluster.client(), small).await.unwrap();
    let slow = Limits {
        requests_per_minute: 1,
        burst: 1,
        ..Limits::default()
    };
    let slow = AdminServer::start(cluster.client(), slow).await.unwrap();
    let admin = format!("Bearer {}", token(&["uber_admin"], None));
    // The caller's one request of the minute.
    let spent = reqwest::Client::new()
        .post(&slow.url)
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_ne!(spent.status().as_u16(), 429);
    for (what, url, authorization, status) in [
        ("too large", &small.url, admin.as_str(), "413"),
        ("bad token", &slow.url, "Bearer not-a-token", "401"),
        ("over the rate", &slow.url, admin.as_str(), "429"),
    ] {
        let (refusal, after) = refused_then_reused(url, authorization).await;
        assert!(
            refusal.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {refusal}"
        );
        if let Some(after) = after {
            assert!(
                after.starts_with("HTTP/1.1 200"),
                "{what}: the connection was dropped after the refusal without telling the \
                 client: {refusal:?} then {after:?}"
            );
        }
    }
}

/// The seed of the fuzz run: `TENANT_MCP_FUZZ_SEED` to replay one, else a fixed one.
fn seed() -> u64 {
    std::env::var("TENANT_MCP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(22)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_tool_arguments_never_take_the_server_down_or_change_anything_when_refused() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("fuzz").await.unwrap();
    let user = format!("fuzz_{}", &db[db.len() - 6..]);
    pg.set_login(&user, "fuzz-pass").await.unwrap();
    for object in [
        scenario::namespace("tenant-fuzz", Some("fuzz")),
        scenario::global("tenant-mcp-credentials", json!({})),
    ] {
        scenario::apply(&client, &object).await.unwrap();
    }
    let limits = Limits {
        requests_per_minute: 1_000_000,
        burst: 1_000_000,
        tool_timeout: Duration::from_secs(20),
        ..Limits::default()
    };
    let tool_timeout = limits.tool_timeout;
    let server = AdminServer::start(client.clone(), limits).await.unwrap();
    let admin = token(&["tenant_admin"], Some("fuzz"));
    let spec = json!({
        "servers": {"postgres": {"host": "127.0.0.1", "port": pg.port(), "database": db,
                                 "sslMode": "disable", "credentialsSecretRef": {"name": "fuzz-postgres"}}},
        "credentials": {"postgres": {"username": user, "password": "fuzz-pass"}},
    });
    let mut register = spec.clone();
    register["tenantId"] = json!("fuzz");
    let url = server.url.clone();
    let first = {
        let steps = json!([{"token": admin, "tool": "rag_register_tenant_mcp_config", "arguments": register}]);
        tokio::task::spawn_blocking(move || python_client(&[url.as_str()], &[], &steps))
            .await
            .unwrap()
    };
    assert_eq!(first["results"][0]["ok"], true, "{first}");

    let seed = seed();
    eprintln!("fuzz seed {seed} (TENANT_MCP_FUZZ_SEED={seed} replays it)");
    let report = load(
        [
            "fuzz",
            &server.url,
            &admin,
            "300",
            &seed.to_string(),
            "fuzz",
        ]
        .map(String::from)
        .to_vec(),
        spec,
    )
    .await;
    let calls = report["calls"].as_array().unwrap();
    eprintln!(
        "outcomes {} statuses {} slowest {}s",
        report["outcomes"], report["statuses"], report["slowest_seconds"]
    );
    assert_eq!(calls.len(), 300);
    assert_eq!(report["transport_errors"], json!([]), "{report}");
    let changed_by_refusal: Vec<&Value> = calls
        .iter()
        .filter(|c| c["outcome"] != "result" && c["changed"] == true)
        .collect();
    assert!(
        changed_by_refusal.is_empty(),
        "refused calls changed the config (seed {seed}): {changed_by_refusal:?}"
    );
    let refused = calls.iter().filter(|c| c["outcome"] != "result").count();
    assert!(refused > 150, "the fuzz mostly made valid calls: {report}");
    // Every refusal of fuzzed arguments is a tool result the agent's model reads, never a
    // JSON-RPC error its client keeps to itself.
    let protocol_errors: Vec<&Value> = calls
        .iter()
        .filter(|c| c["outcome"] == "jsonrpc_error")
        .collect();
    assert!(
        protocol_errors.is_empty(),
        "fuzzed arguments got JSON-RPC errors (seed {seed}): {protocol_errors:?}"
    );
    let slowest = report["slowest_seconds"].as_f64().unwrap();
    assert!(
        slowest < (tool_timeout + Duration::from_secs(10)).as_secs_f64(),
        "a call took {slowest}s, over the {tool_timeout:?} limit"
    );

    // The server still serves, and every credential Secret the tools made belongs to the
    // config that is left (none if the fuzz deleted it).
    let url = server.url.clone();
    let steps = json!([{"token": admin, "tool": "rag_list_tenant_mcp_configs", "arguments": {}}]);
    let after = tokio::task::spawn_blocking(move || python_client(&[url.as_str()], &[], &steps))
        .await
        .unwrap();
    assert_eq!(after["results"][0]["ok"], true, "{after}");
    let configs = Api::<TenantMcpConfig>::namespaced(client.clone(), "tenant-fuzz")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let referenced: Vec<String> = configs
        .iter()
        .flat_map(|c| {
            let spec = serde_json::to_value(&c.spec).unwrap();
            ["postgres", "minio", "aiMcp"]
                .into_iter()
                .filter_map(move |k| {
                    spec["servers"][k]["credentialsSecretRef"]["name"]
                        .as_str()
                        .or(spec["servers"][k]["bearerTokenSecretRef"]["name"].as_str())
                        .map(String::from)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let made: Vec<String> = Api::<Secret>::namespaced(client.clone(), "tenant-fuzz")
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=tenant-mcp-mcp-server"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    let stray: Vec<&String> = made.iter().filter(|s| !referenced.contains(s)).collect();
    assert!(
        stray.is_empty(),
        "Secrets left by the tools that no config uses: {stray:?}"
    );
}

/// `tenant-mcp mcp-server`, the binary, on a free port of this machine (its log in `dir`,
/// kept when the test fails).
struct ServerProcess {
    service: Service,
    url: String,
}

impl ServerProcess {
    fn start(cluster: &Cluster, dir: &Workdir) -> Self {
        let secret_file = dir.path().join("jwt-secret");
        std::fs::write(&secret_file, SECRET).unwrap();
        let port = free_port().unwrap();
        let mut command =
            std::process::Command::new(tenant_mcp_e2e::stack::tenant_mcp_binary().unwrap());
        command
            .args(["mcp-server", "--listen", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", cluster.kubeconfig())
            .env("TENANT_MCP_JWT_SECRET_FILE", &secret_file)
            .env("TENANT_MCP_JWT_ISSUER", ISSUER)
            .env("TENANT_MCP_JWT_AUDIENCE", AUDIENCE);
        let mut service = Service::start(&format!("mcp-server-{port}"), dir, command).unwrap();
        service
            .wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(30))
            .unwrap();
        Self {
            service,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }

    /// SIGKILL: dies wherever it was.
    fn kill(&mut self) {
        self.service.kill();
    }
}

/// Waits until the config write of `call` is held; fails with the call's answer if it ends
/// first (the tool refused before writing anything).
async fn held_or_answered(
    hold: &HoldHandle,
    call: &mut tokio::task::JoinHandle<Result<Value, tenant_mcp_e2e::mcp_admin::CallError>>,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while hold.held() < 1 {
        if call.is_finished() {
            panic!("the call ended before its config write: {:?}", call.await);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no config write was held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a call to a server that was killed under it succeeded (the client may wait on
/// the dropped connection: a call not answered within 10 s did not).
async fn succeeded(
    mut call: tokio::task::JoinHandle<Result<Value, tenant_mcp_e2e::mcp_admin::CallError>>,
) -> bool {
    let answer = tokio::time::timeout(Duration::from_secs(10), &mut call).await;
    call.abort();
    matches!(answer, Ok(Ok(Ok(_))))
}

/// The names and passwords of the Secrets in tenant-acme.
async fn secrets(client: &kube::Client) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = Api::<Secret>::namespaced(client.clone(), "tenant-acme")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            let password = s
                .data
                .and_then(|d| {
                    d.get("password")
                        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                })
                .unwrap_or_default();
            (s.metadata.name.unwrap_or_default(), password)
        })
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_management_server_killed_between_secrets_and_config_leaves_what_the_next_call_fixes() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let dir = Workdir::new("mcp-server-killed").unwrap();
    let cluster = Cluster::local(Default::default()).await.unwrap();
    cluster.install_crds().await.unwrap();
    let client = cluster.client();
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("acme").await.unwrap();
    let user = format!("acme_{}", &db[db.len() - 6..]);
    pg.set_login(&user, "pass-1").await.unwrap();
    for object in [
        scenario::namespace("tenant-acme", Some("acme")),
        scenario::global("tenant-mcp-credentials", json!({})),
    ] {
        scenario::apply(&client, &object).await.unwrap();
    }
    let bearer = token(&["tenant_admin"], Some("acme"));
    let arguments = |secret: &str, password: &str| {
        json!({"tenantId": "acme",
               "servers": {"postgres": {"host": "127.0.0.1", "port": pg.port(), "database": db,
                                        "sslMode": "disable", "credentialsSecretRef": {"name": secret}}},
               "credentials": {"postgres": {"username": user, "password": password}}})
    };
    let faults = AdmissionHold::install(&client, &["tenantmcpconfigs"])
        .await
        .unwrap();

    // 1. Killed after it wrote the Secret, before the config: a retry of the call succeeds.
    let mut server = ServerProcess::start(&cluster, &dir);
    let hold = faults.hold(HoldRule::object(
        "tenantmcpconfigs",
        "",
        "tenant-acme",
        "tenant-mcp",
    ));
    let mut cut = tokio::spawn({
        let (url, bearer, args) = (
            server.url.clone(),
            bearer.clone(),
            arguments("acme-postgres", "pass-1"),
        );
        async move { call(&url, &bearer, "rag_register_tenant_mcp_config", args).await }
    });
    held_or_answered(&hold, &mut cut).await;
    assert_eq!(
        secrets(&client).await,
        [("acme-postgres".to_owned(), "pass-1".to_owned())],
        "the Secret is written before the config"
    );
    server.kill();
    hold.release(Release::Deny);
    assert!(!succeeded(cut).await, "the killed server's call succeeded");
    let configs = Api::<TenantMcpConfig>::namespaced(client.clone(), "tenant-acme");
    assert!(configs.get_opt("tenant-mcp").await.unwrap().is_none());

    let mut server = ServerProcess::start(&cluster, &dir);
    let retried = call(
        &server.url,
        &bearer,
        "rag_register_tenant_mcp_config",
        arguments("acme-postgres", "pass-1"),
    )
    .await
    .unwrap();
    assert_eq!(
        retried["secretsWritten"],
        json!(["acme-postgres"]),
        "{retried}"
    );
    assert!(configs.get_opt("tenant-mcp").await.unwrap().is_some());

    // 2. Killed mid-update that moves the credentials to a new Secret: the next call of the
    // tenant removes the Secret the config never came to use.
    let hold = faults.hold(HoldRule::object(
        "tenantmcpconfigs",
        "",
        "tenant-acme",
        "tenant-mcp",
    ));
    let mut cut = tokio::spawn({
        let (url, bearer, args) = (
            server.url.clone(),
            bearer.clone(),
            arguments("acme-pg-2", "pass-1"),
        );
        async move { call(&url, &bearer, "rag_update_tenant_mcp_config", args).await }
    });
    held_or_answered(&hold, &mut cut).await;
    server.kill();
    hold.release(Release::Deny);
    assert!(!succeeded(cut).await);
    assert_eq!(
        secrets(&client).await.len(),
        2,
        "the new Secret is left behind by the killed write"
    );
    let server = ServerProcess::start(&cluster, &dir);
    let next = call(
        &server.url,
        &bearer,
        "rag_update_tenant_mcp_config",
        json!({"tenantId": "acme", "credentials": {"postgres": {"username": user, "password": "pass-1"}}}),
    )
    .await
    .unwrap();
    assert_eq!(next["secretsRemoved"], json!(["acme-pg-2"]), "{next}");
    assert_eq!(
        secrets(&client).await,
        [("acme-postgres".to_owned(), "pass-1".to_owned())]
    );
    let spec = configs.get("tenant-mcp").await.unwrap().spec;
    assert_eq!(
        spec.servers.postgres.unwrap().credentials_secret_ref.name,
        "acme-postgres"
    );
}
