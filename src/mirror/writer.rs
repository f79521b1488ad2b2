//! Writes tenants' documents into `tenant_configs`, the controller's side of the mirror.
//!
//! Every write carries a version that must grow with the cluster state the document reflects
//! (the controller passes the newest `resourceVersion` among the config and the snapshot
//! Secrets it was built from). A row is never set back to an older version, so a replica that
//! lost its leadership mid-write cannot overwrite what the new leader wrote. A document whose
//! content hash equals the stored one is not rewritten.
//!
//! Removing a tenant's config clears tenant-mcp's columns and keeps the version as a tombstone;
//! the row itself stays, since the platform may keep other settings in it.

use std::sync::Arc;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgDatabaseError;
use sqlx::{PgPool, Row as _};

use super::MirrorError;
use super::document::{MirrorDocument, SealedDocument};
use crate::config::Credential;
use arc_swap::ArcSwap;

use crate::crypto::Keyring;

/// What a write or removal did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new row was created.
    Inserted,
    /// The row now holds the new document.
    Updated,
    /// The stored document already had this content (its version may have moved forward).
    Unchanged,
    /// The row holds a newer version; nothing was changed.
    Stale {
        /// The version found in the row.
        stored_version: i64,
    },
    /// The document was cleared.
    Removed,
    /// There was no document to clear.
    NothingToRemove,
}

/// A tenant's mirrored document, opened.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorRow {
    /// The row's version.
    pub version: i64,
    /// When the document last changed.
    pub updated_at: jiff::Timestamp,
    /// The document with its credentials.
    pub document: MirrorDocument<Credential>,
}

/// Writes and reads mirrored documents with one connection pool and keyring.
#[derive(Clone, Debug)]
pub struct MirrorWriter {
    pool: PgPool,
    /// Swapped when the keys directory changes ([`super::reload`]); shared by clones.
    keyring: Arc<ArcSwap<Keyring>>,
    /// `$1` as the `tenant_id` column's type, so lookups use its unique index.
    tenant_param: &'static str,
}

