//! The controller's Prometheus metrics (prometheus-client). Labels are bounded: server types
//! and reasons, never tenant ids, names or anything from a credential.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels with a server type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerTypeLabels {
    /// `postgres`, `minio`, `aiMcpServer` or `mcpServer`.
    pub server_type: String,
}

/// Labels of a probe result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The server type.
    pub server_type: String,
    /// `Healthy` or the failure reason.
    pub result: String,
}

/// Labels with a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// PascalCase reason.
    pub reason: String,
}

/// The state of a tenant config, for the `tenants` gauge.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(missing_docs)] // the variants are the label values
pub enum TenantState {
    Ready,
    Degraded,
    Pending,
    Disabled,
    Conflict,
    NotBound,
    Invalid,
}

/// Labels of the `tenants` gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The state.
    pub state: TenantState,
}

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    reconcile_duration: Histogram,
    errors: Family<ReasonLabels, Counter>,
    probes: Family<ProbeLabels, Counter>,
    probe_duration: Family<ServerTypeLabels, Histogram>,
    tenants: Family<StateLabels, Gauge>,
    configs_using: Family<ServerTypeLabels, Gauge>,
    demotions: Family<ServerTypeLabels, Counter>,
    /// Per config: its state and declared server types, so gauges move incrementally.
    known: Mutex<HashMap<String, (TenantState, Vec<&'static str>)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under `tenant_mcp_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tenant_mcp");
        let reconciles = Counter::default();
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let errors = Family::<ReasonLabels, Counter>::default();
        let probes = Family::<ProbeLabels, Counter>::default();
        let probe_duration = Family::<ServerTypeLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.005, 2.0, 14))) as fn() -> Histogram,
        );
        let tenants = Family::<StateLabels, Gauge>::default();
        let configs_using = Family::<ServerTypeLabels, Gauge>::default();
        let demotions = Family::<ServerTypeLabels, Counter>::default();
        registry.register(
            "demotions",
            "Active server entries taken out of service because the endpoint policy now denies them, by server type",
            demotions.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles of TenantMcpConfigs",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took, probes included",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            errors.clone(),
        );
        registry.register(
            "probes",
            "Connection tests, by server type and result",
            probes.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Time a connection test took, by server type",
            probe_duration.clone(),
        );
        registry.register("tenants", "TenantMcpConfigs by state", tenants.clone());
        registry.register(
            "configs_declaring",
            "TenantMcpConfigs that declare their own server of each type",
            configs_using.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            errors,
            probes,
            probe_duration,
            tenants,
            configs_using,
            demotions,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Starts timing a reconcile; the time is recorded when the guard drops.
    pub fn reconcile(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            histogram: &self.reconcile_duration,
            started: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records a probe of `server_type` that ended with `result` after `took`.
    pub fn probe(&self, server_type: &str, result: &str, took: Duration) {
        self.probes
            .get_or_create(&ProbeLabels {
                server_type: server_type.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        self.probe_duration
            .get_or_create(&ServerTypeLabels {
                server_type: server_type.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records the state and declared server types of config `id` (namespace/name).
    pub fn config_state(&self, id: &str, state: TenantState, declared: Vec<&'static str>) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        let previous = known.insert(id.to_owned(), (state, declared.clone()));
        self.shift(previous, Some((state, declared)));
    }

    /// Counts an active entry of `server_type` demoted by the endpoint policy.
    pub fn demoted(&self, server_type: &str) {
        self.demotions
            .get_or_create(&ServerTypeLabels {
                server_type: server_type.to_owned(),
            })
            .inc();
    }

    /// Forgets config `id` (deleted).
    pub fn config_gone(&self, id: &str) {
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        let previous = known.remove(id);
        self.shift(previous, None);
    }

    fn shift(
        &self,
        previous: Option<(TenantState, Vec<&'static str>)>,
        next: Option<(TenantState, Vec<&'static str>)>,
    ) {
        if let Some((state, types)) = previous {
            self.tenants.get_or_create(&StateLabels { state }).dec();
            for t in types {
                self.configs_using
                    .get_or_create(&ServerTypeLabels {
                        server_type: t.to_owned(),
                    })
                    .dec();
            }
        }
        if let Some((state, types)) = next {
            self.tenants.get_or_create(&StateLabels { state }).inc();
            for t in types {
                self.configs_using
                    .get_or_create(&ServerTypeLabels {
                        server_type: t.to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    histogram: &'a Histogram,
    started: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}
