//! The Postgres probe: connect with the resolved credentials honouring `sslMode`, `SELECT 1`,
//! and report the server version and the round-trip time.

use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

use super::error::ProbeError;
use crate::api::conditions::reason;
use crate::api::{PostgresServer, SslMode};
use crate::config::PostgresCredentials;
use crate::egress::Egress;
use crate::egress::postgres::reason_of_sqlstate;

/// What a passing Postgres probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresReport {
    /// `server_version` as the server reports it (e.g. `15.14 (Debian 15.14-0+deb12u1)`).
    pub server_version: String,
    /// Time from connecting to the answer of `SELECT 1`.
    pub latency: Duration,
}

/// Connects to `server` as `credentials` and runs `SELECT 1`, through the egress relay exactly
/// as the client library's pools do (the name resolved and every address checked on connect,
/// TLS as `sslMode` says, the certificate checked against the name). `ca_pem` is the CA bundle
/// of `caCertSecretRef`, if any. Time limits and the concurrency cap come from
/// [`super::Prober::run`].
pub async fn probe_postgres(
    egress: &Egress,
    server: &PostgresServer,
    credentials: &PostgresCredentials,
    ca_pem: Option<&[u8]>,
) -> Result<PostgresReport, ProbeError> {
    let port = u16::try_from(server.port).unwrap_or(0);
    let endpoint = format!("postgres {}:{port}/{}", server.host, server.database);
    egress.policy().check_ssl_mode(server.ssl_mode)?;
    let relay = egress
        .postgres_relay(server, ca_pem, Duration::from_secs(30), None)
        .map_err(|e| ProbeError::new(reason::PROTOCOL_ERROR, format!("{endpoint}: {e}")))?;
    let options = relay.connect_options(
        PgConnectOptions::new()
            .host(&server.host)
            .port(port)
            .database(&server.database)
            .username(&credentials.username)
            .password(credentials.password.expose())
            .application_name("tenant-mcp-probe")
            .disable_statement_logging(),
    );
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

/// A probe error a person can act on. The server's own messages name users and databases,
/// never passwords, so they are passed on.
fn classify(error: sqlx::Error, endpoint: &str, user: &str, mode: SslMode) -> ProbeError {
    match &error {
        sqlx::Error::Database(db)
            if db.code().is_some_and(|c| reason_of_sqlstate(&c).is_some()) =>
        {
            // The relay refused: the policy, an unreachable server, or TLS.
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let reason = reason_of_sqlstate(&code).unwrap_or(reason::PROTOCOL_ERROR);
            let message = db.message().trim_start_matches("tenant-mcp: ");
            if reason == reason::POLICY_DENIED {
                return ProbeError::Failed {
                    reason,
                    message: format!("{endpoint}: {message}"),
                };
            }
            let hint = if reason == reason::TLS_FAILED {
                format!(" (sslMode {})", mode.as_str())
            } else {
                String::new()
            };
            ProbeError::new(reason, format!("{endpoint}: {message}{hint}"))
        }
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
