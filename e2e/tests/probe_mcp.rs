//! The MCP probe against real MCP servers: the project's multi-tenant test AI server (tokens per
//! tenant, routing by header or path) and the MCP project's own reference server. Each way a
//! connection test can fail gets its own reason, and no message carries a token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;
use tenant_mcp_e2e::stack::egress;

use serde_json::json;
use tenant_mcp::api::McpServer;
use tenant_mcp::config::{Credential, EndpointPolicy, McpCredentials};
use tenant_mcp::probe::mcp::probe_mcp;
use tenant_mcp::probe::{ProbeError, Prober};
use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer, Token};
use tenant_mcp_e2e::stack::loopback_policy;
use tenant_mcp_e2e::stack::mcp_everything::EverythingMcpServer;
use tenant_mcp_e2e::stack::process::{free_port, silent_server};

fn server(url: &str, routing: serde_json::Value) -> McpServer {
    serde_json::from_value(json!({"url": url, "tenantRouting": routing})).unwrap()
}

fn token(value: &str) -> McpCredentials {
    McpCredentials {
        bearer_token: Some(Credential::new(value)),
        ..McpCredentials::default()
    }
}

async fn probe(
    server: &McpServer,
    tenant: Option<&str>,
    creds: &McpCredentials,
) -> Result<tenant_mcp::probe::mcp::McpReport, ProbeError> {
    Prober::new(2)
        .run(
            "mcp",
            Duration::from_secs(10),
            probe_mcp(&egress(loopback_policy()), server, tenant, creds),
        )
        .await
}

fn shared_ai() -> AiMcpServer {
    AiMcpServer::start(AiMcpConfig::new(
        "shared-ai",
        vec![
            Token {
                token: "acme-token-1234".into(),
                tenant: Some("acme".into()),
            },
            Token {
                token: "platform-token-1234".into(),
                tenant: None,
            },
        ],
    ))
    .unwrap()
}

#[tokio::test]
async fn a_tenant_token_passes_only_with_the_tenants_routing() {
    let ai = shared_ai();
    let acme = token("acme-token-1234");
    for routing in [json!({"mode": "PathPrefix"}), json!({"mode": "Header"})] {
        let url = if routing["mode"] == "PathPrefix" {
            format!("{}/mcp", ai.base_url())
        } else {
            ai.url()
        };
        let report = probe(&server(&url, routing.clone()), Some("acme"), &acme)
            .await
            .unwrap_or_else(|e| panic!("{routing}: {e}"));
        assert_eq!(report.tool_count, 2, "{report:?}");
        assert!(!report.server_name.is_empty(), "{report:?}");
        // The same token routed as another tenant is refused by the server: the routing the
        // probe applied is what the server saw.
        let err = probe(&server(&url, routing.clone()), Some("globex"), &acme)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "AccessDenied", "{routing}: {err}");
    }
    // No routing at all: the server sees no tenant, and the tenant token is not enough.
    let err = probe(&server(&ai.url(), json!({})), Some("acme"), &acme)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "AccessDenied", "{err}");
    // The platform token works for the global check, which routes nowhere.
    let global = probe(
        &server(&ai.url(), json!({"mode": "Header"})),
        None,
        &token("platform-token-1234"),
    )
    .await
    .unwrap();
    assert_eq!(global.tool_count, 2);
}

#[tokio::test]
async fn each_failure_has_its_own_reason_and_no_token() {
    let ai = shared_ai();
    let closed = format!("http://127.0.0.1:{}/mcp", free_port().unwrap());
    let https_to_plain = ai.url().replace("http://", "https://");
    let not_mcp = format!("{}/not-mcp", ai.base_url());
    let cases = [
        (
            ai.url(),
            "wrong-token-5678",
            "AuthFailed",
            "bearerTokenSecretRef",
        ),
        (closed, "acme-token-1234", "Unreachable", "127.0.0.1"),
        (https_to_plain, "acme-token-1234", "TlsFailed", "TLS"),
        (
            not_mcp,
            "acme-token-1234",
            "ProtocolError",
            "no MCP endpoint",
        ),
    ];
    for (url, presented, reason, text) in cases {
        let err = probe(
            &server(&url, json!({"mode": "Header"})),
            Some("acme"),
            &token(presented),
        )
        .await
        .unwrap_err();
        let message = err.to_string();
        assert_eq!(err.reason(), reason, "{url}: {message}");
        assert!(message.contains(text), "{reason}: {message}");
        for secret in ["wrong-token-5678", "acme-token-1234"] {
            assert!(!message.contains(secret), "{message}");
            assert!(!format!("{err:?}").contains(secret));
        }
    }
}

