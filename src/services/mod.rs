//! Tenant-aware services on top of the client library: each call runs on the tenant's own
//! server or, when it has none, on the global one with the tenant's isolation applied there
//! (`app.tenant_id` for row-level security in Postgres, a key prefix in the global bucket,
//! the tenant routing on the shared AI MCP server).
//!
//! Every method takes the tenant explicitly; the `*_current` forms read the task-local scope
//! ([`crate::client::with_tenant`], set per request by [`crate::client::layer::TenantLayer`]).

pub mod ai;
pub mod error;
pub mod objects;
pub mod postgres;

pub use ai::TenantAi;
pub use error::ServiceError;
pub use objects::{ObjectInfo, TenantObjects};
pub use postgres::{TenantPostgres, TenantTransaction};

use crate::client::TenantClients;

/// The three services over one [`TenantClients`].
#[derive(Clone, Debug)]
pub struct TenantServices {
    /// Postgres with `app.tenant_id` per transaction.
    pub postgres: TenantPostgres,
    /// Objects in the tenant's bucket, or under its prefix in the global one.
    pub objects: TenantObjects,
    /// The tenant's AI MCP server.
    pub ai: TenantAi,
}

impl TenantServices {
    /// The services of `clients`.
    pub fn new(clients: TenantClients) -> Self {
        Self {
            postgres: TenantPostgres::new(clients.clone()),
            objects: TenantObjects::new(clients.clone()),
            ai: TenantAi::new(clients),
        }
    }
}
