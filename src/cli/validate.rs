//! `tenant-mcp validate`: reads manifest files and directories and prints every problem by
//! file, object and field path.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde_json::json;
use tenant_mcp::config::input_limits::{self, InputLimits};
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
    /// Largest file accepted, in bytes; a larger one stops the run (exit 2).
    #[arg(long, env = "TENANT_MCP_VALIDATE_MAX_FILE_BYTES", default_value_t = InputLimits::default().max_bytes)]
    pub max_file_bytes: usize,
    /// Deepest nesting accepted (block and flow collections together); deeper input stops the
    /// run (exit 2) before any parser sees it.
    #[arg(long, env = "TENANT_MCP_VALIDATE_MAX_DEPTH", default_value_t = InputLimits::default().max_depth)]
    pub max_depth: usize,
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
    let limits = InputLimits {
        max_bytes: args.max_file_bytes,
        max_depth: args.max_depth,
    };
    let mut documents: Vec<SourceDocument> = Vec::new();
    for file in &files {
        let name = if file.as_os_str() == "-" {
            "standard input".to_owned()
        } else {
            file.display().to_string()
        };
        let text = match read_limited(file, limits.max_bytes) {
            Ok(Ok(text)) => text,
            Ok(Err(refusal)) => anyhow::bail!("{name} {refusal}"),
            Err(e) => return Err(e).with_context(|| format!("reading {name}")),
        };
        input_limits::check(&text, limits)
            .map_err(|refusal| anyhow::anyhow!("{name}: {refusal}"))?;
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

/// The text of `file` (`-`: standard input), reading at most one byte past `max_bytes` so a
/// huge input is refused without being read whole.
fn read_limited(
    file: &Path,
    max_bytes: usize,
) -> anyhow::Result<Result<String, input_limits::InputRefusal>> {
    let cap = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin().take(cap).read_to_end(&mut bytes)?;
    } else {
        std::fs::File::open(file)?
            .take(cap)
            .read_to_end(&mut bytes)?;
    }
    if bytes.len() > max_bytes {
        // Say how large it is when the file system knows.
        let size = std::fs::metadata(file)
            .ok()
            .and_then(|m| usize::try_from(m.len()).ok())
            .unwrap_or(bytes.len());
        return Ok(Err(input_limits::InputRefusal::TooLarge {
            bytes: size,
            limit: max_bytes,
        }));
    }
    Ok(Ok(
        String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("not UTF-8 text"))?
    ))
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
