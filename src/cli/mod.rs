//! Command-line interface: argument parsing and dispatch. Each subcommand lives in its own
//! module; every flag can also be set from an environment variable.

mod controller;
mod crdgen;
mod database;
mod inspect;
mod keys;
mod mcp_server;
mod migrate;
mod mirror;
mod token;
mod validate;
mod webhook;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// tenant-mcp: per-tenant endpoints and credentials for Postgres, MinIO/S3 and MCP servers,
/// with safe fallback to global ones.
#[derive(Debug, Parser)]
#[command(name = "tenant-mcp", version, about, long_about = None)]
pub struct Cli {
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Logging options shared by every subcommand.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, global = true, env = "TENANT_MCP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, in `tracing` env-filter syntax (e.g. `info,tenant_mcp=debug`).
    #[arg(long, global = true, env = "TENANT_MCP_LOG", default_value = "warn")]
    pub log_level: String,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator: validate, connection-test, promote and mirror tenant configs.
    Controller(controller::ControllerArgs),
    /// Write the CustomResourceDefinitions generated from the Rust types.
    Crdgen(crdgen::CrdgenArgs),
    /// Check TenantMcpConfig and GlobalMcpConfig manifests offline (for CI and GitOps
    /// pipelines): exit 0 when all are valid, 1 when any is invalid, 2 when input cannot be read.
    Validate(validate::ValidateArgs),
    /// Apply, revert or list the mirror database's schema migrations.
    Migrate(migrate::MigrateArgs),
    /// Generate encryption keys, or re-encrypt the mirror under the active key.
    Keys(keys::KeysArgs),
    /// Check the mirror rows against the cluster, and repair them (`mirror verify`).
    Mirror(mirror::MirrorArgs),
    /// Serve the management MCP tools (register, update, get, list, delete, test tenant
    /// configs) to Tenant Admins and Uber Admins.
    McpServer(mcp_server::McpServerArgs),
    /// Mint an HS256 bearer token for the management MCP server (shared-secret setups).
    Token(token::TokenArgs),
    /// What serves every tenant now: per server type, where requests go and why, desired
    /// against active, the last check. Exit 0 when every tenant is served as declared, 1 when
    /// any needs attention.
    Status(inspect::StatusArgs),
    /// Where a tenant's requests go right now for each server type, and why (the client
    /// library's own routing): exit 0 when served, 1 when unavailable.
    Route(inspect::RouteArgs),
    /// Serve the validating admission webhook (HTTPS, `/validate`): refuses at `kubectl apply`
    /// what `validate` refuses, with the same messages.
    Webhook(webhook::WebhookArgs),
}

/// Sets up `tracing` on stderr.
pub fn init_logging(args: &LogArgs) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Controller(args) => controller::run(&args),
        Command::Crdgen(args) => crdgen::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Migrate(args) => migrate::run(&args),
        Command::Keys(args) => keys::run(&args),
        Command::Mirror(args) => mirror::run(&args),
        Command::McpServer(args) => mcp_server::run(&args),
        Command::Webhook(args) => webhook::run(&args),
        Command::Token(args) => token::run(&args),
        Command::Status(args) => inspect::run_status(&args),
        Command::Route(args) => inspect::run_route(&args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_reads_an_environment_variable() {
        fn walk(cmd: &clap::Command, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && !arg.is_positional() && arg.get_env().is_none() {
                    missing.push(format!("{} --{}", cmd.get_name(), arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), &mut missing);
        assert!(missing.is_empty(), "flags without env: {missing:?}");
    }
}
