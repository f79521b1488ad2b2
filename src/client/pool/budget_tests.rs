//! Tests of `client::pool::budget`.

use super::*;

fn limits(max: u32) -> Limits {
    Limits {
        max,
        min: 0,
        idle_timeout: Duration::from_secs(300),
        max_lifetime: Duration::from_secs(1800),
    }
}

fn live(n: u32, now: Instant) -> Live<u32> {
    Live {
        conn: n,
        created: now,
    }
}

/// One more connection for `pool`: taken at once, or after its patience.
fn grow(b: &Budget<u32>, pool: u64, now: Instant) {
    match b.take(pool, now) {
        Take::Open { .. } => {}
        Take::Wait(t) => assert!(b.press(pool, t.id).is_some(), "no place after pressing"),
        other => panic!("expected a place, got {other:?}"),
    }
}

fn opened(t: Take<u32>) -> Option<u32> {
    match t {
        Take::Open { evicted } => evicted,
        other => panic!("expected a place, got {other:?}"),
    }
}

#[test]
fn an_idle_connection_of_another_pool_is_given_up_when_the_cap_is_full() {
    let now = Instant::now();
    let b = Budget::new(2);
    let (a, c, d) = (
        b.register(limits(5)),
        b.register(limits(5)),
        b.register(limits(5)),
    );
    assert_eq!(opened(b.take(a, now)), None);
    assert_eq!(opened(b.take(c, now)), None);
    assert!(b.give_back(a, live(1, now), now).is_empty());
    assert!(b.give_back(c, live(2, now), now).is_empty());
    // Full, both idle: d takes the place of the least recently released (a's).
    assert_eq!(opened(b.take(d, now)), Some(1));
    assert_eq!(b.counts(a), (0, 0));
    assert_eq!(b.counts(d), (1, 0));
    assert_eq!(
        b.totals(),
        Totals {
            open: 2,
            idle: 1,
            waiting: 0
        }
    );
}

#[test]
fn a_busy_pools_extra_connection_goes_before_another_pools_last_one() {
    let now = Instant::now();
    let b = Budget::new(3);
    let (a, c, d) = (
        b.register(limits(5)),
        b.register(limits(5)),
        b.register(limits(5)),
    );
    opened(b.take(c, now));
    opened(b.take(a, now));
    grow(&b, a, now);
    // c's is released first (the least recent of all), then a's two.
    b.give_back(c, live(1, now), now);
    b.give_back(a, live(2, now), now);
    b.give_back(a, live(3, now), now);
    assert_eq!(
        opened(b.take(d, now)),
        Some(2),
        "a's older extra, not c's only one"
    );
    assert_eq!(b.counts(c), (1, 1));
    assert_eq!(b.counts(a), (1, 1));
    // Now every idle one is its pool's last: the least recent of all goes.
    let e = b.register(limits(5));
    assert_eq!(opened(b.take(e, now)), Some(1));
}

