//! The management server's Prometheus metrics, served on `/metrics` (OpenMetrics text):
//! calls by tool and outcome, their durations, and requests refused before any tool ran.
//! Labels are tool names, outcomes and refusal kinds only — never a tenant or a caller.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a finished call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The tool, e.g. `rag_register_tenant_mcp_config`.
    pub tool: &'static str,
    /// `Ok`, or the error's reason (`Invalid`, `Forbidden`, `Conflict`, `Timeout`…).
    pub outcome: &'static str,
}

/// Labels of a call's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// The tool.
    pub tool: &'static str,
}

/// Labels of a request refused at the HTTP front.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// `unauthenticated` (401), `too_large` (413) or `rate_limited` (429).
    pub reason: &'static str,
}

/// Every metric of the management server, in its own registry.
#[derive(Debug)]
pub struct ServerMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<ToolLabels, Histogram>,
    refused: Family<RefusedLabels, Counter>,
    registry: Registry,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerMetrics {
    /// The metrics, registered under the `tenant_mcp_management` prefix.
    pub fn new() -> Self {
        let calls = Family::<CallLabels, Counter>::default();
        let durations = Family::<ToolLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let refused = Family::<RefusedLabels, Counter>::default();
        let mut registry = Registry::default();
        let r = registry.sub_registry_with_prefix("tenant_mcp_management");
        r.register("calls", "Tool calls by tool and outcome", calls.clone());
        r.register(
            "call_duration_seconds",
            "How long tool calls took, connection tests included",
            durations.clone(),
        );
        r.register(
            "refused_requests",
            "HTTP requests refused before any tool ran",
            refused.clone(),
        );
        Self {
            calls,
            durations,
            refused,
            registry,
        }
    }

    /// Records a finished call of `tool`.
    pub fn call(&self, tool: &'static str, outcome: &'static str, took: Duration) {
        self.calls
            .get_or_create(&CallLabels { tool, outcome })
            .inc();
        self.durations
            .get_or_create(&ToolLabels { tool })
            .observe(took.as_secs_f64());
    }

    /// Records a request refused at the HTTP front for `reason`.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&RefusedLabels { reason }).inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_refusals_are_counted_by_label() {
        let m = ServerMetrics::new();
        m.call("rag_get_tenant_mcp_config", "Ok", Duration::from_millis(3));
        m.call("rag_get_tenant_mcp_config", "Ok", Duration::from_millis(4));
        m.call(
            "rag_get_tenant_mcp_config",
            "Forbidden",
            Duration::from_millis(1),
        );
        m.refused("rate_limited");
        let text = m.encode();
        for line in [
            r#"tenant_mcp_management_calls_total{tool="rag_get_tenant_mcp_config",outcome="Ok"} 2"#,
            r#"tenant_mcp_management_calls_total{tool="rag_get_tenant_mcp_config",outcome="Forbidden"} 1"#,
            r#"tenant_mcp_management_call_duration_seconds_count{tool="rag_get_tenant_mcp_config"} 3"#,
            r#"tenant_mcp_management_refused_requests_total{reason="rate_limited"} 1"#,
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
    }
}
