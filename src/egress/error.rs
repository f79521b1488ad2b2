//! Why a connection was not made: the one error every checked connection of probes and
//! clients gives, whichever protocol it carries.

use crate::config::PolicyViolation;

/// Why a connection was not made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The policy denies the host, the port or an address the host resolves to.
    #[error(transparent)]
    PolicyDenied(#[from] PolicyViolation),
    /// The host does not resolve.
    #[error("host {host:?} does not resolve: {message}")]
    Unresolved {
        /// The host.
        host: String,
        /// What the resolver said.
        message: String,
    },
}

impl EgressError {
    /// The condition reason: `PolicyDenied` or `Unreachable`.
    pub fn reason(&self) -> &'static str {
        use crate::api::conditions::reason;
        match self {
            Self::PolicyDenied(_) => reason::POLICY_DENIED,
            Self::Unresolved { .. } => reason::UNREACHABLE,
        }
    }
}

/// The egress error in the source chain of `error` (a connector's failure wraps it), if any.
pub fn cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<EgressError>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}
