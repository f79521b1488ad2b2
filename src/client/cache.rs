//! The cache of built clients: per tenant, per server type, under the fingerprint of the
//! endpoint they were built from.
//!
//! - A client is built once per key even when many callers arrive together (single flight).
//! - A changed fingerprint builds a new client; the old one is closed in the background once
//!   its in-flight work is done (a pool's `close` waits for checked-out connections).
//! - At most `max_tenants` tenants are cached, and a tenant unused for `idle_ttl` is evicted;
//!   every eviction closes its pools and sessions.
//!
//! The hot path (a cached client) takes two read locks and touches one atomic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::build::Built;
use super::metrics::{ClientMetrics, ConnectionLabels, EvictionLabels, ServerTypeLabels};
use super::{read, write};
use crate::config::candidate::ServerKey;

/// Whose clients: one tenant's, or the global ones shared by every tenant that falls back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Clients built for this tenant (its own servers, or global MCP servers with its routing).
    Tenant(&'a str),
    /// Global Postgres and S3 clients, shared.
    Global,
}

struct Slot {
    fingerprint: u64,
    cell: OnceCell<Built>,
}

/// The clients of one scope.
struct Clients {
    /// Milliseconds since the cache's epoch of the last lookup.
    last_used: AtomicU64,
    slots: RwLock<HashMap<ServerKey, Arc<Slot>>>,
}

impl Clients {
    fn new(now: u64) -> Self {
        Self {
            last_used: AtomicU64::new(now),
            slots: RwLock::default(),
        }
    }

    fn built(&self) -> Vec<Built> {
        read(&self.slots)
            .values()
            .filter_map(|s| s.cell.get().cloned())
            .collect()
    }
}

/// Limits of the cache.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    /// Most tenants with cached clients; the least recently used is evicted beyond it.
    pub max_tenants: usize,
    /// A tenant unused this long is evicted.
    pub idle_ttl: Duration,
}

