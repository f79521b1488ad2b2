//! Pure, I/O-free config logic: field-addressed validation, the endpoint policy, partial-update
//! merge, redaction of credentials and stable spec hashes, and the checks of whole manifests
//! behind `tenant-mcp validate`.
//!
//! Nothing here talks to a network, a file system or the Kubernetes API.
//!
//! ```
//! use tenant_mcp::api::TenantMcpConfigSpec;
//! use tenant_mcp::config::{EndpointPolicy, validate_tenant_spec};
//!
//! let spec: TenantMcpConfigSpec = serde_json::from_value(serde_json::json!({
//!     "tenantId": "acme",
//!     "servers": {"postgres": {
//!         "host": "db.example.com", "port": 70000, "database": "rag",
//!         "credentialsSecretRef": {"name": "acme-postgres"}
//!     }}
//! }))?;
//! let errors = validate_tenant_spec(&spec, &EndpointPolicy::default());
//! assert_eq!(errors.to_string(), "spec.servers.postgres.port: must be 1..=65535, got 70000");
//! # Ok::<(), serde_json::Error>(())
//! ```

pub mod active;
pub mod binding;
pub mod candidate;
pub mod cel;
pub mod credential_reuse;
pub mod decode;
pub mod failure;
pub mod field;
pub mod hash;
pub mod inline_credentials;
pub mod input_limits;
pub mod manifest;
pub mod merge;
pub mod policy;
pub mod redact;
pub mod routing;
pub mod search;
pub mod server_key;
pub mod validate;

pub use field::{ErrorKind, FieldError, FieldErrors, FieldPath};
pub use hash::spec_hash;
pub use merge::merge_servers;
pub use policy::{EndpointPolicy, PolicyViolation};
pub use redact::{Credential, McpCredentials, PostgresCredentials, S3Credentials};
pub use routing::{McpTarget, mcp_target};
pub use validate::{
    validate_global_spec, validate_servers, validate_tenant_spec, validate_tenant_update,
};
