//! The client library's Prometheus metrics (prometheus-client), registered into the
//! application's own registry. Labels are bounded: server types, origins and causes, never a
//! tenant id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Labels with a server type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerTypeLabels {
    /// `postgres`, `minio`, `aiMcpServer` or `mcpServer`.
    pub server_type: &'static str,
}

/// Labels of an eviction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictionLabels {
    /// `idle` (unused for the idle TTL), `capacity` (the cache was full) or `replaced` (the
    /// config changed and a new client took over).
    pub cause: &'static str,
}

/// Labels of the Postgres connection gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `tenant` or `global`.
    pub origin: &'static str,
    /// `open` or `in_use`.
    pub state: &'static str,
}

/// Labels with a server type and whose server it is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabels {
    /// `postgres`, `minio`, `aiMcpServer` or `mcpServer`.
    pub server_type: &'static str,
    /// `tenant` or `global`.
    pub origin: &'static str,
}

/// Labels of a failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `postgres`, `minio`, `aiMcpServer` or `mcpServer`.
    pub server_type: &'static str,
    /// `tenant`, `global`, or `none` when no server was chosen.
    pub origin: &'static str,
    /// `lookup` (no client could be handed out), `connect` (a new connection or session
    /// failed) or `request` (a query, object operation or tool call failed).
    pub stage: &'static str,
    /// A PascalCase reason (`Unavailable` reasons such as `AuthFailed`, `PolicyDenied`,
    /// `NotConfigured`, `Unreachable`, …).
    pub reason: String,
}

/// Labels of the opt-in per-tenant request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    /// The tenant, or `_other` beyond the configured number of tenants.
    pub tenant: String,
    /// The server type.
    pub server_type: &'static str,
    /// `tenant` or `global`.
    pub origin: &'static str,
}

/// Every metric of the client library.
#[derive(Debug)]
pub struct ClientMetrics {
    /// Lookups answered from the cache.
    pub hits: Family<ServerTypeLabels, StripedCounter>,
    /// Lookups that had to build (or wait for another caller's build).
    pub misses: Family<ServerTypeLabels, Counter>,
    /// Clients built.
    pub builds: Family<ServerTypeLabels, Counter>,
    /// Time to build one client (no network I/O: pools connect lazily).
    pub build_seconds: Histogram,
    /// Tenants (or replaced clients) dropped from the cache, by cause.
    pub evictions: Family<EvictionLabels, Counter>,
    /// Tenants with at least one cached client.
    pub cached_tenants: Gauge,
    /// Postgres connections of the cached pools, by origin and state (sampled by the sweeper).
    pub pg_connections: Family<ConnectionLabels, Gauge>,
    /// Clients handed out, by server type and origin: tenant-vs-global usage.
    pub requests: Family<OriginLabels, StripedCounter>,
    /// Failures by server type, origin, stage and reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Time to get a server ready: a new Postgres connection (TCP, TLS, login), a new MCP
    /// session (`initialize`), the first S3 request of a client.
    pub connect_seconds: Family<OriginLabels, Histogram>,
    /// Clients handed out per tenant (opt-in, capped: see [`Self::with_tenant_label`]).
    pub tenant_requests: Family<TenantLabels, Counter>,
    tenant_limit: usize,
    tenants_labelled: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Default for ClientMetrics {
    fn default() -> Self {
        Self {
            hits: Family::default(),
            misses: Family::default(),
            builds: Family::default(),
            build_seconds: Histogram::new(exponential_buckets(0.000_01, 4.0, 10)),
            evictions: Family::default(),
            cached_tenants: Gauge::default(),
            pg_connections: Family::default(),
            requests: Family::default(),
            errors: Family::default(),
            connect_seconds: Family::new_with_constructor(
                (|| Histogram::new(exponential_buckets(0.000_5, 2.0, 14))) as fn() -> Histogram,
            ),
            tenant_requests: Family::default(),
            tenant_limit: 0,
            tenants_labelled: std::sync::Mutex::default(),
        }
    }
}

/// `tenant` or `global`.
fn origin_label(origin: super::Origin) -> &'static str {
    origin.as_str()
}

/// The server types, in the order of [`ClientMetrics::hit_counters`].
const SERVER_TYPES: [&str; 4] = ["postgres", "minio", "aiMcpServer", "mcpServer"];

