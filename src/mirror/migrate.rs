//! The embedded, reversible schema migrations (`migrations/*.up.sql` / `*.down.sql`) behind
//! `tenant-mcp migrate up|down|status`.
//!
//! Bookkeeping lives in the `tenant_mcp` schema (`tenant_mcp._sqlx_migrations`), never in the
//! platform's `_sqlx_migrations`, so tenant-mcp's migrations and the platform's own never see
//! each other's versions.

use std::collections::BTreeMap;

use sqlx::AssertSqlSafe;
use sqlx::migrate::Migrator;
use sqlx::{PgPool, Row as _};

use super::MirrorError;

/// The schema holding tenant-mcp's migration bookkeeping.
pub const SCHEMA: &str = "tenant_mcp";
/// The table recording applied migrations.
pub const MIGRATIONS_TABLE: &str = "tenant_mcp._sqlx_migrations";

/// The migrations compiled into this binary, set up to record themselves in
/// [`MIGRATIONS_TABLE`].
pub fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.create_schema(SCHEMA);
    migrator
}

/// One migration and whether it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Version (the file name's number).
    pub version: i64,
    /// Description (the file name's words).
    pub description: String,
    /// Whether the database has it applied.
    pub applied: bool,
}

/// Applies every pending migration.
pub async fn up(pool: &PgPool) -> Result<(), MirrorError> {
    migrator().run(pool).await.map_err(MirrorError::Migrate)
}

/// Reverts applied migrations newer than `target` (0 reverts all), newest first.
pub async fn down_to(pool: &PgPool, target: i64) -> Result<(), MirrorError> {
    migrator()
        .undo(pool, target)
        .await
        .map_err(MirrorError::Migrate)
}

/// The version `down` without a target goes back to: the one before the newest applied
/// migration (0 when only the first is applied), or `None` when nothing is applied.
pub async fn previous_version(pool: &PgPool) -> Result<Option<i64>, MirrorError> {
    let status = status(pool).await?;
    let applied: Vec<i64> = status
        .iter()
        .filter(|m| m.applied)
        .map(|m| m.version)
        .collect();
    Ok(applied
        .last()
        .map(|_| applied.iter().rev().nth(1).copied().unwrap_or(0)))
}

/// Every known migration with whether it is applied. Changes nothing in the database.
pub async fn status(pool: &PgPool) -> Result<Vec<MigrationStatus>, MirrorError> {
    let table_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(MIGRATIONS_TABLE)
        .fetch_one(pool)
        .await
        .map_err(|e| MirrorError::query("reading the migration table", e))?;
    let mut applied = BTreeMap::new();
    if table_exists {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT version, success FROM {MIGRATIONS_TABLE} ORDER BY version"
        )))
        .fetch_all(pool)
        .await
        .map_err(|e| MirrorError::query("reading the migration table", e))?;
        for row in rows {
            let version: i64 = row.get("version");
            let success: bool = row.get("success");
            applied.insert(version, success);
        }
    }
    let migrator = migrator();
    Ok(migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationStatus {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.get(&m.version).copied().unwrap_or(false),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_is_reversible() {
        let migrator = migrator();
        let ups: Vec<i64> = migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .collect();
        let downs: Vec<i64> = migrator
            .iter()
            .filter(|m| m.migration_type.is_down_migration())
            .map(|m| m.version)
            .collect();
        assert!(!ups.is_empty());
        assert_eq!(ups, downs, "each up migration needs a down migration");
    }
}
