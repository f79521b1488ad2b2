//! The client library application pods link: per-tenant Postgres pools, S3 clients and MCP
//! clients, built from what the controller promoted (`status.active` and its snapshot
//! Secrets), falling back per server type to the global servers, cached and evicted.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tenant_mcp::client::{ClientSettings, TenantClients};
//!
//! let kube = kube::Client::try_default().await?;
//! let clients = TenantClients::from_kube(kube, ClientSettings::default()).await?;
//! let pool = clients.postgres("acme").await?;
//! let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
//! # Ok(()) }
//! ```
//!
//! Resolution per (tenant, server type): the tenant's active entry, else the global one, else
//! [`ClientError::NotConfigured`]. The feature flag (`tenantConfigsEnabled: false` in the
//! GlobalMcpConfig, or [`ClientSettings::tenant_configs_enabled`]) and a tenant's
//! `enabled: false` send everyone to global. A tenant whose declared server has no working
//! entry gets [`ClientError::Unavailable`], never the global server.

pub mod build;
pub mod cache;
pub mod context;
pub mod error;
pub mod inspect;
pub mod layer;
pub mod metrics;
pub mod origin;
pub mod pool;
pub mod record;
pub mod report;
pub mod routes;
mod sharded;
pub mod source;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use build::{Built, McpCallError, McpClient, S3Handle};
pub use cache::{CacheLimits, Scope};
pub use context::{current_tenant, require_tenant, with_tenant};
pub use error::ClientError;
pub use pool::{PoolTransaction, PooledConnection, TenantPool};
pub use routes::{Endpoint, Origin};
pub use source::KubeSource;

use crate::config::candidate::ServerKey;
use crate::config::validate::check_tenant_id;

/// How the client library behaves.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// This process's feature flag: false sends every tenant to the global servers.
    pub tenant_configs_enabled: bool,
    /// Most tenants with cached clients.
    pub max_cached_tenants: usize,
    /// A tenant unused this long has its clients closed.
    pub idle_ttl: Duration,
    /// Cap on open Postgres connections over every pool (tenants' and global).
    pub max_postgres_connections: u32,
    /// How long `from_kube` waits for the first list of every watch.
    pub sync_timeout: Duration,
    /// What the Kubernetes source watches.
    pub kube: KubeSource,
    /// How often a directory source looks for changed files.
    pub directory_poll: Duration,
    /// How endpoint names are resolved (the system resolver; tests put in a table). Every
    /// address is checked against the endpoint policy whatever answers.
    pub lookup: Arc<dyn crate::egress::Lookup>,
    /// Count requests per tenant too (`tenant_mcp_client_tenant_requests`), for at most this
    /// many tenants (the rest as `_other`); 0, the default, leaves the tenant label out.
    pub tenant_metrics_limit: usize,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            tenant_configs_enabled: true,
            max_cached_tenants: 1000,
            idle_ttl: Duration::from_secs(600),
            max_postgres_connections: 100,
            sync_timeout: Duration::from_secs(60),
            kube: KubeSource::default(),
            directory_poll: Duration::from_secs(2),
            lookup: Arc::new(crate::egress::SystemLookup),
            tenant_metrics_limit: 0,
        }
    }
}

/// What a client holds open: what a soak watches for growth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Tenants with cached clients.
    pub cached_tenants: usize,
    /// Postgres connections of every pool (open, idle, requests waiting).
    pub postgres: pool::budget::Totals,
    /// Postgres relays alive in the process: one per cached pool (a socket and a task).
    pub relays: u64,
    /// MCP sessions open in the process: at most one per cached MCP client.
    pub mcp_sessions: u64,
}