/// The cache.
pub struct ClientCache {
    tenants: RwLock<HashMap<String, Arc<Clients>>>,
    global: Clients,
    epoch: Instant,
    limits: CacheLimits,
    metrics: Arc<ClientMetrics>,
    hits: [prometheus_client::metrics::counter::Counter; 4],
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCache")
            .field("tenants", &self.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ClientCache {
    /// An empty cache.
    pub fn new(limits: CacheLimits, metrics: Arc<ClientMetrics>) -> Self {
        Self {
            tenants: RwLock::default(),
            global: Clients::new(0),
            epoch: Instant::now(),
            limits: CacheLimits {
                max_tenants: limits.max_tenants.max(1),
                ..limits
            },
            hits: metrics.hit_counters(),
            metrics,
        }
    }

    /// How many tenants have cached clients.
    pub fn len(&self) -> usize {
        read(&self.tenants).len()
    }

    /// Whether no tenant has cached clients.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client of `key` in `scope` built from the endpoint with `fingerprint`; `build`
    /// runs only when there is none (and only in one caller at a time).
    pub async fn get_or_build(
        &self,
        scope: Scope<'_>,
        key: &ServerKey,
        fingerprint: u64,
        build: impl FnOnce() -> Result<Built, String>,
    ) -> Result<Built, String> {
        let now = self.now();
        let clients = match scope {
            Scope::Tenant(tenant) => Some(self.tenant(tenant, now)),
            Scope::Global => None,
        };
        let clients = clients.as_deref().unwrap_or(&self.global);
        clients.last_used.store(now, Ordering::Relaxed);
        let current = read(&clients.slots)
            .get(key)
            .filter(|s| s.fingerprint == fingerprint)
            .cloned();
        let slot = match current {
            Some(slot) => {
                if let Some(built) = slot.cell.get() {
                    self.hits[ClientMetrics::type_index(key)].inc();
                    return Ok(built.clone());
                }
                slot
            }
            None => self.replace_slot(clients, key, fingerprint),
        };
        let labels = ServerTypeLabels {
            server_type: key.server_type(),
        };
        self.metrics.misses.get_or_create(&labels).inc();
        slot.cell
            .get_or_try_init(|| async {
                let started = Instant::now();
                let built = build()?;
                self.metrics
                    .build_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.builds.get_or_create(&labels).inc();
                Ok(built)
            })
            .await
            .cloned()
    }

    /// Evicts tenants unused for the idle TTL; returns how many. Also samples the connection
    /// gauges.
    pub fn sweep(&self) -> usize {
        let cutoff = self
            .now()
            .saturating_sub(u64::try_from(self.limits.idle_ttl.as_millis()).unwrap_or(u64::MAX));
        let idle: Vec<(String, Arc<Clients>)> = {
            let mut tenants = write(&self.tenants);
            let names: Vec<String> = tenants
                .iter()
                .filter(|(_, c)| c.last_used.load(Ordering::Relaxed) < cutoff)
                .map(|(n, _)| n.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|n| tenants.remove(&n).map(|c| (n, c)))
                .collect()
        };
        let count = idle.len();
        for (_, clients) in idle {
            self.close_all(&clients, "idle");
        }
        self.sample();
        count
    }

    /// Closes every cached client (shutdown).
    pub async fn close_all_clients(&self) {
        let all: Vec<Arc<Clients>> = write(&self.tenants).drain().map(|(_, c)| c).collect();
        let mut built: Vec<Built> = all.iter().flat_map(|c| c.built()).collect();
        built.extend(self.global.built());
        write(&self.global.slots).clear();
        for b in built {
            b.close().await;
        }
        self.sample();
    }

    /// Postgres connections of the cached pools: (tenant open, tenant in use, global open,
    /// global in use).
    pub fn pg_connections(&self) -> (u32, u32, u32, u32) {
        let count = |clients: &Clients| {
            clients
                .built()
                .iter()
                .fold((0, 0), |(open, busy), b| match b {
                    Built::Postgres(pool) => {
                        let size = pool.size();
                        let idle = u32::try_from(pool.num_idle()).unwrap_or(size);
                        (open + size, busy + size.saturating_sub(idle))
                    }
                    _ => (open, busy),
                })
        };
        let tenants: Vec<Arc<Clients>> = read(&self.tenants).values().cloned().collect();
        let (t_open, t_busy) = tenants
            .iter()
            .map(|c| count(c))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        let (g_open, g_busy) = count(&self.global);
        (t_open, t_busy, g_open, g_busy)
    }

    fn sample(&self) {
        let (t_open, t_busy, g_open, g_busy) = self.pg_connections();
        for (origin, state, value) in [
            ("tenant", "open", t_open),
            ("tenant", "in_use", t_busy),
            ("global", "open", g_open),
            ("global", "in_use", g_busy),
        ] {
            self.metrics
                .pg_connections
                .get_or_create(&ConnectionLabels { origin, state })
                .set(i64::from(value));
        }
        self.metrics
            .cached_tenants
            .set(i64::try_from(self.len()).unwrap_or(i64::MAX));
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The clients of `tenant`, created (evicting the least recently used tenant when full).
    fn tenant(&self, tenant: &str, now: u64) -> Arc<Clients> {
        if let Some(c) = read(&self.tenants).get(tenant) {
            return c.clone();
        }
        let (clients, evicted) = {
            let mut tenants = write(&self.tenants);
            if let Some(c) = tenants.get(tenant) {
                return c.clone();
            }
            let evicted = if tenants.len() >= self.limits.max_tenants {
                let lru = tenants
                    .iter()
                    .min_by_key(|(_, c)| c.last_used.load(Ordering::Relaxed))
                    .map(|(n, _)| n.clone());
                lru.and_then(|n| tenants.remove(&n))
            } else {
                None
            };
            let clients = Arc::new(Clients::new(now));
            tenants.insert(tenant.to_owned(), clients.clone());
            self.metrics
                .cached_tenants
                .set(i64::try_from(tenants.len()).unwrap_or(i64::MAX));
            (clients, evicted)
        };
        if let Some(old) = evicted {
            self.close_all(&old, "capacity");
        }
        clients
    }

    /// Puts a fresh slot for `key` (unless another caller just did) and retires the old one.
    fn replace_slot(&self, clients: &Clients, key: &ServerKey, fingerprint: u64) -> Arc<Slot> {
        let mut slots = write(&clients.slots);
        if let Some(s) = slots.get(key)
            && s.fingerprint == fingerprint
        {
            return s.clone();
        }
        let slot = Arc::new(Slot {
            fingerprint,
            cell: OnceCell::new(),
        });
        if let Some(old) = slots.insert(key.clone(), slot.clone())
            && let Some(built) = old.cell.get().cloned()
        {
            self.retire(built, "replaced");
        }
        slot
    }

    fn close_all(&self, clients: &Clients, cause: &'static str) {
        for built in clients.built() {
            self.retire(built, cause);
        }
    }

    /// Closes `built` in the background: in-flight work on it finishes first.
    fn retire(&self, built: Built, cause: &'static str) {
        self.metrics
            .evictions
            .get_or_create(&EvictionLabels { cause })
            .inc();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { built.close().await });
            }
            // Outside a runtime nothing can be awaited; dropping the last handle closes
            // pools' idle connections when their tasks next run.
            Err(_) => drop(built),
        }
    }
}
