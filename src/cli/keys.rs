//! `tenant-mcp keys generate|rotate`: encryption keys of the mirror's credential envelopes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tenant_mcp::crypto::{Keyring, generate_key};
use tenant_mcp::mirror::rotate_keys;

use super::database::{DatabaseArgs, block_on};

/// Arguments of `keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KeysAction,
}

/// The key actions.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Print a new random 32-byte key (base64) to add to the keys Secret.
    Generate,
    /// Re-encrypt every mirrored credential under the active key. Safe to interrupt and run
    /// again: each run picks up the rows still left. Exits 1 when rows are left.
    Rotate(RotateArgs),
}

/// Arguments of `keys rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Directory with one file per key and an `active` file naming the active key id (the keys
    /// Secret mounted as a volume).
    #[arg(long, env = "TENANT_MCP_KEYS_DIR")]
    pub keys_dir: PathBuf,
    /// Rows read per query.
    #[arg(long, env = "TENANT_MCP_ROTATE_BATCH_SIZE", default_value_t = 100)]
    pub batch_size: i64,
}

/// Runs `keys`.
pub fn run(args: &KeysArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        KeysAction::Generate => {
            println!("{}", generate_key());
            Ok(ExitCode::SUCCESS)
        }
        KeysAction::Rotate(args) => rotate(args),
    }
}

fn rotate(args: &RotateArgs) -> anyhow::Result<ExitCode> {
    let keyring = Keyring::from_dir(&args.keys_dir)
        .with_context(|| format!("loading keys from --keys-dir {}", args.keys_dir.display()))?;
    block_on(async {
        let pool = args.database.connect().await?;
        let report = rotate_keys(&pool, &keyring, args.batch_size, |r| {
            eprintln!("rotated {} row(s) so far", r.rotated);
        })
        .await?;
        pool.close().await;
        println!(
            "active key {}: rotated {}, changed by a writer meanwhile {}, failed {}, still on other keys {}",
            keyring.active_id(),
            report.rotated,
            report.raced,
            report.failed.len(),
            report.remaining
        );
        for (tenant, error) in &report.failed {
            println!("  tenant {tenant}: {error}");
        }
        if report.is_complete() {
            println!(
                "every row uses key {}; older keys can be removed from the Secret",
                keyring.active_id()
            );
            Ok(ExitCode::SUCCESS)
        } else {
            println!(
                "rows are left: fix the failures above (if any) and run `tenant-mcp keys rotate` again; keep the old keys until it succeeds"
            );
            Ok(ExitCode::from(1))
        }
    })?
}