impl ClientMetrics {
    /// The hit counter of `server_type`, looked up once: `Family::get_or_create` takes a lock
    /// and hashes the labels, too slow for a sub-microsecond lookup.
    pub fn hit_counters(&self) -> [StripedCounter; 4] {
        SERVER_TYPES.map(|server_type| {
            self.hits
                .get_or_create(&ServerTypeLabels { server_type })
                .clone()
        })
    }

    /// The index of `key`'s server type in [`Self::hit_counters`] (a match, not a string
    /// search: it runs on every lookup).
    pub fn type_index(key: &crate::config::candidate::ServerKey) -> usize {
        use crate::config::candidate::ServerKey;
        match key {
            ServerKey::Postgres => 0,
            ServerKey::Minio => 1,
            ServerKey::AiMcp => 2,
            ServerKey::Mcp(_) => 3,
        }
    }

    /// Metrics that also count requests per tenant, for at most `limit` distinct tenants (the
    /// rest count as `_other`): a tenant label has as many series as tenants, so it is off
    /// unless asked for.
    pub fn with_tenant_label(limit: usize) -> Self {
        Self {
            tenant_limit: limit,
            ..Self::default()
        }
    }

    /// The request counters by [`Self::type_index`] and origin (tenant, global), looked up
    /// once for the lookup path.
    pub fn request_counters(&self) -> [[StripedCounter; 2]; 4] {
        SERVER_TYPES.map(|server_type| {
            ["tenant", "global"].map(|origin| {
                self.requests
                    .get_or_create(&OriginLabels {
                        server_type,
                        origin,
                    })
                    .clone()
            })
        })
    }

    /// Counts a client handed out for `tenant` in the per-tenant family, when that is on.
    pub fn tenant_request(
        &self,
        tenant: &str,
        key: &crate::config::candidate::ServerKey,
        origin: super::Origin,
    ) {
        if self.tenant_limit == 0 {
            return;
        }
        let label = {
            let mut seen = self
                .tenants_labelled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if seen.contains(tenant) || seen.len() < self.tenant_limit {
                seen.insert(tenant.to_owned());
                tenant.to_owned()
            } else {
                "_other".to_owned()
            }
        };
        self.tenant_requests
            .get_or_create(&TenantLabels {
                tenant: label,
                server_type: SERVER_TYPES[Self::type_index(key)],
                origin: origin_label(origin),
            })
            .inc();
    }

