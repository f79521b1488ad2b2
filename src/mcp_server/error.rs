//! Why a tool call failed, and how that reaches the MCP client.
//!
//! A failure the caller can act on (a wrong field, a tenant it may not touch, a stale
//! `expectedVersion`, a failed connection test, a slow API) is a tool result with `isError`
//! set: its text is the message, its `structuredContent` a [`ToolFailure`]. MCP clients hand
//! such results to the model and catch JSON-RPC errors themselves (SEP-1303, in the
//! 2025-11-25 specification), so an agent sees "servers.postgres.port: must be …" and can
//! correct itself. A JSON-RPC error is left for what no retry of the call could fix: a fault of
//! the server itself ([`ToolError::Internal`]), and the protocol faults rmcp and the HTTP front
//! answer before a tool runs (unknown tool, malformed request, refused token).

use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::Serialize;

use super::auth::AuthError;
use crate::config::{FieldError, FieldErrors};

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

    /// The machine-readable reason, as the failure's `reason` and the audit log's outcome.
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::Forbidden(_) => FailureReason::Forbidden,
            Self::Invalid { .. } => FailureReason::Invalid,
            Self::NotFound(_) => FailureReason::NotFound,
            Self::AlreadyExists(_) => FailureReason::AlreadyExists,
            Self::Conflict { .. } => FailureReason::Conflict,
            Self::Timeout { .. } => FailureReason::Timeout,
            Self::Kube { .. } => FailureReason::KubernetesError,
            Self::Internal(_) => FailureReason::Internal,
        }
    }

    /// What the caller receives: a tool result flagged `isError` carrying a [`ToolFailure`],
    /// or, for a fault of the server itself, a JSON-RPC internal error.
    pub fn into_result(self) -> Result<CallToolResult, ErrorData> {
        if let Self::Internal(_) = self {
            return Err(ErrorData::internal_error(self.to_string(), None));
        }
        let failure = ToolFailure {
            reason: self.reason(),
            message: self.to_string(),
            errors: match self {
                Self::Invalid { errors, .. } => errors.0,
                _ => Vec::new(),
            },
        };
        let structured = serde_json::to_value(&failure)
            .map_err(|e| ErrorData::internal_error(format!("a failure as JSON: {e}"), None))?;
        let mut result = CallToolResult::error(vec![ContentBlock::text(failure.text())]);
        result.structured_content = Some(structured);
        Ok(result)
    }
}

/// Why a call failed, for programs (the text says it for people and models).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub enum FailureReason {
    /// The caller may not do this (another tenant's config, a role it lacks).
    Forbidden,
    /// The arguments or the config they would make are wrong, by field; nothing was stored.
    Invalid,
    /// The tenant has no config.
    NotFound,
    /// The tenant has a config already: update it instead.
    AlreadyExists,
    /// The config changed since `expectedVersion` was read, or another field manager owns a
    /// field the call would change: read it again.
    Conflict,
    /// The call ran out of time before storing anything.
    Timeout,
    /// The Kubernetes API failed; the call may be retried.
    KubernetesError,
    /// A fault of the server (never a tool result: a JSON-RPC error).
    Internal,
}

impl FailureReason {
    /// The reason's name, e.g. `Forbidden`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "Forbidden",
            Self::Invalid => "Invalid",
            Self::NotFound => "NotFound",
            Self::AlreadyExists => "AlreadyExists",
            Self::Conflict => "Conflict",
            Self::Timeout => "Timeout",
            Self::KubernetesError => "KubernetesError",
            Self::Internal => "Internal",
        }
    }
}

/// The `structuredContent` of a failed call (`isError: true`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolFailure {
    /// Why, for programs.
    pub reason: FailureReason,
    /// What went wrong and what to do, as the result's text says it.
    pub message: String,
    /// For `Invalid`: every problem by field path, as `tenant-mcp validate` reports them.
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

impl ToolFailure {
    /// The result's text, e.g. `Invalid: invalid config, nothing stored: servers.postgres.port:
    /// must be 1..=65535, got 70000`.
    fn text(&self) -> String {
        format!("{}: {}", self.reason.as_str(), self.message)
    }
}

/// Every problem on one line each: `N problem(s): path: message; …`.
pub fn describe(errors: &FieldErrors) -> String {
    let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
    match listed.len() {
        1 => listed.concat(),
        n => format!("{n} problems: {}", listed.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ErrorKind, FieldPath};

    #[test]
    fn a_wrong_field_is_a_tool_result_with_the_reason_and_every_path() {
        let mut errors = FieldErrors::default();
        let port = FieldPath::new("servers").child("postgres").child("port");
        errors.push(FieldError::new(
            &port,
            ErrorKind::Invalid,
            "must be 1..=65535, got 70000",
        ));
        errors.push(FieldError::new(
            &FieldPath::new("tenant"),
            ErrorKind::NotSupported,
            "unknown field",
        ));
        let result = ToolError::invalid("invalid arguments, nothing done", errors)
            .into_result()
            .unwrap();
        assert_eq!(result.is_error, Some(true));
        let structured = result.structured_content.unwrap();
        assert_eq!(structured["reason"], "Invalid");
        assert_eq!(structured["errors"][0]["path"], "servers.postgres.port");
        assert_eq!(structured["errors"][1]["path"], "tenant");
        let text = result.content[0].as_text().unwrap().text.clone();
        assert_eq!(
            text,
            "Invalid: invalid arguments, nothing done: 2 problems: servers.postgres.port: must be \
             1..=65535, got 70000; tenant: unknown field"
        );
    }

    #[test]
    fn a_business_failure_is_a_tool_result_and_a_fault_of_the_server_is_not() {
        let conflict = ToolError::Conflict {
            message: "the config changed since version 1: get it again".into(),
        };
        let result = conflict.into_result().unwrap();
        assert_eq!(result.is_error, Some(true));
        let structured = result.structured_content.unwrap();
        assert_eq!(structured["reason"], "Conflict");
        assert_eq!(structured["errors"], serde_json::json!([]));

        let fault = ToolError::Internal("the write task failed".into()).into_result();
        let e = fault.unwrap_err();
        assert_eq!(e.code, rmcp::model::ErrorCode::INTERNAL_ERROR);
        assert!(e.message.contains("the write task failed"), "{e:?}");
    }
}
