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
}
