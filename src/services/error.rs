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

impl ServiceError {
    /// Whether trying again later may succeed without a config change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Client(e) => e.is_retryable(),
            Self::Postgres { source, .. } => matches!(
                source,
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
            ),
            Self::S3 { retryable, .. } => *retryable,
            Self::Mcp { .. } => true,
            Self::InvalidKey { .. } | Self::NotFound { .. } => false,
        }
    }
}
