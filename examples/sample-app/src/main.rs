//! The sample app's binary: serves [`tenant_mcp_sample_app::App`] on a port, with tenant
//! configs from a Kubernetes API (the pod's service account or kubeconfig) or a directory
//! of manifests.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tenant_mcp::client::{ClientSettings, TenantClients};
use tenant_mcp_sample_app::App;

/// Options.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where to listen.
    #[arg(long, env = "SAMPLE_APP_LISTEN", default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Read tenant configs from this directory of manifests instead of the Kubernetes API.
    #[arg(long, env = "SAMPLE_APP_MANIFESTS")]
    manifests: Option<PathBuf>,
    /// The AI MCP tool asked for summaries (takes `{"prompt": …}`).
    #[arg(long, env = "SAMPLE_APP_SUMMARY_TOOL", default_value = "generate")]
    summary_tool: String,
    /// Count requests per tenant in the metrics for at most this many tenants (0: no tenant
    /// label).
    #[arg(long, env = "SAMPLE_APP_TENANT_METRICS_LIMIT", default_value_t = 0)]
    tenant_metrics_limit: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    // The global credentials' namespace comes from the GlobalMcpConfig itself.
    let settings = ClientSettings {
        tenant_metrics_limit: args.tenant_metrics_limit,
        ..ClientSettings::default()
    };
    let clients = match &args.manifests {
        Some(dir) => TenantClients::from_directory(dir, settings)
            .with_context(|| format!("loading manifests from {}", dir.display()))?,
        None => {
            let kube = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?;
            TenantClients::from_kube(kube, settings).await?
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "sample app serving");
    axum::serve(
        listener,
        App::new(clients.clone(), args.summary_tool).router(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    clients.shutdown().await;
    Ok(())
}
