//! The MCP project's reference server, `@modelcontextprotocol/server-everything` (npm, pinned
//! in `scripts/lib.sh`), over Streamable HTTP at `/mcp`: a third-party MCP server nobody here
//! wrote. It takes no credentials; it listens on every interface (the package offers no
//! host setting), on a port picked here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use super::process::{Service, Workdir, free_port};
use super::{START_TIMEOUT, StackError};

const HINT: &str = "scripts/test installs it with npm into .tools";

/// A running server-everything.
pub struct EverythingMcpServer {
    service: Service,
    port: u16,
    // Last, so the server stops before its directory goes.
    _dir: Workdir,
}

/// The package's entry point under `.tools`, or `$MCP_EVERYTHING`.
fn entry_point() -> Result<PathBuf, StackError> {
    if let Some(path) = std::env::var_os("MCP_EVERYTHING") {
        return Ok(PathBuf::from(path));
    }
    let path = super::repo_root()
        .join(".tools/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if path.exists() {
        Ok(path)
    } else {
        Err(StackError::Missing {
            program: "@modelcontextprotocol/server-everything".into(),
            hint: HINT.into(),
        })
    }
}

impl EverythingMcpServer {
    /// Starts the server; blocks until it accepts connections.
    pub fn start() -> Result<Self, StackError> {
        let entry = entry_point()?;
        let node = super::find_on_path("node").ok_or_else(|| StackError::Missing {
            program: "node".into(),
            hint: "scripts/test installs Node.js".into(),
        })?;
        let dir = Workdir::new("mcp-everything")?;
        let mut last = None;
        // The port was free a moment ago; another process may take it first, so retry.
        for _ in 0..3 {
            let port = free_port()?;
            let mut command = Command::new(&node);
            command
                .arg(&entry)
                .arg("streamableHttp")
                .env("PORT", port.to_string());
            let mut service = Service::start("mcp-everything", &dir, command)?;
            match service.wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), START_TIMEOUT) {
                Ok(()) => {
                    return Ok(Self {
                        service,
                        port,
                        _dir: dir,
                    });
                }
                Err(e @ StackError::Exited { .. }) if e.to_string().contains("in use") => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| StackError::Setup {
            service: "mcp-everything".into(),
            step: "finding a free port".into(),
            output: String::new(),
        }))
    }

    /// The Streamable HTTP endpoint (`http://127.0.0.1:PORT/mcp`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Whether the server is still running.
    pub fn is_running(&mut self) -> bool {
        self.service.is_running()
    }
}
