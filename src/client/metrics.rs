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
    /// `idle` (unused for the idle TTL), `capacity` (the cache was full), `replaced` (the
    /// config changed and a new client took over) or `pressure` (an idle Postgres pool closed
    /// to make room under the connection cap).
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

/// Every metric of the client cache.
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
        }
    }
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
