//! Why a server type could not be promoted: a reason from the one condition vocabulary, a
//! message without secrets, and whether trying again without a change may help.

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
    use crate::api::conditions::reason;
    matches!(reason, reason::UNREACHABLE | reason::TIMEOUT)
}
