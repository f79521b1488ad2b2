//! The `--database-url` flag shared by the subcommands that talk to the mirror database, and
//! the runtime they run on.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Where the mirror database is.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Postgres URL of the database holding `tenant_configs`
    /// (`postgres://user:password@host:5432/db?sslmode=verify-full`). Prefer the environment
    /// variable: a flag's value shows in the process list.
    #[arg(long, env = "TENANT_MCP_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Seconds to wait for a connection.
    #[arg(
        long,
        env = "TENANT_MCP_DATABASE_CONNECT_TIMEOUT",
        default_value_t = 10
    )]
    pub connect_timeout_seconds: u64,
}

impl DatabaseArgs {
    /// A small pool for a command-line task.
    pub async fn connect(&self) -> anyhow::Result<PgPool> {
        let options: sqlx::postgres::PgConnectOptions = self
            .database_url
            .parse()
            // The URL holds a password: say what is wrong without echoing it.
            .map_err(|e: sqlx::Error| {
                anyhow::anyhow!(
                    "--database-url is not a valid Postgres URL: {}",
                    strip_url(&e.to_string())
                )
            })?;
        PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(self.connect_timeout_seconds))
            .connect_with(options)
            .await
            .context("connecting to the database (--database-url)")
    }
}

fn strip_url(message: &str) -> String {
    tenant_mcp::config::redact::redact_url_userinfo(message).unwrap_or_else(|| message.to_owned())
}

/// Runs `future` to completion on a fresh multi-threaded runtime.
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(future))
}
