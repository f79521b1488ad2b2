//! tenant-mcp's migrations on a real Postgres: up, down and up again, on an empty database
//! and on the platform's own `tenant_configs` with columns and rows tenant-mcp does not own,
//! driven through the library and through the `tenant-mcp migrate` command.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;

use sqlx::{Connection as _, PgConnection};
use tenant_mcp::mirror::migrate;
use tenant_mcp_e2e::stack::mirror_db::MirrorDatabase;
use tenant_mcp_e2e::stack::postgres::Postgres;
use tenant_mcp_e2e::stack::tenant_mcp_binary;

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap()
}

/// Every column of `tenant_configs` with its type, in order; empty when there is no table.
async fn columns(conn: &mut PgConnection) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
          WHERE a.attrelid = to_regclass('tenant_configs') AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

/// Every row as JSON text, read as the superuser (who bypasses row-level security).
async fn rows(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar("SELECT row_to_json(t)::text FROM tenant_configs t ORDER BY tenant_id")
        .fetch_all(conn)
        .await
        .unwrap()
}

/// (row security enabled, forced) of `tenant_configs`.
async fn rls(conn: &mut PgConnection) -> (bool, bool) {
    sqlx::query_as(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'tenant_configs'::regclass",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

async fn policies(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT policyname::text FROM pg_policies WHERE tablename = 'tenant_configs' ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn roles(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'tenant_mcp_%' ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn triggers(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tgname::text FROM pg_trigger
          WHERE tgrelid = to_regclass('tenant_configs') AND NOT tgisinternal ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn applied(url: &str) -> Vec<bool> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let status = migrate::status(&pool).await.unwrap();
    pool.close().await;
    status.into_iter().map(|m| m.applied).collect()
}

#[tokio::test]
async fn up_down_up_on_an_empty_database() {
    let pg = Postgres::start().unwrap();
    let name = pg.create_database("empty").await.unwrap();
    let db = MirrorDatabase::with_roles(&pg, &name).await.unwrap();
    let mut admin = connect(&db.admin_url).await;
    assert_eq!(
        applied(&db.owner_url).await,
        [false, false, false, false, false]
    );

    let pool = sqlx::PgPool::connect(&db.owner_url).await.unwrap();
    migrate::up(&pool).await.unwrap();
    assert_eq!(applied(&db.owner_url).await, [true, true, true, true, true]);
    let cols: Vec<String> = columns(&mut admin).await.into_iter().map(|c| c.0).collect();
    assert_eq!(
        cols,
        [
            "tenant_id",
            "created_at",
            "mcp_server_config",
            "mcp_config_version",
            "mcp_config_updated_at"
        ]
    );
    assert_eq!(rls(&mut admin).await, (true, true));
    assert_eq!(policies(&mut admin).await.len(), 3);
    assert_eq!(
        triggers(&mut admin).await,
        [
            "tenant_mcp_guard_mcp_columns",
            "tenant_mcp_guard_mirror_rows",
            "tenant_mcp_guard_mirror_tenant",
            "tenant_mcp_guard_truncate"
        ]
    );
    assert_eq!(
        roles(&mut admin).await,
        [
            "tenant_mcp_controller",
            "tenant_mcp_tenant",
            "tenant_mcp_uber_admin"
        ]
    );
    // Running up again is a no-op.
    migrate::up(&pool).await.unwrap();

    migrate::down_to(&pool, 0).await.unwrap();
    assert_eq!(
        applied(&db.owner_url).await,
        [false, false, false, false, false]
    );
    assert!(
        columns(&mut admin).await.is_empty(),
        "the table tenant-mcp created is gone"
    );
    assert!(
        roles(&mut admin).await.is_empty(),
        "the roles tenant-mcp created are gone"
    );

    migrate::up(&pool).await.unwrap();
    assert_eq!(applied(&db.owner_url).await, [true, true, true, true, true]);
    assert_eq!(columns(&mut admin).await.len(), 5);
    pool.close().await;
}

/// The platform's table, as it might look before tenant-mcp arrives: its own key, columns
/// tenant-mcp must never touch (one of them `updated_at`), rows, and its own row-level
/// security policy.
const PLATFORM_SCHEMA: &str = "
    CREATE TABLE tenant_configs (
        tenant_id  varchar(64) PRIMARY KEY,
        plan       text NOT NULL DEFAULT 'free',
        settings   jsonb NOT NULL DEFAULT '{}',
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    INSERT INTO tenant_configs (tenant_id, plan, settings, updated_at) VALUES
        ('acme', 'enterprise', '{\"sso\": true}', '2026-01-02T03:04:05Z'),
        ('globex', 'free', '{}', '2026-02-03T04:05:06Z'),
        ('initech', 'team', '{\"seats\": 12}', '2026-03-04T05:06:07Z');
    -- The platform's own sqlx bookkeeping, which tenant-mcp must not touch either.
    CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL);
    INSERT INTO _sqlx_migrations VALUES (20250101000000, 'platform schema');
";

#[tokio::test]
async fn a_platform_table_keeps_every_foreign_column_and_row_through_up_down_up() {
    let pg = Postgres::start().unwrap();
    let name = pg.create_database("platform").await.unwrap();
    let db = MirrorDatabase::with_roles(&pg, &name).await.unwrap();
    let mut owner = connect(&db.owner_url).await;
    sqlx::raw_sql(PLATFORM_SCHEMA)
        .execute(&mut owner)
        .await
        .unwrap();
    let mut admin = connect(&db.admin_url).await;
    let columns_before = columns(&mut admin).await;
    let rows_before = rows(&mut admin).await;
    let platform_migrations: Vec<String> =
        sqlx::query_scalar("SELECT version || ' ' || description FROM _sqlx_migrations")
            .fetch_all(&mut admin)
            .await
            .unwrap();

    let pool = sqlx::PgPool::connect(&db.owner_url).await.unwrap();
    migrate::up(&pool).await.unwrap();
    let cols = columns(&mut admin).await;
    assert_eq!(&cols[..4], &columns_before[..], "foreign columns unchanged");
    assert_eq!(
        cols[4..].iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        [
            "mcp_server_config",
            "mcp_config_version",
            "mcp_config_updated_at"
        ]
    );
    assert_eq!(rls(&mut admin).await, (true, true));

    // A mirrored value in a row, then everything back down.
    sqlx::query("UPDATE tenant_configs SET mcp_server_config = '{}', mcp_config_version = 7 WHERE tenant_id = 'acme'")
        .execute(&mut admin)
        .await
        .unwrap();
    migrate::down_to(&pool, 0).await.unwrap();
    assert_eq!(columns(&mut admin).await, columns_before);
    assert_eq!(rows(&mut admin).await, rows_before);
    assert_eq!(
        rls(&mut admin).await,
        (false, false),
        "row security as it was"
    );
    assert!(policies(&mut admin).await.is_empty());
    assert!(
        triggers(&mut admin).await.is_empty(),
        "the column guard is gone"
    );
    let after: Vec<String> =
        sqlx::query_scalar("SELECT version || ' ' || description FROM _sqlx_migrations")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert_eq!(
        after, platform_migrations,
        "the platform's bookkeeping is untouched"
    );

    migrate::up(&pool).await.unwrap();
    assert_eq!(&columns(&mut admin).await[..4], &columns_before[..]);
    assert_eq!(rows(&mut admin).await.len(), 3);
    pool.close().await;
}

#[tokio::test]
async fn a_platform_table_with_its_own_row_security_keeps_it_after_down() {
    let pg = Postgres::start().unwrap();
    let name = pg.create_database("platform_rls").await.unwrap();
    let db = MirrorDatabase::with_roles(&pg, &name).await.unwrap();
    let mut owner = connect(&db.owner_url).await;
    sqlx::raw_sql(PLATFORM_SCHEMA)
        .execute(&mut owner)
        .await
        .unwrap();
    sqlx::raw_sql(
        "ALTER TABLE tenant_configs ENABLE ROW LEVEL SECURITY;
         CREATE POLICY platform_tenant ON tenant_configs USING (tenant_id = current_user);",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    let pool = sqlx::PgPool::connect(&db.owner_url).await.unwrap();
    migrate::up(&pool).await.unwrap();
    let mut admin = connect(&db.admin_url).await;
    assert_eq!(rls(&mut admin).await, (true, true));
    assert_eq!(policies(&mut admin).await.len(), 4);
    migrate::down_to(&pool, 0).await.unwrap();
    assert_eq!(
        rls(&mut admin).await,
        (true, false),
        "enabled by the platform, so kept"
    );
    assert_eq!(policies(&mut admin).await, ["platform_tenant"]);
    pool.close().await;
}

#[tokio::test]
async fn a_table_without_a_unique_tenant_id_is_refused_and_left_alone() {
    let pg = Postgres::start().unwrap();
    let name = pg.create_database("nokey").await.unwrap();
    let db = MirrorDatabase::with_roles(&pg, &name).await.unwrap();
    let mut owner = connect(&db.owner_url).await;
    sqlx::raw_sql(
        "CREATE TABLE tenant_configs (id serial PRIMARY KEY, tenant_id text NOT NULL);
         INSERT INTO tenant_configs (tenant_id) VALUES ('acme'), ('acme');",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    let mut admin = connect(&db.admin_url).await;
    let before = (columns(&mut admin).await, rows(&mut admin).await);
    let pool = sqlx::PgPool::connect(&db.owner_url).await.unwrap();
    let err = migrate::up(&pool).await.unwrap_err().to_string();
    assert!(
        err.contains("tenant_configs.tenant_id has no unique index"),
        "{err}"
    );
    assert_eq!((columns(&mut admin).await, rows(&mut admin).await), before);
    assert_eq!(
        applied(&db.owner_url).await,
        [false, false, false, false, false]
    );

    sqlx::raw_sql(
        "DROP TABLE tenant_configs; CREATE TABLE tenant_configs (tenant_id integer PRIMARY KEY);",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    let err = migrate::up(&pool).await.unwrap_err().to_string();
    assert!(
        err.contains("tenant_configs.tenant_id is of type integer, expected text, varchar or uuid"),
        "{err}"
    );
    pool.close().await;
}

fn tenant_mcp(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tenant_mcp_binary().unwrap())
        .args(args)
        .env("TENANT_MCP_DATABASE_URL", url)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_migrate_command_goes_up_and_down_one_step_at_a_time() {
    let pg = Postgres::start().unwrap();
    let name = pg.create_database("cli").await.unwrap();
    let db = MirrorDatabase::with_roles(&pg, &name).await.unwrap();
    let url = db.owner_url.as_str();

    let (ok, out, _) = tenant_mcp(url, &["migrate", "status"]);
    assert!(ok);
    assert!(out.contains("1        pending   tenant configs"), "{out}");
    assert!(
        out.contains("2        pending   row level security"),
        "{out}"
    );

    assert!(out.contains("3        pending   mcp column guard"), "{out}");
    assert!(out.contains("4        pending   mirror row guard"), "{out}");
    assert!(
        out.contains("5        pending   mirror row tenant"),
        "{out}"
    );

    let (ok, out, err) = tenant_mcp(url, &["migrate", "up"]);
    assert!(ok, "{err}");
    assert!(out.contains("5        applied"), "{out}");

    // One step down: the tenant guard goes, the row guard stays.
    let (ok, out, err) = tenant_mcp(url, &["migrate", "down"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("4        applied") && out.contains("5        pending"),
        "{out}"
    );
    let mut admin = connect(&db.admin_url).await;
    assert_eq!(
        triggers(&mut admin).await,
        [
            "tenant_mcp_guard_mcp_columns",
            "tenant_mcp_guard_mirror_rows",
            "tenant_mcp_guard_truncate"
        ]
    );

    // One step down: the row guard goes, the column guard stays.
    let (ok, out, err) = tenant_mcp(url, &["migrate", "down"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("3        applied") && out.contains("4        pending"),
        "{out}"
    );
    assert_eq!(triggers(&mut admin).await, ["tenant_mcp_guard_mcp_columns"]);

    // Another: the column guard goes, row security stays.
    let (ok, out, err) = tenant_mcp(url, &["migrate", "down"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("2        applied") && out.contains("3        pending"),
        "{out}"
    );
    assert!(triggers(&mut admin).await.is_empty());
    assert_eq!(rls(&mut admin).await, (true, true));

    let (ok, out, err) = tenant_mcp(url, &["migrate", "down"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("1        applied") && out.contains("2        pending"),
        "{out}"
    );
    assert_eq!(rls(&mut admin).await, (false, false));
    assert_eq!(columns(&mut admin).await.len(), 5);

    let (ok, out, _) = tenant_mcp(url, &["migrate", "down"]);
    assert!(ok);
    assert!(out.contains("1        pending"), "{out}");
    assert!(columns(&mut admin).await.is_empty());

    let (ok, out, _) = tenant_mcp(url, &["migrate", "down"]);
    assert!(ok);
    assert!(out.contains("nothing to revert"), "{out}");

    // A wrong password: a clear error, and the password is not echoed.
    let bad = pg.url(Postgres::SUPERUSER, "not-the-password", &name);
    let (ok, _, err) = tenant_mcp(&bad, &["migrate", "up"]);
    assert!(!ok);
    assert!(err.contains("connecting to the database"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}
