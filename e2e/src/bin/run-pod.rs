//! `run-pod`: runs a Deployment's container as a local process, as a kubelet would start its
//! pod (`tenant_mcp_e2e::workload`): under its ServiceAccount's token, with its environment
//! and mounted Secrets and ConfigMaps from the cluster, until SIGTERM or Ctrl-C. The demo runs
//! the chart's controller and management server, and the sample app, this way.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tenant_mcp_e2e::harness::Cluster;
use tenant_mcp_e2e::workload::{LocalPod, PodOptions};

/// Runs a Deployment's pod locally.
#[derive(Debug, Parser)]
#[command(name = "run-pod", version)]
struct Args {
    /// The Deployment's namespace.
    #[arg(long, short = 'n', env = "RUN_POD_NAMESPACE")]
    namespace: String,
    /// The Deployment.
    #[arg(long, env = "RUN_POD_DEPLOYMENT")]
    deployment: String,
    /// The binary that stands for the container's image.
    #[arg(long, env = "RUN_POD_PROGRAM")]
    program: PathBuf,
    /// `NAME=value` set after the pod's own environment (e.g. a listening address: the
    /// process shares the host's network), repeatable. `$(POD_IP)` in a value, as in a pod
    /// spec, is the address a Service endpoint for this pod points at (the host's, not
    /// loopback).
    #[arg(long = "env", value_parser = parse_pair)]
    env: Vec<(String, String)>,
    /// `PORT_NAME=local_port`: the container port the process listens on at that local port
    /// (set its listening address with --env to the host's address); Services selecting the
    /// pod get an EndpointSlice pointing there, as for a running pod. Repeatable.
    #[arg(long = "publish", value_parser = parse_port)]
    publish: Vec<(String, u16)>,
    /// Where to copy the pod's log (stdout and stderr) as it is written.
    #[arg(long, env = "RUN_POD_LOG")]
    log: Option<PathBuf>,
}

/// Kubernetes' spelling of a dependent variable, for the pod's address.
const POD_IP: &str = "$(POD_IP)";

fn parse_port(text: &str) -> Result<(String, u16), String> {
    let (name, port) = parse_pair(text)?;
    let port = port
        .parse()
        .map_err(|_| format!("{text:?}: expected PORT_NAME=local_port"))?;
    Ok((name, port))
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?}: expected NAME=value"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tenant_mcp_e2e::stack::install_crypto_provider();
    let kubeconfig = std::env::var_os("KUBECONFIG").context("set KUBECONFIG to the cluster's")?;
    let cluster = Cluster::from_kubeconfig(PathBuf::from(kubeconfig)).await?;
    let pod_ip = if args.env.iter().any(|(_, v)| v.contains(POD_IP)) {
        tenant_mcp_e2e::workload::host_address()?.to_string()
    } else {
        String::new()
    };
    let overrides: Vec<(&str, String)> = args
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.replace(POD_IP, &pod_ip)))
        .collect();
    let publish: Vec<(&str, u16)> = args.publish.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    let pod = LocalPod::start(
        &cluster,
        &PodOptions {
            namespace: &args.namespace,
            deployment: &args.deployment,
            program: &args.program,
            env_overrides: &overrides,
            publish: &publish,
        },
    )
    .await?;
    eprintln!(
        "run-pod: {}/{} running as pod {} (log {})",
        args.namespace,
        args.deployment,
        pod.name,
        pod.service.log_file().display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut copied = 0;
    loop {
        if let Some(path) = &args.log {
            let text = std::fs::read(pod.service.log_file()).unwrap_or_default();
            if text.len() > copied {
                use std::io::Write as _;
                let mut out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                out.write_all(&text[copied..])?;
                copied = text.len();
            }
        }
        tokio::select! {
            r = tokio::signal::ctrl_c() => { r?; break; }
            _ = term.recv() => break,
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    }
    drop(pod);
    Ok(())
}
