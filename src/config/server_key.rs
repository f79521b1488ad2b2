//! The name of one server of a config (`postgres`, `minio`, `aiMcpServer`,
//! `mcpServers.<name>`): the key every status entry, snapshot, failure and metric uses.

use std::fmt;

use crate::api::ServersSpec;

/// One server type of a config: `postgres`, `minio`, `aiMcpServer` or `mcpServers.<name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerKey {
    /// `servers.postgres`.
    Postgres,
    /// `servers.minio`.
    Minio,
    /// `servers.aiMcpServer`.
    AiMcp,
    /// `servers.mcpServers[name]`.
    Mcp(String),
}

impl ServerKey {
    /// The key as used in `status.servers` and snapshot labels.
    pub fn as_string(&self) -> String {
        match self {
            Self::Postgres => "postgres".into(),
            Self::Minio => "minio".into(),
            Self::AiMcp => "aiMcpServer".into(),
            Self::Mcp(name) => format!("mcpServers.{name}"),
        }
    }

    /// The server type, for metric labels (bounded: custom MCP names are not labels).
    pub fn server_type(&self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Minio => "minio",
            Self::AiMcp => "aiMcpServer",
            Self::Mcp(_) => "mcpServer",
        }
    }

    /// The spec field of this server, e.g. `spec.servers.mcpServers[search]`.
    pub fn field(&self) -> String {
        match self {
            Self::Mcp(name) => format!("spec.servers.mcpServers[{name}]"),
            other => format!("spec.servers.{}", other.as_string()),
        }
    }

    /// Parses [`Self::as_string`] back.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "postgres" => Some(Self::Postgres),
            "minio" => Some(Self::Minio),
            "aiMcpServer" => Some(Self::AiMcp),
            _ => s
                .strip_prefix("mcpServers.")
                .map(|n| Self::Mcp(n.to_owned())),
        }
    }

    /// Every server a spec declares.
    pub fn declared(servers: &ServersSpec) -> Vec<Self> {
        let mut keys = Vec::new();
        if servers.postgres.is_some() {
            keys.push(Self::Postgres);
        }
        if servers.minio.is_some() {
            keys.push(Self::Minio);
        }
        if servers.ai_mcp_server.is_some() {
            keys.push(Self::AiMcp);
        }
        keys.extend(
            servers
                .mcp_servers
                .iter()
                .map(|n| Self::Mcp(n.name.clone())),
        );
        keys
    }
}

impl fmt::Display for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}