/// Per-tenant clients with global fallback. Cheap to clone; the watches and the idle sweeper
/// stop when the last clone is dropped or [`TenantClients::shutdown`] is called.
#[derive(Clone, Debug)]
pub struct TenantClients {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    routes: Arc<routes::Routes>,
    cache: cache::ClientCache,
    shared: build::Shared,
    metrics: Arc<metrics::ClientMetrics>,
    /// Clients handed out by server type and origin, looked up once (the lookup path).
    requests: [[metrics::StripedCounter; 2]; 4],
    stop: CancellationToken,
    /// Set with `stop` by [`TenantClients::shutdown`]: what every lookup checks, because
    /// `CancellationToken::is_cancelled` locks a mutex that every caller on every core would
    /// write to.
    stopped: AtomicBool,
    synced: watch::Receiver<source::SyncState>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TenantClients {
    /// Clients fed by watches of the Kubernetes API; returns once every watch has listed.
    pub async fn from_kube(
        client: kube::Client,
        settings: ClientSettings,
    ) -> Result<Self, ClientError> {
        let (tx, rx) = watch::channel(Err("the first list of every watch".to_owned()));
        let this = Self::new(&settings, rx)?;
        tokio::spawn(source::run_kube(
            client,
            settings.kube.clone(),
            this.inner.routes.clone(),
            tx,
            this.inner.stop.clone(),
        ));
        let mut synced = this.inner.synced.clone();
        let waited =
            tokio::time::timeout(settings.sync_timeout, synced.wait_for(Result::is_ok)).await;
        match waited.map(|r| r.map(|_| ())) {
            Ok(Ok(())) => Ok(this),
            Ok(Err(_)) => Err(ClientError::Source("the watch task ended".into())),
            Err(_) => {
                let waiting = this.inner.synced.borrow().clone().err().unwrap_or_default();
                Err(ClientError::Source(format!(
                    "not in sync with the API after {:?}: still waiting for {waiting}; check the API server and the pod's RBAC (docs/security.md)",
                    settings.sync_timeout
                )))
            }
        }
    }

    /// Clients fed by a directory of manifests (TenantMcpConfig, GlobalMcpConfig and Secret
    /// YAML), reloaded when its files change.
    pub fn from_directory(
        dir: impl Into<PathBuf>,
        settings: ClientSettings,
    ) -> Result<Self, ClientError> {
        let dir = dir.into();
        let stamp = source::directory_stamp(&dir);
        let manifests = source::load_directory(&dir)?;
        let (_, rx) = watch::channel(Ok(()));
        let this = Self::new(&settings, rx)?;
        source::directory_routes(manifests, &this.inner.routes);
        tokio::spawn(source::watch_directory(
            dir,
            stamp,
            this.inner.routes.clone(),
            settings.directory_poll,
            this.inner.stop.clone(),
        ));
        Ok(this)
    }

    fn new(
        settings: &ClientSettings,
        synced: watch::Receiver<source::SyncState>,
    ) -> Result<Self, ClientError> {
        let metrics = Arc::new(metrics::ClientMetrics::with_tenant_label(
            settings.tenant_metrics_limit,
        ));
        let shared = build::Shared::with_lookup(
            settings.max_postgres_connections,
            settings.lookup.clone(),
            metrics.clone(),
        )
        .map_err(ClientError::Source)?;
        let inner = Arc::new(Inner {
            routes: Arc::new(routes::Routes::new(settings.tenant_configs_enabled)),
            cache: cache::ClientCache::new(
                CacheLimits {
                    max_tenants: settings.max_cached_tenants,
                    idle_ttl: settings.idle_ttl,
                },
                metrics.clone(),
            ),
            shared,
            requests: metrics.request_counters(),
            metrics,
            stop: CancellationToken::new(),
            stopped: AtomicBool::new(false),
            synced,
        });
        // The sweeper holds a weak handle so dropping every TenantClients ends it.
        let weak = Arc::downgrade(&inner);
        let every =
            (settings.idle_ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        let stop = inner.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                match weak.upgrade() {
                    Some(inner) => {
                        inner.cache.sweep();
                    }
                    None => return,
                }
            }
        });
        Ok(Self { inner })
    }

    /// Registers the client metrics into the application's registry.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    /// Counts a failure the services saw on a client handed out by this library.
    pub(crate) fn record_error(
        &self,
        key: &ServerKey,
        origin: Origin,
        stage: &'static str,
        reason: &str,
    ) {
        self.inner.metrics.error(key, Some(origin), stage, reason);
    }

    /// Where server `key` of `tenant` leads now (origin and endpoint), without building.
    pub fn endpoint(&self, tenant: &str, key: &ServerKey) -> Result<Arc<Endpoint>, ClientError> {
        check_tenant_id(tenant).map_err(ClientError::InvalidTenant)?;
        self.inner.routes.resolve(tenant, key)
    }

    /// The Postgres pool of `tenant` (its own server or the global one).
    pub async fn postgres(&self, tenant: &str) -> Result<TenantPool, ClientError> {
        Ok(self.postgres_with_origin(tenant).await?.0)
    }

    /// The Postgres pool of `tenant` and whose server it is.
    pub async fn postgres_with_origin(
        &self,
        tenant: &str,
    ) -> Result<(TenantPool, Origin), ClientError> {
        match self.client(tenant, &ServerKey::Postgres).await? {
            (Built::Postgres(pool), origin) => Ok((pool, origin)),
            _ => Err(wrong(tenant, &ServerKey::Postgres, "Postgres")),
        }
    }

    /// The S3 client of `tenant`: its own bucket, or the global bucket under the prefix
    /// `tenants/<tenant>/`.
    pub async fn s3(&self, tenant: &str) -> Result<S3Handle, ClientError> {
        match self.client(tenant, &ServerKey::Minio).await? {
            (Built::S3(mut handle), Origin::Global) => {
                handle.prefix = format!("tenants/{tenant}/");
                Ok(handle)
            }
            (Built::S3(handle), Origin::Tenant) => Ok(handle),
            _ => Err(wrong(tenant, &ServerKey::Minio, "S3")),
        }
    }

    /// The AI MCP client of `tenant` (on the shared server, with the tenant's routing).
    pub async fn ai_mcp(&self, tenant: &str) -> Result<Arc<McpClient>, ClientError> {
        self.mcp_of(tenant, &ServerKey::AiMcp).await
    }

    /// The MCP client of `tenant`'s server `name` (`mcpServers[name]`).
    pub async fn mcp(&self, tenant: &str, name: &str) -> Result<Arc<McpClient>, ClientError> {
        self.mcp_of(tenant, &ServerKey::Mcp(name.to_owned())).await
    }

    /// Closes every cached client and stops the watches; later calls get
    /// [`ClientError::ShutDown`], calls in flight finish or fail (a closed pool).
    pub async fn shutdown(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.stop.cancel();
        self.inner.cache.close_all_clients().await;
    }

    /// How many tenants have cached clients.
    pub fn cached_tenants(&self) -> usize {
        self.inner.cache.len()
    }

    /// Evicts tenants idle longer than the TTL now (the sweeper also runs on its own).
    pub fn sweep(&self) -> usize {
        self.inner.cache.sweep()
    }

    /// What this client holds open now (relays and MCP sessions counted for the process).
    pub fn resources(&self) -> Resources {
        Resources {
            cached_tenants: self.inner.cache.len(),
            postgres: self.inner.shared.pg_budget().totals(),
            relays: crate::egress::postgres::live_relays(),
            mcp_sessions: build::open_mcp_sessions(),
        }
    }

    /// Postgres connections of cached pools: (tenant open, tenant in use, global open, global
    /// in use).
    pub fn postgres_connections(&self) -> (u32, u32, u32, u32) {
        self.inner.cache.pg_connections()
    }

    async fn mcp_of(&self, tenant: &str, key: &ServerKey) -> Result<Arc<McpClient>, ClientError> {
        match self.client(tenant, key).await? {
            (Built::Mcp(client), _) => Ok(client),
            _ => Err(wrong(tenant, key, "MCP")),
        }
    }

    /// Every entry point comes through here (or [`Self::endpoint`]): a tenant id that is not a
    /// DNS label never reaches the routes, a cache slot, an S3 prefix or an MCP path. Counts
    /// what was handed out by origin, and what could not be by reason.
    async fn client(&self, tenant: &str, key: &ServerKey) -> Result<(Built, Origin), ClientError> {
        let result = self.lookup_client(tenant, key).await;
        let inner = &self.inner;
        match &result {
            Ok((_, origin)) => {
                let o = usize::from(*origin == Origin::Global);
                inner.requests[metrics::ClientMetrics::type_index(key)][o].inc();
                inner.metrics.tenant_request(tenant, key, *origin);
            }
            Err(e) => inner.metrics.error(key, e.origin(), "lookup", e.reason()),
        }
        result
    }

    async fn lookup_client(
        &self,
        tenant: &str,
        key: &ServerKey,
    ) -> Result<(Built, Origin), ClientError> {
        check_tenant_id(tenant).map_err(ClientError::InvalidTenant)?;
        let inner = &self.inner;
        if inner.stopped.load(Ordering::Relaxed) {
            return Err(ClientError::ShutDown);
        }
        let found = inner
            .cache
            .client(tenant, key, &inner.routes, |endpoint, routing| {
                build::build(&inner.shared, key, endpoint, routing)
            })
            .await?;
        if inner.stopped.load(Ordering::Acquire) {
            // Built while shutting down: close what the shutdown could not see yet.
            inner.cache.close_all_clients().await;
            return Err(ClientError::ShutDown);
        }
        Ok(found)
    }
}

fn wrong(tenant: &str, key: &ServerKey, expected: &'static str) -> ClientError {
    ClientError::WrongKind {
        tenant: tenant.to_owned(),
        server: key.as_string(),
        expected,
    }
}
