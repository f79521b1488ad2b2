//! `tenant-mcp mirror verify [--repair]`: every `tenant_configs` row against what the
//! controller would write from the cluster now ([`tenant_mcp::controller::verify`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tenant_mcp::controller::verify::{self, Finding, Problem};
use tenant_mcp::crypto::Keyring;
use tenant_mcp::mirror::MirrorWriter;

use super::database::{DatabaseArgs, block_on};
use super::inspect::Output;

/// Arguments of `mirror`.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: MirrorAction,
}

/// The mirror actions.
#[derive(Debug, Subcommand)]
pub enum MirrorAction {
    /// List rows whose content or version disagrees with the cluster's `status.active`
    /// (changed outside the controller, a version pushed ahead, a row no config serves); with
    /// `--repair`, rewrite them as the controller would. Exit 0 when every row agrees (or was
    /// repaired), 1 when some do not.
    Verify(VerifyArgs),
}

/// Arguments of `mirror verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The database. Reading needs `tenant_mcp_uber_admin` or `tenant_mcp_controller`;
    /// `--repair` needs `tenant_mcp_controller`.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The keys directory the controller uses (to open the rows and seal repairs).
    #[arg(long, env = "TENANT_MCP_KEYS_DIR")]
    pub keys_dir: PathBuf,
    /// Rewrite every row that disagrees with what the controller would write now.
    #[arg(long, env = "TENANT_MCP_MIRROR_REPAIR")]
    pub repair: bool,
    /// As the controller's `--tenant-configs-enabled` (with false, every row is expected in
    /// state `disabled`).
    #[arg(
        long,
        env = "TENANT_MCP_TENANT_CONFIGS_ENABLED",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub tenant_configs_enabled: bool,
    /// Output format.
    #[arg(short, long, env = "TENANT_MCP_OUTPUT", value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Runs `mirror`.
pub fn run(args: &MirrorArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        MirrorAction::Verify(args) => block_on(verify_rows(args))?,
    }
}

async fn verify_rows(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let keyring = Keyring::from_dir(&args.keys_dir)
        .with_context(|| format!("loading keys from --keys-dir {}", args.keys_dir.display()))?;
    let pool = args.database.connect().await?;
    let writer = MirrorWriter::new(pool.clone(), Arc::new(keyring))
        .await
        .context("checking the mirror database and keys")?;
    let kube = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster, KUBECONFIG or ~/.kube/config)")?;
    let cluster = verify::expected(kube, args.tenant_configs_enabled)
        .await
        .map_err(anyhow::Error::msg)?;
    let rows = writer.rows().await?;
    let mut opened = HashMap::new();
    for row in rows.iter().filter(|r| r.has_document) {
        match writer.read(&row.tenant).await {
            Ok(Some(stored)) => opened.insert(row.tenant.clone(), Ok(stored)),
            // Cleared since it was listed.
            Ok(None) => None,
            Err(e) => opened.insert(row.tenant.clone(), Err(e)),
        };
    }
    let mut findings = verify::compare(&cluster, &rows, &opened);
    if args.repair {
        for finding in &mut findings {
            repair(&writer, &cluster, finding)
                .await
                .with_context(|| format!("repairing the row of tenant {:?}", finding.tenant))?;
        }
    }
    pool.close().await;
    print(args.output, &findings, rows.len())?;
    Ok(if findings.iter().all(|f| f.repaired) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Rewrites one row as the controller would: the cluster's document at its version, or
/// cleared at the cluster's current version when no config owns the tenant.
async fn repair(
    writer: &MirrorWriter,
    cluster: &verify::ClusterMirror,
    finding: &mut Finding,
) -> anyhow::Result<()> {
    if !finding.problems.iter().all(Problem::repairable) {
        return Ok(());
    }
    match cluster.expected.get(&finding.tenant) {
        Some(expected) => {
            let Ok(document) = &expected.document else {
                return Ok(());
            };
            writer.force_write(document, expected.version).await?;
        }
        None => writer.force_clear(&finding.tenant, cluster.now).await?,
    }
    finding.repaired = true;
    Ok(())
}

fn print(output: Output, findings: &[Finding], rows: usize) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(findings)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(findings)?),
        Output::Text => {
            if findings.is_empty() {
                println!("every mirror row agrees with the cluster ({rows} rows)");
                return Ok(());
            }
            let version = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
            for f in findings {
                println!(
                    "{} (config {}, row version {}, cluster version {}){}",
                    f.tenant,
                    f.config.as_deref().unwrap_or("none"),
                    version(f.row_version),
                    version(f.cluster_version),
                    if f.repaired { ": repaired" } else { "" }
                );
                for p in &f.problems {
                    println!("  {}", p.describe());
                }
            }
            let left = findings.iter().filter(|f| !f.repaired).count();
            println!(
                "{} of {rows} rows disagree with the cluster{}",
                findings.len(),
                match left {
                    0 => "; all repaired".to_owned(),
                    n if n == findings.len() => String::new(),
                    n => format!("; {n} not repaired"),
                }
            );
        }
    }
    Ok(())
}
