//! Admission: the validating webhook's decisions for `TenantMcpConfig` and `GlobalMcpConfig`
//! writes, made by the same checks as `tenant-mcp validate` so a config the CLI refuses is
//! refused by `kubectl apply` with the same message.

pub mod certificate;
pub mod review;
pub mod rotation;
pub mod server;
pub mod tls;
