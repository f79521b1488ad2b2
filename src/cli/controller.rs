//! `tenant-mcp controller`: runs the operator until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tenant_mcp::controller::{self, LeaseSettings, Settings};
use tenant_mcp::crypto::Keyring;
use tenant_mcp::mirror::MirrorWriter;
use tokio_util::sync::CancellationToken;

use super::database::block_on;

/// Arguments of `controller`. The Kubernetes connection comes from the in-cluster service
/// account, or `KUBECONFIG` / `~/.kube/config` outside a cluster.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Postgres URL of the database holding `tenant_configs`; without it nothing is mirrored.
    /// Prefer the environment variable: a flag's value shows in the process list.
    #[arg(long, env = "TENANT_MCP_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory with the mirror's encryption keys (one file per key, and `active`); required
    /// with a database.
    #[arg(long, env = "TENANT_MCP_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Seconds between looks at `--keys-dir` for a changed keys Secret (a rotation needs no
    /// restart).
    #[arg(long, env = "TENANT_MCP_KEYS_RELOAD_SECONDS", default_value_t = 30)]
    pub keys_reload_seconds: u64,
    /// Most connections to the mirror database.
    #[arg(long, env = "TENANT_MCP_DATABASE_MAX_CONNECTIONS", default_value_t = 4)]
    pub database_max_connections: u32,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "TENANT_MCP_METRICS_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_address: SocketAddr,
    /// Take part in leader election (run several replicas safely).
    #[arg(long, env = "TENANT_MCP_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tenant-mcp-system")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "TENANT_MCP_LEASE_NAME",
        default_value = "tenant-mcp-controller"
    )]
    pub lease_name: String,
    /// Seconds a leader keeps the Lease without renewing it (failover time).
    #[arg(long, env = "TENANT_MCP_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// This replica's name (the pod name), for the Lease and events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a superseded snapshot Secret is kept so clients can switch to the new one.
    #[arg(long, env = "TENANT_MCP_SNAPSHOT_GRACE_SECONDS", default_value_t = 300)]
    pub snapshot_grace_seconds: u64,
    /// Seconds before a server that was down or slow is checked again.
    #[arg(long, env = "TENANT_MCP_RETRY_SECONDS", default_value_t = 30)]
    pub retry_seconds: u64,
    /// Most connection tests at once, across all tenants.
    #[arg(long, env = "TENANT_MCP_PROBE_CONCURRENCY", default_value_t = 32)]
    pub probe_concurrency: usize,
    /// Most configs reconciled at once.
    #[arg(long, env = "TENANT_MCP_RECONCILE_CONCURRENCY", default_value_t = 16)]
    pub reconcile_concurrency: u16,
    /// The deployment-wide feature flag: `false` sends every tenant to the global servers
    /// (nothing is deleted).
    #[arg(long, env = "TENANT_MCP_TENANT_CONFIGS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub tenant_configs_enabled: bool,
    /// Application service accounts (`namespace/name`, comma-separated) whose client library
    /// reads snapshots in every namespace: each config gets a Role granting them `get` on
    /// exactly its snapshot Secrets. Empty: no such Roles are made.
    #[arg(
        long = "snapshot-reader",
        env = "TENANT_MCP_SNAPSHOT_READERS",
        value_delimiter = ','
    )]
    pub snapshot_readers: Vec<tenant_mcp::controller::readers::ServiceAccount>,
}

/// Runs `controller`.
pub fn run(args: &ControllerArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let mirror = match (&args.database_url, &args.keys_dir) {
            (None, _) => None,
            (Some(_), None) => anyhow::bail!(
                "--keys-dir (TENANT_MCP_KEYS_DIR) is required with --database-url: the mirror encrypts credentials"
            ),
            (Some(url), Some(dir)) => {
                let keyring = Keyring::from_dir(dir)
                    .with_context(|| format!("loading keys from --keys-dir {}", dir.display()))?;
                let options: PgConnectOptions = url.parse().map_err(|_| {
                    anyhow::anyhow!("--database-url is not a valid Postgres URL (postgres://user:password@host:5432/db)")
                })?;
                let pool = PgPoolOptions::new()
                    .max_connections(args.database_max_connections)
                    .acquire_timeout(Duration::from_secs(10))
                    // The controller starts even when the database is down; the Mirrored
                    // condition says so until it is back.
                    .connect_lazy_with(options);
                let keyring = Arc::new(keyring);
                match MirrorWriter::new(pool.clone(), keyring.clone()).await {
                    Ok(writer) => Some(writer),
                    // The mirror is not on the serving path: promote configs while the
                    // database is down, check the schema and keys when it answers.
                    Err(e @ tenant_mcp::mirror::MirrorError::Connect(_)) => {
                        tracing::warn!(
                            "{e}; starting anyway: configs are promoted, Mirrored stays False until the database answers"
                        );
                        Some(MirrorWriter::unchecked(pool, keyring))
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e).context(
                            "checking the mirror database (run `tenant-mcp migrate up` first)",
                        ));
                    }
                }
            }
        };
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes (in-cluster, KUBECONFIG or ~/.kube/config)")?;
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let settings = Settings {
            snapshot_grace: Duration::from_secs(args.snapshot_grace_seconds),
            retry_interval: Duration::from_secs(args.retry_seconds.max(1)),
            tenant_configs_enabled: args.tenant_configs_enabled,
            snapshot_readers: args.snapshot_readers.clone(),
            probe_concurrency: args.probe_concurrency,
            reconcile_concurrency: args.reconcile_concurrency,
            lease: args.leader_election.then(|| LeaseSettings {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                duration: Duration::from_secs(args.lease_duration_seconds.max(3)),
            }),
            listen: Some(args.metrics_address),
            identity,
            ..Settings::default()
        };
        let shutdown = CancellationToken::new();
        if let (Some(writer), Some(dir)) = (&mirror, &args.keys_dir) {
            let writer = writer.clone();
            tokio::spawn(tenant_mcp::mirror::reload::watch_keys(
                dir.clone(),
                writer.keyring(),
                Duration::from_secs(args.keys_reload_seconds.max(1)),
                shutdown.clone(),
                move |keyring| {
                    let writer = writer.clone();
                    async move { writer.use_keyring(keyring).await.map_err(|e| e.to_string()) }
                },
            ));
        }
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing in-flight reconciles");
            on_signal.cancel();
        });
        controller::run(client, settings, mirror, shutdown, None)
            .await
            .context("controller stopped")?;
        Ok(ExitCode::SUCCESS)
    })?
}

/// Resolves on SIGTERM or SIGINT.
pub(super) async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
