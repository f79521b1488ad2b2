//! Why a reconcile (or the controller) failed, and whether trying again may help.

use std::net::SocketAddr;

use crate::mirror::MirrorError;

/// Why a reconcile (or the controller) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The mirror database failed.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The metrics and health endpoint could not listen.
    #[error("listening on {address} for /metrics, /healthz and /readyz: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another replica took the Lease.
    #[error("lost the leader Lease to another replica")]
    LostLeadership,
    /// The config changed since the version this reconcile read (its status write or the
    /// finalizer patch was refused with a conflict): the newer version is on its way through
    /// the watch. Not a failure: retried shortly, without backoff or a warning.
    #[error("{0}: the config changed since it was read")]
    Stale(String),
}

impl Error {
    pub(crate) fn kube(action: String, source: kube::Error) -> Self {
        Self::Kube { action, source }
    }

    /// A PascalCase reason for metrics and events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "KubernetesApiError",
            Self::Mirror(e) => e.reason(),
            Self::Finalizer(_) => "FinalizerFailed",
            Self::Listen { .. } => "ListenFailed",
            Self::LostLeadership => "LostLeadership",
            Self::Stale(_) => "StaleRead",
        }
    }

    /// Whether trying again may help without a change (API hiccups, database down).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Kube { source, .. } => match source {
                kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
                _ => true,
            },
            Self::Mirror(e) => e.is_retryable(),
            Self::Finalizer(_) | Self::Stale(_) => true,
            Self::Listen { .. } | Self::LostLeadership => false,
        }
    }
}
