//! `tenant-mcp crdgen`: writes `crds/*.yaml`, the Helm chart's copy of them and the CRD
//! reference from the Rust types, or checks that they are current.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tenant_mcp::api::crd::crd_files;
use tenant_mcp::api::reference::reference_markdown;

/// Arguments of `crdgen`.
#[derive(Debug, Args)]
pub struct CrdgenArgs {
    /// Directory to write the CRD files into.
    #[arg(long, env = "TENANT_MCP_CRD_DIR", default_value = "crds")]
    pub out_dir: PathBuf,
    /// The Helm chart's CRD directory, which gets the same files.
    #[arg(
        long,
        env = "TENANT_MCP_CHART_CRD_DIR",
        default_value = "charts/tenant-mcp/crds"
    )]
    pub chart_crd_dir: PathBuf,
    /// Where to write the Markdown field reference.
    #[arg(
        long,
        env = "TENANT_MCP_CRD_REFERENCE",
        default_value = "docs/crd-reference.md"
    )]
    pub reference: PathBuf,
    /// Print all CRDs to stdout as one multi-document YAML instead of writing files.
    #[arg(long, env = "TENANT_MCP_CRD_STDOUT")]
    pub stdout: bool,
    /// Write nothing; exit 1 if any file in `--out-dir` differs from what would be written.
    #[arg(long, env = "TENANT_MCP_CRD_CHECK", conflicts_with = "stdout")]
    pub check: bool,
}

/// Runs `crdgen`.
pub fn run(args: &CrdgenArgs) -> anyhow::Result<ExitCode> {
    let files = crd_files().context("rendering the CRDs as YAML")?;
    if args.stdout {
        let docs: Vec<&str> = files.iter().map(|(_, yaml)| yaml.as_str()).collect();
        print!("{}", docs.join("---\n"));
        return Ok(ExitCode::SUCCESS);
    }
    let mut outputs: Vec<(PathBuf, String)> = files
        .iter()
        .flat_map(|(name, yaml)| {
            [&args.out_dir, &args.chart_crd_dir]
                .into_iter()
                .map(move |dir| (dir.join(name), yaml.clone()))
        })
        .collect();
    outputs.push((args.reference.clone(), reference_markdown()));
    if args.check {
        let mut stale = Vec::new();
        for (path, content) in &outputs {
            if std::fs::read_to_string(path).ok().as_deref() != Some(content.as_str()) {
                stale.push(path.display().to_string());
            }
        }
        if stale.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("stale CRDs (run `tenant-mcp crdgen`): {}", stale.join(", "));
        return Ok(ExitCode::from(1));
    }
    for (path, content) in &outputs {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
