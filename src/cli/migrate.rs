//! `tenant-mcp migrate up|down|status`: the mirror database's schema, forwards and back.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use tenant_mcp::mirror::migrate;

use super::database::{DatabaseArgs, block_on};

/// Arguments of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// What to do.
    #[command(subcommand)]
    pub action: MigrateAction,
}

/// The migration actions.
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert migrations: the newest applied one, or down to a version.
    Down {
        /// Revert every migration newer than this version (0 reverts all).
        #[arg(long, env = "TENANT_MCP_MIGRATE_TO", conflicts_with = "all")]
        to: Option<i64>,
        /// Revert every migration.
        #[arg(long, env = "TENANT_MCP_MIGRATE_ALL")]
        all: bool,
    },
    /// List the migrations and whether each is applied; changes nothing.
    Status,
}

/// Runs `migrate`.
pub fn run(args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    block_on(async {
        let pool = args.database.connect().await?;
        match &args.action {
            MigrateAction::Up => {
                migrate::up(&pool).await?;
                print_status(&pool).await?;
            }
            MigrateAction::Down { to, all } => {
                let target = match (to, all) {
                    (_, true) => Some(0),
                    (Some(to), false) => Some(*to),
                    (None, false) => migrate::previous_version(&pool).await?,
                };
                match target {
                    Some(target) => migrate::down_to(&pool, target).await?,
                    None => println!("nothing to revert: no migration is applied"),
                }
                print_status(&pool).await?;
            }
            MigrateAction::Status => print_status(&pool).await?,
        }
        pool.close().await;
        Ok(ExitCode::SUCCESS)
    })?
}

async fn print_status(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    println!("{:<8} {:<9} DESCRIPTION", "VERSION", "STATE");
    for m in migrate::status(pool).await? {
        let state = if m.applied { "applied" } else { "pending" };
        println!("{:<8} {:<9} {}", m.version, state, m.description);
    }
    Ok(())
}
