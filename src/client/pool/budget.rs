//! The connection budget every tenant pool of one client shares: at most `cap` connections
//! open (or being opened) over all pools, each pool at most its own `max`, and an idle
//! connection of any pool given up the moment another pool needs a place and the cap is full.
//!
//! A state machine under one lock, generic over the connection so that its rules are tested
//! without a server; the pool ([`super::TenantPool`]) does the I/O (connecting, checking,
//! closing) outside the lock with what the budget hands it.
//!
//! Rules:
//! - A pool takes its most recently released idle connection first (it is warm; the oldest
//!   ones then reach their idle timeout).
//! - With none idle and room under its own `max`: a new place under the cap; or, when the cap
//!   is full and the pool has no connection at all, the place of an idle connection of
//!   another pool, which is closed: the least recently released of a pool that has others
//!   open, else the least recently released of all.
//! - Otherwise the request waits in one queue for all pools, first come first served: a
//!   released connection goes to the longest waiter that can use it — as it is when the
//!   waiter is of the same pool, as a place when the waiter's pool may open one more and has
//!   none open (the released one is then closed) — and only when no waiter can use it does it
//!   go idle.
//! - A request of a pool whose own connections are all in use waits for one of them for its
//!   patience ([`super::PATIENCE`], a few milliseconds) before it is [`Budget::press`]ed and
//!   takes another pool's idle place: one of its own is usually back within a query's time,
//!   while a new connection costs a login (a SCRAM exchange and a server process) and the
//!   closed one costs its tenant the same later. Measured in `docs/benchmarks.md`
//!   (bench-pool): without the patience, 50 tenants under a cap of 64 kept closing each
//!   other's connections.
//!
//! So a request waits beside an idle connection of another pool only for its patience, and
//! otherwise only while every connection under the cap is checked out (or its pool is at its
//! own `max`), which is what sqlx's parent and child pools could not promise: a child keeps
//! the permit of every connection it ever opened until the whole pool is closed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A pool's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections the pool has open at once.
    pub max: u32,
    /// Idle connections the idle timeout leaves open (the cap may still take them).
    pub min: u32,
    /// An idle connection unused this long is closed.
    pub idle_timeout: Duration,
    /// A connection this old is closed when it is next idle.
    pub max_lifetime: Duration,
}

/// A connection and when it was opened.
#[derive(Debug)]
pub struct Live<C> {
    /// The connection.
    pub conn: C,
    /// When it was opened.
    pub created: Instant,
}

/// What a pool gets when it asks for a connection.
#[derive(Debug)]
pub enum Take<C> {
    /// One of its idle connections, idle for this long.
    Idle(Live<C>, Duration),
    /// A place: open a connection. `evicted` is the idle connection of another pool whose
    /// place this is; close it.
    Open {
        /// The connection to close.
        evicted: Option<C>,
    },
    /// No place yet: wait on the ticket.
    Wait(Ticket<C>),
    /// The pool is closed.
    Closed,
}

/// What a waiting request is given.
#[derive(Debug)]
pub enum Grant<C> {
    /// A connection of its pool.
    Conn(Live<C>),
    /// A place: open a connection.
    Slot,
}

/// A place in the queue.
#[derive(Debug)]
pub struct Ticket<C> {
    /// Its number (to leave the queue with).
    pub id: u64,
    /// Where the grant arrives.
    pub granted: oneshot::Receiver<Grant<C>>,
}

/// Connections over all pools: open (or being opened), of them idle, and requests waiting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Open or being opened.
    pub open: u32,
    /// Of them idle.
    pub idle: u32,
    /// Requests waiting for a connection.
    pub waiting: u32,
}

struct Idle<C> {
    live: Live<C>,
    seq: u64,
    since: Instant,
}

struct PoolState<C> {
    limits: Limits,
    open: u32,
    /// Oldest release first.
    idle: VecDeque<Idle<C>>,
    closed: bool,
}

struct Waiter<C> {
    id: u64,
    pool: u64,
    tx: oneshot::Sender<Grant<C>>,
    /// Waited its patience: another pool's idle connection may be closed for it.
    pressed: bool,
}

struct State<C> {
    open: u32,
    pools: HashMap<u64, PoolState<C>>,
    /// Every idle connection by release number: the first is the least recently released.
    lru: BTreeMap<u64, u64>,
    waiters: VecDeque<Waiter<C>>,
    next: u64,
}

/// The budget; see the module documentation.
pub struct Budget<C> {
    cap: u32,
    state: Mutex<State<C>>,
    reaper: AtomicBool,
}

