//! Why a probe failed, in the condition vocabulary the controller and the tools report.

use crate::api::conditions::reason;
use crate::config::PolicyViolation;
use crate::egress::EgressError;

/// Why a probe failed. Messages name the endpoint, never a credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The endpoint policy denies the host or one of its addresses.
    #[error(transparent)]
    PolicyDenied(#[from] PolicyViolation),
    /// Anything else, with its reason.
    #[error("{message}")]
    Failed {
        /// One of the [`reason`] constants.
        reason: &'static str,
        /// What happened and, where it helps, what to do.
        message: String,
    },
}

impl ProbeError {
    /// A failure with `reason` (one of [`reason`]) and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Failed {
            reason,
            message: message.into(),
        }
    }

    /// The PascalCase condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::PolicyDenied(v) => v.reason(),
            Self::Failed { reason, .. } => reason,
        }
    }

    /// Whether the same probe may pass later without a change to the config or its Secrets
    /// (the server was down or slow), as opposed to needing a fix (wrong password, policy).
    pub fn is_retryable(&self) -> bool {
        crate::config::failure::is_retryable_reason(self.reason())
    }
}

impl From<EgressError> for ProbeError {
    fn from(e: EgressError) -> Self {
        match e {
            EgressError::PolicyDenied(v) => Self::PolicyDenied(v),
            other => Self::new(reason::UNREACHABLE, other.to_string()),
        }
    }
}

impl From<ProbeError> for crate::config::failure::Failure {
    fn from(e: ProbeError) -> Self {
        Self::new(e.reason(), e.to_string(), e.is_retryable())
    }
}
