//! `tenant-mcp crdgen`: writes `crds/*.yaml` from the Rust types, or checks they are current.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tenant_mcp::api::crd::crd_files;

/// Arguments of `crdgen`.
#[derive(Debug, Args)]
pub struct CrdgenArgs {
    /// Directory to write the CRD files into.
    #[arg(long, env = "TENANT_MCP_CRD_DIR", default_value = "crds")]
    pub out_dir: PathBuf,
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
    if args.check {
        let mut stale = Vec::new();
        for (name, yaml) in &files {
            let path = args.out_dir.join(name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(path.display().to_string());
            }
        }
        if stale.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("stale CRDs (run `tenant-mcp crdgen`): {}", stale.join(", "));
        return Ok(ExitCode::from(1));
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    for (name, yaml) in &files {
        let path = args.out_dir.join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
