//! `kube-standin`: the Kubernetes API stand-in as a process, for kubectl sessions and for
//! restart tests.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tenant_mcp_e2e::apiserver::{ApiServer, Config};

/// Serves enough of the Kubernetes API for kubectl, kube-rs and tenant-mcp, on loopback.
#[derive(Debug, Parser)]
#[command(name = "kube-standin", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "STANDIN_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File that keeps the objects across restarts.
    #[arg(long, env = "STANDIN_DATA_FILE")]
    data_file: Option<PathBuf>,
    /// Static token file (`token,user,uid,"group1,group2"` per line); without one everyone is
    /// an administrator.
    #[arg(long, env = "STANDIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve plain HTTP instead of HTTPS (kubectl sends no bearer tokens over plain HTTP,
    /// so use this only without a token file).
    #[arg(long, env = "STANDIN_PLAIN_HTTP")]
    plain_http: bool,
    /// Keep the serving CA, certificate and key here (default: `<data-file>.tls`, or new
    /// ones on every start without a data file).
    #[arg(long, env = "STANDIN_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// Write a kubeconfig for the server here once it listens.
    #[arg(long, env = "STANDIN_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Bearer token to put in that kubeconfig.
    #[arg(long, env = "STANDIN_KUBECONFIG_TOKEN")]
    kubeconfig_token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STANDIN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let server = ApiServer::start(Config {
        listen: Some(args.listen),
        data_file: args.data_file,
        token_file: args.token_file,
        plain_http: args.plain_http,
        tls_dir: args.tls_dir,
    })
    .await
    .context("starting the API stand-in")?;
    if let Some(path) = &args.kubeconfig {
        server
            .write_kubeconfig(path, args.kubeconfig_token.as_deref())
            .with_context(|| format!("writing the kubeconfig to {}", path.display()))?;
    }
    println!("{}", server.url());
    tracing::info!(url = server.url(), "serving the Kubernetes API stand-in");
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(())
}
