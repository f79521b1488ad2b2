//! tenant-mcp: per-tenant endpoints and credentials for Postgres, MinIO/S3 and MCP servers,
//! with safe fallback to global ones.
//!
//! - [`api`]: the `TenantMcpConfig` and `GlobalMcpConfig` custom resources.
//! - [`config`]: pure validation, endpoint policy, partial-update merge, redaction and hashing.

pub mod api;
pub mod config;
