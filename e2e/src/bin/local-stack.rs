//! `local-stack`: the whole local stack, for the demo and for poking around by hand: a real
//! Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, with tenant-mcp's
//! CRDs installed), Postgres, a global and a per-tenant S3 server, the MCP reference server and
//! the test AI MCP server. It writes a kubeconfig and a shell-sourceable `env` file with every
//! endpoint and credential into the state directory, then runs until interrupted and tears
//! everything down.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer, Token};
use tenant_mcp_e2e::stack::kube::ControlPlane;
use tenant_mcp_e2e::stack::mcp_everything::EverythingMcpServer;
use tenant_mcp_e2e::stack::postgres::Postgres;
use tenant_mcp_e2e::stack::s3::S3Server;

/// The bucket created empty on each S3 server (`STACK_S3_BUCKET`).
const BUCKET: &str = "documents";

/// Starts the local stack and keeps it running until interrupted.
#[derive(Debug, Parser)]
#[command(name = "local-stack", version)]
struct Args {
    /// Where the kubeconfig and the `env` file are written.
    #[arg(long, env = "STACK_DIR", default_value = ".stack")]
    state_dir: PathBuf,
    /// Start everything, print the timings, then stop (a smoke test of the stack).
    #[arg(long, env = "STACK_CHECK")]
    check: bool,
    /// The tenant that gets its own S3 server and AI MCP token.
    #[arg(long, env = "STACK_TENANT", default_value = "acme")]
    tenant: String,
}

