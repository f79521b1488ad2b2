//! `tenant-mcp token`: mints an HS256 bearer token for the management MCP server, for setups
//! that sign tokens with a shared secret (and for trying the server out). Identity providers
//! that sign with RS256/ES256 issue their own.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

/// The role a token grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    /// Every tenant.
    UberAdmin,
    /// The `--tenant` only.
    TenantAdmin,
}

/// Arguments of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// File holding the HS256 secret the server verifies with (`--jwt-secret-file`).
    #[arg(long, env = "TENANT_MCP_JWT_SECRET_FILE")]
    pub secret_file: PathBuf,
    /// The caller's name (`sub`), as the audit log shows it.
    #[arg(long, env = "TENANT_MCP_TOKEN_SUBJECT")]
    pub subject: String,
    /// The role.
    #[arg(long, env = "TENANT_MCP_TOKEN_ROLE", value_enum)]
    pub role: TokenRole,
    /// The tenant of a tenant admin.
    #[arg(
        long,
        env = "TENANT_MCP_TOKEN_TENANT",
        required_if_eq("role", "tenant-admin")
    )]
    pub tenant: Option<String>,
    /// `iss`, when the server requires one.
    #[arg(long, env = "TENANT_MCP_JWT_ISSUER")]
    pub issuer: Option<String>,
    /// `aud`, when the server requires one.
    #[arg(long, env = "TENANT_MCP_JWT_AUDIENCE")]
    pub audience: Option<String>,
    /// Seconds until it expires.
    #[arg(long, env = "TENANT_MCP_TOKEN_TTL_SECONDS", default_value_t = 3600)]
    pub ttl_seconds: i64,
    /// Claim naming the tenant (as the server's `--tenant-claim`).
    #[arg(long, env = "TENANT_MCP_JWT_TENANT_CLAIM", default_value = "tenant")]
    pub tenant_claim: String,
    /// Claim listing the roles (as the server's `--roles-claim`).
    #[arg(long, env = "TENANT_MCP_JWT_ROLES_CLAIM", default_value = "roles")]
    pub roles_claim: String,
}

/// Runs `token`: prints the token.
pub fn run(args: &TokenArgs) -> anyhow::Result<ExitCode> {
    let secret = std::fs::read(&args.secret_file)
        .with_context(|| format!("reading --secret-file {}", args.secret_file.display()))?;
    let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
    if secret.len() < 32 {
        anyhow::bail!(
            "--secret-file holds {} bytes; the server needs at least 32",
            secret.len()
        );
    }
    let role = match args.role {
        TokenRole::UberAdmin => "uber_admin",
        TokenRole::TenantAdmin => "tenant_admin",
    };
    let mut claims = serde_json::json!({
        "sub": args.subject,
        "exp": jiff::Timestamp::now().as_second() + args.ttl_seconds,
        "iat": jiff::Timestamp::now().as_second(),
    });
    claims[&args.roles_claim] = serde_json::json!([role]);
    if let Some(tenant) = &args.tenant {
        claims[&args.tenant_claim] = serde_json::json!(tenant);
    }
    if let Some(iss) = &args.issuer {
        claims["iss"] = serde_json::json!(iss);
    }
    if let Some(aud) = &args.audience {
        claims["aud"] = serde_json::json!(aud);
    }
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .context("signing the token")?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
