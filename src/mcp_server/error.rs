//! Why a tool call failed, and how that reaches the MCP client: a JSON-RPC error whose message
//! a person can act on and whose `data` a program can (`reason`, and the field errors).

use rmcp::ErrorData;
use rmcp::model::ErrorCode;
use serde_json::json;

use super::auth::AuthError;
use super::input::describe;
use crate::config::FieldErrors;

/// A failed tool call. Messages never contain a credential.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The caller may not do this.
    #[error(transparent)]
    Forbidden(#[from] AuthError),
    /// The input or the config it would make is wrong; nothing was stored.
    #[error("{what}: {}", describe(.errors))]
    Invalid {
        /// What was being checked, e.g. `invalid config`.
        what: &'static str,
        /// Every problem, by field.
        errors: FieldErrors,
    },
    /// The tenant has no config.
    #[error("{0}")]
    NotFound(String),
    /// The tenant has a config already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The config changed since the caller read it, or another field manager owns what the
    /// call would change.
    #[error("{message}")]
    Conflict {
        /// What conflicts and what to do.
        message: String,
    },
    /// The call took longer than the server allows.
    #[error("{tool} did not finish within {seconds}s; nothing more will be done for this call")]
    Timeout {
        /// The tool.
        tool: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// A failure of the server itself.
    #[error("internal error: {0}")]
    Internal(String),
    /// The Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The API's error.
        #[source]
        source: kube::Error,
    },
}

impl ToolError {
    /// Every problem as an `Invalid` error.
    pub fn invalid(what: &'static str, errors: FieldErrors) -> Self {
        Self::Invalid { what, errors }
    }

    /// A Kubernetes API error while doing `action`.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    /// The machine-readable reason in the error's `data`, and the audit log's outcome.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "Forbidden",
            Self::Invalid { .. } => "Invalid",
            Self::NotFound(_) => "NotFound",
            Self::AlreadyExists(_) => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::Timeout { .. } => "Timeout",
            Self::Kube { .. } => "KubernetesError",
            Self::Internal(_) => "Internal",
        }
    }
}

impl From<ToolError> for ErrorData {
    fn from(e: ToolError) -> Self {
        let code = match &e {
            ToolError::Invalid { .. } => ErrorCode::INVALID_PARAMS,
            ToolError::NotFound(_) => ErrorCode::RESOURCE_NOT_FOUND,
            ToolError::Forbidden(_) => ErrorCode(-32003),
            ToolError::AlreadyExists(_) | ToolError::Conflict { .. } => ErrorCode(-32009),
            ToolError::Timeout { .. } => ErrorCode(-32008),
            ToolError::Kube { .. } | ToolError::Internal(_) => ErrorCode::INTERNAL_ERROR,
        };
        let mut data = json!({ "reason": e.reason() });
        if let ToolError::Invalid { errors, .. } = &e {
            data["errors"] = json!(errors);
        }
        ErrorData::new(code, e.to_string(), Some(data))
    }
}
