//! Postgres on the tenant's pool, with `app.tenant_id` set in every transaction so that
//! row-level security policies (`USING (tenant_id = current_setting('app.tenant_id'))`) hold
//! on the shared global database too.

use std::sync::Arc;

use sqlx::PgConnection;

use super::error::ServiceError;
use crate::client::{Origin, PoolTransaction, TenantClients, require_tenant};
use crate::config::candidate::ServerKey;

/// Transactions on tenants' Postgres servers.
#[derive(Clone, Debug)]
pub struct TenantPostgres {
    clients: TenantClients,
}

/// A transaction of one tenant: `app.tenant_id` is set for exactly its duration
/// (`set_config(…, true)`, the parameterized `SET LOCAL`), so a pooled connection never
/// carries one tenant's id into another's work.
#[derive(Debug)]
pub struct TenantTransaction {
    tx: PoolTransaction,
    tenant: Arc<str>,
    origin: Origin,
}

impl TenantPostgres {
    /// The service over `clients`.
    pub fn new(clients: TenantClients) -> Self {
        Self { clients }
    }

    /// Begins a transaction for `tenant`.
    pub async fn begin(&self, tenant: &str) -> Result<TenantTransaction, ServiceError> {
        let (pool, origin) = self.clients.postgres_with_origin(tenant).await?;
        let err = |source| ServiceError::postgres(tenant, source);
        let mut tx = pool.begin().await.map_err(|e| {
            // Failed logins are counted where the connection is made; a full pool is only
            // seen here.
            if matches!(e, sqlx::Error::PoolTimedOut) {
                self.clients
                    .record_error(&ServerKey::Postgres, origin, "connect", "PoolTimeout");
            }
            err(e)
        })?;
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        Ok(TenantTransaction {
            tx,
            tenant: tenant.into(),
            origin,
        })
    }

    /// Begins a transaction for the tenant in scope.
    pub async fn begin_current(&self) -> Result<TenantTransaction, ServiceError> {
        self.begin(&require_tenant()?).await
    }
}

impl TenantTransaction {
    /// The connection to run queries on (`.execute(tx.conn())`).
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// The tenant it runs for.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Whether it runs on the tenant's own server or the global one.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), ServiceError> {
        let tenant = self.tenant.to_string();
        self.tx
            .commit()
            .await
            .map_err(|source| ServiceError::Postgres { tenant, source })
    }

    /// Rolls back (dropping it does too).
    pub async fn rollback(self) -> Result<(), ServiceError> {
        let tenant = self.tenant.to_string();
        self.tx
            .rollback()
            .await
            .map_err(|source| ServiceError::Postgres { tenant, source })
    }

    /// Wraps a query error with the tenant.
    pub fn error(&self, source: sqlx::Error) -> ServiceError {
        ServiceError::Postgres {
            tenant: self.tenant.to_string(),
            source,
        }
    }
}
