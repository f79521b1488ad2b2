//! The mirror on a real Postgres: row-level security per session kind, the version-guarded
//! writer, tampering detected, key rotation (library and `tenant-mcp keys rotate`), racing
//! writers, and the Python reference decrypting rows Rust wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection, PgPool};
use tenant_mcp::config::Credential;
use tenant_mcp::crypto::Keyring;
use tenant_mcp::mirror::{MirrorDocument, MirrorState, MirrorWriter, WriteOutcome, rotate_keys};
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::Postgres;
use tenant_mcp_e2e::stack::repo_root;

/// A tenant's document with every kind of credential, in plaintext JSON form (credentials as
/// strings), so tests can compare against what a reader decrypts.
fn plain_json(tenant: &str, password: &str) -> Value {
    let active = |spec: Value| {
        json!({"spec": spec, "snapshotSecret": format!("{tenant}-snap"), "specHash": "sha256:00",
               "promotedAt": "2026-11-24T10:00:00Z"})
    };
    let with = |mut server: Value, credentials: Value| {
        server["credentials"] = credentials;
        server
    };
    json!({
        "tenantId": tenant,
        "state": "active",
        "source": {"namespace": format!("tenant-{tenant}"), "name": tenant},
        "servers": {
            "postgres": with(active(json!({"host": format!("db.{tenant}.internal"), "port": 5432,
                    "database": "rag", "sslMode": "verify-full",
                    "credentialsSecretRef": {"name": "pg"}})),
                json!({"username": "app", "password": password})),
            "minio": with(active(json!({"endpoint": "https://minio.internal", "region": "us-east-1",
                    "bucket": format!("{tenant}-docs"), "forcePathStyle": true,
                    "credentialsSecretRef": {"name": "s3"}})),
                json!({"accessKeyId": "AKID", "secretAccessKey": format!("s3-{password}")})),
            "aiMcpServer": with(active(json!({"url": "https://ai.internal/mcp", "timeoutSeconds": 30,
                    "tenantRouting": {"mode": "Header", "headerName": "X-Tenant-Id"},
                    "headers": [{"name": "X-Api-Key", "valueFrom": {"name": "ai", "key": "k"}}]})),
                json!({"bearerToken": format!("ai-{password}"), "headers": {"X-Api-Key": "ключ-✓"}})),
            "mcpServers": {"search": with(active(json!({"name": "search", "url": "https://search.internal/mcp",
                    "timeoutSeconds": 30, "tenantRouting": {"mode": "None"}})),
                json!({"bearerToken": "search-token"}))}
        }
    })
}

/// `plain_json` as the Rust types write it back (defaults filled in).
fn normalized_json(tenant: &str, password: &str) -> Value {
    let plain: MirrorDocument<String> =
        serde_json::from_value(plain_json(tenant, password)).unwrap();
    serde_json::to_value(plain).unwrap()
}

fn document(tenant: &str, password: &str) -> MirrorDocument<Credential> {
    let plain: MirrorDocument<String> =
        serde_json::from_value(plain_json(tenant, password)).unwrap();
    plain
        .try_map::<_, std::convert::Infallible>(|_, s| Ok(Credential::new(s.clone())))
        .unwrap()
}

