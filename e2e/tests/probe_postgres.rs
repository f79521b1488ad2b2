//! The Postgres probe against a real server: each way a connection test can fail gets its own
//! reason, and no message carries the password.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;
use tenant_mcp_e2e::stack::egress;

use serde_json::json;
use tenant_mcp::api::PostgresServer;
use tenant_mcp::config::{Credential, EndpointPolicy, PostgresCredentials};
use tenant_mcp::probe::Prober;
use tenant_mcp::probe::postgres::probe_postgres;
use tenant_mcp_e2e::stack::loopback_policy;
use tenant_mcp_e2e::stack::postgres::Postgres;
use tenant_mcp_e2e::stack::process::{free_port, silent_server};

fn server(port: u16, database: &str, ssl_mode: &str) -> PostgresServer {
    serde_json::from_value(json!({
        "host": "127.0.0.1", "port": port, "database": database, "sslMode": ssl_mode,
        "credentialsSecretRef": {"name": "pg"}
    }))
    .unwrap()
}

fn creds(password: &str) -> PostgresCredentials {
    PostgresCredentials {
        username: Postgres::SUPERUSER.into(),
        password: Credential::new(password),
    }
}

#[tokio::test]
async fn each_failure_has_its_own_reason_and_no_password() {
    let pg = Postgres::start().unwrap();
    let db = pg.create_database("probe").await.unwrap();
    let policy = loopback_policy();
    let prober = Prober::new(4);
    let limit = Duration::from_secs(10);
    let probe = |server: PostgresServer, creds: PostgresCredentials, policy: EndpointPolicy| {
        let prober = prober.clone();
        async move {
            prober
                .run(
                    "postgres",
                    limit,
                    probe_postgres(&egress(policy.clone()), &server, &creds, None),
                )
                .await
        }
    };

    let report = probe(
        server(pg.port(), &db, "prefer"),
        creds(pg.password()),
        policy.clone(),
    )
    .await
    .unwrap();
    assert!(
        report.server_version.starts_with(char::is_numeric),
        "{report:?}"
    );

    let cases = [
        (
            server(pg.port(), &db, "prefer"),
            "wrong-password-123",
            "AuthFailed",
            "password authentication failed",
        ),
        (
            server(pg.port(), "no_such_db", "prefer"),
            pg.password(),
            "DatabaseNotFound",
            "no_such_db",
        ),
        (
            server(free_port().unwrap(), &db, "prefer"),
            pg.password(),
            "Unreachable",
            "refused",
        ),
        (
            server(pg.port(), &db, "require"),
            pg.password(),
            "TlsFailed",
            "sslMode require",
        ),
    ];
    for (server, password, reason, text) in cases {
        let err = probe(server, creds(password), policy.clone())
            .await
            .unwrap_err();
        let message = err.to_string();
        assert_eq!(err.reason(), reason, "{message}");
        assert!(message.contains(text), "{reason}: {message}");
        assert!(
            !message.contains(pg.password()) && !message.contains("wrong-password-123"),
            "{message}"
        );
        assert!(!format!("{err:?}").contains("wrong-password-123"));
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts connections and never says a word.
    let (port, held) = silent_server().await.unwrap();
    let err = Prober::new(1)
        .run(
            "postgres",
            Duration::from_millis(500),
            probe_postgres(
                &egress(loopback_policy()),
                &server(port, "db", "disable"),
                &creds("pw"),
                None,
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
    // The default policy: public addresses only.
    let err = probe_postgres(
        &egress(EndpointPolicy::default()),
        &server(port, "db", "disable"),
        &creds("pw"),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "PolicyDenied", "{err}");
    assert!(err.to_string().contains("allowLoopback"), "{err}");
    assert!(!err.is_retryable());
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "the probe connected although the policy denies the address"
    );
}

/// Issue 27, items 10 and 3, on a real Postgres serving TLS on 127.0.0.1 and ::1. An IPv6
/// host works bare and bracketed, under every sslMode, with `verify-full` checking the
/// certificate's IP SAN (and failing under another CA). A login whose server asks for the
/// password in cleartext (`password` in pg_hba.conf) gets it only over TLS whose certificate
/// was verified; over plain TCP or unverified TLS the relay refuses (`InsecureAuth`), as a
/// server a bad DNS answer or a changed host led to would otherwise receive the password.
#[tokio::test]
async fn ipv6_hosts_work_bracketed_or_not_and_a_cleartext_password_needs_verified_tls() {
    use tenant_mcp_e2e::stack::postgres::PostgresOptions;
    use tenant_mcp_e2e::stack::tls::Identity;
    tenant_mcp_e2e::stack::install_crypto_provider();
    let identity = Identity::generate("pg", &[]).unwrap();
    let pg = Postgres::start_with(&PostgresOptions {
        tls: Some(&identity),
        cleartext_role: Some("cleartext"),
        ..PostgresOptions::default()
    })
    .unwrap();
    let db = pg.create_database("tls").await.unwrap();
    for statement in [
        "CREATE ROLE cleartext NOLOGIN",
        "CREATE ROLE plain_login LOGIN PASSWORD 'plain-pw-77' IN ROLE cleartext",
    ] {
        tenant_mcp_e2e::stack::postgres::execute(&pg.admin_url(&db), statement)
            .await
            .unwrap();
    }
    let other_ca = Identity::generate("other", &[]).unwrap();
    let prober = Prober::new(4);
    let probe = |host: &str, mode: &str, user: &str, password: &str, ca: &Identity| {
        let mut server = server(pg.port(), &db, mode);
        server.host = host.to_owned();
        let creds = PostgresCredentials {
            username: user.into(),
            password: Credential::new(password),
        };
        let ca = ca.ca_pem.clone().into_bytes();
        let prober = prober.clone();
        async move {
            prober
                .run(
                    "postgres",
                    Duration::from_secs(10),
                    probe_postgres(&egress(loopback_policy()), &server, &creds, Some(&ca)),
                )
                .await
        }
    };
    let superuser = Postgres::SUPERUSER;
    for host in ["::1", "[::1]", "127.0.0.1"] {
        for mode in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            probe(host, mode, superuser, pg.password(), &identity)
                .await
                .unwrap_or_else(|e| panic!("{host} with sslMode {mode}: {e}"));
        }
        let err = probe(host, "verify-full", superuser, pg.password(), &other_ca)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "TlsFailed", "{host}: {err}");
    }

    for (mode, allowed) in [
        ("disable", false),
        ("prefer", false),
        ("require", false),
        ("verify-ca", true),
        ("verify-full", true),
    ] {
        let result = probe("::1", mode, "plain_login", "plain-pw-77", &identity).await;
        match (result, allowed) {
            (Ok(_), true) => {}
            (Err(e), false) => {
                assert_eq!(e.reason(), "InsecureAuth", "sslMode {mode}: {e}");
                assert!(!e.to_string().contains("plain-pw-77"));
            }
            (other, _) => panic!("sslMode {mode}: {other:?}"),
        }
    }
}
