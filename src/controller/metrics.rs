//! The controller's Prometheus metrics (prometheus-client). Labels are bounded: server types
//! and reasons, never tenant ids, names or anything from a credential.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
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
    promotions: Family<ServerTypeLabels, Counter>,
    mirror_writes: Family<ResultLabels, Counter>,
    mirror_lag: Gauge<f64, AtomicU64>,
    mirror_behind_gauge: Gauge,
    /// Per config: its state and declared server types, so gauges move incrementally.
    known: Mutex<HashMap<String, (TenantState, Vec<&'static str>)>>,
    /// Per config whose mirror row is behind its served config: since when.
    mirror_behind: Mutex<HashMap<String, Instant>>,
}

/// Labels of an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `Ok` or the failure reason.
    pub result: String,
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
        let promotions = Family::<ServerTypeLabels, Counter>::default();
        let mirror_writes = Family::<ResultLabels, Counter>::default();
        let mirror_lag = Gauge::<f64, AtomicU64>::default();
        let mirror_behind_gauge = Gauge::default();
        registry.register(
            "promotions",
            "Server entries promoted to active (a new or changed config passed its connection test), by server type",
            promotions.clone(),
        );
        registry.register(
            "mirror_writes",
            "Writes of tenant_configs mirror rows, by result (Ok or the failure reason)",
            mirror_writes.clone(),
        );
        registry.register(
            "mirror_lag_seconds",
            "How long the longest-behind mirror row has been behind its served config (0 when every row is current)",
            mirror_lag.clone(),
        );
        registry.register(
            "mirror_rows_behind",
            "Served configs whose mirror row could not be written yet",
            mirror_behind_gauge.clone(),
        );
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
            promotions,
            mirror_writes,
            mirror_lag,
            mirror_behind_gauge,
            known: Mutex::new(HashMap::new()),
            mirror_behind: Mutex::new(HashMap::new()),
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

    /// Counts an entry of `server_type` promoted to active.
    pub fn promoted(&self, server_type: &str) {
        self.promotions
            .get_or_create(&ServerTypeLabels {
                server_type: server_type.to_owned(),
            })
            .inc();
    }

    /// Records the outcome of writing config `id`'s mirror row: `Ok(())` or the failure
    /// reason. A failure starts (or continues) the row's lag; a success ends it.
    pub fn mirror_written(&self, id: &str, outcome: Result<(), &str>) {
        self.mirror_writes
            .get_or_create(&ResultLabels {
                result: outcome.err().unwrap_or("Ok").to_owned(),
            })
            .inc();
        let Ok(mut behind) = self.mirror_behind.lock() else {
            return;
        };
        match outcome {
            Ok(()) => {
                behind.remove(id);
            }
            Err(_) => {
                behind.entry(id.to_owned()).or_insert_with(Instant::now);
            }
        }
        self.mirror_behind_gauge
            .set(i64::try_from(behind.len()).unwrap_or(i64::MAX));
    }

    /// Config `id` no longer owns a mirror row (deleted, or no longer served): its lag ends.
    pub fn mirror_released(&self, id: &str) {
        if let Ok(mut behind) = self.mirror_behind.lock()
            && behind.remove(id).is_some()
        {
            self.mirror_behind_gauge
                .set(i64::try_from(behind.len()).unwrap_or(i64::MAX));
        }
    }

    /// Forgets config `id` (deleted).
    pub fn config_gone(&self, id: &str) {
        self.mirror_released(id);
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
        // The lag grows while nothing is written: compute it when scraped.
        if let Ok(behind) = self.mirror_behind.lock() {
            let oldest = behind.values().map(Instant::elapsed).max();
            self.mirror_lag.set(oldest.map_or(0.0, |d| d.as_secs_f64()));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_row_is_behind_from_its_first_failed_write_until_one_succeeds() {
        let metrics = Metrics::new();
        metrics.mirror_written("ns/a", Err("DatabaseUnavailable"));
        std::thread::sleep(Duration::from_millis(20));
        metrics.mirror_written("ns/a", Err("DatabaseUnavailable"));
        metrics.mirror_written("ns/b", Ok(()));
        let text = metrics.encode();
        assert!(text.contains("tenant_mcp_mirror_rows_behind 1"), "{text}");
        let lag: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("tenant_mcp_mirror_lag_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        // Measured from the first failure, not the last.
        assert!(lag >= 0.02, "{lag}");
        assert!(
            text.contains("tenant_mcp_mirror_writes_total{result=\"DatabaseUnavailable\"} 2"),
            "{text}"
        );
        metrics.mirror_written("ns/a", Ok(()));
        let text = metrics.encode();
        assert!(text.contains("tenant_mcp_mirror_rows_behind 0"), "{text}");
        assert!(text.contains("tenant_mcp_mirror_lag_seconds 0.0"), "{text}");
        metrics.mirror_written("ns/c", Err("AuthFailed"));
        metrics.config_gone("ns/c");
        assert!(metrics.encode().contains("tenant_mcp_mirror_rows_behind 0"));
    }
}
