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

use super::document::{MirrorDocument, SealedDocument};
use super::{MirrorError, connect_or_query};
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
    /// Whether the stored content hash verifies against the opened content under the key it
    /// names: false when a plain field was changed after the controller wrote the row.
    pub content_verified: bool,
}

/// What a row holds, without opening it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSummary {
    /// The tenant.
    pub tenant: String,
    /// `mcp_config_version`.
    pub version: Option<i64>,
    /// Whether `mcp_server_config` is set (a cleared row keeps its version as a tombstone).
    pub has_document: bool,
}

/// Writes and reads mirrored documents with one connection pool and keyring.
#[derive(Clone, Debug)]
pub struct MirrorWriter {
    pool: PgPool,
    /// Swapped when the keys directory changes ([`super::reload`]); shared by clones.
    keyring: Arc<ArcSwap<Keyring>>,
    /// `$1` as the `tenant_id` column's type (so lookups use its unique index), found when the
    /// schema and keys were first checked.
    checked: Arc<tokio::sync::OnceCell<&'static str>>,
    /// Key ids whose check value is recorded in the database (by this writer or before).
    recorded: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl MirrorWriter {
    /// Checks that the migrations have been applied and that `keyring` holds the keys the
    /// rows were sealed with ([`super::keys::verify`]), and prepares the writer. Writing needs
    /// a role in `tenant_mcp_controller` (only it may change the `mcp_*` columns); reading
    /// works for `tenant_mcp_uber_admin` too.
    pub async fn new(pool: PgPool, keyring: Arc<Keyring>) -> Result<Self, MirrorError> {
        let writer = Self::unchecked(pool, keyring);
        writer.param().await?;
        Ok(writer)
    }

    /// A writer that makes the checks of [`Self::new`] on its first use instead: for a
    /// controller that must start (and promote configs, which do not need the mirror) while
    /// the database is down. Every operation fails until the checks pass.
    pub fn unchecked(pool: PgPool, keyring: Arc<Keyring>) -> Self {
        Self {
            pool,
            keyring: Arc::new(ArcSwap::new(keyring)),
            checked: Arc::default(),
            recorded: Arc::default(),
        }
    }

    /// The schema and keys checked (once): `$1` as the `tenant_id` column's type.
    async fn param(&self) -> Result<&'static str, MirrorError> {
        self.checked
            .get_or_try_init(|| check(&self.pool, self.keyring.load_full()))
            .await
            .copied()
    }

    /// The keyring this writer seals with now.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// Seals with `keyring` from now on (this writer and its clones), once it is checked
    /// against the keys the rows were sealed with; on a mismatch the current keyring stays.
    pub async fn use_keyring(&self, keyring: Arc<Keyring>) -> Result<(), MirrorError> {
        super::keys::verify(&self.pool, &keyring).await?;
        self.keyring.store(keyring);
        Ok(())
    }

