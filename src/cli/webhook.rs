//! `tenant-mcp webhook`: the validating admission webhook for TenantMcpConfig and
//! GlobalMcpConfig, over HTTPS on `/validate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use tenant_mcp::admission::{server, tls};

use super::controller::wait_for_signal;
use super::database::block_on;

/// Arguments of `webhook`.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Address to serve HTTPS on (`/validate`).
    #[arg(
        long,
        env = "TENANT_MCP_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:9443"
    )]
    pub listen: SocketAddr,
    /// PEM certificate chain to serve (for the webhook Service's DNS name).
    #[arg(long, env = "TENANT_MCP_WEBHOOK_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    /// PEM private key of that certificate.
    #[arg(long, env = "TENANT_MCP_WEBHOOK_KEY_FILE")]
    pub tls_key_file: PathBuf,
}

/// Serves the webhook until SIGTERM or Ctrl-C.
pub fn run(args: &WebhookArgs) -> anyhow::Result<ExitCode> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
    };
    let cert = read(&args.tls_cert_file, "--tls-cert-file")?;
    let key = read(&args.tls_key_file, "--tls-key-file")?;
    block_on(async {
        tenant_mcp::probe::install_crypto_provider();
        let config = tls::server_config(&cert, &key).map_err(anyhow::Error::msg)?;
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes (in-cluster, KUBECONFIG or ~/.kube/config)")?;
        let tcp = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let listener = tls::TlsListener::new(tcp, config).context("starting TLS")?;
        tracing::info!(address = %args.listen, path = server::PATH, "admission webhook");
        axum::serve(listener, server::router(client))
            .with_graceful_shutdown(wait_for_signal())
            .await
            .context("serving")?;
        Ok(ExitCode::SUCCESS)
    })?
}