#[test]
fn a_pool_reuses_its_most_recent_idle_connection() {
    let now = Instant::now();
    let b = Budget::new(4);
    let a = b.register(limits(5));
    opened(b.take(a, now));
    // A second request waits for the first connection for its patience, then opens one.
    assert!(matches!(b.take(a, now), Take::Wait(_)));
    grow(&b, a, now);
    b.give_back(a, live(1, now), now);
    b.give_back(a, live(2, now), now);
    match b.take(a, now) {
        Take::Idle(l, _) => assert_eq!(l.conn, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn waiters_are_served_first_come_first_served_across_pools() {
    let now = Instant::now();
    let b = Budget::new(1);
    let (a, c) = (b.register(limits(5)), b.register(limits(5)));
    opened(b.take(a, now));
    let Take::Wait(mut first) = b.take(c, now) else {
        panic!("expected to wait")
    };
    let Take::Wait(mut second) = b.take(a, now) else {
        panic!("expected to wait")
    };
    // a's connection comes back: c waited longer, so it gets the place and a's
    // connection is closed, although a's own waiter could have used it as it is.
    assert_eq!(b.give_back(a, live(1, now), now), vec![1]);
    assert!(matches!(first.granted.try_recv(), Ok(Grant::Slot)));
    assert!(second.granted.try_recv().is_err());
    assert_eq!(b.counts(c), (1, 0));
    // c's comes back: a's waiter gets its place (a's login is not c's).
    assert_eq!(b.give_back(c, live(2, now), now), vec![2]);
    assert!(matches!(second.granted.try_recv(), Ok(Grant::Slot)));
    assert_eq!(b.totals().open, 1);
}

#[test]
fn a_pool_at_its_own_max_waits_for_its_own_connection_even_under_the_cap() {
    let now = Instant::now();
    let b = Budget::new(10);
    let a = b.register(limits(1));
    opened(b.take(a, now));
    let Take::Wait(mut t) = b.take(a, now) else {
        panic!("expected to wait")
    };
    assert!(b.give_back(a, live(7, now), now).is_empty());
    assert!(matches!(t.granted.try_recv(), Ok(Grant::Conn(l)) if l.conn == 7));
}

#[test]
fn a_waiter_that_left_is_skipped_and_its_grant_handed_back() {
    let now = Instant::now();
    let b = Budget::new(1);
    let (a, c) = (b.register(limits(1)), b.register(limits(1)));
    opened(b.take(a, now));
    let Take::Wait(gone) = b.take(c, now) else {
        panic!("expected to wait")
    };
    drop(gone.granted);
    // Nobody can use it: it goes idle, and the cap still counts one.
    assert!(b.give_back(a, live(1, now), now).is_empty());
    assert_eq!(
        b.totals(),
        Totals {
            open: 1,
            idle: 1,
            waiting: 0
        }
    );
    // Granted and then withdrawn: the place comes back.
    let Take::Open { evicted: Some(1) } = b.take(c, now) else {
        panic!("expected a's idle connection's place")
    };
    let Take::Wait(mut late) = b.take(a, now) else {
        panic!("expected to wait")
    };
    assert!(b.forget(c).is_empty());
    assert!(!b.withdraw(late.id), "already granted");
    let grant = late.granted.try_recv().unwrap();
    assert!(b.hand_back(a, grant, now).is_empty());
    assert_eq!(b.totals(), Totals::default());
}

#[test]
fn a_closed_pool_serves_its_waiting_requests_and_then_gives_its_places_back() {
    let now = Instant::now();
    let b = Budget::new(2);
    let (a, c) = (b.register(limits(1)), b.register(limits(5)));
    opened(b.take(a, now));
    opened(b.take(c, now));
    b.give_back(c, live(9, now), now);
    let Take::Wait(mut a_waits) = b.take(a, now) else {
        panic!("expected to wait")
    };
    // c's idle connection closes with it; a's, in use, stays.
    assert_eq!(b.close(c), vec![9]);
    assert!(matches!(b.take(c, now), Take::Closed));
    assert_eq!(b.totals().open, 1);
    assert!(b.close(a).is_empty(), "a's connection is in use");
    assert!(matches!(b.take(a, now), Take::Closed), "no new requests");
    // a's connection comes back: the request that was waiting gets it.
    assert!(b.give_back(a, live(1, now), now).is_empty());
    assert!(matches!(a_waits.granted.try_recv(), Ok(Grant::Conn(l)) if l.conn == 1));
    // Back again with nobody waiting: closed, and a is forgotten.
    assert_eq!(b.give_back(a, live(1, now), now), vec![1]);
    assert_eq!(b.pools(), 0);
    assert_eq!(b.totals(), Totals::default());
}

#[test]
fn idle_timeout_keeps_min_and_lifetime_closes_old_connections() {
    let start = Instant::now();
    let b = Budget::new(10);
    let a = b.register(Limits {
        min: 1,
        ..limits(5)
    });
    for _ in 0..3 {
        grow(&b, a, start);
    }
    for n in 1..=3 {
        b.give_back(a, live(n, start), start);
    }
    let later = start + Duration::from_secs(301);
    assert_eq!(b.reap(later), vec![1, 2]);
    assert_eq!(b.counts(a), (1, 1));
    let old = start + Duration::from_secs(1801);
    assert_eq!(b.reap(old), vec![3]);
    assert_eq!(b.totals(), Totals::default());
    // Given back past its lifetime: closed at once.
    opened(b.take(a, old));
    assert_eq!(b.give_back(a, live(4, start), old), vec![4]);
    assert_eq!(b.totals(), Totals::default());
}

#[test]
fn a_pool_larger_than_the_cap_is_clamped() {
    let b: Budget<u32> = Budget::new(3);
    let a = b.register(limits(50));
    let now = Instant::now();
    for _ in 0..3 {
        grow(&b, a, now);
    }
    let Take::Wait(t) = b.take(a, now) else {
        panic!("expected to wait")
    };
    assert!(b.press(a, t.id).is_none(), "at its max of 3");
}

#[derive(Clone, Debug)]
enum Op {
    Take(usize),
    GiveBack(usize),
    Close(usize),
    Leave(usize),
    Reap(u64),
    Press(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0..6usize).prop_map(Op::Take),
        4 => (0..64usize).prop_map(Op::GiveBack),
        1 => (0..6usize).prop_map(Op::Close),
        1 => (0..64usize).prop_map(Op::Leave),
        1 => (0..400u64).prop_map(Op::Reap),
        2 => (0..64usize).prop_map(Op::Press),
    ]
}

impl Budget<u32> {
    /// The promises, checked after every step: the counts add up, the cap and each
    /// pool's max hold, and no request waits that an idle connection or a free place
    /// could serve.
    fn check(&self) {
        let s = self.lock();
        let sum: u32 = s.pools.values().map(|p| p.open).sum();
        assert_eq!(sum, s.open, "pools' counts add up to the total");
        assert!(s.open <= self.cap, "cap {} exceeded: {}", self.cap, s.open);
        let idle: usize = s.pools.values().map(|p| p.idle.len()).sum();
        assert_eq!(idle, s.lru.len());
        for p in s.pools.values() {
            assert!(p.open <= p.limits.max);
            assert!(p.idle.len() as u32 <= p.open);
            assert!(
                !p.closed || p.idle.is_empty(),
                "a closed pool keeps nothing idle"
            );
        }
        for w in &s.waiters {
            let Some(p) = s.pools.get(&w.pool) else {
                panic!("a request waits for a pool that is gone")
            };
            assert!(
                p.idle.is_empty(),
                "a request waits beside its pool's idle connection"
            );
            let starved = w.pressed || p.open == 0;
            let place = starved && (s.open < self.cap || !s.lru.is_empty());
            assert!(
                !(p.open < p.limits.max && place),
                "a request waits although a place is free, or idle elsewhere past its patience: \
                 waiter of {} (pressed {}), total {} of {}, pools {:?}",
                w.pool,
                w.pressed,
                s.open,
                self.cap,
                s.pools
                    .iter()
                    .map(|(id, p)| (*id, p.open, p.limits.max, p.idle.len(), p.closed))
                    .collect::<Vec<_>>()
            );
        }
    }
}

proptest::proptest! {
    #[test]
    fn no_request_waits_for_a_place_that_is_free(ops in proptest::collection::vec(op(), 1..200)) {
        let start = Instant::now();
        let b = Budget::new(4);
        let pools: Vec<u64> = [1, 2, 3, 1, 4, 2]
            .iter()
            .map(|&max| b.register(Limits { max, min: 0, idle_timeout: Duration::from_secs(60), max_lifetime: Duration::from_secs(300) }))
            .collect();
        let mut out: Vec<(u64, Live<u32>)> = Vec::new();
        let mut waiting: Vec<(u64, Ticket<u32>)> = Vec::new();
        let mut next = 0u32;
        let mut clock = start;
        for op in ops {
            match op {
                Op::Take(i) => match b.take(pools[i], clock) {
                    Take::Idle(l, _) => out.push((pools[i], l)),
                    Take::Open { .. } => { next += 1; out.push((pools[i], live(next, clock))); }
                    Take::Wait(t) => waiting.push((pools[i], t)),
                    Take::Closed => {}
                },
                Op::GiveBack(i) if !out.is_empty() => {
                    let (pool, l) = out.swap_remove(i % out.len());
                    b.give_back(pool, l, clock);
                }
                Op::Close(i) => { b.close(pools[i]); }
                Op::Leave(i) if !waiting.is_empty() => {
                    let (pool, mut t) = waiting.swap_remove(i % waiting.len());
                    if !b.withdraw(t.id) && let Ok(g) = t.granted.try_recv() {
                        b.hand_back(pool, g, clock);
                    }
                }
                Op::Reap(secs) => { clock += Duration::from_secs(secs); b.reap(clock); }
                Op::Press(i) if !waiting.is_empty() => {
                    let at = i % waiting.len();
                    let (pool, id) = (waiting[at].0, waiting[at].1.id);
                    if b.press(pool, id).is_some() {
                        waiting.swap_remove(at);
                        next += 1;
                        out.push((pool, live(next, clock)));
                    }
                }
                _ => {}
            }
            // Grants that arrived become connections in use.
            waiting.retain_mut(|(pool, t)| match t.granted.try_recv() {
                Ok(Grant::Conn(l)) => { out.push((*pool, l)); false }
                Ok(Grant::Slot) => { next += 1; out.push((*pool, live(next, clock))); false }
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => false,
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => true,
            });
            b.check();
        }
        for (pool, mut t) in waiting {
            if !b.withdraw(t.id) && let Ok(g) = t.granted.try_recv() {
                b.hand_back(pool, g, clock);
            }
        }
        for (pool, l) in out { b.give_back(pool, l, clock); }
        for p in &pools { b.close(*p); }
        b.check();
        proptest::prop_assert_eq!(b.totals(), Totals::default());
        proptest::prop_assert_eq!(b.pools(), 0, "every closed pool is forgotten");
    }
}
