//! What a service call can fail with. Messages name the tenant and what was asked for, never
//! a credential.

use crate::client::{ClientError, McpCallError};

/// A failed service call.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No client could be had (not configured, unavailable, no tenant in scope…).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Postgres refused or failed.
    #[error("tenant {tenant:?}: Postgres: {source}")]
    Postgres {
        /// The tenant.
        tenant: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// An object key that could leave the tenant's prefix or that S3 would not take.
    #[error("tenant {tenant:?}: object key {key:?}: {expected}")]
    InvalidKey {
        /// The tenant.
        tenant: String,
        /// The key given.
        key: String,
        /// What a key must be.
        expected: &'static str,
    },
    /// No such object (under the tenant's prefix).
    #[error("tenant {tenant:?}: object {key:?} not found")]
    NotFound {
        /// The tenant.
        tenant: String,
        /// The key, relative to the tenant's prefix.
        key: String,
    },
    /// S3 refused or failed.
    #[error("tenant {tenant:?}: S3 {operation} {key:?}: {message}")]
    S3 {
        /// The tenant.
        tenant: String,
        /// `put`, `get`, `list`, `delete` or `presign`.
        operation: &'static str,
        /// The key or prefix, relative to the tenant's prefix.
        key: String,
        /// What the server or SDK said.
        message: String,
        /// A time-out, a connection failure, throttling or a server error (not a refusal).
        retryable: bool,
    },
    /// The endpoint policy refused a connection the request needed: the server's name resolves
    /// to an address the policy denies (its DNS changed after the config was promoted, or the
    /// policy was tightened). Nothing was sent there, and no other server was tried.
    #[error(
        "tenant {tenant:?}: the {server} connection was refused by the endpoint policy (PolicyDenied): {message}"
    )]
    PolicyDenied {
        /// The tenant.
        tenant: String,
        /// `postgres`, `minio` or `mcp`.
        server: &'static str,
        /// What was denied.
        message: String,
    },
    /// The MCP server refused or failed.
    #[error("tenant {tenant:?}: {source}")]
    Mcp {
        /// The tenant.
        tenant: String,
        /// The call's error.
        #[source]
        source: McpCallError,
    },
}

/// Whether a Postgres error may pass without a change: the server unreachable or restarting
/// (our relay's `TM002`, class `08`, `57P01`–`57P03`), out of resources (`53`), a
/// serialization failure or deadlock, a full pool.
fn postgres_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code == crate::egress::postgres::SQLSTATE_UNREACHABLE
                || code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

impl ServiceError {
    /// Whether trying again later may succeed without a config change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Client(e) => e.is_retryable(),
            Self::Postgres { source, .. } => postgres_is_transient(source),
            Self::S3 { retryable, .. } => *retryable,
            Self::Mcp { .. } => true,
            Self::InvalidKey { .. } | Self::NotFound { .. } | Self::PolicyDenied { .. } => false,
        }
    }

    /// A PascalCase reason for responses and metrics: the client error's condition reason,
    /// `PolicyDenied`, or what kind of failure it was.
    pub fn reason(&self) -> &str {
        match self {
            Self::Client(ClientError::Unavailable { reason, .. }) => reason,
            Self::Client(ClientError::NotConfigured { .. }) => "NotConfigured",
            Self::Client(ClientError::InvalidTenant(_)) => "InvalidTenant",
            Self::Client(ClientError::NoTenant) => "NoTenant",
            Self::Client(_) => "ClientError",
            Self::PolicyDenied { .. } => crate::api::conditions::reason::POLICY_DENIED,
            Self::Postgres { .. } => "PostgresError",
            Self::S3 { .. } => "S3Error",
            Self::Mcp { .. } => "McpError",
            Self::InvalidKey { .. } => "InvalidKey",
            Self::NotFound { .. } => "NotFound",
        }
    }

    /// The error of a Postgres call for `tenant`: a connection the egress relay refused on the
    /// endpoint policy becomes [`Self::PolicyDenied`].
    pub fn postgres(tenant: &str, source: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &source
            && db.code().as_deref() == Some(crate::egress::postgres::SQLSTATE_POLICY_DENIED)
        {
            return Self::PolicyDenied {
                tenant: tenant.to_owned(),
                server: "postgres",
                message: db.message().trim_start_matches("tenant-mcp: ").to_owned(),
            };
        }
        Self::Postgres {
            tenant: tenant.to_owned(),
            source,
        }
    }
}