fn keys_dir(entries: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in entries {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    dir
}

const K1: &str = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=";
const K2: &str = "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI=";
const K3: &str = "MzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzM=";

fn ring(dir: &Path) -> Arc<Keyring> {
    Arc::new(Keyring::from_dir(dir).unwrap())
}

async fn writer(url: &str, keyring: Arc<Keyring>) -> MirrorWriter {
    MirrorWriter::new(PgPool::connect(url).await.unwrap(), keyring)
        .await
        .unwrap()
}

async fn raw(db: &MirrorDatabase, tenant: &str) -> (Option<Value>, Option<i64>) {
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    sqlx::query_as(
        "SELECT mcp_server_config, mcp_config_version FROM tenant_configs WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

async fn set_raw(db: &MirrorDatabase, tenant: &str, value: &Value) {
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    sqlx::query("UPDATE tenant_configs SET mcp_server_config = $2 WHERE tenant_id = $1")
        .bind(tenant)
        .bind(value)
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn row_level_security_confines_every_kind_of_session() {
    let pg = Postgres::start().unwrap();
    let db = MirrorDatabase::create(&pg, "rls").await.unwrap();
    let mut admin = PgConnection::connect(&db.admin_url).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO tenant_configs (tenant_id, mcp_server_config, mcp_config_version)
         VALUES ('acme', '{\"n\": 1}', 1), ('globex', '{\"n\": 2}', 1)",
    )
    .execute(&mut admin)
    .await
    .unwrap();

    let count = |sql: &'static str| sql;
    let mut app = PgConnection::connect(&db.app_url).await.unwrap();
    // No tenant set: nothing.
    let n: i64 = sqlx::query_scalar(count("SELECT count(*) FROM tenant_configs"))
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(n, 0);
    sqlx::query("SET app.tenant_id = 'acme'")
        .execute(&mut app)
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM tenant_configs")
        .fetch_all(&mut app)
        .await
        .unwrap();
    assert_eq!(seen, ["acme"]);
    for statement in [
        "UPDATE tenant_configs SET mcp_config_version = 99 WHERE tenant_id = 'globex'",
        "DELETE FROM tenant_configs WHERE tenant_id = 'globex'",
    ] {
        let done = sqlx::query(statement).execute(&mut app).await.unwrap();
        assert_eq!(done.rows_affected(), 0, "{statement}");
    }
    for statement in [
        "INSERT INTO tenant_configs (tenant_id) VALUES ('initech')",
        "UPDATE tenant_configs SET tenant_id = 'globex2' WHERE tenant_id = 'acme'",
    ] {
        let err = sqlx::query(statement).execute(&mut app).await.unwrap_err();
        let db_err = err.as_database_error().unwrap();
        assert_eq!(
            db_err.code().as_deref(),
            Some("42501"),
            "{statement}: {err}"
        );
        // Moving acme's row (it holds a mirror document) meets migration 5's guard before
        // row-level security's check.
        assert!(
            err.to_string().contains("row-level security")
                || err.to_string().contains("may not move the row"),
            "{err}"
        );
    }
    let own = sqlx::query("UPDATE tenant_configs SET created_at = now() WHERE tenant_id = 'acme'")
        .execute(&mut app)
        .await
        .unwrap();
    assert_eq!(own.rows_affected(), 1, "a tenant changes its own row");
    // A transaction-local tenant ends with the transaction.
    sqlx::query("RESET app.tenant_id")
        .execute(&mut app)
        .await
        .unwrap();
    let mut tx = app.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', 'globex', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM tenant_configs")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, ["globex"]);
    tx.commit().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_configs")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(n, 0);

    // The table owner is not exempt (FORCE ROW LEVEL SECURITY).
    let mut owner = PgConnection::connect(&db.owner_url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_configs")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(n, 0, "the owner sees nothing without a tenant");

    // The uber admin reads everything and writes nothing.
    let mut uber = PgConnection::connect(&db.uber_admin_url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_configs")
        .fetch_one(&mut uber)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let err = sqlx::query("UPDATE tenant_configs SET mcp_config_version = 5")
        .execute(&mut uber)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("42501")
    );

    // The controller reads and writes tenant-mcp's columns of every row, and nothing else.
    let mut controller = PgConnection::connect(&db.controller_url).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(mcp_server_config) FROM tenant_configs")
        .fetch_one(&mut controller)
        .await
        .unwrap();
    assert_eq!(n, 2);
    for statement in [
        "SELECT created_at FROM tenant_configs",
        "DELETE FROM tenant_configs WHERE tenant_id = 'acme'",
        "UPDATE tenant_configs SET tenant_id = 'x' WHERE tenant_id = 'acme'",
    ] {
        let err = sqlx::query(statement)
            .execute(&mut controller)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{statement}: {err}"
        );
    }

    // None of the application roles can switch row security off.
    let bypass: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles
          WHERE rolname LIKE 'app_%' OR rolname LIKE 'controller_%' OR rolname LIKE 'uber_%'
             OR rolname LIKE 'tenant_mcp_%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(bypass.len(), 6);
    assert!(bypass.iter().all(|(_, su, by)| !su && !by), "{bypass:?}");
}

/// The threat-model line "platform database roles other than `tenant_mcp_controller` must
/// never change the `mcp_*` columns": the platform's app role may UPDATE its tenant's row (RLS
/// lets it), so it tries to rewrite the endpoints, freeze the version at i64::MAX, or create a
/// row with a document of its choosing; the table owner tries the same. The platform's own
/// columns and rows stay theirs, and the controller still writes.
#[tokio::test]
async fn only_the_controller_changes_the_mcp_columns() {
    let pg = Postgres::start().unwrap();
    let db = MirrorDatabase::create(&pg, "guard").await.unwrap();
    let keys = keys_dir(&[("k1", K1), ("active", "k1")]);
    let controller = writer(&db.controller_url, ring(keys.path())).await;
    assert_eq!(
        controller
            .write(&document("acme", "pw-1"), 10)
            .await
            .unwrap(),
        WriteOutcome::Inserted
    );
    let before = raw(&db, "acme").await;

    let denied = |e: sqlx::Error| {
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{e}");
        assert!(e.to_string().contains("mcp_server_config"), "{e}");
    };
    for url in [&db.app_url, &db.owner_url] {
        let mut session = PgConnection::connect(url).await.unwrap();
        sqlx::query("SET app.tenant_id = 'acme'")
            .execute(&mut session)
            .await
            .unwrap();
        for attack in [
            r#"UPDATE tenant_configs SET mcp_server_config = '{"servers": {}}' WHERE tenant_id = 'acme'"#,
            "UPDATE tenant_configs SET mcp_config_version = 9223372036854775807 WHERE tenant_id = 'acme'",
            "UPDATE tenant_configs SET mcp_config_updated_at = now() - interval '1 year' WHERE tenant_id = 'acme'",
            "UPDATE tenant_configs SET mcp_server_config = NULL WHERE tenant_id = 'acme'",
        ] {
            denied(
                sqlx::raw_sql(attack)
                    .execute(&mut session)
                    .await
                    .unwrap_err(),
            );
        }
        // Issue 34, item 7 (threat model: a platform role must never change the mcp_* columns
        // of any row): row-level security reads the row under acme and checks it under the
        // tenant the SET list switches to, so without the guard of migration 5 the row —
        // document and version — moves to another tenant.
        for target in ["moved", "globex"] {
            let attack = format!(
                "UPDATE tenant_configs SET tenant_id = '{target}', \
                 created_at = CASE WHEN set_config('app.tenant_id', '{target}', true) IS NOT NULL \
                 THEN created_at END WHERE tenant_id = 'acme'"
            );
            let e = sqlx::raw_sql(sqlx::AssertSqlSafe(attack.clone()))
                .execute(&mut session)
                .await
                .map(|done| done.rows_affected())
                .expect_err(&attack);
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string());
            assert_eq!(code.as_deref(), Some("42501"), "{attack}: {e}");
            assert!(e.to_string().contains("may not move the row"), "{e}");
        }
        // Its own columns and rows: still the platform's.
        let done =
            sqlx::query("UPDATE tenant_configs SET created_at = now() WHERE tenant_id = 'acme'")
                .execute(&mut session)
                .await
                .unwrap();
        assert_eq!(done.rows_affected(), 1);
        sqlx::query("SET app.tenant_id = 'globex'")
            .execute(&mut session)
            .await
            .unwrap();
        denied(
            sqlx::raw_sql(
                r#"INSERT INTO tenant_configs (tenant_id, mcp_server_config, mcp_config_version)
                   VALUES ('globex', '{"servers": {}}', 9223372036854775807)"#,
            )
            .execute(&mut session)
            .await
            .unwrap_err(),
        );
        // Issue 27, item 6: nor may it delete the row (and insert it again empty), or
        // empty the table past row-level security.
        sqlx::query("SET app.tenant_id = 'acme'")
            .execute(&mut session)
            .await
            .unwrap();
        for attack in [
            "DELETE FROM tenant_configs WHERE tenant_id = 'acme'",
            "TRUNCATE tenant_configs",
        ] {
            let e = sqlx::raw_sql(attack)
                .execute(&mut session)
                .await
                .unwrap_err();
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string());
            assert_eq!(code.as_deref(), Some("42501"), "{attack}: {e}");
            // The owner may truncate as far as privileges go: only the guard stops it.
            if url == &db.owner_url || attack.starts_with("DELETE") {
                assert!(e.to_string().contains("mirror document"), "{attack}: {e}");
            }
        }
        sqlx::query("SET app.tenant_id = 'globex'")
            .execute(&mut session)
            .await
            .unwrap();
        sqlx::query("INSERT INTO tenant_configs (tenant_id) VALUES ('globex')")
            .execute(&mut session)
            .await
            .unwrap();
        sqlx::query("DELETE FROM tenant_configs WHERE tenant_id = 'globex'")
            .execute(&mut session)
            .await
            .unwrap();
    }
    assert_eq!(
        raw(&db, "acme").await,
        before,
        "nothing of the mirror changed"
    );
    // The controller still writes, and the row opens.
    assert_eq!(
        controller
            .write(&document("acme", "pw-2"), 11)
            .await
            .unwrap(),
        WriteOutcome::Updated
    );
    let row = controller.read("acme").await.unwrap().unwrap();
    assert_eq!(row.version, 11);
    assert!(row.content_verified);
    // A plain field changed where the guard does not reach (a superuser), its content hash
    // left as it was: the row no longer verifies, and the controller's next write of the same
    // document puts it back instead of keeping it for its hash.
    let mut altered = raw(&db, "acme").await.0.unwrap();
    altered["servers"]["postgres"]["spec"]["host"] = json!("db.evil.example");
    set_raw(&db, "acme", &altered).await;
    assert!(
        !controller
            .read("acme")
            .await
            .unwrap()
            .unwrap()
            .content_verified
    );
    assert_eq!(
        controller
            .write(&document("acme", "pw-2"), 11)
            .await
            .unwrap(),
        WriteOutcome::Updated
    );
    let row = controller.read("acme").await.unwrap().unwrap();
    assert!(row.content_verified);
    assert_eq!(row.document, document("acme", "pw-2"));
}

#[tokio::test]
async fn the_writer_keeps_the_newest_version_and_skips_unchanged_content() {
    let pg = Postgres::start().unwrap();
    let db = MirrorDatabase::create(&pg, "writer").await.unwrap();
    let keys = keys_dir(&[("k1", K1), ("active", "k1")]);
    let w = writer(&db.controller_url, ring(keys.path())).await;
    let v1 = document("acme", "pw-1");

    assert_eq!(w.write(&v1, 10).await.unwrap(), WriteOutcome::Inserted);
    let row = w.read("acme").await.unwrap().unwrap();
    assert_eq!((row.version, &row.document), (10, &v1));
    let (stored, _) = raw(&db, "acme").await;
    let text = stored.unwrap().to_string();
    for secret in ["pw-1", "s3-pw-1", "ai-pw-1", "search-token", "ключ"] {
        assert!(
            !text.contains(secret),
            "{secret} stored in plaintext: {text}"
        );
    }
    assert!(
        text.contains("db.acme.internal"),
        "endpoints stay queryable"
    );

    // Same content: no rewrite (the nonces in the row stay the same), version moves forward.
    let before = raw(&db, "acme").await.0;
    assert_eq!(w.write(&v1, 10).await.unwrap(), WriteOutcome::Unchanged);
    assert_eq!(w.write(&v1, 11).await.unwrap(), WriteOutcome::Unchanged);
    let (after, version) = raw(&db, "acme").await;
    assert_eq!((after, version), (before, Some(11)));

    // New content at a newer version lands, at an older version is refused.
    let v2 = document("acme", "pw-2");
    assert_eq!(w.write(&v2, 12).await.unwrap(), WriteOutcome::Updated);
    let row = w.read("acme").await.unwrap().unwrap();
    assert!(row.updated_at > jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60));
    assert_eq!(
        w.write(&v1, 11).await.unwrap(),
        WriteOutcome::Stale { stored_version: 12 }
    );
    assert_eq!(w.read("acme").await.unwrap().unwrap().document, v2);

    // Disabled keeps the data and says so.
    let mut disabled = v2.clone();
    disabled.state = MirrorState::Disabled;
    assert_eq!(w.write(&disabled, 13).await.unwrap(), WriteOutcome::Updated);
    let row = w.read("acme").await.unwrap().unwrap();
    assert_eq!(row.document.state, MirrorState::Disabled);
    assert_eq!(row.document.servers, v2.servers);
    let (stored, _) = raw(&db, "acme").await;
    assert_eq!(stored.unwrap()["state"], "disabled");

    // Removal clears the document and keeps the version as a tombstone.
    assert_eq!(
        w.remove("acme", 12).await.unwrap(),
        WriteOutcome::Stale { stored_version: 13 }
    );
    assert_eq!(w.remove("acme", 14).await.unwrap(), WriteOutcome::Removed);
    assert!(w.read("acme").await.unwrap().is_none());
    assert_eq!(raw(&db, "acme").await, (None, Some(14)));
    assert_eq!(
        w.write(&v2, 13).await.unwrap(),
        WriteOutcome::Stale { stored_version: 14 },
        "a late write from before the removal does not bring the config back"
    );
    assert_eq!(
        w.remove("acme", 15).await.unwrap(),
        WriteOutcome::NothingToRemove
    );
    assert_eq!(
        w.remove("nobody", 1).await.unwrap(),
        WriteOutcome::NothingToRemove
    );
    assert_eq!(
        w.write(&v2, 16).await.unwrap(),
        WriteOutcome::Updated,
        "re-created later"
    );
}