    /// Locks `tenant`'s row for the rest of `tx`: its version and document, `None` when there
    /// is no row.
    async fn lock(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        tenant: &str,
        action: &impl Fn() -> String,
    ) -> Result<Option<(Option<i64>, Option<serde_json::Value>)>, MirrorError> {
        let param = self.param().await?;
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT mcp_config_version, mcp_server_config
               FROM tenant_configs WHERE tenant_id = {} FOR UPDATE",
            param
        )))
        .bind(tenant)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| connect_or_query(action(), e))
    }

    /// `document` sealed under the current keyring (its check value recorded first), and as
    /// the JSON stored in the row.
    async fn seal(
        &self,
        document: &MirrorDocument<Credential>,
    ) -> Result<(Arc<Keyring>, SealedDocument, serde_json::Value), MirrorError> {
        let keyring = self.keyring.load_full();
        self.record_active_key(&keyring).await?;
        let sealed = document.seal(&keyring);
        let json = serde_json::to_value(&sealed).map_err(|e| MirrorError::Corrupt {
            tenant: document.tenant_id.clone(),
            problem: e.to_string(),
        })?;
        Ok((keyring, sealed, json))
    }

    /// Records the active key's check value before the first row sealed with it.
    async fn record_active_key(&self, keyring: &Keyring) -> Result<(), MirrorError> {
        let kid = keyring.active_id();
        let known = |r: &std::collections::HashSet<String>| r.contains(kid);
        if known(
            &self
                .recorded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ) {
            return Ok(());
        }
        super::keys::record_active(&self.pool, keyring).await?;
        self.recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(kid.to_owned());
        Ok(())
    }

    /// Stores `document` as its tenant's config at `version`, unless the row holds a newer
    /// version or the same content. The row is locked while it is compared, and "the same
    /// content" means the stored document opens to exactly `document` with a hash that
    /// verifies: a row whose plain fields were changed behind the controller's back is
    /// rewritten, not kept because its hash still matches.
    pub async fn write(
        &self,
        document: &MirrorDocument<Credential>,
        version: i64,
    ) -> Result<WriteOutcome, MirrorError> {
        let param = self.param().await?;
        let tenant = document.tenant_id.as_str();
        let (keyring, sealed, json) = self.seal(document).await?;
        let action = || format!("writing tenant {tenant:?}");
        // Twice at most: a row inserted by another writer between our lock and our insert is
        // locked and compared on the second pass.
        for _ in 0..2 {
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(|e| connect_or_query(action(), e))?;
            let Some((stored_version, stored)) = self.lock(&mut tx, tenant, &action).await? else {
                // Update first, insert only when there is no row: an INSERT … ON CONFLICT
                // would check the NOT NULL columns of the platform's table even for a row
                // that exists.
                let inserted = sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO tenant_configs
                            (tenant_id, mcp_server_config, mcp_config_version, mcp_config_updated_at)
                     VALUES ({}, $2, $3, now())
                     ON CONFLICT (tenant_id) DO NOTHING",
                    param
                )))
                .bind(tenant)
                .bind(&json)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(|e| match required_column(&e) {
                    Some(column) => MirrorError::RowRequired {
                        tenant: tenant.to_owned(),
                        column,
                    },
                    None => connect_or_query(action(), e),
                })?;
                tx.commit()
                    .await
                    .map_err(|e| connect_or_query(action(), e))?;
                if inserted.rows_affected() == 1 {
                    return Ok(WriteOutcome::Inserted);
                }
                continue;
            };
            let same = stored.is_some_and(|stored| {
                holds(tenant, stored, &sealed.content_hash, document, &keyring)
            });
            let outcome = match stored_version {
                Some(stored) if stored > version => {
                    // Newer: leave it. Right as it is when it holds this content.
                    if same {
                        WriteOutcome::Unchanged
                    } else {
                        WriteOutcome::Stale {
                            stored_version: stored,
                        }
                    }
                }
                Some(stored) if stored == version && same => WriteOutcome::Unchanged,
                _ if same => {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE tenant_configs SET mcp_config_version = $2 WHERE tenant_id = {}",
                        param
                    )))
                    .bind(tenant)
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| connect_or_query(action(), e))?;
                    WriteOutcome::Unchanged
                }
                _ => {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE tenant_configs
                            SET mcp_server_config = $2, mcp_config_version = $3,
                                mcp_config_updated_at = now()
                          WHERE tenant_id = {}",
                        param
                    )))
                    .bind(tenant)
                    .bind(&json)
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| connect_or_query(action(), e))?;
                    WriteOutcome::Updated
                }
            };
            tx.commit()
                .await
                .map_err(|e| connect_or_query(action(), e))?;
            return Ok(outcome);
        }
        // Only reachable if the row is inserted and deleted again between our statements.
        Err(MirrorError::query(
            action(),
            sqlx::Error::Protocol("the row kept appearing and disappearing".into()),
        ))
    }

    /// Clears the tenant's document at `version` (the deletion's version), unless the row holds
    /// a newer one. The version stays in the row, so an older write arriving late is refused.
    pub async fn remove(&self, tenant: &str, version: i64) -> Result<WriteOutcome, MirrorError> {
        let param = self.param().await?;
        let action = || format!("removing tenant {tenant:?}");
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| connect_or_query(action(), e))?;
        let current = self.lock(&mut tx, tenant, &action).await?;
        let outcome = match current.map(|(v, doc)| (v, doc.is_some())) {
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
                    param
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

    /// Clears the tenant's document if config `source` wrote it: a config that stopped
    /// serving (its namespace unbound, another config winning the tenant) must not leave its
    /// endpoints in the row while clients have already gone back to the global servers. The
    /// row's version stays, so the config that serves next is not refused as older; a document
    /// another config wrote is left alone.
    pub async fn release(
        &self,
        tenant: &str,
        source: &super::document::ConfigSource,
    ) -> Result<WriteOutcome, MirrorError> {
        let param = self.param().await?;
        let action = || {
            format!(
                "releasing tenant {tenant:?} from {}/{}",
                source.namespace, source.name
            )
        };
        let source = serde_json::to_value(source).map_err(|e| MirrorError::Corrupt {
            tenant: tenant.to_owned(),
            problem: e.to_string(),
        })?;
        let cleared = sqlx::query(AssertSqlSafe(format!(
            "UPDATE tenant_configs
                SET mcp_server_config = NULL, mcp_config_updated_at = now()
              WHERE tenant_id = {param}
                AND mcp_server_config IS NOT NULL
                AND mcp_server_config -> 'source' = $2"
        )))
        .bind(tenant)
        .bind(source)
        .execute(&self.pool)
        .await
        .map_err(|e| connect_or_query(action(), e))?;
        Ok(if cleared.rows_affected() > 0 {
            WriteOutcome::Removed
        } else {
            WriteOutcome::NothingToRemove
        })
    }

    /// The tenant's document, opened, or `None` when the tenant has none.
    pub async fn read(&self, tenant: &str) -> Result<Option<MirrorRow>, MirrorError> {
        let param = self.param().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT mcp_server_config, mcp_config_version,
                    (extract(epoch FROM mcp_config_updated_at) * 1000000)::bigint AS updated_us
               FROM tenant_configs
              WHERE tenant_id = {} AND mcp_server_config IS NOT NULL",
            param
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
        let keyring = self.keyring.load();
        let document = sealed.open(tenant, &keyring)?;
        let content_verified = sealed
            .content_hash
            .strip_prefix("hmac-sha256:")
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(kid, _)| document.content_hash_under(&keyring, kid))
            .is_some_and(|hash| hash == sealed.content_hash);
        Ok(Some(MirrorRow {
            version: version.ok_or_else(|| corrupt("mcp_config_version is missing".into()))?,
            updated_at,
            document,
            content_verified,
        }))
    }

    /// Every row holding a document or a version, in tenant order.
    pub async fn rows(&self) -> Result<Vec<RowSummary>, MirrorError> {
        self.param().await?;
        let rows: Vec<(String, Option<i64>, bool)> = sqlx::query_as(
            "SELECT tenant_id::text, mcp_config_version, mcp_server_config IS NOT NULL
               FROM tenant_configs
              WHERE mcp_server_config IS NOT NULL OR mcp_config_version IS NOT NULL
              ORDER BY tenant_id::text",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| connect_or_query("listing mirror rows", e))?;
        Ok(rows
            .into_iter()
            .map(|(tenant, version, has_document)| RowSummary {
                tenant,
                version,
                has_document,
            })
            .collect())
    }

    /// Stores `document` at `version` whatever the row holds (the version guard is what a
    /// repair has to get past): for `tenant-mcp mirror verify --repair`, never the reconcile.
    pub async fn force_write(
        &self,
        document: &MirrorDocument<Credential>,
        version: i64,
    ) -> Result<(), MirrorError> {
        let param = self.param().await?;
        let tenant = document.tenant_id.as_str();
        let (_, _, json) = self.seal(document).await?;
        let updated = sqlx::query(AssertSqlSafe(format!(
            "UPDATE tenant_configs
                SET mcp_server_config = $2, mcp_config_version = $3, mcp_config_updated_at = now()
              WHERE tenant_id = {}",
            param
        )))
        .bind(tenant)
        .bind(&json)
        .bind(version)
        .execute(&self.pool)
        .await
        .map_err(|e| connect_or_query(format!("repairing tenant {tenant:?}"), e))?;
        if updated.rows_affected() == 0 {
            self.write(document, version).await?;
        }
        Ok(())
    }

    /// Clears `tenant`'s document and sets its version to `version` whatever the row holds:
    /// for a row no config serves (`tenant-mcp mirror verify --repair`).
    pub async fn force_clear(&self, tenant: &str, version: i64) -> Result<(), MirrorError> {
        let param = self.param().await?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE tenant_configs
                SET mcp_server_config = NULL, mcp_config_version = $2, mcp_config_updated_at = now()
              WHERE tenant_id = {}",
            param
        )))
        .bind(tenant)
        .bind(version)
        .execute(&self.pool)
        .await
        .map_err(|e| connect_or_query(format!("clearing tenant {tenant:?}"), e))?;
        Ok(())
    }
}

