//! Pure, I/O-free config logic: field-addressed validation, the endpoint policy, partial-update
//! merge, redaction of credentials and stable spec hashes, and the checks of whole manifests
//! behind `tenant-mcp validate`.
//!
//! Nothing here talks to a network, a file system or the Kubernetes API.

pub mod field;
pub mod hash;
pub mod inline_credentials;
pub mod manifest;
pub mod merge;
pub mod policy;
pub mod redact;
pub mod validate;

pub use field::{ErrorKind, FieldError, FieldErrors, FieldPath};
pub use hash::spec_hash;
pub use merge::merge_servers;
pub use policy::{EndpointPolicy, PolicyViolation};
pub use redact::{Credential, PostgresCredentials, S3Credentials};
pub use validate::{
    validate_global_spec, validate_servers, validate_tenant_spec, validate_tenant_update,
};
