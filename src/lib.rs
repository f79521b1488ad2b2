//! tenant-mcp: per-tenant endpoints and credentials for Postgres, MinIO/S3 and MCP servers,
//! with safe fallback to global ones.
//!
//! - [`api`]: the `TenantMcpConfig` and `GlobalMcpConfig` custom resources.
//! - [`client`]: the library application pods link: per-tenant clients with global fallback.
//! - [`config`]: pure validation, endpoint policy, partial-update merge, redaction and hashing.
//! - [`controller`]: the operator: reconcile, snapshots, status, leader election, metrics.
//! - [`crypto`]: AES-256-GCM envelopes for credentials at rest, and the keyring.
//! - [`egress`]: every connection to a configured endpoint, under the endpoint policy.
//! - [`mcp_server`]: the management MCP server (in progress: authentication and authorization).
//! - [`mirror`]: the Postgres mirror of active configs (migrations, writer, key rotation).
//! - [`probe`]: connection tests of the declared servers, under the endpoint policy.
//! - [`services`]: tenant-aware Postgres (row-level security), object storage and AI MCP.
//! - [`watch_backoff`]: how every watch of the cluster backs off after a failure.

pub mod admission;
pub mod api;
pub mod client;
pub mod config;
pub mod controller;
pub mod crypto;
pub mod egress;
pub mod listed;
pub mod mcp_server;
pub mod mirror;
pub mod probe;
pub mod services;
pub mod watch_backoff;
