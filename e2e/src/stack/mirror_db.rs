//! A mirror database on a [`Postgres`] server: tenant-mcp's migrations applied, and one login
//! role per kind of session the migrations provide for, as a DBA would set them up
//! (docs/database.md).

use sqlx::Connection as _;

use super::postgres::Postgres;

/// A migrated database and the URLs of its roles.
pub struct MirrorDatabase {
    /// The database's name.
    pub name: String,
    /// The superuser (bypasses row-level security: for setup and inspection only).
    pub admin_url: String,
    /// The table owner, a non-superuser: row-level security is forced on it too.
    pub owner_url: String,
    /// A login in `tenant_mcp_controller`: what the controller and `keys rotate` use.
    pub controller_url: String,
    /// A login in `tenant_mcp_uber_admin`.
    pub uber_admin_url: String,
    /// The platform's application role: full DML on `tenant_configs` (granted by the platform,
    /// not by tenant-mcp) and membership of `tenant_mcp_tenant`; row-level security confines it
    /// to the tenant its session sets in `app.tenant_id`.
    pub app_url: String,
}

impl MirrorDatabase {
    /// Creates a database owned by a non-superuser, runs every migration as that owner (with
    /// CREATEROLE, as the chart's migration job has), and creates the login roles.
    pub async fn create(pg: &Postgres, prefix: &str) -> Result<Self, sqlx::Error> {
        let name = pg.create_database(prefix).await?;
        let this = Self::with_roles(pg, &name).await?;
        let pool = sqlx::PgPool::connect(&this.owner_url).await?;
        tenant_mcp::mirror::migrate::up(&pool)
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        pool.close().await;
        this.grant_logins().await?;
        Ok(this)
    }

    /// Creates the owner role and hands `name` to it, without running any migration.
    pub async fn with_roles(pg: &Postgres, name: &str) -> Result<Self, sqlx::Error> {
        let suffix = name.rsplit('_').next().unwrap_or(name);
        let role = |kind: &str| format!("{kind}_{suffix}");
        let password = pg.password().to_owned();
        let mut admin = sqlx::PgConnection::connect(&pg.admin_url(name)).await?;
        for kind in ["owner", "controller", "uber", "app"] {
            let extra = if kind == "owner" { " CREATEROLE" } else { "" };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE ROLE {} LOGIN PASSWORD '{password}'{extra}",
                role(kind)
            )))
            .execute(&mut admin)
            .await?;
        }
        for statement in [
            format!("ALTER DATABASE {name} OWNER TO {}", role("owner")),
            format!("ALTER SCHEMA public OWNER TO {}", role("owner")),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut admin)
                .await?;
        }
        admin.close().await?;
        Ok(Self {
            name: name.to_owned(),
            admin_url: pg.admin_url(name),
            owner_url: pg.url(&role("owner"), &password, name),
            controller_url: pg.url(&role("controller"), &password, name),
            uber_admin_url: pg.url(&role("uber"), &password, name),
            app_url: pg.url(&role("app"), &password, name),
        })
    }

    /// Grants the login roles their tenant-mcp roles, and the platform's DML to the app role.
    /// Run after the migrations created the roles.
    pub async fn grant_logins(&self) -> Result<(), sqlx::Error> {
        let suffix = self.name.rsplit('_').next().unwrap_or(&self.name);
        let mut owner = sqlx::PgConnection::connect(&self.owner_url).await?;
        for statement in [
            format!("GRANT tenant_mcp_controller TO controller_{suffix}"),
            format!("GRANT tenant_mcp_uber_admin TO uber_{suffix}"),
            format!("GRANT tenant_mcp_tenant TO app_{suffix}"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_configs TO app_{suffix}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut owner)
                .await?;
        }
        owner.close().await
    }
}
