//! Launchers for the real servers the scenarios run against, each on a random loopback port
//! and stopped when dropped (logs kept when the test failed, or with `E2E_KEEP_LOGS=1`):
//!
//! - [`postgres::Postgres`]: Debian's PostgreSQL server, a throwaway cluster in a temp dir;
//! - [`s3::S3Server`]: `s3s-fs`, an S3 server on a directory that checks SigV4 signatures;
//! - [`mcp_everything::EverythingMcpServer`]: the MCP project's reference server
//!   (`@modelcontextprotocol/server-everything`) over Streamable HTTP;
//! - [`ai_mcp::AiMcpServer`]: the project's own multi-tenant test AI MCP server (rmcp), which
//!   routes by tenant header or path prefix, checks bearer tokens and reports whom it served.
//!
//! `scripts/test` installs the external programs (`scripts/lib.sh`); a launcher whose program
//! is missing says which script installs it.

pub mod admission_hold;
pub mod ai_mcp;
pub mod fault_proxy;
pub mod hostile_mcp;
pub mod kube;
pub mod mcp_everything;
pub mod mirror_db;
pub mod node;
pub mod postgres;
pub mod process;
pub mod s3;
pub mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a server of the local stack could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A program the stack needs is not installed.
    #[error("{program} not found ({hint})")]
    Missing {
        /// The program.
        program: String,
        /// How to install it.
        hint: String,
    },
    /// The program could not be started.
    #[error("starting {service} ({program}): {source}")]
    Spawn {
        /// The service.
        service: String,
        /// The program.
        program: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A setup step (initdb, creating a user) failed.
    #[error("{service}: {step} failed:\n{output}")]
    Setup {
        /// The service.
        service: String,
        /// The step.
        step: String,
        /// What the step printed.
        output: String,
    },
    /// The server exited while starting.
    #[error("{service} exited ({status}) while starting; its log ends:\n{log}")]
    Exited {
        /// The service.
        service: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// The server did not become ready in time.
    #[error("{service} was not ready after {after:?}; its log ends:\n{log}")]
    NotReady {
        /// The service.
        service: String,
        /// How long we waited.
        after: Duration,
        /// The end of its log.
        log: String,
    },
}

/// How long a server may take to start before the launcher gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The repository's root (where `.tools/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A program of the project's own tool directory (`.tools/bin/<name>`), or `$<env>`, or
/// `<name>` on `PATH`.
pub fn tool(name: &str, env: &str, hint: &str) -> Result<PathBuf, StackError> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(PathBuf::from(path));
    }
    let local = repo_root().join(".tools/bin").join(name);
    if local.exists() {
        return Ok(local);
    }
    find_on_path(name).ok_or_else(|| StackError::Missing {
        program: name.to_owned(),
        hint: hint.to_owned(),
    })
}

/// The `tenant-mcp` binary: `$TENANT_MCP_BIN`, else the one built next to the running test or
/// binary (`cargo build` / `cargo nextest run --workspace` build it).
pub fn tenant_mcp_binary() -> Result<PathBuf, StackError> {
    if let Some(path) = std::env::var_os("TENANT_MCP_BIN") {
        return Ok(PathBuf::from(path));
    }
    workspace_binary("tenant-mcp")
}

/// Runs `tenant-mcp args` with the extra environment `env`: its exit code (-1 when a signal
/// ended it) and its stdout followed by its stderr.
pub fn run_tenant_mcp(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> (i32, String) {
    let binary = match tenant_mcp_binary() {
        Ok(b) => b,
        Err(e) => return (-1, e.to_string()),
    };
    let mut command = std::process::Command::new(binary);
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    match command.output() {
        Ok(out) => (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (-1, format!("running tenant-mcp: {e}")),
    }
}

/// A binary of the workspace, built next to the running test or binary (`cargo build` /
/// `cargo nextest run --workspace` build them all).
pub fn workspace_binary(name: &str) -> Result<PathBuf, StackError> {
    let exe = std::env::current_exe().unwrap_or_default();
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| StackError::Missing {
            program: name.into(),
            hint: format!("build it with `cargo build --workspace` (the binary {name})"),
        })
}

/// The endpoint policy the local stack's servers need: the default one, plus loopback
/// addresses (every launcher listens on 127.0.0.1).
pub fn loopback_policy() -> tenant_mcp::config::EndpointPolicy {
    let spec = tenant_mcp::api::EndpointPolicySpec {
        allow_loopback: true,
        ..Default::default()
    };
    tenant_mcp::config::EndpointPolicy::compile(&spec, &tenant_mcp::config::FieldPath::default()).0
}

/// `name` on `PATH`, if it is there.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The connectors of `policy`, resolving with the system resolver (what probes and clients
/// use).
pub fn egress(policy: tenant_mcp::config::EndpointPolicy) -> tenant_mcp::egress::Egress {
    tenant_mcp::egress::Egress::new(
        policy,
        std::sync::Arc::new(tenant_mcp::egress::SystemLookup),
    )
    .unwrap_or_else(|e| panic!("egress: {e}"))
}

/// Makes rustls use *ring* for clients that do not pick a provider themselves (the MCP
/// client's reqwest); the workspace builds no other provider.
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
