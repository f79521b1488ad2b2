//! The local stack's launchers start real servers that behave as the scenarios need: Postgres
//! with password authentication, an S3 server that rejects wrong keys, the third-party MCP
//! reference server, and the multi-tenant test AI MCP server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashMap;

use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use sqlx::Connection as _;
use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer, Routing, Token};
use tenant_mcp_e2e::stack::mcp_everything::EverythingMcpServer;
use tenant_mcp_e2e::stack::postgres::Postgres;
use tenant_mcp_e2e::stack::s3::S3Server;

#[tokio::test]
async fn postgres_starts_a_throwaway_cluster_with_password_auth() {
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("stack").await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&pg.admin_url(&db))
        .await
        .unwrap();
    let (version,): (String,) = sqlx::query_as("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!version.is_empty());
    let (current,): (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(current, db);
    conn.close().await.unwrap();

    let wrong = sqlx::PgConnection::connect(&pg.url(Postgres::SUPERUSER, "wrong", &db)).await;
    let Err(err) = wrong else {
        panic!("a wrong password must be refused")
    };
    let code = err
        .as_database_error()
        .and_then(|e| e.code().map(|c| c.into_owned()));
    assert_eq!(code.as_deref(), Some("28P01"), "{err}");
    assert!(pg.create_database("Bad-Name").await.is_err());

    let dir = pg.dir().to_path_buf();
    let port = pg.port();
    drop(pg);
    assert!(!dir.exists(), "the cluster's directory is removed");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server stopped"
    );
}

#[tokio::test]
async fn s3_server_stores_objects_and_rejects_wrong_keys() {
    let s3 = S3Server::start("acme-access", "acme-secret-0123456789").unwrap();
    let client = s3.client();
    client
        .create_bucket()
        .bucket("acme-documents")
        .send()
        .await
        .unwrap();
    client
        .put_object()
        .bucket("acme-documents")
        .key("hello.txt")
        .body(b"hello".to_vec().into())
        .send()
        .await
        .unwrap();
    let body = client
        .get_object()
        .bucket("acme-documents")
        .key("hello.txt")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&body[..], b"hello");
    assert!(s3.dir().join("data/acme-documents/hello.txt").exists());

    // AWS and MinIO say InvalidAccessKeyId for an unknown key; s3s says NotSignedUp.
    for (access, secret, expected) in [
        (
            "acme-access",
            "not-the-secret",
            &["SignatureDoesNotMatch"][..],
        ),
        (
            "someone-else",
            "acme-secret-0123456789",
            &["InvalidAccessKeyId", "NotSignedUp"][..],
        ),
    ] {
        let err = s3
            .client_with(access, secret)
            .get_object()
            .bucket("acme-documents")
            .key("hello.txt")
            .send()
            .await
            .expect_err("wrong keys must be refused");
        let code = err.as_service_error().and_then(|e| {
            use aws_sdk_s3::error::ProvideErrorMetadata as _;
            e.code().map(str::to_owned)
        });
        assert!(
            code.as_deref().is_some_and(|c| expected.contains(&c)),
            "{access}/{secret}: {err:?}"
        );
    }
}

fn mcp_transport(
    url: &str,
    token: Option<&str>,
    headers: &[(&'static str, &str)],
) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut custom = HashMap::new();
    for (name, value) in headers {
        custom.insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(custom);
    if let Some(token) = token {
        config = config.auth_header(token.to_owned());
    }
    StreamableHttpClientTransport::from_config(config)
}

#[tokio::test]
async fn the_third_party_mcp_reference_server_answers_over_streamable_http() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let mut server = EverythingMcpServer::start().unwrap();
    let client = ().serve(mcp_transport(&server.url(), None, &[])).await.unwrap();
    let info = client.peer_info().expect("initialized");
    let name = info
        .server_info
        .as_ref()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    assert!(name.contains("everything"), "{:?}", info.server_info);
    let tools = client.list_all_tools().await.unwrap();
    assert!(
        tools.iter().any(|t| t.name == "echo"),
        "{:?}",
        tools.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let args = serde_json::json!({"message": "hi from tenant-mcp"});
    let result = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    let text = serde_json::to_string(&result.content).unwrap();
    assert!(text.contains("hi from tenant-mcp"), "{text}");
    client.cancel().await.unwrap();
    assert!(server.is_running());
}

#[tokio::test]
async fn the_test_ai_mcp_server_routes_by_tenant_and_checks_tokens() {
    tenant_mcp_e2e::stack::install_crypto_provider();
    let server = AiMcpServer::start(AiMcpConfig::new(
        "shared-ai",
        vec![
            Token {
                token: "acme-token".into(),
                tenant: Some("acme".into()),
            },
            Token {
                token: "platform-token".into(),
                tenant: None,
            },
        ],
    ))
    .unwrap();

    // Header routing with the tenant's own token.
    let acme = ()
        .serve(mcp_transport(
            &server.url(),
            Some("acme-token"),
            &[("x-tenant-id", "acme")],
        ))
        .await
        .unwrap();
    let who = acme
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let who = who
        .structured_content
        .expect("whoami answers with structured content");
    assert_eq!(who["tenant"], "acme");
    assert_eq!(who["routing"], "header");
    assert_eq!(who["server"], "shared-ai");
    let args = serde_json::json!({"prompt": "summarize"});
    let generated = acme
        .call_tool(
            CallToolRequestParams::new("generate")
                .with_arguments(args.as_object().unwrap().clone()),
        )
        .await
        .unwrap()
        .structured_content
        .unwrap();
    assert_eq!(generated["text"], "[shared-ai/acme] summarize");
    acme.cancel().await.unwrap();

    // Path-prefix routing with a platform token.
    let url = format!("{}/tenants/globex/mcp", server.base_url());
    let globex = ().serve(mcp_transport(&url, Some("platform-token"), &[])).await.unwrap();
    let who = globex
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    assert_eq!(who["tenant"], "globex");
    assert_eq!(who["routing"], "pathPrefix");
    globex.cancel().await.unwrap();

    // A wrong token, and a tenant's token used for another tenant, are refused.
    assert!(
        ().serve(mcp_transport(
            &server.url(),
            Some("nope"),
            &[("x-tenant-id", "acme")]
        ))
        .await
        .is_err()
    );
    assert!(
        ().serve(mcp_transport(
            &server.url(),
            Some("acme-token"),
            &[("x-tenant-id", "globex")]
        ))
        .await
        .is_err()
    );
    let raw = reqwest::Client::new()
        .post(server.url())
        .header("x-tenant-id", "globex")
        .bearer_auth("acme-token")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 403);
    let raw = reqwest::Client::new()
        .post(server.url())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);

    let served: Vec<(Option<String>, Routing, String)> = server
        .served()
        .into_iter()
        .map(|s| (s.tenant, s.routing, s.tool))
        .collect();
    assert_eq!(
        served,
        [
            (Some("acme".into()), Routing::Header, "whoami".into()),
            (Some("acme".into()), Routing::Header, "generate".into()),
            (Some("globex".into()), Routing::PathPrefix, "whoami".into()),
        ]
    );
    server.stop();
}
