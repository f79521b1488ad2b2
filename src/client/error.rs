//! What can go wrong when a caller asks for a tenant's client.

use super::origin::Origin;

/// Why no client could be handed out. Messages name the tenant and server, never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// Neither the tenant nor the global config declares this server type.
    #[error("tenant {tenant:?}: no {server} server is configured, for the tenant or globally")]
    NotConfigured {
        /// The tenant asked for.
        tenant: String,
        /// The server key (`postgres`, `minio`, `aiMcpServer`, `mcpServers.<name>`).
        server: String,
    },
    /// The server type is configured but cannot be used now (its checks failed, or its
    /// credentials are not visible yet). Retryable; never answered with another tenant's or the
    /// global server.
    #[error("tenant {tenant:?}: the {} {server} server is unavailable ({reason}): {message}", origin.as_str())]
    Unavailable {
        /// The tenant asked for.
        tenant: String,
        /// The server key.
        server: String,
        /// Whose server it is.
        origin: Origin,
        /// A condition reason.
        reason: String,
        /// What happened.
        message: String,
    },
    /// Building the client failed (bad TLS material, an invalid URL or header).
    #[error("tenant {tenant:?}: building the {server} client failed: {message}")]
    Build {
        /// The tenant asked for.
        tenant: String,
        /// The server key.
        server: String,
        /// What failed.
        message: String,
    },
    /// The server asked for is of another kind (an MCP name given for Postgres, say).
    #[error("tenant {tenant:?}: {server} is not a {expected} server")]
    WrongKind {
        /// The tenant asked for.
        tenant: String,
        /// The server key.
        server: String,
        /// What the caller expected.
        expected: &'static str,
    },
    /// No tenant in scope: the call needs [`super::context::with_tenant`] or an explicit tenant.
    #[error(
        "no tenant in scope: wrap the call in tenant_mcp::client::with_tenant or pass the tenant explicitly"
    )]
    NoTenant,
    /// The tenant id is not a DNS label; nothing was looked up or built for it.
    #[error("{0}")]
    InvalidTenant(String),
    /// The config source failed to start or sync.
    #[error("config source: {0}")]
    Source(String),
    /// [`super::TenantClients::shutdown`] was called: this instance hands out nothing more
    /// (a process shutting down, or a client being replaced by a new one).
    #[error("the tenant clients are shut down")]
    ShutDown,
}

impl ClientError {
    /// A PascalCase reason for metrics: an `Unavailable` error's condition reason, else the
    /// kind of error.
    pub fn reason(&self) -> &str {
        match self {
            Self::Unavailable { reason, .. } => reason,
            Self::NotConfigured { .. } => "NotConfigured",
            Self::Build { .. } => "BuildFailed",
            Self::WrongKind { .. } => "WrongKind",
            Self::NoTenant => "NoTenant",
            Self::InvalidTenant(_) => "InvalidTenant",
            Self::Source(_) => "SourceError",
            Self::ShutDown => "ShutDown",
        }
    }

    /// Whose server the error is about, when one was chosen.
    pub fn origin(&self) -> Option<Origin> {
        match self {
            Self::Unavailable { origin, .. } => Some(*origin),
            _ => None,
        }
    }

    /// Whether trying again later may succeed without a config change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Source(_))
    }
}