#[tokio::test]
async fn a_server_that_hangs_times_out() {
    // Accepts connections and never answers a request.
    let (port, held) = silent_server().await.unwrap();
    let hanging = server(&format!("http://127.0.0.1:{port}/mcp"), json!({}));
    let err = Prober::new(1)
        .run(
            "mcp",
            Duration::from_millis(500),
            probe_mcp(
                &egress(loopback_policy()),
                &hanging,
                Some("acme"),
                &token("t"),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Timeout", "{err}");
    assert!(err.is_retryable());
    held.abort();
}

#[tokio::test]
async fn a_policy_denied_address_is_never_connected_to() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let denied = server(&format!("http://127.0.0.1:{port}/mcp"), json!({}));
    let err = probe_mcp(
        &egress(EndpointPolicy::default()),
        &denied,
        Some("acme"),
        &token("t"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "PolicyDenied", "{err}");
    assert!(!err.is_retryable());
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "the probe connected although the policy denies the address"
    );
}

#[tokio::test]
async fn the_third_party_reference_server_reports_its_name_and_tools() {
    let mut everything = EverythingMcpServer::start().unwrap();
    let report = probe(
        &server(&everything.url(), json!({})),
        Some("acme"),
        &McpCredentials::default(),
    )
    .await
    .unwrap();
    assert!(report.server_name.contains("everything"), "{report:?}");
    assert!(report.tool_count >= 5, "{report:?}");
    assert!(!report.server_version.is_empty());
    assert!(everything.is_running());
}

/// The peak resident memory of this test's process so far (nextest runs each test in a process
/// of its own), in bytes.
fn peak_rss() -> u64 {
    tenant_mcp_e2e::stack::process::peak_rss(std::process::id()).unwrap()
}

/// Issue 34, item 5 (threat model: a tenant's own servers must never exhaust the controller's,
/// the management server's or an application's memory): a server whose `tools/list` pages
/// are 8 MiB each, with a next cursor forever. The probe (the controller's and the management
/// server's connection test) reads one page, and no message over 4 MiB: a clear
/// `ProtocolError` after one page, and the process's memory stays where it was. Before, rmcp's
/// 16 MiB limit let each page in and the probe followed the cursor until its time ran out.
#[tokio::test]
async fn a_hostile_server_streaming_huge_pages_ends_in_a_protocol_error_with_memory_bounded() {
    use tenant_mcp_e2e::stack::hostile_mcp::HostileMcpServer;
    let hostile = HostileMcpServer::start(8 << 20).await.unwrap();
    let before = peak_rss();
    let err = probe(
        &server(&hostile.url(), json!({})),
        Some("acme"),
        &token("t"),
    )
    .await
    .unwrap_err();
    let grown = peak_rss().saturating_sub(before);
    assert_eq!(err.reason(), "ProtocolError", "{err}");
    assert_eq!(hostile.pages_sent(), 1, "the probe asked for a second page");
    assert!(
        grown < 32 << 20,
        "the probe's peak memory grew by {} MiB",
        grown >> 20
    );

    // Pages under the message limit, forever: the probe reads one and passes; the client
    // library follows at most 16 pages and refuses the server with a clear error.
    let endless = HostileMcpServer::start(256 << 10).await.unwrap();
    let report = probe(
        &server(&endless.url(), json!({})),
        Some("acme"),
        &token("t"),
    )
    .await
    .unwrap();
    assert_eq!(endless.pages_sent(), 1);
    assert!(report.tool_count > 200, "{report:?}");

    use tenant_mcp::client::build::{Built, Shared, build};
    use tenant_mcp::client::routes::{Endpoint, Origin};
    use tenant_mcp::config::candidate::{Candidate, ServerKey};
    let shared = Shared::new(4).unwrap();
    let endpoint = Endpoint::new(
        Origin::Tenant,
        Candidate::Mcp {
            spec: std::sync::Arc::new(server(&endless.url(), json!({}))),
            credentials: token("t"),
        },
        std::sync::Arc::new(loopback_policy()),
    );
    let Ok(Built::Mcp(client)) = build(&shared, &ServerKey::AiMcp, &endpoint, Some("acme")) else {
        panic!("no MCP client built");
    };
    let before = peak_rss();
    let err = client.list_tools().await.unwrap_err();
    let grown = peak_rss().saturating_sub(before);
    assert!(err.message.contains("pages on past 16 pages"), "{err}");
    assert_eq!(endless.pages_sent(), 1 + 16);
    assert!(
        grown < 64 << 20,
        "the client's peak memory grew by {} MiB",
        grown >> 20
    );
}
