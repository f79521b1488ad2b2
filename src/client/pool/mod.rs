//! Tenants' Postgres pools under one connection budget.
//!
//! Each tenant's [`TenantPool`] connects with the tenant's own login through its
//! policy-checked relay and holds at most its `maxConnections`; all pools of a client share a
//! [`ConnectionBudget`] of `max_postgres_connections`, counted per connection: an idle
//! connection of any tenant is given up the moment another tenant needs one and the cap is
//! full ([`budget`] has the rules). A request waits only while every connection under the cap
//! is checked out.
//!
//! A checked-out connection ([`PooledConnection`]) goes back when dropped. When its last use
//! is known to have ended cleanly (a query through `&pool`, a committed or rolled back
//! [`PoolTransaction`]) it goes back at once; otherwise, in the background, it is rolled back
//! if a transaction was left open and pinged (which also finishes whatever a cancelled query
//! left), as sqlx's pool does on every release. Then it goes to the longest waiter that can
//! use it, or idle. An idle connection is pinged before it is handed out
//! ([`VERIFY_IDLE_AFTER`]).

pub mod budget;
mod connection;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::postgres::{PgConnectOptions, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Connection as _, Either, Execute, Executor, PgConnection, Postgres};

use self::budget::{Budget, Grant, Limits, Live, Take};
pub use self::connection::{PoolTransaction, PooledConnection};

/// The budget of Postgres connections every pool of one client shares.
pub type ConnectionBudget = Budget<PgConnection>;

/// An idle connection idle at least this long is pinged before it is handed out, within the
/// acquire timeout: every one, as sqlx's `test_before_acquire` does, so a server that hangs
/// fails the acquire at its timeout instead of hanging the caller's first query (a 1 s window
/// let `faults_servers` hang).
pub const VERIFY_IDLE_AFTER: Duration = Duration::ZERO;

/// How long a request whose pool has connections (all in use) waits for one of them before
/// it opens another, in a free place under the cap or another pool's idle one's (see
/// [`budget`]).
pub const PATIENCE: Duration = Duration::from_millis(5);

/// How long the checks of a connection (the ping on release, the check after a long idle,
/// closing) may take before it is dropped as broken.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How often idle connections are looked at for their idle timeout and lifetime.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// A pool's settings (`spec.servers.postgres.pool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connection limits.
    pub limits: Limits,
    /// How long [`TenantPool::acquire`] waits, connecting included.
    pub acquire_timeout: Duration,
}

/// One tenant's (or the global) Postgres pool. Cheap to clone; closed when the last clone and
/// the last connection taken from it are gone, or by [`TenantPool::close`].
#[derive(Clone, Debug)]
pub struct TenantPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    id: u64,
    budget: Arc<ConnectionBudget>,
    options: PgConnectOptions,
    acquire_timeout: Duration,
    /// Lives exactly as long as the pool (its relay).
    _attached: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for PoolInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolInner")
            .field("id", &self.id)
            .field("counts", &self.budget.counts(self.id))
            .finish_non_exhaustive()
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        close_all(self.budget.close(self.id));
    }
}

impl TenantPool {
    /// A pool connecting with `options` under `budget`; `attached` (the relay the options
    /// point at) is kept as long as the pool. Nothing connects until the first acquire.
    pub fn new(
        budget: &Arc<ConnectionBudget>,
        options: PgConnectOptions,
        settings: PoolSettings,
        attached: Option<Arc<dyn std::any::Any + Send + Sync>>,
    ) -> Self {
        start_reaper(budget);
        Self {
            inner: Arc::new(PoolInner {
                id: budget.register(settings.limits),
                budget: budget.clone(),
                options,
                acquire_timeout: settings.acquire_timeout,
                _attached: attached,
            }),
        }
    }

    /// A connection: an idle one of this pool, a new one, or the first to come back; fails
    /// with [`sqlx::Error::PoolTimedOut`] after the acquire timeout (connecting included),
    /// [`sqlx::Error::PoolClosed`] when the pool is closed, or the error of connecting.
    pub async fn acquire(&self) -> Result<PooledConnection, sqlx::Error> {
        tokio::time::timeout(self.inner.acquire_timeout, self.acquire_unbounded())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    /// Begins a transaction on a connection of this pool.
    pub async fn begin(&self) -> Result<PoolTransaction, sqlx::Error> {
        PoolTransaction::begin(self.acquire().await?).await
    }

    /// What its connections connect with (pointed at the relay).
    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.inner.options
    }

