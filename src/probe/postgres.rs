//! The Postgres probe: connect with the resolved credentials honouring `sslMode`, `SELECT 1`,
//! and report the server version and the round-trip time.

use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions as _, Connection as _};

use super::{ProbeError, reason, resolve_checked};
use crate::api::{PostgresServer, SslMode};
use crate::config::{EndpointPolicy, PostgresCredentials};

/// What a passing Postgres probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresReport {
    /// `server_version` as the server reports it (e.g. `15.14 (Debian 15.14-0+deb12u1)`).
    pub server_version: String,
    /// Time from connecting to the answer of `SELECT 1`.
    pub latency: Duration,
}

/// Connects to `server` as `credentials` and runs `SELECT 1`. `ca_pem` is the CA bundle of
/// `caCertSecretRef`, if any. Time limits and the concurrency cap come from
/// [`super::Prober::run`].
pub async fn probe_postgres(
    policy: &EndpointPolicy,
    server: &PostgresServer,
    credentials: &PostgresCredentials,
    ca_pem: Option<&[u8]>,
) -> Result<PostgresReport, ProbeError> {
    let port = u16::try_from(server.port).unwrap_or(0);
    let endpoint = format!("postgres {}:{port}/{}", server.host, server.database);
    let addrs = resolve_checked(policy, &server.host, port).await?;
    // Connect to the address that was checked, so the name cannot resolve elsewhere in
    // between; verify-full needs the name itself for the certificate check, and keeps it.
    let connect_host = if server.ssl_mode == SslMode::VerifyFull {
        server.host.clone()
    } else {
        addrs[0].ip().to_string()
    };
    let mut options = PgConnectOptions::new()
        .host(&connect_host)
        .port(port)
        .database(&server.database)
        .username(&credentials.username)
        .password(credentials.password.expose())
        .ssl_mode(ssl_mode(server.ssl_mode))
        .application_name("tenant-mcp-probe")
        .disable_statement_logging();
    if let Some(pem) = ca_pem {
        options = options.ssl_root_cert_from_pem(pem.to_vec());
    }
    let started = Instant::now();
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|e| classify(e, &endpoint, &credentials.username, server.ssl_mode))?;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| classify(e, &endpoint, &credentials.username, server.ssl_mode))?;
    let latency = started.elapsed();
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| classify(e, &endpoint, &credentials.username, server.ssl_mode))?;
    let _ = conn.close().await;
    if one != 1 {
        return Err(ProbeError::new(
            reason::PROTOCOL_ERROR,
            format!("{endpoint}: SELECT 1 returned {one}"),
        ));
    }
    Ok(PostgresReport {
        server_version,
        latency,
    })
}

pub(crate) fn ssl_mode(mode: SslMode) -> PgSslMode {
    match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Allow => PgSslMode::Allow,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

/// A probe error a person can act on. The server's own messages name users and databases,
/// never passwords, so they are passed on.
fn classify(error: sqlx::Error, endpoint: &str, user: &str, mode: SslMode) -> ProbeError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message();
            let (reason, hint) = match code.as_str() {
                "28P01" | "28000" => (
                    reason::AUTH_FAILED,
                    "check the user name and password in credentialsSecretRef",
                ),
                "3D000" => (
                    reason::DATABASE_NOT_FOUND,
                    "check spec.servers.postgres.database",
                ),
                "42501" => (
                    reason::ACCESS_DENIED,
                    "grant the user CONNECT on the database",
                ),
                c if c.starts_with("53") || c.starts_with("57P") => (
                    reason::UNREACHABLE,
                    "the server is overloaded or shutting down",
                ),
                _ => (reason::PROTOCOL_ERROR, ""),
            };
            let hint = if hint.is_empty() {
                String::new()
            } else {
                format!(" ({hint})")
            };
            ProbeError::new(
                reason,
                format!("{endpoint} as {user:?}: {message} [SQLSTATE {code}]{hint}"),
            )
        }
        sqlx::Error::Tls(e) => ProbeError::new(
            reason::TLS_FAILED,
            format!("{endpoint}: TLS failed with sslMode {}: {e}", mode.as_str()),
        ),
        sqlx::Error::Io(e) => ProbeError::new(reason::UNREACHABLE, format!("{endpoint}: {e}")),
        sqlx::Error::PoolTimedOut => {
            ProbeError::new(reason::TIMEOUT, format!("{endpoint}: timed out"))
        }
        other => ProbeError::new(reason::PROTOCOL_ERROR, format!("{endpoint}: {other}")),
    }
}
