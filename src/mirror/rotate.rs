//! Key rotation: re-seal every mirrored document that still uses a key other than the active
//! one (`tenant-mcp keys rotate`).
//!
//! Rows are processed in tenant order, a batch at a time, each row in its own statement, so an
//! interrupted run loses nothing and the next run simply finds the rows still left. A row is
//! replaced only if nobody changed it since it was read (same version and content hash); a row
//! a writer changed meanwhile was sealed by that writer and is checked again on the next run.
//! Rotation changes neither the version nor `mcp_config_updated_at`: the content is the same.

use sqlx::AssertSqlSafe;
use sqlx::{PgPool, Row as _};

use super::MirrorError;
use super::connect_or_query;
use super::document::SealedDocument;
use crate::crypto::{ENVELOPE_FORMAT, Keyring};

/// What a rotation run did.
#[derive(Debug, Default)]
pub struct RotationReport {
    /// Rows re-sealed under the active key.
    pub rotated: u64,
    /// Rows a concurrent writer changed while they were being rotated.
    pub raced: u64,
    /// Rows that could not be opened, with why (e.g. a key already removed from the keyring).
    pub failed: Vec<(String, MirrorError)>,
    /// Rows that still use another key after this run.
    pub remaining: u64,
}

impl RotationReport {
    /// True when every row now uses the active key.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.remaining == 0
    }
}

/// Rows whose document uses a key other than `$1` (the active id), or a content hash made with
/// another key. `$2` is the content hash prefix of the active key.
const NEEDS_ROTATION: &str = "mcp_server_config IS NOT NULL AND (
        NOT starts_with(coalesce(mcp_server_config->>'contentHash', ''), $2)
        OR jsonb_path_exists(mcp_server_config, '$.** ? (@.enc == $enc && @.kid != $kid)',
                             jsonb_build_object('enc', $3::text, 'kid', $1::text)))";

/// Re-seals every document that uses another key than the keyring's active one, `batch_size`
/// rows per query, calling `progress` after each batch with the running report.
pub async fn rotate_keys(
    pool: &PgPool,
    keyring: &Keyring,
    batch_size: i64,
    mut progress: impl FnMut(&RotationReport),
) -> Result<RotationReport, MirrorError> {
    // A keyring whose key under an id the rows use is another key would seal rows nobody
    // could open with the old one again.
    super::keys::verify(pool, keyring).await?;
    super::keys::record_active(pool, keyring).await?;
    let active = keyring.active_id();
    let hash_prefix = format!("hmac-sha256:{active}:");
    let mut report = RotationReport::default();
    let mut after = String::new();
    loop {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT tenant_id::text AS tenant, mcp_server_config, mcp_config_version
               FROM tenant_configs
              WHERE {NEEDS_ROTATION} AND tenant_id::text > $4
              ORDER BY tenant_id::text
              LIMIT $5"
        )))
        .bind(active)
        .bind(&hash_prefix)
        .bind(ENVELOPE_FORMAT)
        .bind(&after)
        .bind(batch_size.max(1))
        .fetch_all(pool)
        .await
        .map_err(|e| connect_or_query("finding rows to rotate", e))?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.get("tenant");
        for row in rows {
            let tenant: String = row.get("tenant");
            let version: Option<i64> = row.get("mcp_config_version");
            let json: serde_json::Value = row.get("mcp_server_config");
            match reseal(&tenant, json, keyring) {
                Ok((old_hash, new_json)) => {
                    let updated = sqlx::query(
                        "UPDATE tenant_configs SET mcp_server_config = $2
                          WHERE tenant_id::text = $1
                            AND mcp_config_version IS NOT DISTINCT FROM $3
                            AND mcp_server_config->>'contentHash' = $4",
                    )
                    .bind(&tenant)
                    .bind(new_json)
                    .bind(version)
                    .bind(old_hash)
                    .execute(pool)
                    .await
                    .map_err(|e| connect_or_query(format!("rotating tenant {tenant:?}"), e))?;
                    if updated.rows_affected() == 1 {
                        report.rotated += 1;
                    } else {
                        report.raced += 1;
                    }
                }
                Err(error) => report.failed.push((tenant, error)),
            }
        }
        progress(&report);
    }
    report.remaining = sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
        "SELECT count(*) FROM tenant_configs WHERE {NEEDS_ROTATION}"
    )))
    .bind(active)
    .bind(&hash_prefix)
    .bind(ENVELOPE_FORMAT)
    .fetch_one(pool)
    .await
    .map_err(|e| connect_or_query("counting rows left to rotate", e))?
    .try_into()
    .unwrap_or(u64::MAX);
    Ok(report)
}

/// The old content hash and the document re-sealed under the active key.
fn reseal(
    tenant: &str,
    json: serde_json::Value,
    keyring: &Keyring,
) -> Result<(String, serde_json::Value), MirrorError> {
    let corrupt = |problem: String| MirrorError::Corrupt {
        tenant: tenant.to_owned(),
        problem,
    };
    let sealed: SealedDocument =
        serde_json::from_value(json).map_err(|e| corrupt(e.to_string()))?;
    let document = sealed.open(tenant, keyring)?;
    let resealed = document.seal(keyring);
    let json = serde_json::to_value(&resealed).map_err(|e| corrupt(e.to_string()))?;
    Ok((sealed.content_hash, json))
}