impl<C> std::fmt::Debug for Budget<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("cap", &self.cap)
            .field("totals", &self.totals())
            .finish()
    }
}

impl<C> Budget<C> {
    /// A budget of at most `cap` connections (at least one).
    pub fn new(cap: u32) -> Self {
        Self {
            cap: cap.max(1),
            reaper: AtomicBool::new(false),
            state: Mutex::new(State {
                open: 0,
                pools: HashMap::new(),
                lru: BTreeMap::new(),
                waiters: VecDeque::new(),
                next: 0,
            }),
        }
    }

    /// The cap.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// A new pool with `limits` (its `max` clamped to `1..=cap`); its number.
    pub fn register(&self, mut limits: Limits) -> u64 {
        limits.max = limits.max.clamp(1, self.cap);
        let mut s = self.lock();
        let id = s.next_number();
        s.pools.insert(
            id,
            PoolState {
                limits,
                open: 0,
                idle: VecDeque::new(),
                closed: false,
            },
        );
        id
    }

    /// A connection for `pool`; see the module documentation.
    pub fn take(&self, pool: u64, now: Instant) -> Take<C> {
        let mut s = self.lock();
        let s = &mut *s;
        let Some(p) = s.pools.get_mut(&pool).filter(|p| !p.closed) else {
            return Take::Closed;
        };
        if let Some(idle) = p.idle.pop_back() {
            s.lru.remove(&idle.seq);
            return Take::Idle(idle.live, now.saturating_duration_since(idle.since));
        }
        // A pool with connections of its own (all in use) waits for one of them first.
        if p.open == 0 {
            if s.open < self.cap {
                s.open += 1;
                p.open += 1;
                return Take::Open { evicted: None };
            }
            if let Some(evicted) = s.evict_least_recent() {
                if let Some(p) = s.pools.get_mut(&pool) {
                    p.open += 1;
                }
                return Take::Open {
                    evicted: Some(evicted),
                };
            }
        }
        let (tx, granted) = oneshot::channel();
        let id = s.next_number();
        s.waiters.push_back(Waiter {
            id,
            pool,
            tx,
            pressed: false,
        });
        Take::Wait(Ticket { id, granted })
    }

    /// Ticket `id` of `pool` waited its patience: if its pool may open one more, it takes a
    /// free place under the cap, or else another pool's least recently released idle
    /// connection's place (`Some`: the ticket has left the queue; close what is returned, then
    /// open a connection). Otherwise it is marked so that the next place or idle connection
    /// goes to it. `None` also when the ticket was granted meanwhile (the grant is in its
    /// receiver).
    pub fn press(&self, pool: u64, id: u64) -> Option<Vec<C>> {
        let mut s = self.lock();
        let s = &mut *s;
        let at = s.waiters.iter().position(|w| w.id == id)?;
        let room = s.has_room(pool);
        let evicted = if !room {
            None
        } else if s.open < self.cap {
            s.open += 1;
            Some(Vec::new())
        } else {
            s.evict_least_recent().map(|c| vec![c])
        };
        let Some(closed) = evicted else {
            if let Some(w) = s.waiters.get_mut(at) {
                w.pressed = true;
            }
            return None;
        };
        s.waiters.remove(at);
        if let Some(p) = s.pools.get_mut(&pool) {
            p.open += 1;
        }
        Some(closed)
    }

    /// Takes ticket `id` out of the queue; false when it was granted already (the grant is
    /// in its receiver, and must be handed back with [`Self::hand_back`]).
    pub fn withdraw(&self, id: u64) -> bool {
        let mut s = self.lock();
        let Some(at) = s.waiters.iter().position(|w| w.id == id) else {
            return false;
        };
        if let Some(w) = s.waiters.remove(at) {
            s.remove_if_done(w.pool);
        }
        true
    }

    /// Returns a grant its waiter no longer wants; connections to close.
    pub fn hand_back(&self, pool: u64, grant: Grant<C>, now: Instant) -> Vec<C> {
        match grant {
            Grant::Conn(live) => self.give_back(pool, live, now),
            Grant::Slot => self.forget(pool),
        }
    }

    /// A checked connection of `pool` is free again; connections to close (it, when it is
    /// past its lifetime, its pool is closed, or its place went to another pool).
    pub fn give_back(&self, pool: u64, live: Live<C>, now: Instant) -> Vec<C> {
        let mut s = self.lock();
        let wanted = s.waiters.iter().any(|w| w.pool == pool);
        let usable = s.pools.get(&pool).is_some_and(|p| {
            (!p.closed || wanted)
                && now.saturating_duration_since(live.created) < p.limits.max_lifetime
        });
        if !usable {
            let mut closed = s.forget(pool, self.cap);
            closed.push(live.conn);
            return closed;
        }
        s.offer(pool, live, now, self.cap)
    }

