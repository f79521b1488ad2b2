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

/// `POST /validate` with `body` to a webhook at `address` over TLS, as any client could (not
/// the API server): trusting `ca_pem` for `server_name`. The status code and the body.
pub async fn post_review(
    address: std::net::SocketAddr,
    ca_pem: &str,
    server_name: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())?;
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {server_name}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server::PATH,
        body.len()
    );
    tls.write_all(head.as_bytes()).await?;
    // The server may answer (a 413, say) before it has read everything.
    let _ = tls.write_all(body).await;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.into()),
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