    /// Counts a failure of `key` at `stage` with `reason`.
    pub fn error(
        &self,
        key: &crate::config::candidate::ServerKey,
        origin: Option<super::Origin>,
        stage: &'static str,
        reason: &str,
    ) {
        self.errors
            .get_or_create(&ErrorLabels {
                server_type: SERVER_TYPES[Self::type_index(key)],
                origin: origin.map_or("none", origin_label),
                stage,
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records how long getting a server of `key` ready took.
    pub fn connected(
        &self,
        key: &crate::config::candidate::ServerKey,
        origin: super::Origin,
        took: std::time::Duration,
    ) {
        self.connect_seconds
            .get_or_create(&OriginLabels {
                server_type: SERVER_TYPES[Self::type_index(key)],
                origin: origin_label(origin),
            })
            .observe(took.as_secs_f64());
    }

    /// Gives every family a sample, so an encoding shows every series name (for checking
    /// dashboards and alerts against what the library exports; not for production use).
    #[doc(hidden)]
    pub fn with_a_sample_of_each() -> Self {
        use crate::config::candidate::ServerKey;
        let m = Self::with_tenant_label(1);
        let server = ServerTypeLabels {
            server_type: "postgres",
        };
        m.hits.get_or_create(&server).inc();
        m.misses.get_or_create(&server).inc();
        m.builds.get_or_create(&server).inc();
        m.build_seconds.observe(0.001);
        m.evictions
            .get_or_create(&EvictionLabels { cause: "idle" })
            .inc();
        m.cached_tenants.set(1);
        m.pg_connections
            .get_or_create(&ConnectionLabels {
                origin: "tenant",
                state: "open",
            })
            .set(1);
        m.request_counters()[0][0].inc();
        m.error(&ServerKey::Postgres, None, "lookup", "NotConfigured");
        m.connected(
            &ServerKey::Postgres,
            super::Origin::Tenant,
            std::time::Duration::from_millis(3),
        );
        m.tenant_request("acme", &ServerKey::Postgres, super::Origin::Tenant);
        m
    }

    /// Registers every metric under the `tenant_mcp_client` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tenant_mcp_client");
        r.register(
            "cache_hits",
            "Client lookups answered from the cache",
            self.hits.clone(),
        );
        r.register(
            "cache_misses",
            "Client lookups that built or waited for a build",
            self.misses.clone(),
        );
        r.register("builds", "Clients built", self.builds.clone());
        r.register(
            "build_seconds",
            "Time to build one client",
            self.build_seconds.clone(),
        );
        r.register(
            "evictions",
            "Tenants or replaced clients dropped from the cache",
            self.evictions.clone(),
        );
        r.register(
            "cached_tenants",
            "Tenants with cached clients",
            self.cached_tenants.clone(),
        );
        r.register(
            "postgres_connections",
            "Postgres connections of cached pools",
            self.pg_connections.clone(),
        );
        r.register(
            "requests",
            "Clients handed out, by server type and origin (tenant or global)",
            self.requests.clone(),
        );
        r.register(
            "errors",
            "Failures by server type, origin, stage (lookup, connect, request) and reason",
            self.errors.clone(),
        );
        r.register(
            "connect_seconds",
            "Time to get a server ready: a new Postgres connection (TCP, TLS, login), a new MCP session (initialize), the first S3 request of a client",
            self.connect_seconds.clone(),
        );
        if self.tenant_limit > 0 {
            r.register(
                "tenant_requests",
                "Clients handed out per tenant (opt-in, capped; the rest count as _other)",
                self.tenant_requests.clone(),
            );
        }
    }
}

/// Stripes a counter may be split into.
const STRIPES: usize = 16;

/// A counter split into per-thread stripes, each on its own cache line, summed when scraped:
/// a plain atomic counter incremented by every lookup on every core is one cache line that
/// all of them write, which alone costs more than the rest of a cached lookup.
#[derive(Clone, Debug, Default)]
pub struct StripedCounter {
    stripes: Arc<[CachePadded<AtomicU64>; STRIPES]>,
}

impl StripedCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.stripes[stripe()].fetch_add(1, Ordering::Relaxed);
    }

    /// The total.
    pub fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's stripe, handed out round robin on first use.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

impl TypedMetric for StripedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for StripedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Origin;
    use crate::config::candidate::ServerKey;

    fn encoded(metrics: &ClientMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn the_tenant_label_is_off_by_default_and_capped_when_on() {
        let off = ClientMetrics::default();
        off.tenant_request("acme", &ServerKey::Postgres, Origin::Tenant);
        assert!(!encoded(&off).contains("tenant_requests"));

        let on = ClientMetrics::with_tenant_label(2);
        for tenant in ["acme", "globex", "initech", "hooli", "acme"] {
            on.tenant_request(tenant, &ServerKey::Postgres, Origin::Global);
        }
        let text = encoded(&on);
        let line = |tenant: &str| {
            format!(
                "tenant_mcp_client_tenant_requests_total{{tenant=\"{tenant}\",server_type=\"postgres\",origin=\"global\"}}"
            )
        };
        assert!(text.contains(&format!("{} 2", line("acme"))), "{text}");
        assert!(text.contains(&format!("{} 1", line("globex"))), "{text}");
        assert!(text.contains(&format!("{} 2", line("_other"))), "{text}");
        assert!(
            !text.contains("initech") && !text.contains("hooli"),
            "{text}"
        );
    }

    #[test]
    fn striped_counter_sums_every_thread_and_encodes_as_a_counter() {
        let metrics = ClientMetrics::default();
        let hits = metrics.hit_counters();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| (0..1000).for_each(|_| hits[0].inc()));
            }
        });
        hits[2].inc();
        assert_eq!(hits[0].get(), 8000);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        assert!(
            text.contains("# TYPE tenant_mcp_client_cache_hits counter"),
            "{text}"
        );
        assert!(
            text.contains("tenant_mcp_client_cache_hits_total{server_type=\"postgres\"} 8000"),
            "{text}"
        );
        assert!(
            text.contains("tenant_mcp_client_cache_hits_total{server_type=\"aiMcpServer\"} 1"),
            "{text}"
        );
    }
}
