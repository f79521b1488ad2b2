//! The audit trail: one log line per tool call (who, which tenant, which tool, the outcome),
//! under the `tenant_mcp::audit` target so it can be routed apart. Never an argument value.

use super::auth::Caller;

/// The log target of audit lines.
pub const TARGET: &str = "tenant_mcp::audit";

/// Records a finished call of `tool` by `caller` on `tenant` (`*` for all tenants): `outcome`
/// is `Ok` or the error's reason, `detail` what was done or refused (never a secret).
pub fn record(caller: &Caller, tenant: &str, tool: &str, outcome: &str, detail: &str) {
    let roles: Vec<&str> = caller.roles.iter().map(|r| r.as_str()).collect();
    if outcome == "Ok" {
        tracing::info!(target: TARGET, subject = %caller.subject, roles = ?roles, tenant, tool, outcome, detail, "management call");
    } else {
        tracing::warn!(target: TARGET, subject = %caller.subject, roles = ?roles, tenant, tool, outcome, detail, "management call");
    }
}
