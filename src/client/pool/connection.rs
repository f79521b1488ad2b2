//! A connection checked out of a [`super::TenantPool`], and a transaction on one.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Instant;

use sqlx::{Connection as _, Executor as _, PgConnection};

use super::budget::Live;
use super::{CHECK_TIMEOUT, PoolInner};

/// A connection of a pool; it goes back to the pool when dropped (see the module
/// documentation of [`super`]). Use it as `&mut *conn` wherever sqlx takes an executor.
pub struct PooledConnection {
    inner: Arc<PoolInner>,
    live: Option<Live<PgConnection>>,
    /// A transaction begun on it was neither committed nor rolled back.
    open_transaction: bool,
    /// Its last use ended at the server's `ReadyForQuery` with nothing left to read: it goes
    /// back without a ping. Set only where that is known (the pool's own executor, a finished
    /// transaction); a connection a caller used freely is pinged.
    clean: bool,
}

impl std::fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection")
            .field("pool", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl PooledConnection {
    pub(super) fn new(inner: Arc<PoolInner>, live: Live<PgConnection>) -> Self {
        Self {
            inner,
            live: Some(live),
            open_transaction: false,
            clean: false,
        }
    }

    /// Marks the last use as finished at `ReadyForQuery` when `result` says so: success, or
    /// an error the server reported (the connection is still in step).
    pub(super) fn finished<T>(&mut self, result: &Result<T, sqlx::Error>) {
        self.clean = matches!(result, Ok(_) | Err(sqlx::Error::Database(_)));
    }
}

impl Deref for PooledConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        // Only `Drop` takes it out.
        match &self.live {
            Some(live) => &live.conn,
            None => unreachable!("a pooled connection is only emptied when dropped"),
        }
    }
}

impl DerefMut for PooledConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match &mut self.live {
            Some(live) => &mut live.conn,
            None => unreachable!("a pooled connection is only emptied when dropped"),
        }
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        let inner = self.inner.clone();
        if self.clean && !self.open_transaction {
            // Ready as it is: back at once, without a task.
            super::close_all(inner.budget.give_back(inner.id, live, Instant::now()));
            return;
        }
        let rollback = self.open_transaction;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // Nothing can be awaited: the connection is dropped, its place freed.
            drop(live);
            super::close_all(inner.budget.forget(inner.id));
            return;
        };
        rt.spawn(async move {
            let checked = tokio::time::timeout(CHECK_TIMEOUT, async {
                if rollback {
                    live.conn.execute("ROLLBACK").await?;
                }
                // Also waits out what a cancelled query left unread.
                live.conn.ping().await
            })
            .await;
            if matches!(checked, Ok(Ok(()))) {
                for conn in inner.budget.give_back(inner.id, live, Instant::now()) {
                    let _ = tokio::time::timeout(CHECK_TIMEOUT, conn.close()).await;
                }
            } else {
                drop(live);
                super::close_all(inner.budget.forget(inner.id));
            }
        });
    }
}

/// A transaction on a pooled connection: `BEGIN` when made, `COMMIT` or `ROLLBACK` when
/// asked; dropped unfinished, it is rolled back before its connection is used again. Use it
/// as `&mut *tx` wherever sqlx takes an executor.
#[derive(Debug)]
pub struct PoolTransaction {
    conn: PooledConnection,
}

impl PoolTransaction {
    pub(super) async fn begin(mut conn: PooledConnection) -> Result<Self, sqlx::Error> {
        conn.execute("BEGIN").await?;
        conn.open_transaction = true;
        Ok(Self { conn })
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.end("COMMIT").await
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.end("ROLLBACK").await
    }

    async fn end(mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        let result = self.conn.execute(statement).await.map(|_| ());
        // Failed or not, the server ended the transaction if it answered.
        if matches!(result, Ok(()) | Err(sqlx::Error::Database(_))) {
            self.conn.open_transaction = false;
        }
        self.conn.finished(&result);
        result
    }
}

impl Deref for PoolTransaction {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for PoolTransaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}
