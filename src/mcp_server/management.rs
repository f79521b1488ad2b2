//! The management tools' state: the Kubernetes store, the prober, the limits, the metrics and,
//! for a stdio session, its one caller. [`super::workflow`] gives it what the tools do and
//! [`super::tools`] their MCP faces.

use std::sync::Arc;

use super::auth::Caller;
use super::limits::Limits;
use super::metrics::ServerMetrics;
use super::store::Store;
use crate::probe::Prober;

/// The name of a config registered without one.
pub const DEFAULT_CONFIG_NAME: &str = "tenant-mcp";

/// The tools, over the Kubernetes API.
#[derive(Clone)]
pub struct ManagementTools {
    pub(super) store: Store,
    pub(super) prober: Prober,
    pub(super) limits: Arc<Limits>,
    /// The caller of a session without HTTP (stdio), authenticated once at start.
    pub(super) fixed_caller: Option<Caller>,
    pub(super) metrics: Arc<ServerMetrics>,
}

impl ManagementTools {
    /// Tools over `kube`, testing connections with `prober`, under `limits`.
    pub fn new(kube: kube::Client, prober: Prober, limits: Arc<Limits>) -> Self {
        Self {
            store: Store::new(kube),
            prober,
            limits,
            fixed_caller: None,
            metrics: Arc::new(ServerMetrics::new()),
        }
    }

    /// The metrics of these tools' calls.
    pub fn metrics(&self) -> Arc<ServerMetrics> {
        self.metrics.clone()
    }

    /// The same tools for one caller known in advance (a stdio session has no HTTP headers).
    pub fn for_caller(mut self, caller: Caller) -> Self {
        self.fixed_caller = Some(caller);
        self
    }
}