#[tokio::test]
async fn tampered_or_moved_ciphertexts_fail_with_a_clear_error_and_no_plaintext() {
    let pg = Postgres::start().unwrap();
    let db = MirrorDatabase::create(&pg, "tamper").await.unwrap();
    let keys = keys_dir(&[("k1", K1), ("k2", K2), ("active", "k1")]);
    let w = writer(&db.controller_url, ring(keys.path())).await;
    w.write(&document("acme", "acme-pw"), 1).await.unwrap();
    w.write(&document("globex", "globex-pw"), 1).await.unwrap();
    let acme = raw(&db, "acme").await.0.unwrap();
    let globex = raw(&db, "globex").await.0.unwrap();
    let password = ["servers", "postgres", "credentials", "password"];
    let pointer = "/servers/postgres/credentials/password";

    type Tamper<'a> = Box<dyn Fn(&mut Value) + 'a>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "envelope copied from another tenant's row",
            Box::new(|doc| {
                *doc.pointer_mut(pointer).unwrap() = acme.pointer(pointer).unwrap().clone()
            }),
            "DecryptionFailed",
        ),
        (
            "envelope moved to another field",
            Box::new(|doc| {
                let token = doc["servers"]["aiMcpServer"]["credentials"]["bearerToken"].clone();
                *doc.pointer_mut(pointer).unwrap() = token;
            }),
            "DecryptionFailed",
        ),
        (
            "nonce changed",
            Box::new(|doc| doc.pointer_mut(pointer).unwrap()["nonce"] = json!("AAAAAAAAAAAAAAAA")),
            "DecryptionFailed",
        ),
        (
            "ciphertext changed",
            Box::new(|doc| {
                let ct = doc.pointer(pointer).unwrap()["ct"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let flipped = if ct.starts_with('A') { "B" } else { "A" };
                doc.pointer_mut(pointer).unwrap()["ct"] = json!(format!("{flipped}{}", &ct[1..]));
            }),
            "DecryptionFailed",
        ),
        (
            "key id changed to another key",
            Box::new(|doc| doc.pointer_mut(pointer).unwrap()["kid"] = json!("k2")),
            "DecryptionFailed",
        ),
        (
            "key id unknown",
            Box::new(|doc| doc.pointer_mut(pointer).unwrap()["kid"] = json!("k9")),
            "UnknownKeyId",
        ),
        (
            "whole document copied from another tenant's row",
            Box::new(|doc| *doc = acme.clone()),
            "MirrorCorrupt",
        ),
        (
            "whole document copied and relabelled",
            Box::new(|doc| {
                *doc = acme.clone();
                doc["tenantId"] = json!("globex");
            }),
            "DecryptionFailed",
        ),
    ];
    for (what, tamper, reason) in cases {
        let mut doc = globex.clone();
        tamper(&mut doc);
        set_raw(&db, "globex", &doc).await;
        let err = w.read("globex").await.unwrap_err();
        assert_eq!(err.reason(), reason, "{what}: {err}");
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("acme-pw") && !shown.contains("globex-pw"),
            "{what}: {shown}"
        );
        if reason == "DecryptionFailed" {
            assert!(
                shown.contains(&password.join(".")) || shown.contains("servers."),
                "{what}: the error names the field: {shown}"
            );
        }
    }
    // Restored, it opens again.
    set_raw(&db, "globex", &globex).await;
    let row = w.read("globex").await.unwrap().unwrap();
    assert_eq!(row.document, document("globex", "globex-pw"));
}

