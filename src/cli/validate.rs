//! `tenant-mcp validate`: reads manifest files and directories and prints every problem by
//! file, object and field path.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use tenant_mcp::config::manifest::{Report, SourceDocument, check_documents, parse_documents};

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Manifest files or directories (searched recursively for *.yaml, *.yml and *.json);
    /// `-` reads standard input. Repeat the flag or separate paths with commas.
    #[arg(
        short = 'f',
        long = "filename",
        env = "TENANT_MCP_VALIDATE_FILES",
        value_delimiter = ',',
        required = true
    )]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, env = "TENANT_MCP_VALIDATE_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One line per problem: `FILE: KIND NAMESPACE/NAME: FIELD: MESSAGE`.
    Text,
    /// One JSON document, for pipelines.
    Json,
}

/// Runs `validate`.
pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let files = collect_files(&args.paths)?;
    let mut documents: Vec<SourceDocument> = Vec::new();
    for file in &files {
        let text = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            text
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        };
        documents.extend(parse_documents(&file.display().to_string(), &text));
    }
    let report = check_documents(&documents);
    match args.output {
        OutputFormat::Text => print_text(&report, files.len()),
        OutputFormat::Json => print_json(&report, files.len())?,
    }
    Ok(if report.invalid() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Expands directories into the manifest files under them, sorted; keeps files as given.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" || path.is_file() {
            out.push(path.clone());
        } else if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            anyhow::bail!("{}: no such file or directory", path.display());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

fn print_text(report: &Report, files: usize) {
    for object in &report.objects {
        let at = format!("{}: {}", object.source, object.display_name());
        for error in object.errors.iter() {
            if error.path.is_empty() {
                println!("{at}: {}", error.message);
            } else {
                println!("{at}: {error}");
            }
        }
        for warning in &object.warnings {
            println!("{at}: warning: {warning}");
        }
        if object.checked && object.is_valid() {
            println!("{at}: valid");
        }
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    println!(
        "{} objects checked in {files} files: {} valid, {} invalid; {} other objects skipped",
        report.valid() + report.invalid(),
        report.valid(),
        report.invalid(),
        report.skipped()
    );
}

fn print_json(report: &Report, files: usize) -> anyhow::Result<()> {
    let out = json!({
        "valid": report.invalid() == 0,
        "summary": {
            "files": files,
            "checked": report.valid() + report.invalid(),
            "valid": report.valid(),
            "invalid": report.invalid(),
            "skipped": report.skipped(),
        },
        "notes": report.notes,
        "objects": report.objects,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
