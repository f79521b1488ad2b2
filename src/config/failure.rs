//! Why a server type could not be promoted: a reason from the one condition vocabulary, a
//! message without secrets, and whether trying again without a change may help.

use std::collections::BTreeMap;

use super::server_key::ServerKey;
use super::{ErrorKind, FieldErrors};
use crate::api::ServersSpec;
use crate::api::conditions::reason;

/// A failure of one server type (Secret resolution, validation or probe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// PascalCase reason (`AuthFailed`, `SecretNotFound`, …).
    pub reason: String,
    /// What happened and what to do; never a credential.
    pub message: String,
    /// Whether the same check may pass later without a change (server down or slow).
    pub retryable: bool,
}

impl Failure {
    /// A failure with `reason` and `message`.
    pub fn new(reason: &str, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            reason: reason.to_owned(),
            message: message.into(),
            retryable,
        }
    }
}

/// Whether a failure with `reason` may clear up without a change (the server was down or
/// slow), so it is re-checked sooner than the revalidation interval.
pub fn is_retryable_reason(reason: &str) -> bool {
    matches!(reason, reason::UNREACHABLE | reason::TIMEOUT)
}

/// Validation errors split by the server type they block. Errors outside every server (such as
/// the tenant id) block the whole config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SplitErrors {
    /// Errors that block everything.
    pub config_wide: Vec<String>,
    /// The first failure of each blocked server type.
    pub per_server: BTreeMap<ServerKey, Failure>,
}

/// Splits `errors` (paths from `spec`) by server type.
pub fn split_errors(errors: &FieldErrors, servers: &ServersSpec) -> SplitErrors {
    let mut split = SplitErrors::default();
    let mut messages: BTreeMap<ServerKey, (Vec<String>, bool)> = BTreeMap::new();
    for error in errors.iter() {
        let key = key_of_path(&error.path, servers);
        let line = error.to_string();
        match key {
            Some(key) => {
                let entry = messages.entry(key).or_default();
                entry.0.push(line);
                // A denied endpoint is named so, whatever else is wrong.
                let endpoint = ["host", "endpoint", "url", "port", "sslMode", "bucket"]
                    .iter()
                    .any(|f| error.path.ends_with(&format!(".{f}")));
                entry.1 |= error.kind == ErrorKind::Forbidden && endpoint;
            }
            None => split.config_wide.push(line),
        }
    }
    for (key, (lines, denied)) in messages {
        let reason = if denied {
            reason::POLICY_DENIED
        } else {
            reason::INVALID_SPEC
        };
        split
            .per_server
            .insert(key, Failure::new(reason, lines.join("; "), false));
    }
    split
}

/// The server a field path (from `spec`) belongs to.
pub fn key_of_path(path: &str, servers: &ServersSpec) -> Option<ServerKey> {
    let rest = path.strip_prefix("spec.servers.")?;
    let head = rest.split(['.', '[']).next()?;
    match head {
        "postgres" => Some(ServerKey::Postgres),
        "minio" => Some(ServerKey::Minio),
        "aiMcpServer" => Some(ServerKey::AiMcp),
        "mcpServers" => {
            let inside = rest.strip_prefix("mcpServers[")?.split(']').next()?;
            match inside.parse::<usize>() {
                Ok(i) => servers
                    .mcp_servers
                    .get(i)
                    .map(|n| ServerKey::Mcp(n.name.clone())),
                Err(_) => Some(ServerKey::Mcp(inside.to_owned())),
            }
        }
        _ => None,
    }
}
