//! `local-stack`: the whole local stack, for the demo and for poking around by hand: a real
//! Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, with tenant-mcp's
//! CRDs installed), Postgres, a global and a per-tenant S3 server, the MCP reference server and
//! the test AI MCP server. It writes a kubeconfig and a shell-sourceable `env` file with every
//! endpoint and credential into the state directory, then runs until interrupted and tears
//! everything down.
//!
//! With `--node` the cluster runs Pods (`../shared/kube/cluster-up`: kubelet and containerd,
//! as root): the servers listen on the node's `HOST_IP` instead of loopback, so Pods reach
//! them, and the tenant-mcp and sample-app images are packed from this build and imported
//! into the node (there is no registry).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tenant_mcp_e2e::image::{PackedImage, SAMPLE_APP, TENANT_MCP, pack_built};
use tenant_mcp_e2e::stack::ai_mcp::{AiMcpConfig, AiMcpServer, Token};
use tenant_mcp_e2e::stack::kube::ControlPlane;
use tenant_mcp_e2e::stack::mcp_everything::EverythingMcpServer;
use tenant_mcp_e2e::stack::node::NodeCluster;
use tenant_mcp_e2e::stack::postgres::{Postgres, PostgresOptions};
use tenant_mcp_e2e::stack::s3::S3Server;

/// Where the servers listen without a node.
const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

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
    /// A node that runs Pods (cluster-up, needs root) instead of the API alone; the servers
    /// listen where Pods reach them, and the images are imported into the node.
    #[arg(long, env = "STACK_NODE")]
    node: bool,
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

/// The cluster the stack runs: the API alone, or a node that runs Pods.
enum Cluster {
    Api(Box<ControlPlane>),
    Node(NodeCluster),
}

impl Cluster {
    fn what(&self) -> &'static str {
        match self {
            Self::Api(_) => "Kubernetes control plane + CRDs",
            Self::Node(_) => "Kubernetes node (cluster-up) + CRDs",
        }
    }

    /// Where the servers listen: loopback, or the address Pods reach this host at.
    fn host_ip(&self) -> std::net::IpAddr {
        match self {
            Self::Api(_) => LOOPBACK,
            Self::Node(node) => node.host_ip(),
        }
    }

    fn pod_cidr(&self) -> Option<String> {
        match self {
            Self::Api(_) => None,
            Self::Node(node) => Some(node.pod_cidr().to_owned()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Api(api) => format!("{} (logs in {})", api.url(), api.dir().display()),
            Self::Node(node) => format!(
                "one node, Pods at {}, this host at {} (logs in {})",
                node.pod_cidr(),
                node.host_ip(),
                node.log_dir().display()
            ),
        }
    }
}

