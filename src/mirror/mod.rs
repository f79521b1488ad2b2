//! The Postgres mirror: each tenant's active config as JSON in
//! `tenant_configs.mcp_server_config`, credentials sealed with [`crate::crypto`], rows isolated
//! by row-level security.
//!
//! - [`migrate`]: the embedded reversible migrations (`tenant-mcp migrate`);
//! - [`document`]: the mirrored document and its sealed form;
//! - [`writer`]: version-guarded, change-detecting upserts and removals (the controller's side);
//! - [`keys`]: whether a keyring holds the keys the rows were sealed with;
//! - [`rotate`]: re-encryption of every row under the active key (`tenant-mcp keys rotate`).
//!
//! Nothing here talks to Kubernetes, and no credential reaches a log line or an error.

pub mod document;
pub mod keys;
pub mod migrate;
pub mod reload;
pub mod rotate;
pub mod writer;

pub use document::{
    ConfigSource, DOCUMENT_FORMAT, McpSecrets, MirrorDocument, MirrorServers, MirrorState,
    MirroredServer, PostgresSecrets, S3Secrets, SealedDocument,
};
pub use rotate::{RotationReport, rotate_keys};
pub use writer::{MirrorRow, MirrorWriter, RowSummary, WriteOutcome, row_version};

use crate::crypto::CryptoError;

/// Why a mirror operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// Postgres could not be reached or refused the login.
    #[error("connecting to the mirror database: {0}")]
    Connect(#[source] sqlx::Error),
    /// A statement failed.
    #[error("{action}: {source}")]
    Query {
        /// What was being done.
        action: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The schema lacks what the mirror needs.
    #[error("{what}: run `tenant-mcp migrate up` against this database first")]
    SchemaMissing {
        /// What is missing.
        what: String,
    },
    /// The tenant has no row and a new one needs columns only the platform can fill.
    #[error(
        "tenant {tenant:?} has no tenant_configs row and a new row needs column {column:?}, which only the platform fills: create the tenant's row first"
    )]
    RowRequired {
        /// The tenant.
        tenant: String,
        /// The NOT NULL column without a default.
        column: String,
    },
    /// A stored document is not a document this version can read.
    #[error("tenant {tenant:?}: stored mcp_server_config is not a {format} document: {problem}", format = DOCUMENT_FORMAT)]
    Corrupt {
        /// The row's tenant.
        tenant: String,
        /// What is wrong.
        problem: String,
    },
    /// A stored document belongs to another tenant than its row.
    #[error(
        "row of tenant {row_tenant:?} holds a document of tenant {document_tenant:?}: it was copied between rows, refusing to open it"
    )]
    WrongRow {
        /// The row's tenant.
        row_tenant: String,
        /// The tenant the document names.
        document_tenant: String,
    },
    /// A credential could not be opened.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The keyring holds other key material under an id the mirror has sealed with.
    #[error(
        "key id `{kid}` holds different key material than the mirror's rows were sealed with ({evidence}): the keys Secret was regenerated under the same id. Restore the original key `{kid}` (from a backup of the Secret); if it is lost, remove `{kid}` from the keys Secret and make a new key id active, and the controller rewrites the rows from the cluster"
    )]
    KeyMismatch {
        /// The key id.
        kid: String,
        /// How it was found out.
        evidence: String,
    },
    /// A row holds a newer version than the controller's: nothing the controller writes can
    /// replace it until `tenant-mcp mirror verify --repair` resets it.
    #[error(
        "the mirror row of tenant {tenant:?} is at version {stored}, ahead of the cluster's {version}, and holds other content: it was changed outside the controller. Run `tenant-mcp mirror verify --repair`"
    )]
    VersionAhead {
        /// The tenant.
        tenant: String,
        /// The version in the row.
        stored: i64,
        /// The version the controller wrote with.
        version: i64,
    },
}

/// A failed database call as a [`MirrorError`]: `Connect` when the database could not be
/// reached (retryable), `Query` with `action` otherwise.
pub(crate) fn connect_or_query(action: impl Into<String>, error: sqlx::Error) -> MirrorError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            MirrorError::Connect(error)
        }
        error => MirrorError::Query {
            action: action.into(),
            source: error,
        },
    }
}

impl MirrorError {
    pub(crate) fn query(action: impl Into<String>, source: sqlx::Error) -> Self {
        Self::Query {
            action: action.into(),
            source,
        }
    }

    /// A PascalCase reason for conditions, events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Connect(_) => "DatabaseUnreachable",
            Self::Query { .. } => "DatabaseError",
            Self::Migrate(_) => "MigrationFailed",
            Self::SchemaMissing { .. } => "SchemaMissing",
            Self::RowRequired { .. } => "TenantRowMissing",
            Self::Corrupt { .. } | Self::WrongRow { .. } => "MirrorCorrupt",
            Self::Crypto(e) => e.reason(),
            Self::KeyMismatch { .. } => "KeyMismatch",
            Self::VersionAhead { .. } => "MirrorVersionAhead",
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect(_) => true,
            Self::Query { source, .. } => is_transient(source),
            _ => false,
        }
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Serialization failures, deadlocks, connection and resource errors, shutdown.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}