    /// Whether `other` is a clone of this pool.
    pub fn same_pool(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Connections open (checked out, idle or being opened).
    pub fn size(&self) -> u32 {
        self.inner.budget.counts(self.inner.id).0
    }

    /// Idle connections.
    pub fn num_idle(&self) -> usize {
        self.inner.budget.counts(self.inner.id).1 as usize
    }

    /// Closes the pool: idle connections now, connections in use when they come back; later
    /// acquires fail with [`sqlx::Error::PoolClosed`].
    pub async fn close(&self) {
        for conn in self.inner.budget.close(self.inner.id) {
            let _ = tokio::time::timeout(CHECK_TIMEOUT, conn.close()).await;
        }
    }

    /// Whether [`Self::close`] was called (or the pool is otherwise gone from its budget).
    pub fn is_closed(&self) -> bool {
        self.inner.budget.is_closed(self.inner.id)
    }

    async fn acquire_unbounded(&self) -> Result<PooledConnection, sqlx::Error> {
        let inner = &self.inner;
        match inner.budget.take(inner.id, Instant::now()) {
            Take::Closed => Err(sqlx::Error::PoolClosed),
            Take::Idle(live, idle_for) => {
                let place = Place::taken(inner);
                self.checked(place, live, idle_for).await
            }
            Take::Open { evicted } => {
                if let Some(conn) = evicted {
                    close_all(vec![conn]);
                }
                self.connect(Place::taken(inner)).await
            }
            Take::Wait(ticket) => {
                let mut waiting = Waiting {
                    inner,
                    id: ticket.id,
                    granted: Some(ticket.granted),
                };
                let Some(rx) = waiting.granted.as_mut() else {
                    return Err(sqlx::Error::PoolClosed);
                };
                let granted = tokio::select! {
                    granted = &mut *rx => granted,
                    () = tokio::time::sleep(PATIENCE) => {
                        if let Some(evicted) = inner.budget.press(inner.id, ticket.id) {
                            // Out of the queue with a place of its own.
                            waiting.granted = None;
                            close_all(evicted);
                            return self.connect(Place::taken(inner)).await;
                        }
                        rx.await
                    }
                }
                .map_err(|_| sqlx::Error::PoolClosed)?;
                waiting.granted = None;
                match granted {
                    Grant::Conn(live) => Ok(PooledConnection::new(inner.clone(), live)),
                    Grant::Slot => self.connect(Place::taken(inner)).await,
                }
            }
        }
    }

    /// `live` after `idle_for` idle: pinged first when that was long, replaced when the
    /// ping fails.
    async fn checked(
        &self,
        place: Place<'_>,
        mut live: Live<PgConnection>,
        idle_for: Duration,
    ) -> Result<PooledConnection, sqlx::Error> {
        if idle_for < VERIFY_IDLE_AFTER
            || matches!(
                tokio::time::timeout(CHECK_TIMEOUT, live.conn.ping()).await,
                Ok(Ok(()))
            )
        {
            place.keep();
            return Ok(PooledConnection::new(self.inner.clone(), live));
        }
        drop(live);
        self.connect(place).await
    }

    async fn connect(&self, place: Place<'_>) -> Result<PooledConnection, sqlx::Error> {
        let conn = PgConnection::connect_with(&self.inner.options).await?;
        place.keep();
        Ok(PooledConnection::new(
            self.inner.clone(),
            Live {
                conn,
                created: Instant::now(),
            },
        ))
    }
}

/// A place under the budget taken for this pool: given back unless kept (a connect that
/// failed or was cancelled).
struct Place<'a> {
    inner: &'a Arc<PoolInner>,
    kept: bool,
}

impl<'a> Place<'a> {
    fn taken(inner: &'a Arc<PoolInner>) -> Self {
        Self { inner, kept: false }
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.kept {
            close_all(self.inner.budget.forget(self.inner.id));
        }
    }
}

/// A request in the budget's queue: leaves it when dropped (timed out or cancelled), handing
/// back a grant that arrived meanwhile.
struct Waiting<'a> {
    inner: &'a Arc<PoolInner>,
    id: u64,
    granted: Option<tokio::sync::oneshot::Receiver<Grant<PgConnection>>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.granted.take() else {
            return;
        };
        let budget = &self.inner.budget;
        if budget.withdraw(self.id) {
            return;
        }
        if let Ok(grant) = rx.try_recv() {
            close_all(budget.hand_back(self.inner.id, grant, Instant::now()));
        }
    }
}

/// Closes `conns` in the background (a Terminate each); outside a runtime they are dropped.
fn close_all(conns: Vec<PgConnection>) {
    if conns.is_empty() {
        return;
    }
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            for conn in conns {
                let _ = tokio::time::timeout(CHECK_TIMEOUT, conn.close()).await;
            }
        });
    }
}

/// One task per budget closes idle connections past their timeouts; it ends with the budget.
fn start_reaper(budget: &Arc<ConnectionBudget>) {
    if !budget.claim_reaper() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak: Weak<ConnectionBudget> = Arc::downgrade(budget);
    rt.spawn(async move {
        loop {
            tokio::time::sleep(REAP_EVERY).await;
            let Some(budget) = weak.upgrade() else { return };
            let reaped = budget.reap(Instant::now());
            drop(budget);
            for conn in reaped {
                let _ = tokio::time::timeout(CHECK_TIMEOUT, conn.close()).await;
            }
        }
    });
}

// `&pool` runs a query on a connection of its own, as `&sqlx::PgPool` does.
impl<'p> Executor<'p> for &'_ TenantPool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        Box::pin(async_stream::try_stream! {
            let mut conn = pool.acquire().await?;
            let mut rows = conn.fetch_many(query);
            loop {
                let next = futures::TryStreamExt::try_next(&mut rows).await;
                match next {
                    Ok(Some(row)) => yield row,
                    Ok(None) => break,
                    Err(e) => {
                        drop(rows);
                        let failed = Err(e);
                        conn.finished(&failed);
                        failed?;
                        return;
                    }
                }
            }
            drop(rows);
            conn.finished(&Ok(()));
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        E: 'q + Execute<'q, Postgres>,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            let result = conn.fetch_optional(query).await;
            conn.finished(&result);
            result
        })
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'p: 'e,
    {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            let result = conn.prepare_with(sql, parameters).await;
            conn.finished(&result);
            result
        })
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>> {
        let pool = self.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            let result = conn.describe(sql).await;
            conn.finished(&result);
            result
        })
    }
}
