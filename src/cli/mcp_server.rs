//! `tenant-mcp mcp-server`: the management MCP server, over Streamable HTTP (default) or stdio.

use axum::serve::ListenerExt as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tenant_mcp::mcp_server::auth::{AuthSettings, Authenticator};
use tenant_mcp::mcp_server::http::{router, serve_stdio};
use tenant_mcp::mcp_server::limits::Limits;
use tenant_mcp::mcp_server::tools::ManagementTools;
use tenant_mcp::probe::Prober;
use tokio_util::sync::CancellationToken;

use super::controller::wait_for_signal;
use super::database::block_on;

/// Arguments of `mcp-server`. Exactly one of `--jwt-secret-file` and `--jwks-file` says how
/// bearer tokens are verified.
#[derive(Debug, Args)]
pub struct McpServerArgs {
    /// Address to serve Streamable HTTP on (`/mcp`).
    #[arg(long, env = "TENANT_MCP_MCP_LISTEN", default_value = "0.0.0.0:8090")]
    pub listen: SocketAddr,
    /// Serve one session on stdin/stdout instead (a local agent), as the holder of the token in
    /// TENANT_MCP_STDIO_TOKEN.
    #[arg(long, env = "TENANT_MCP_MCP_STDIO", default_value_t = false)]
    pub stdio: bool,
    /// File holding the HS256 shared secret (at least 32 bytes).
    #[arg(long, env = "TENANT_MCP_JWT_SECRET_FILE", conflicts_with = "jwks_file")]
    pub jwt_secret_file: Option<PathBuf>,
    /// File holding a JWKS with the RS256/ES256 public keys tokens are signed with.
    #[arg(long, env = "TENANT_MCP_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` of tokens.
    #[arg(long, env = "TENANT_MCP_JWT_ISSUER")]
    pub issuer: Option<String>,
    /// Required `aud` of tokens.
    #[arg(long, env = "TENANT_MCP_JWT_AUDIENCE")]
    pub audience: Option<String>,
    /// Claim naming the caller's tenant.
    #[arg(long, env = "TENANT_MCP_JWT_TENANT_CLAIM", default_value = "tenant")]
    pub tenant_claim: String,
    /// Claim listing the caller's roles (`uber_admin`, `tenant_admin`).
    #[arg(long, env = "TENANT_MCP_JWT_ROLES_CLAIM", default_value = "roles")]
    pub roles_claim: String,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TENANT_MCP_MAX_REQUEST_BYTES", default_value_t = 256 * 1024)]
    pub max_request_bytes: usize,
    /// HTTP requests per minute one caller may make, sustained (a tool call in a session of
    /// its own is about four).
    #[arg(long, env = "TENANT_MCP_RATE_PER_MINUTE", default_value_t = 600)]
    pub rate_per_minute: u32,
    /// Requests one caller may make at once before the rate applies.
    #[arg(long, env = "TENANT_MCP_RATE_BURST", default_value_t = 120)]
    pub rate_burst: u32,
    /// Seconds one tool call may take, connection tests included.
    #[arg(long, env = "TENANT_MCP_TOOL_TIMEOUT_SECONDS", default_value_t = 60)]
    pub tool_timeout_seconds: u64,
    /// `Host` values `/mcp` answers (the Service's DNS names, an ingress host), comma-separated;
    /// others are refused against DNS rebinding. Default: loopback names only.
    #[arg(
        long = "allowed-host",
        env = "TENANT_MCP_MCP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Most connection tests at once.
    #[arg(long, env = "TENANT_MCP_PROBE_CONCURRENCY", default_value_t = 16)]
    pub probe_concurrency: usize,
}

/// Runs `mcp-server`.
pub fn run(args: &McpServerArgs) -> anyhow::Result<ExitCode> {
    let settings = AuthSettings {
        issuer: args.issuer.clone(),
        audience: args.audience.clone(),
        tenant_claim: args.tenant_claim.clone(),
        roles_claim: args.roles_claim.clone(),
        ..AuthSettings::default()
    };
    let auth = match (&args.jwt_secret_file, &args.jwks_file) {
        (Some(path), None) => {
            let secret = std::fs::read(path)
                .with_context(|| format!("reading --jwt-secret-file {}", path.display()))?;
            let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
            Authenticator::hs256(secret, settings).context("--jwt-secret-file")?
        }
        (None, Some(path)) => {
            Authenticator::from_jwks_file(path, settings).context("--jwks-file")?
        }
        _ => anyhow::bail!(
            "say how tokens are verified: --jwt-secret-file (TENANT_MCP_JWT_SECRET_FILE) or --jwks-file (TENANT_MCP_JWKS_FILE)"
        ),
    };
    let limits = Arc::new(Limits {
        max_request_bytes: args.max_request_bytes,
        requests_per_minute: args.rate_per_minute,
        burst: args.rate_burst,
        tool_timeout: Duration::from_secs(args.tool_timeout_seconds.max(1)),
    });
    block_on(async {
        tenant_mcp::probe::install_crypto_provider();
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes (in-cluster, KUBECONFIG or ~/.kube/config)")?;
        let tools =
            ManagementTools::new(client, Prober::new(args.probe_concurrency), limits.clone());
        if args.stdio {
            let token = std::env::var("TENANT_MCP_STDIO_TOKEN")
                .context("--stdio needs the caller's token in TENANT_MCP_STDIO_TOKEN")?;
            serve_stdio(tools, &auth, &token).await?;
            return Ok(ExitCode::SUCCESS);
        }
        let stop = CancellationToken::new();
        let app = router(
            tools,
            Arc::new(auth),
            &limits,
            &args.allowed_hosts,
            stop.clone(),
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        tracing::info!(address = %args.listen, "management MCP server on /mcp");
        // Without TCP_NODELAY a response written in two parts on a kept-alive connection
        // waits out the client's delayed ACK: 40 ms per MCP request after the first.
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                wait_for_signal().await;
                stop.cancel();
            })
            .await
            .context("serving")?;
        Ok(ExitCode::SUCCESS)
    })?
}
