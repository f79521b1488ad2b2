//! Whether a keyring holds the keys the mirror's rows were sealed with.
//!
//! Key ids are names: a keys Secret regenerated under the same ids (a GitOps renderer that
//! cannot look up the existing Secret renders new random bytes each time) would seal new rows
//! with keys that cannot open the old ones. So the writer records each key's check value
//! ([`Keyring::check_values`], no key material) in `tenant_mcp.key_checks` the first time it
//! seals with it, and a keyring whose key under a recorded id has another check value is
//! refused, naming the id. Ids recorded before this table existed are checked against the
//! rows themselves: a document's content hash made with that key must verify.

use std::collections::BTreeMap;

use sqlx::{PgPool, Row as _};

use super::MirrorError;
use super::connect_or_query;
use super::document::SealedDocument;
use crate::crypto::{CryptoError, Keyring};

/// The table of check values.
pub const KEY_CHECKS_TABLE: &str = "tenant_mcp.key_checks";

/// Rows sampled per unrecorded key id: one that verifies is enough; only when every sampled
/// row fails is the key taken for another one (a single tampered row does not decide it).
const SAMPLE_ROWS: i64 = 3;

/// Checks every key of `keyring` against the recorded check values, and each key id without
/// one against rows sealed with it.
pub async fn verify(pool: &PgPool, keyring: &Keyring) -> Result<(), MirrorError> {
    let recorded = recorded(pool).await?;
    for (kid, check) in keyring.check_values() {
        match recorded.get(kid) {
            Some(stored) if stored != check => {
                return Err(MirrorError::KeyMismatch {
                    kid: kid.to_owned(),
                    evidence: format!(
                        "{KEY_CHECKS_TABLE} records check value {stored} for it, this keyring's key has {check}"
                    ),
                });
            }
            Some(_) => {}
            None => verify_against_rows(pool, keyring, kid).await?,
        }
    }
    Ok(())
}

/// Records the check value of `keyring`'s active key, or confirms the recorded one: a writer
/// calls it before the first row it seals with a key.
pub async fn record_active(pool: &PgPool, keyring: &Keyring) -> Result<(), MirrorError> {
    let kid = keyring.active_id();
    let Some((_, check)) = keyring.check_values().find(|(id, _)| *id == kid) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO tenant_mcp.key_checks (kid, check_value) VALUES ($1, $2)
         ON CONFLICT (kid) DO NOTHING",
    )
    .bind(kid)
    .bind(check)
    .execute(pool)
    .await
    .map_err(|e| connect_or_query(format!("recording the check value of key {kid:?}"), e))?;
    // Another replica may have recorded the id first, with other material.
    let stored: String =
        sqlx::query_scalar("SELECT check_value FROM tenant_mcp.key_checks WHERE kid = $1")
            .bind(kid)
            .fetch_one(pool)
            .await
            .map_err(|e| connect_or_query(format!("reading the check value of key {kid:?}"), e))?;
    if stored == check {
        Ok(())
    } else {
        Err(MirrorError::KeyMismatch {
            kid: kid.to_owned(),
            evidence: format!(
                "{KEY_CHECKS_TABLE} records check value {stored} for it, this keyring's key has {check}"
            ),
        })
    }
}

async fn recorded(pool: &PgPool) -> Result<BTreeMap<String, String>, MirrorError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(KEY_CHECKS_TABLE)
        .fetch_one(pool)
        .await
        .map_err(|e| connect_or_query("reading the mirror schema", e))?;
    if !exists {
        return Err(MirrorError::SchemaMissing {
            what: format!("{KEY_CHECKS_TABLE} does not exist"),
        });
    }
    let rows = sqlx::query("SELECT kid, check_value FROM tenant_mcp.key_checks")
        .fetch_all(pool)
        .await
        .map_err(|e| connect_or_query("reading the key check values", e))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get("kid"), r.get("check_value")))
        .collect())
}

/// Rows whose content hash was made with `kid` must verify under this keyring's `kid`.
async fn verify_against_rows(
    pool: &PgPool,
    keyring: &Keyring,
    kid: &str,
) -> Result<(), MirrorError> {
    let rows = sqlx::query(
        "SELECT tenant_id::text AS tenant, mcp_server_config FROM tenant_configs
          WHERE starts_with(mcp_server_config->>'contentHash', $1)
          ORDER BY tenant_id::text LIMIT $2",
    )
    .bind(format!("hmac-sha256:{kid}:"))
    .bind(SAMPLE_ROWS)
    .fetch_all(pool)
    .await
    .map_err(|e| connect_or_query(format!("reading rows sealed with key {kid:?}"), e))?;
    let mut failed = Vec::new();
    for row in &rows {
        let tenant: String = row.get("tenant");
        let Ok(sealed) = serde_json::from_value::<SealedDocument>(row.get("mcp_server_config"))
        else {
            continue;
        };
        match sealed.open(&tenant, keyring) {
            Ok(document) => {
                if document.content_hash_under(keyring, kid).as_deref()
                    == Some(sealed.content_hash.as_str())
                {
                    return Ok(());
                }
                failed.push(tenant);
            }
            Err(MirrorError::Crypto(CryptoError::Tampered { .. })) => failed.push(tenant),
            // Sealed partly with a key this keyring lacks, or not a document: says nothing
            // about this key.
            Err(_) => {}
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(MirrorError::KeyMismatch {
        kid: kid.to_owned(),
        evidence: format!(
            "the rows of tenants {} were sealed with key {kid:?} and do not verify with this one",
            failed.join(", ")
        ),
    })
}