fn secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn timed<T, F>(
    timings: &mut Vec<(&'static str, Duration)>,
    name: &'static str,
    f: F,
) -> anyhow::Result<T>
where
    F: FnOnce() -> Result<T, tenant_mcp_e2e::stack::StackError> + Send + 'static,
    T: Send + 'static,
{
    let start = Instant::now();
    let value = tokio::task::spawn_blocking(f)
        .await?
        .with_context(|| format!("starting {name}"))?;
    timings.push((name, start.elapsed()));
    Ok(value)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STACK_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    tenant_mcp_e2e::stack::install_crypto_provider();
    let started = Instant::now();
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let state_dir = args
        .state_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.state_dir.display()))?;
    let mut timings = Vec::new();

    // The slow starters (initdb, node) first, in the background.
    let postgres = tokio::task::spawn_blocking(|| {
        let start = Instant::now();
        Postgres::start().map(|pg| (pg, start.elapsed()))
    });
    let everything = tokio::task::spawn_blocking(|| {
        let start = Instant::now();
        EverythingMcpServer::start().map(|s| (s, start.elapsed()))
    });

    let start = Instant::now();
    let api = tokio::task::spawn_blocking(ControlPlane::start)
        .await?
        .context("starting the Kubernetes control plane")?;
    let kubeconfig = state_dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, &tenant_mcp_e2e::stack::kube::User::Admin)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    let client = tenant_mcp_e2e::harness::client_for(&kubeconfig).await?;
    tenant_mcp_e2e::harness::install_crds(&client).await?;
    timings.push(("Kubernetes control plane + CRDs", start.elapsed()));

    let (global_key, global_secret) = ("global-access".to_owned(), secret());
    let (gk, gs) = (global_key.clone(), global_secret.clone());
    let global_s3 = timed(&mut timings, "S3 (global)", move || {
        S3Server::start(&gk, &gs)
    })
    .await?;
    let (tenant_key, tenant_secret) = (format!("{}-access", args.tenant), secret());
    let (tk, ts) = (tenant_key.clone(), tenant_secret.clone());
    let tenant_s3 = timed(&mut timings, "S3 (tenant)", move || {
        S3Server::start(&tk, &ts)
    })
    .await?;

    let start = Instant::now();
    let (platform_token, tenant_token) = (secret(), secret());
    let ai = AiMcpServer::start(AiMcpConfig::new(
        "shared-ai",
        vec![
            Token {
                token: platform_token.clone(),
                tenant: None,
            },
            Token {
                token: tenant_token.clone(),
                tenant: Some(args.tenant.clone()),
            },
        ],
    ))
    .context("starting the test AI MCP server")?;
    // The tenant's own AI MCP server: every request on it is the tenant's, none names one.
    let tenant_ai = AiMcpServer::start(AiMcpConfig::new(
        &format!("{}-dedicated", args.tenant),
        vec![Token {
            token: tenant_token.clone(),
            tenant: None,
        }],
    ))
    .context("starting the tenant's AI MCP server")?;
    timings.push(("test AI MCP servers (shared, tenant)", start.elapsed()));

    let (pg, pg_time) = postgres.await?.context("starting Postgres")?;
    timings.push(("Postgres (initdb + start)", pg_time));
    let database = pg.create_database("tenant_mcp").await?;
    let (everything, everything_time) = everything
        .await?
        .context("starting the MCP reference server")?;
    timings.push(("MCP reference server (node)", everything_time));
    let total = started.elapsed();

    // One empty bucket on each S3 server for the sample app and the demo's tenants.
    for s3 in [&global_s3, &tenant_s3] {
        s3.client()
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .with_context(|| format!("creating bucket {BUCKET} on {}", s3.endpoint()))?;
    }

    let tenant_upper = args.tenant.to_uppercase().replace('-', "_");
    let env = format!(
        "# Written by local-stack; valid while it runs. Source it: . {dir}/env\n\
         export KUBECONFIG={kubeconfig}\n\
         export STACK_DATABASE_URL={db_url}\n\
         export STACK_S3_BUCKET={BUCKET}\n\
         export STACK_S3_ENDPOINT={gs3}\n\
         export STACK_S3_ACCESS_KEY={global_key}\n\
         export STACK_S3_SECRET_KEY={global_secret}\n\
         export STACK_{tenant_upper}_S3_ENDPOINT={ts3}\n\
         export STACK_{tenant_upper}_S3_ACCESS_KEY={tenant_key}\n\
         export STACK_{tenant_upper}_S3_SECRET_KEY={tenant_secret}\n\
         export STACK_AI_MCP_URL={ai_url}\n\
         export STACK_AI_MCP_BASE_URL={ai_base}\n\
         export STACK_AI_MCP_PLATFORM_TOKEN={platform_token}\n\
         export STACK_{tenant_upper}_AI_MCP_TOKEN={tenant_token}\n\
         export STACK_{tenant_upper}_AI_MCP_URL={tenant_ai_url}\n\
         export STACK_MCP_EVERYTHING_URL={everything_url}\n",
        dir = state_dir.display(),
        kubeconfig = kubeconfig.display(),
        db_url = pg.admin_url(&database),
        gs3 = global_s3.endpoint(),
        ts3 = tenant_s3.endpoint(),
        ai_url = ai.url(),
        ai_base = ai.base_url(),
        tenant_ai_url = tenant_ai.url(),
        everything_url = everything.url(),
    );
    let env_file = state_dir.join("env");
    write_private(&env_file, &env)?;

    println!(
        "local stack up in {:.1}s (components started in parallel):",
        total.as_secs_f64()
    );
    for (name, took) in &timings {
        println!("  {name:<32} {:>6.2}s", took.as_secs_f64());
    }
    println!(
        "  Kubernetes API   {} (logs in {})",
        api.url(),
        api.dir().display()
    );
    println!(
        "  Postgres         127.0.0.1:{} database {database}",
        pg.port()
    );
    println!("  S3 (global)      {}", global_s3.endpoint());
    println!("  S3 ({})        {}", args.tenant, tenant_s3.endpoint());
    println!("  AI MCP (shared)  {}", ai.url());
    println!("  AI MCP ({})    {}", args.tenant, tenant_ai.url());
    println!("  MCP reference    {}", everything.url());
    println!("credentials and endpoints: . {}", env_file.display());

    if !args.check {
        println!("running; Ctrl-C to stop");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    let _ = std::fs::remove_file(&env_file);
    drop(api);
    ai.stop();
    tenant_ai.stop();
    pg.stop();
    drop((global_s3, tenant_s3, everything));
    println!("local stack stopped");
    Ok(())
}