/// The threat-model line "a GitOps renderer must never rotate key material by rendering
/// twice": a keys Secret rendered again holds new random bytes under the same id `k1`. The
/// writer, a reload and `keys rotate` refuse it, naming `k1`, and the good keys keep working;
/// rows sealed before the check values were recorded are checked against the rows themselves.
#[tokio::test]
async fn a_key_id_holding_other_material_than_the_rows_were_sealed_with_is_refused() {
    const K1_AGAIN: &str = "OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk=";
    let pg = Postgres::start().unwrap();
    let db = MirrorDatabase::create(&pg, "keycheck").await.unwrap();
    let good = keys_dir(&[("k1", K1), ("active", "k1")]);
    let rerendered = keys_dir(&[("k1", K1_AGAIN), ("active", "k1")]);
    let w = writer(&db.controller_url, ring(good.path())).await;
    w.write(&document("acme", "pw-1"), 1).await.unwrap();
    let check: String =
        sqlx::query_scalar("SELECT check_value FROM tenant_mcp.key_checks WHERE kid = 'k1'")
            .fetch_one(&PgPool::connect(&db.admin_url).await.unwrap())
            .await
            .unwrap();
    assert!(
        check.starts_with("hmac-sha256:") && !check.contains(K1),
        "{check}"
    );

    let refused = |e: tenant_mcp::mirror::MirrorError| {
        assert_eq!(e.reason(), "KeyMismatch", "{e}");
        let text = e.to_string();
        assert!(text.contains("key id `k1`"), "{text}");
        assert!(!text.contains(K1) && !text.contains(K1_AGAIN), "{text}");
    };
    // A controller starting with the re-rendered Secret.
    let pool = PgPool::connect(&db.controller_url).await.unwrap();
    refused(
        MirrorWriter::new(pool.clone(), ring(rerendered.path()))
            .await
            .unwrap_err(),
    );
    // A running controller picking it up: refused, and the loaded keys stay.
    refused(w.use_keyring(ring(rerendered.path())).await.unwrap_err());
    assert!(w.keyring().same_keys(&ring(good.path())));
    w.write(&document("acme", "pw-2"), 2).await.unwrap();
    assert_eq!(
        w.read("acme").await.unwrap().unwrap().document,
        document("acme", "pw-2")
    );
    // `keys rotate` with it.
    let (code, out) = tenant_mcp(
        &[
            "keys",
            "rotate",
            "--keys-dir",
            rerendered.path().to_str().unwrap(),
        ],
        &db.controller_url,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("key id `k1`"), "{out}");

    // Rows sealed before check values were recorded (a database migrated from 0002): the
    // rows themselves tell.
    sqlx::query("DELETE FROM tenant_mcp.key_checks")
        .execute(&PgPool::connect(&db.admin_url).await.unwrap())
        .await
        .unwrap();
    let err = MirrorWriter::new(pool.clone(), ring(rerendered.path()))
        .await
        .unwrap_err();
    refused(err);
    let text = MirrorWriter::new(pool.clone(), ring(rerendered.path()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("acme"),
        "names the rows that do not verify: {text}"
    );
    // The right key still loads, and records its check value again.
    let w = writer(&db.controller_url, ring(good.path())).await;
    w.write(&document("acme", "pw-3"), 3).await.unwrap();
    let again: String =
        sqlx::query_scalar("SELECT check_value FROM tenant_mcp.key_checks WHERE kid = 'k1'")
            .fetch_one(&PgPool::connect(&db.admin_url).await.unwrap())
            .await
            .unwrap();
    assert_eq!(again, check);
    // A new key id next to the old one is a rotation, not a mismatch.
    let rotated = keys_dir(&[("k1", K1), ("k2", K2), ("active", "k2")]);
    w.use_keyring(ring(rotated.path())).await.unwrap();
}

fn tenant_mcp(args: &[&str], url: &str) -> (i32, String) {
    tenant_mcp_e2e::stack::run_tenant_mcp(args, &[("TENANT_MCP_DATABASE_URL", url.as_ref())])
}

#[tokio::test]
async fn key_rotation_reencrypts_every_row_and_resumes_after_a_failure() {
    let pg = Postgres::start().unwrap();
    let db = MirrorDatabase::create(&pg, "rotate").await.unwrap();
    let k1 = keys_dir(&[("k1", K1), ("active", "k1")]);
    let old = writer(&db.controller_url, ring(k1.path())).await;
    for i in 0..25 {
        old.write(&document(&format!("t{i:02}"), &format!("pw{i}")), 1)
            .await
            .unwrap();
    }
    // One row under a key the rotation will not be given at first.
    let k3 = keys_dir(&[("k3", K3), ("active", "k3")]);
    writer(&db.controller_url, ring(k3.path()))
        .await
        .write(&document("zz-lost-key", "pw-z"), 1)
        .await
        .unwrap();
    // After the new key became active, writers seal with it.
    let k12 = keys_dir(&[("k1", K1), ("k2", K2), ("active", "k2")]);
    let new = writer(&db.controller_url, ring(k12.path())).await;
    new.write(&document("new-tenant", "pw-new"), 1)
        .await
        .unwrap();
    let versions_before = raw(&db, "t03").await.1;

    let pool = PgPool::connect(&db.controller_url).await.unwrap();
    let mut batches = 0;
    let report = rotate_keys(&pool, &ring(k12.path()), 10, |_| batches += 1)
        .await
        .unwrap();
    assert_eq!(report.rotated, 25);
    assert_eq!(batches, 3, "25 + 1 rows in batches of 10");
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "zz-lost-key");
    assert_eq!(report.failed[0].1.reason(), "UnknownKeyId");
    assert_eq!(report.remaining, 1);
    assert!(!report.is_complete());

    // Every rotated row opens with the new key alone, content and version unchanged.
    let k2_only = keys_dir(&[("k2", K2), ("active", "k2")]);
    let reader = writer(&db.uber_admin_url, ring(k2_only.path())).await;
    for i in 0..25 {
        let tenant = format!("t{i:02}");
        let row = reader.read(&tenant).await.unwrap().unwrap();
        assert_eq!(row.document, document(&tenant, &format!("pw{i}")));
        let stored = raw(&db, &tenant).await.0.unwrap();
        assert!(
            stored["contentHash"]
                .as_str()
                .unwrap()
                .starts_with("hmac-sha256:k2:")
        );
    }
    assert_eq!(raw(&db, "t03").await.1, versions_before);

    // The command, with the missing key back in the Secret: resumes with what is left.
    let all = keys_dir(&[("k1", K1), ("k2", K2), ("k3", K3), ("active", "k2")]);
    let keys_arg = all.path().to_str().unwrap();
    let (code, out) = tenant_mcp(
        &["keys", "rotate", "--keys-dir", keys_arg],
        &db.controller_url,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rotated 1,"), "{out}");
    assert!(out.contains("older keys can be removed"), "{out}");
    let row = reader.read("zz-lost-key").await.unwrap().unwrap();
    assert_eq!(row.document, document("zz-lost-key", "pw-z"));

    // Nothing left: a second run does nothing.
    let (code, out) = tenant_mcp(
        &["keys", "rotate", "--keys-dir", keys_arg],
        &db.controller_url,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rotated 0,"), "{out}");
    // A bad keys directory is named.
    let (code, out) = tenant_mcp(
        &["keys", "rotate", "--keys-dir", "/nonexistent"],
        &db.controller_url,
    );
    assert_ne!(code, 0);
    assert!(out.contains("/nonexistent"), "{out}");
}

#[tokio::test]
async fn racing_writers_end_with_the_newest_version() {
    let pg = Postgres::start().unwrap();
    let db = MirrorDatabase::create(&pg, "race").await.unwrap();
    let keys = keys_dir(&[("k1", K1), ("active", "k1")]);
    let a = writer(&db.controller_url, ring(keys.path())).await;
    let b = writer(&db.controller_url, ring(keys.path())).await;
    // Two replicas, each writing its versions newest-last but interleaved with the other's,
    // and each version with its own content.
    let run = |w: MirrorWriter, versions: Vec<i64>| {
        tokio::spawn(async move {
            let mut stale = 0;
            for v in versions {
                let outcome = w
                    .write(&document("acme", &format!("pw-{v}")), v)
                    .await
                    .unwrap();
                if matches!(outcome, WriteOutcome::Stale { .. }) {
                    stale += 1;
                }
            }
            stale
        })
    };
    let odd: Vec<i64> = (1..=199).step_by(2).collect();
    let mut even: Vec<i64> = (2..=200).step_by(2).collect();
    // The second writer also replays some old versions late, as a replica that lost its lease.
    even.extend([3, 50, 101]);
    let (sa, sb) = tokio::join!(run(a.clone(), odd), run(b, even));
    let stale = sa.unwrap() + sb.unwrap();
    assert!(stale >= 3, "the late replays were refused ({stale} stale)");
    let row = a.read("acme").await.unwrap().unwrap();
    assert_eq!(row.version, 200);
    assert_eq!(row.document, document("acme", "pw-200"));
}

#[tokio::test]
async fn a_platform_table_with_required_columns_and_uuid_tenants() {
    let pg = Postgres::start().unwrap();
    let name = pg.create_database("platform_rows").await.unwrap();
    let db = MirrorDatabase::with_roles(&pg, &name).await.unwrap();
    let mut owner = PgConnection::connect(&db.owner_url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE tenant_configs (tenant_id uuid PRIMARY KEY, plan text NOT NULL);
         INSERT INTO tenant_configs VALUES ('0b0f6c2e-3f7e-4c1a-9d55-1f2a3b4c5d6e', 'team');",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    let pool = PgPool::connect(&db.owner_url).await.unwrap();
    tenant_mcp::mirror::migrate::up(&pool).await.unwrap();
    db.grant_logins().await.unwrap();
    let keys = keys_dir(&[("k1", K1), ("active", "k1")]);
    let w = writer(&db.controller_url, ring(keys.path())).await;

    let existing = "0b0f6c2e-3f7e-4c1a-9d55-1f2a3b4c5d6e";
    assert_eq!(
        w.write(&document(existing, "pw"), 1).await.unwrap(),
        WriteOutcome::Updated
    );
    assert_eq!(
        w.read(existing).await.unwrap().unwrap().document,
        document(existing, "pw")
    );
    let plan: String = sqlx::query_scalar("SELECT plan FROM tenant_configs")
        .fetch_one(&mut PgConnection::connect(&db.admin_url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(plan, "team", "the platform's column is untouched");

    let missing = "9e8d7c6b-5a49-4838-a271-605f4e3d2c1b";
    let err = w.write(&document(missing, "pw"), 1).await.unwrap_err();
    assert_eq!(err.reason(), "TenantRowMissing");
    assert!(err.to_string().contains("column \"plan\""), "{err}");
}

#[tokio::test]
async fn the_python_reference_decrypts_a_row_rust_wrote() {
    let pg = Postgres::start().unwrap();
    let db = MirrorDatabase::create(&pg, "python").await.unwrap();
    let keys = keys_dir(&[("k1", K1), ("k2", K2), ("active", "k2")]);
    let w = writer(&db.controller_url, ring(keys.path())).await;
    w.write(&document("acme", "pä$$wörd \"quoted\""), 1)
        .await
        .unwrap();
    w.write(&document("globex", "other"), 1).await.unwrap();
    // Read the row as another service would: the uber admin role, plain SQL.
    let mut uber = PgConnection::connect(&db.uber_admin_url).await.unwrap();
    let stored: String = sqlx::query_scalar(
        "SELECT mcp_server_config::text FROM tenant_configs WHERE tenant_id = 'acme'",
    )
    .fetch_one(&mut uber)
    .await
    .unwrap();

    let script = repo_root().join("docs/mirror/decrypt_mirror.py");
    let python = |tenant: &str, input: &str| {
        let mut child = Command::new("python3")
            .arg(&script)
            .args([
                "--keys-dir",
                keys.path().to_str().unwrap(),
                "--tenant",
                tenant,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/test installs it with the cryptography package)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = python("acme", &stored);
    assert!(ok, "{err}");
    let mut opened: Value = serde_json::from_str(&out).unwrap();
    let object = opened.as_object_mut().unwrap();
    assert_eq!(object.remove("format"), Some(json!("tenant-mcp.mirror.v1")));
    assert!(object.remove("contentHash").is_some());
    assert_eq!(opened, normalized_json("acme", "pä$$wörd \"quoted\""));

    // The same document offered as another tenant's row does not open.
    let (ok, _, err) = python("globex", &stored);
    assert!(!ok);
    assert!(err.contains("another tenant"), "{err}");
    let mut moved: Value = serde_json::from_str(&stored).unwrap();
    moved["tenantId"] = json!("globex");
    let (ok, out, err) = python("globex", &moved.to_string());
    assert!(!ok, "{out}");
    assert!(err.contains("decryption failed"), "{err}");
    assert!(!out.contains("pä$$wörd"));
}