/// The checks of [`MirrorWriter::new`]: the migrations applied, the keys those the rows were
/// sealed with; `$1` as the `tenant_id` column's type.
async fn check(pool: &PgPool, keyring: Arc<Keyring>) -> Result<&'static str, MirrorError> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
           FROM pg_attribute a
          WHERE a.attrelid = to_regclass('tenant_configs') AND a.attnum > 0
            AND NOT a.attisdropped
            AND a.attname IN ('tenant_id', 'mcp_server_config', 'mcp_config_version',
                              'mcp_config_updated_at')",
    )
    .fetch_all(pool)
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
    super::keys::verify(pool, &keyring).await?;
    Ok(if uuid { "$1::uuid" } else { "$1" })
}

/// Whether `stored` (a row's document) holds exactly `document`: the same content hash, and
/// opening to the same content (so plain fields changed behind the hash's back count as
/// different).
fn holds(
    tenant: &str,
    stored: serde_json::Value,
    hash: &str,
    document: &MirrorDocument<Credential>,
    keyring: &Keyring,
) -> bool {
    let Ok(sealed) = serde_json::from_value::<SealedDocument>(stored) else {
        return false;
    };
    sealed.content_hash == hash && sealed.open(tenant, keyring).is_ok_and(|d| d == *document)
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
