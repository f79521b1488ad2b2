//! The condition types and reasons the controller writes: one vocabulary for conditions,
//! events and metric labels.

/// All declared server types are active and their latest checks passed.
pub const READY: &str = "Ready";
/// The spec passed static validation and the endpoint policy.
pub const VALIDATED: &str = "Validated";
/// The active config is mirrored into Postgres `tenant_configs`.
pub const MIRRORED: &str = "Mirrored";
/// At least one server type is failing while an older active config keeps serving.
pub const DEGRADED: &str = "Degraded";

/// Condition reasons (PascalCase, as Kubernetes requires).
pub mod reason {
    /// Everything declared is active and healthy.
    pub const ALL_SERVERS_HEALTHY: &str = "AllServersHealthy";
    /// The spec passed validation.
    pub const VALID: &str = "Valid";
    /// The spec failed static validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// An endpoint is denied by the endpoint policy.
    pub const POLICY_DENIED: &str = "PolicyDenied";
    /// Another config already serves this tenant.
    pub const CONFLICT: &str = "Conflict";
    /// Tenant-specific configs are switched off (globally or for this tenant).
    pub const DISABLED: &str = "Disabled";
    /// Checks are still running.
    pub const PENDING: &str = "Pending";
    /// A referenced Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// A referenced Secret lacks the named key.
    pub const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
    /// The namespace is not bound to the config's tenant (`tenantmcp.dev/tenant` label).
    pub const TENANT_NOT_BOUND: &str = "TenantNotBound";
    /// Some declared server types are failing; the last-known-good config keeps serving.
    pub const SERVERS_FAILING: &str = "ServersFailing";
    /// The active config is mirrored.
    pub const MIRRORED: &str = "Mirrored";
    /// The config is being deleted and its mirror data could not be removed yet.
    pub const CLEANUP_PENDING: &str = "CleanupPending";

    // What a connection test found.

    /// The server could not be reached (refused, no route, name does not resolve).
    pub const UNREACHABLE: &str = "Unreachable";
    /// The TLS handshake failed, or TLS was required and the server does not offer it.
    pub const TLS_FAILED: &str = "TlsFailed";
    /// The server refused the credentials.
    pub const AUTH_FAILED: &str = "AuthFailed";
    /// The server asked for the password in a form it could read (cleartext or MD5) over a
    /// connection whose server certificate was not verified: the password is not sent.
    pub const INSECURE_AUTH: &str = "InsecureAuth";
    /// The credentials are valid but lack a permission.
    pub const ACCESS_DENIED: &str = "AccessDenied";
    /// The configured database does not exist.
    pub const DATABASE_NOT_FOUND: &str = "DatabaseNotFound";
    /// The configured bucket does not exist.
    pub const BUCKET_NOT_FOUND: &str = "BucketNotFound";
    /// The server did not answer within the time limit.
    pub const TIMEOUT: &str = "Timeout";
    /// The server answered, but not as a server of this kind should.
    pub const PROTOCOL_ERROR: &str = "ProtocolError";
}

/// The namespace label that binds a namespace to the tenant it serves.
pub const TENANT_LABEL: &str = "tenantmcp.dev/tenant";