    /// A connection of `pool` closed, or the place taken for one was not used; connections
    /// to close (idle ones whose places went to waiting requests).
    #[must_use = "the connections returned must be closed"]
    pub fn forget(&self, pool: u64) -> Vec<C> {
        self.lock().forget(pool, self.cap)
    }

    /// Closes `pool`: its idle connections now (returned, to close), and its connections in
    /// use when they come back, once none of its requests still waits. New requests get
    /// [`Take::Closed`]; those already waiting are served (a replaced pool finishes the work
    /// it was given).
    pub fn close(&self, pool: u64) -> Vec<C> {
        let mut s = self.lock();
        let s = &mut *s;
        let Some(p) = s.pools.get_mut(&pool) else {
            return Vec::new();
        };
        p.closed = true;
        let idle: Vec<Idle<C>> = p.idle.drain(..).collect();
        let n = u32::try_from(idle.len()).unwrap_or(u32::MAX);
        p.open = p.open.saturating_sub(n);
        s.open = s.open.saturating_sub(n);
        for i in &idle {
            s.lru.remove(&i.seq);
        }
        s.remove_if_done(pool);
        let mut closed: Vec<C> = idle.into_iter().map(|i| i.live.conn).collect();
        closed.extend(s.settle(self.cap));
        closed
    }

    /// Closes idle connections past their pool's idle timeout (keeping `min` open) or past
    /// their lifetime; returns them, to close.
    pub fn reap(&self, now: Instant) -> Vec<C> {
        let mut s = self.lock();
        let s = &mut *s;
        let mut reaped = Vec::new();
        for p in s.pools.values_mut() {
            let limits = p.limits;
            let mut kept = VecDeque::with_capacity(p.idle.len());
            // Oldest release first: the idle timeout keeps the most recently used `min`.
            while let Some(i) = p.idle.pop_front() {
                let old = now.saturating_duration_since(i.live.created) >= limits.max_lifetime;
                let unused = now.saturating_duration_since(i.since) >= limits.idle_timeout
                    && p.open > limits.min;
                if old || unused {
                    s.lru.remove(&i.seq);
                    p.open -= 1;
                    s.open -= 1;
                    reaped.push(i.live.conn);
                } else {
                    kept.push_back(i);
                }
            }
            p.idle = kept;
        }
        if !reaped.is_empty() {
            reaped.extend(s.settle(self.cap));
        }
        reaped
    }

    /// `pool`'s connections: (open, idle).
    pub fn counts(&self, pool: u64) -> (u32, u32) {
        self.lock().pools.get(&pool).map_or((0, 0), |p| {
            (p.open, u32::try_from(p.idle.len()).unwrap_or(u32::MAX))
        })
    }

    /// Connections over all pools.
    pub fn totals(&self) -> Totals {
        let s = self.lock();
        Totals {
            open: s.open,
            idle: u32::try_from(s.lru.len()).unwrap_or(u32::MAX),
            waiting: u32::try_from(s.waiters.len()).unwrap_or(u32::MAX),
        }
    }

    /// Whether `pool` is closed (or gone).
    pub fn is_closed(&self, pool: u64) -> bool {
        self.lock().pools.get(&pool).is_none_or(|p| p.closed)
    }

    /// True for the first caller only: the one that starts the reaper.
    pub fn claim_reaper(&self) -> bool {
        !self.reaper.swap(true, Ordering::Relaxed)
    }

    /// Pools the budget still tracks (closed ones stay until their last connection is back).
    pub fn pools(&self) -> usize {
        self.lock().pools.len()
    }