impl MirrorWriter {
    /// Checks that the migrations have been applied and prepares the writer. The pool's role
    /// needs `tenant_mcp_controller` (or to own the table and set `app.tenant_id`).
    pub async fn new(pool: PgPool, keyring: Arc<Keyring>) -> Result<Self, MirrorError> {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a
              WHERE a.attrelid = to_regclass('tenant_configs') AND a.attnum > 0
                AND NOT a.attisdropped
                AND a.attname IN ('tenant_id', 'mcp_server_config', 'mcp_config_version',
                                  'mcp_config_updated_at')",
        )
        .fetch_all(&pool)
        .await
        .map_err(|e| connect_or_query("reading the tenant_configs schema", e))?;
        for needed in [
            "tenant_id",
            "mcp_server_config",
            "mcp_config_version",
            "mcp_config_updated_at",
        ] {
            if !columns.iter().any(|(name, _)| name == needed) {
                return Err(MirrorError::SchemaMissing {
                    what: format!("tenant_configs.{needed} does not exist"),
                });
            }
        }
        let uuid = columns
            .iter()
            .any(|(name, ty)| name == "tenant_id" && ty == "uuid");
        Ok(Self {
            pool,
            keyring: Arc::new(ArcSwap::new(keyring)),
            tenant_param: if uuid { "$1::uuid" } else { "$1" },
        })
    }

    /// The keyring this writer seals with now.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// Seals with `keyring` from now on (this writer and its clones).
    pub fn set_keyring(&self, keyring: Arc<Keyring>) {
        self.keyring.store(keyring);
    }

    /// Stores `document` as its tenant's config at `version`, unless the row holds a newer
    /// version or the same content.
    pub async fn write(
        &self,
        document: &MirrorDocument<Credential>,
        version: i64,
    ) -> Result<WriteOutcome, MirrorError> {
        let tenant = document.tenant_id.as_str();
        let sealed = document.seal(&self.keyring.load());
        let json = serde_json::to_value(&sealed).map_err(|e| MirrorError::Corrupt {
            tenant: tenant.to_owned(),
            problem: e.to_string(),
        })?;
        let hash = sealed.content_hash.clone();
        // Update first: an INSERT … ON CONFLICT would check the NOT NULL columns of the
        // platform's table even for a row that exists. Insert only when there is no row, and
        // if another writer inserts it at the same moment, update that row instead.
        for _ in 0..2 {
            if let Some(outcome) = self.update(tenant, &json, &hash, version).await? {
                return Ok(outcome);
            }
            if let Some(stored) = self.stored_version(tenant).await? {
                // The row exists and was not updated: it is newer, or has the same content.
                return Ok(match stored {
                    Some(stored) if stored > version => WriteOutcome::Stale {
                        stored_version: stored,
                    },
                    _ => WriteOutcome::Unchanged,
                });
            }
            let inserted = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO tenant_configs
                        (tenant_id, mcp_server_config, mcp_config_version, mcp_config_updated_at)
                 VALUES ({}, $2, $3, now())
                 ON CONFLICT (tenant_id) DO NOTHING",
                self.tenant_param
            )))
            .bind(tenant)
            .bind(&json)
            .bind(version)
            .execute(&self.pool)
            .await
            .map_err(|e| match required_column(&e) {
                Some(column) => MirrorError::RowRequired {
                    tenant: tenant.to_owned(),
                    column,
                },
                None => connect_or_query(format!("writing tenant {tenant:?}"), e),
            })?;
            if inserted.rows_affected() == 1 {
                return Ok(WriteOutcome::Inserted);
            }
        }
        // Only reachable if the row is inserted and deleted again between our statements.
        Err(MirrorError::query(
            format!("writing tenant {tenant:?}"),
            sqlx::Error::Protocol("the row kept appearing and disappearing".into()),
        ))
    }

    /// Updates an existing row if the version guard allows: `Some(Updated)` when the content
    /// changed, `Some(Unchanged)` when only the version moved, `None` when no row was updated.
    async fn update(
        &self,
        tenant: &str,
        json: &serde_json::Value,
        hash: &str,
        version: i64,
    ) -> Result<Option<WriteOutcome>, MirrorError> {
        let same = "coalesce(mcp_server_config->>'contentHash' = $4, false)";
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE tenant_configs SET
                 mcp_server_config = CASE WHEN {same} THEN mcp_server_config ELSE $2 END,
                 mcp_config_updated_at = CASE WHEN {same} THEN mcp_config_updated_at
                                              ELSE now() END,
                 mcp_config_version = $3
              WHERE tenant_id = {tenant}
                AND (mcp_config_version IS NULL OR mcp_config_version < $3
                     OR (mcp_config_version = $3 AND NOT {same}))
              RETURNING mcp_config_updated_at = now() AS changed",
            tenant = self.tenant_param,
        )))
        .bind(tenant)
        .bind(json)
        .bind(version)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| connect_or_query(format!("writing tenant {tenant:?}"), e))?;
        Ok(row.map(|row| {
            if row.get::<bool, _>("changed") {
                WriteOutcome::Updated
            } else {
                WriteOutcome::Unchanged
            }
        }))
    }

    /// Clears the tenant's document at `version` (the deletion's version), unless the row holds
    /// a newer one. The version stays in the row, so an older write arriving late is refused.
    pub async fn remove(&self, tenant: &str, version: i64) -> Result<WriteOutcome, MirrorError> {
        let action = || format!("removing tenant {tenant:?}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| connect_or_query(action(), e))?;
        let current: Option<(Option<i64>, bool)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT mcp_config_version, mcp_server_config IS NOT NULL
               FROM tenant_configs WHERE tenant_id = {} FOR UPDATE",
            self.tenant_param
        )))
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| connect_or_query(action(), e))?;
        let outcome = match current {
            None => WriteOutcome::NothingToRemove,
            Some((Some(stored), _)) if stored > version => WriteOutcome::Stale {
                stored_version: stored,
            },
            Some((_, had_document)) => {
                sqlx::query(AssertSqlSafe(format!(
                    "UPDATE tenant_configs
                        SET mcp_server_config = NULL, mcp_config_version = $2,
                            mcp_config_updated_at = now()
                      WHERE tenant_id = {}",
                    self.tenant_param
                )))
                .bind(tenant)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(|e| connect_or_query(action(), e))?;
                if had_document {
                    WriteOutcome::Removed
                } else {
                    WriteOutcome::NothingToRemove
                }
            }
        };
        tx.commit()
            .await
            .map_err(|e| connect_or_query(action(), e))?;
        Ok(outcome)
    }

    /// The tenant's document, opened, or `None` when the tenant has none.
    pub async fn read(&self, tenant: &str) -> Result<Option<MirrorRow>, MirrorError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT mcp_server_config, mcp_config_version,
                    (extract(epoch FROM mcp_config_updated_at) * 1000000)::bigint AS updated_us
               FROM tenant_configs
              WHERE tenant_id = {} AND mcp_server_config IS NOT NULL",
            self.tenant_param
        )))
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| connect_or_query(format!("reading tenant {tenant:?}"), e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let corrupt = |problem: String| MirrorError::Corrupt {
            tenant: tenant.to_owned(),
            problem,
        };
        let json: serde_json::Value = row.get("mcp_server_config");
        let sealed: SealedDocument =
            serde_json::from_value(json).map_err(|e| corrupt(e.to_string()))?;
        let version: Option<i64> = row.get("mcp_config_version");
        let updated_us: Option<i64> = row.get("updated_us");
        let updated_at = updated_us
            .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
            .ok_or_else(|| corrupt("mcp_config_updated_at is missing".into()))?;
        Ok(Some(MirrorRow {
            version: version.ok_or_else(|| corrupt("mcp_config_version is missing".into()))?,
            updated_at,
            document: sealed.open(tenant, &self.keyring.load())?,
        }))
    }

    /// `None` when the tenant has no row; `Some(version)` otherwise.
    async fn stored_version(&self, tenant: &str) -> Result<Option<Option<i64>>, MirrorError> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT mcp_config_version FROM tenant_configs WHERE tenant_id = {}",
            self.tenant_param
        )))
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| connect_or_query(format!("reading tenant {tenant:?}"), e))
    }
}

/// The version of `tenant`'s mirror row, without opening it (no keys needed): `None` when the
/// tenant has no row. For `tenant-mcp status`; the login must be allowed to read the row.
pub async fn row_version(pool: &PgPool, tenant: &str) -> Result<Option<i64>, MirrorError> {
    let version: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT mcp_config_version FROM tenant_configs
          WHERE tenant_id::text = $1 AND mcp_server_config IS NOT NULL",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
    .map_err(|e| connect_or_query(format!("reading tenant {tenant:?}"), e))?;
    Ok(version.flatten())
}

/// The column of a NOT NULL violation, when that is what `error` is.
fn required_column(error: &sqlx::Error) -> Option<String> {
    let db = error.as_database_error()?;
    if db.code().as_deref() != Some("23502") {
        return None;
    }
    let column = db
        .try_downcast_ref::<PgDatabaseError>()
        .and_then(|pg| pg.column())
        .unwrap_or("unknown");
    Some(column.to_owned())
}

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