/// The env lines of a node: where Pods reach this host, and the imported images.
fn node_env(
    host: std::net::IpAddr,
    pod_cidr: Option<&str>,
    images: Option<&(PackedImage, PackedImage)>,
) -> String {
    let (Some(pod_cidr), Some((tenant_mcp, sample_app))) = (pod_cidr, images) else {
        return String::new();
    };
    format!(
        "export STACK_HOST_IP={host}\n\
         export STACK_POD_CIDR={pod_cidr}\n\
         export STACK_IMAGE_REPOSITORY={}\n\
         export STACK_IMAGE_TAG={}\n\
         export STACK_SAMPLE_APP_IMAGE={}:{}\n",
        tenant_mcp.repository, tenant_mcp.tag, sample_app.repository, sample_app.tag
    )
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

    // The slow starters in the background: the MCP reference server; the images (packing
    // needs no node); and Postgres, at once on loopback for the API alone, but after a node,
    // whose address for Pods it listens on.
    let everything = tokio::task::spawn_blocking(|| {
        let start = Instant::now();
        EverythingMcpServer::start().map(|s| (s, start.elapsed()))
    });
    let packing = args.node.then(|| {
        tokio::task::spawn_blocking(|| {
            let start = Instant::now();
            let tenant_mcp = pack_built(TENANT_MCP)?;
            let sample_app = pack_built(SAMPLE_APP)?;
            Ok::<_, tenant_mcp_e2e::stack::StackError>((tenant_mcp, sample_app, start.elapsed()))
        })
    });
    let start_postgres = |host: std::net::IpAddr, pod_cidr: Option<String>| {
        tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let options = PostgresOptions {
                pod_access: pod_cidr.as_deref().map(|cidr| (host, cidr)),
                ..PostgresOptions::default()
            };
            Postgres::start_with(&options).map(|pg| (pg, start.elapsed()))
        })
    };
    let early_postgres = (!args.node).then(|| start_postgres(LOOPBACK, None));

    let start = Instant::now();
    let kubeconfig = state_dir.join("kubeconfig");
    let cluster = if args.node {
        let node = tokio::task::spawn_blocking(NodeCluster::start)
            .await?
            .context("starting the one-node cluster (../shared/kube/cluster-up)")?;
        std::fs::copy(node.kubeconfig(), &kubeconfig)
            .with_context(|| format!("writing {}", kubeconfig.display()))?;
        Cluster::Node(node)
    } else {
        let api = tokio::task::spawn_blocking(ControlPlane::start)
            .await?
            .context("starting the Kubernetes control plane")?;
        api.write_kubeconfig(&kubeconfig, &tenant_mcp_e2e::stack::kube::User::Admin)
            .with_context(|| format!("writing {}", kubeconfig.display()))?;
        Cluster::Api(Box::new(api))
    };
    let client = tenant_mcp_e2e::harness::client_for(&kubeconfig).await?;
    tenant_mcp_e2e::harness::install_crds(&client).await?;
    timings.push((cluster.what(), start.elapsed()));
    let host = cluster.host_ip();
    let postgres = match early_postgres {
        Some(postgres) => postgres,
        None => start_postgres(host, cluster.pod_cidr()),
    };
    let images = match (&cluster, packing) {
        (Cluster::Node(node), Some(packing)) => {
            let (tenant_mcp, sample_app, packed) = packing.await?.context("packing the images")?;
            timings.push(("images packed", packed));
            let start = Instant::now();
            node.import(&tenant_mcp)
                .and_then(|()| node.import(&sample_app))
                .context("importing the images into the node")?;
            timings.push(("images imported", start.elapsed()));
            Some((tenant_mcp, sample_app))
        }
        _ => None,
    };

    let (global_key, global_secret) = ("global-access".to_owned(), secret());
    let (gk, gs) = (global_key.clone(), global_secret.clone());
    let global_s3 = timed(&mut timings, "S3 (global)", move || {
        S3Server::start_on(host, &gk, &gs)
    })
    .await?;
    let (tenant_key, tenant_secret) = (format!("{}-access", args.tenant), secret());
    let (tk, ts) = (tenant_key.clone(), tenant_secret.clone());
    let tenant_s3 = timed(&mut timings, "S3 (tenant)", move || {
        S3Server::start_on(host, &tk, &ts)
    })
    .await?;

    let start = Instant::now();
    let (platform_token, tenant_token) = (secret(), secret());
    let ai = AiMcpServer::start_on(
        AiMcpConfig::new(
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
        ),
        host,
    )
    .context("starting the test AI MCP server")?;
    // The tenant's own AI MCP server: every request on it is the tenant's, none names one.
    let tenant_ai = AiMcpServer::start_on(
        AiMcpConfig::new(
            &format!("{}-dedicated", args.tenant),
            vec![Token {
                token: tenant_token.clone(),
                tenant: None,
            }],
        ),
        host,
    )
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
         export STACK_MCP_EVERYTHING_URL={everything_url}\n{node_env}",
        dir = state_dir.display(),
        kubeconfig = kubeconfig.display(),
        db_url = pg.url_at(host, Postgres::SUPERUSER, pg.password(), &database),
        gs3 = global_s3.endpoint(),
        ts3 = tenant_s3.endpoint(),
        ai_url = ai.url(),
        ai_base = ai.base_url(),
        tenant_ai_url = tenant_ai.url(),
        everything_url = everything.url(),
        node_env = node_env(host, cluster.pod_cidr().as_deref(), images.as_ref()),
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
    println!("  Kubernetes       {}", cluster.describe());
    println!(
        "  Postgres         {host}:{} database {database}",
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
    drop(cluster);
    ai.stop();
    tenant_ai.stop();
    pg.stop();
    drop((global_s3, tenant_s3, everything));
    println!("local stack stopped");
    Ok(())
}