    // Every change is a few field updates that cannot panic half-way: a poisoned lock is
    // still consistent.
    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<C> State<C> {
    fn next_number(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Whether `pool` may open one more connection for a waiting request (a closed pool
    /// still serves the requests that were waiting when it closed).
    fn has_room(&self, pool: u64) -> bool {
        self.pools.get(&pool).is_some_and(|p| p.open < p.limits.max)
    }

    /// Whether waiter `w` may open a connection (in a free place, or another pool's idle
    /// one's): its pool may open one more, and has none open or `w` waited its patience.
    fn starved(&self, w: &Waiter<C>) -> bool {
        self.has_room(w.pool) && (w.pressed || self.pools.get(&w.pool).is_some_and(|p| p.open == 0))
    }

    /// Closes an idle connection to make a place (which stays taken: the caller's now): the
    /// least recently released of a pool that has others open, else the least recently
    /// released of all. A pool's last connection goes last: closing it costs its tenant a
    /// new login on its next request, while a busy pool's extra one was only an extra.
    fn evict_least_recent(&mut self) -> Option<C> {
        let surplus = self
            .lru
            .iter()
            .find(|(_, pool)| self.pools.get(pool).is_some_and(|p| p.open > 1))
            .map(|(seq, _)| *seq);
        let seq = surplus.or_else(|| self.lru.keys().next().copied())?;
        let victim = self.lru.remove(&seq)?;
        let p = self.pools.get_mut(&victim)?;
        // A pool's first entry in release order is the front of its own idle queue.
        let idle = p.idle.pop_front()?;
        p.open -= 1;
        self.remove_if_done(victim);
        Some(idle.live.conn)
    }

    /// Gives a free connection of `pool` to the longest waiter that can use it, or puts it
    /// idle; the connections to close (it, when its place went to another pool).
    fn offer(&mut self, pool: u64, mut live: Live<C>, now: Instant, cap: u32) -> Vec<C> {
        loop {
            let found = self
                .waiters
                .iter()
                .position(|w| w.pool == pool || self.starved(w));
            let Some(w) = found.and_then(|i| self.waiters.remove(i)) else {
                if self.pools.get(&pool).is_none_or(|p| p.closed) {
                    let mut closed = self.forget(pool, cap);
                    closed.push(live.conn);
                    return closed;
                }
                let seq = self.next_number();
                self.lru.insert(seq, pool);
                if let Some(p) = self.pools.get_mut(&pool) {
                    p.idle.push_back(Idle {
                        live,
                        seq,
                        since: now,
                    });
                }
                return Vec::new();
            };
            if w.pool == pool {
                match w.tx.send(Grant::Conn(live)) {
                    Ok(()) => return Vec::new(),
                    Err(Grant::Conn(back)) => live = back,
                    Err(_) => return Vec::new(),
                }
                continue;
            }
            self.move_place(pool, w.pool);
            if w.tx.send(Grant::Slot).is_ok() {
                self.remove_if_done(pool);
                // `pool` may now have none open while requests of its own wait.
                let mut closed = vec![live.conn];
                closed.extend(self.settle(cap));
                return closed;
            }
            self.move_place(w.pool, pool);
            self.remove_if_done(w.pool);
        }
    }

    fn move_place(&mut self, from: u64, to: u64) {
        if let Some(p) = self.pools.get_mut(&from) {
            p.open -= 1;
        }
        if let Some(p) = self.pools.get_mut(&to) {
            p.open += 1;
        }
    }

    fn forget(&mut self, pool: u64, cap: u32) -> Vec<C> {
        if let Some(p) = self.pools.get_mut(&pool) {
            p.open = p.open.saturating_sub(1);
        }
        self.open = self.open.saturating_sub(1);
        self.remove_if_done(pool);
        self.settle(cap)
    }

    /// Waiting requests that may open a connection (see [`Self::starved`]) take free places
    /// under the cap, then the places of the least recently released idle connections,
    /// longest waiting first. The connections to close.
    fn settle(&mut self, cap: u32) -> Vec<C> {
        let mut closed = Vec::new();
        loop {
            let free = self.open < cap;
            let found = if free || !self.lru.is_empty() {
                self.waiters.iter().position(|w| self.starved(w))
            } else {
                None
            };
            let Some(w) = found.and_then(|at| self.waiters.remove(at)) else {
                return closed;
            };
            if free {
                self.open += 1;
            } else if let Some(evicted) = self.evict_least_recent() {
                closed.push(evicted);
            }
            if let Some(p) = self.pools.get_mut(&w.pool) {
                p.open += 1;
            }
            if w.tx.send(Grant::Slot).is_err() {
                // Gone: the place is free again for the next one.
                if let Some(p) = self.pools.get_mut(&w.pool) {
                    p.open -= 1;
                }
                self.open -= 1;
                self.remove_if_done(w.pool);
            }
        }
    }

    /// Forgets a closed pool once it has no connection and no waiting request.
    fn remove_if_done(&mut self, pool: u64) {
        if self
            .pools
            .get(&pool)
            .is_some_and(|p| p.closed && p.open == 0)
            && !self.waiters.iter().any(|w| w.pool == pool)
        {
            self.pools.remove(&pool);
        }
    }
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
