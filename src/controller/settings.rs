//! How the controller runs: what the command line and the chart set.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::readers;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a superseded snapshot Secret is kept so clients can switch.
    pub snapshot_grace: Duration,
    /// How soon a server that failed for a passing reason (down, slow) is checked again.
    pub retry_interval: Duration,
    /// The deployment-wide feature flag (Helm value): `false` sends every tenant to the global
    /// servers, like the GlobalMcpConfig flag.
    pub tenant_configs_enabled: bool,
    /// Most connection tests at once, across all tenants.
    pub probe_concurrency: usize,
    /// Most configs reconciled at once.
    pub reconcile_concurrency: u16,
    /// Leader election; `None` runs without (a single replica).
    pub lease: Option<LeaseSettings>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` for nowhere.
    pub listen: Option<SocketAddr>,
    /// This replica's name, for events and the Lease.
    pub identity: String,
    /// The application service accounts that may read the snapshots of every config: each
    /// config gets a Role granting them `get` on exactly its snapshots ([`readers`]). Empty:
    /// the controller manages no such Roles.
    pub snapshot_readers: Vec<readers::ServiceAccount>,
    /// How probes resolve endpoint names (the system resolver; tests put in a table).
    pub lookup: Arc<dyn crate::egress::Lookup>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            snapshot_grace: Duration::from_secs(300),
            retry_interval: Duration::from_secs(30),
            tenant_configs_enabled: true,
            probe_concurrency: 32,
            reconcile_concurrency: 16,
            lease: None,
            listen: None,
            identity: "tenant-mcp-controller".into(),
            snapshot_readers: Vec::new(),
            lookup: Arc::new(crate::egress::SystemLookup),
        }
    }
}

/// Where the Lease is and how long a holder keeps it.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Namespace of the Lease (the controller's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// How long a holder keeps it without renewing.
    pub duration: Duration,
}
