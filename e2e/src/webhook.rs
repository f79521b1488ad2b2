//! What the tests and bench-webhook share to register tenant-mcp's admission webhook with the
//! API server and to see whether it is called.

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use serde_json::json;
use tenant_mcp::admission::server;

/// A TenantMcpConfig with a password in a URL, which the CRD schema lets through and every
/// tenant-mcp webhook refuses whatever the cluster holds: a (dry-run) create of it shows
/// whether the API server calls the webhook.
pub const CANARY: &str = "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: canary, namespace: default}\nspec:\n  tenantId: canary\n  servers:\n    mcpServers:\n    - {name: x, url: 'https://u:p@example.com/mcp'}\n";

/// A `ValidatingWebhookConfiguration` named `name` that sends creates and updates of
/// tenant-mcp's resources to a webhook served in this process at `https://127.0.0.1:port`
/// (its certificate signed by `ca_pem`), with failure policy `policy` (`Fail` or `Ignore`).
pub fn configuration_by_url(
    name: &str,
    port: u16,
    ca_pem: &str,
    policy: &str,
) -> ValidatingWebhookConfiguration {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": "validate.tenantmcp.dev",
            "clientConfig": {
                "url": format!("https://127.0.0.1:{port}{}", server::PATH),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            },
            "rules": [{"apiGroups": ["tenantmcp.dev"], "apiVersions": ["*"],
                       "operations": ["CREATE", "UPDATE"],
                       "resources": ["tenantmcpconfigs", "globalmcpconfigs"], "scope": "*"}],
            "failurePolicy": policy, "sideEffects": "None", "timeoutSeconds": 5,
            "matchPolicy": "Equivalent", "admissionReviewVersions": ["v1"],
        }],
    }))
    .unwrap_or_else(|e| unreachable!("a well-formed configuration: {e}"))
}
