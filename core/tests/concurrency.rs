//! Stress under several threads at once. Guards against:
//! - deadlock between stripe locks, the owner index and two-stripe regenerate (each test runs
//!   on a watchdog and fails if it does not finish in time);
//! - lost updates: a `set_if_version` that succeeds must never be overwritten silently;
//! - expired data leaking out of a read while the sweeper reclaims concurrently;
//! - counters drifting: `len` must agree with `ids()` once the threads stop.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use coatcheck::{Clock, Config, Error, ManualClock, Store};
use common::{manual_store, with_watchdog};

#[test]
fn no_update_is_lost_under_set_if_version() {
    with_watchdog(Duration::from_secs(60), || {
        let (store, _) = manual_store(|_| {});
        let id = store.create(b"0", None).unwrap();
        let threads = 4;
        let increments_each = 500;
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let store = store.clone();
                let id = id.clone();
                thread::spawn(move || {
                    let mut conflicts = 0u64;
                    for _ in 0..increments_each {
                        loop {
                            let s = store.get_session(&id).unwrap().unwrap();
                            let n: u64 = std::str::from_utf8(&s.value).unwrap().parse().unwrap();
                            match store.set_if_version(
                                &id,
                                (n + 1).to_string().as_bytes(),
                                s.version,
                                None,
                            ) {
                                Ok(_) => break,
                                Err(Error::Conflict { .. }) => conflicts += 1,
                                Err(other) => panic!("unexpected {other}"),
                            }
                        }
                    }
                    conflicts
                })
            })
            .collect();
        let conflicts: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let total = (threads * increments_each) as u64;
        assert_eq!(
            store.get(&id).unwrap().unwrap(),
            total.to_string().as_bytes()
        );
        assert_eq!(store.peek(&id).unwrap().unwrap().version, total + 1);
        assert_eq!(store.stats().conflicts, conflicts);
    });
}

#[test]
fn mixed_operations_from_many_threads_keep_the_table_consistent() {
    with_watchdog(Duration::from_secs(120), || {
        let clock = ManualClock::new();
        let mut config = Config::default();
        config.idle_timeout = Duration::from_millis(200);
        // The ticker below sweeps instead of the background sweeper: it stops before the
        // invariant checks, which need a quiet store (a sweep running during a check can make
        // the global totals disagree with the stripes it already counted).
        config.background_sweeper = false;
        config.max_sessions = Some(5_000);
        config.shards = Some(16);
        let store = Store::with_clock(config, clock.clone()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));

        // Time moves while the workers run, so sessions expire under their feet and are swept
        // concurrently with the workers.
        let ticker = {
            let (clock, stop, store) = (clock.clone(), stop.clone(), store.clone());
            thread::spawn(move || {
                let mut ticks = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    clock.advance(Duration::from_millis(1));
                    ticks += 1;
                    if ticks % 5 == 0 {
                        store.sweep();
                    }
                    thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let (store, clock) = (store.clone(), clock.clone());
                thread::spawn(move || {
                    let mut mine: Vec<String> = Vec::new();
                    // Sessions only ever peeked, so their deadline never moves: (id, latest possible
                    // deadline, taken from the clock after the create returned).
                    let mut sealed: Vec<(String, u64)> = Vec::new();
                    for i in 0..20_000u64 {
                        let write = |ttl_ms: u64| {
                            (
                                ttl_ms.to_le_bytes().to_vec(),
                                Some(Duration::from_millis(ttl_ms)),
                            )
                        };
                        match (i + t) % 9 {
                            0 => {
                                let ttl_ms = 20 + i % 50;
                                let id = store
                                    .create(b"sealed", Some(Duration::from_millis(ttl_ms)))
                                    .unwrap();
                                sealed.push((id, clock.now_ms() + ttl_ms));
                                if sealed.len() > 64 {
                                    sealed.remove(0);
                                }
                            }
                            1 => {
                                let (value, ttl) = write(50 + i % 100);
                                mine.push(store.create(&value, ttl).unwrap());
                            }
                            2 | 3 => {
                                for (id, latest_deadline) in &sealed {
                                    let before = clock.now_ms();
                                    if store.peek(id).unwrap().is_some() {
                                        assert!(
                                            before < *latest_deadline,
                                            "expired session returned"
                                        );
                                    }
                                }
                            }
                            4 => {
                                if let Some(id) = mine.last() {
                                    store.get(id).unwrap();
                                }
                            }
                            5 => {
                                if let Some(id) = mine.pop() {
                                    if let Some(new_id) = store.regenerate(&id).unwrap() {
                                        store
                                            .set_owner(&new_id, Some(&format!("user-{}", i % 7)))
                                            .unwrap_or(());
                                        mine.push(new_id);
                                    }
                                }
                            }
                            6 => {
                                if let Some(id) = mine.first() {
                                    let (value, ttl) = write(80);
                                    let _ = store.set(id, &value, ttl);
                                    store.touch(id, None).unwrap();
                                }
                            }
                            7 => {
                                if mine.len() > 50 {
                                    let id = mine.remove(0);
                                    store.destroy(&id).unwrap();
                                }
                                store
                                    .destroy_owner(
                                        &format!("user-{}", i % 7),
                                        mine.last().map(String::as_str),
                                    )
                                    .unwrap();
                            }
                            _ => {
                                store.sessions_of(&format!("user-{}", i % 7)).unwrap();
                            }
                        }
                        assert!(
                            store.len() <= 5_000 + 4,
                            "budget overshoot beyond one per writer"
                        );
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        ticker.join().unwrap();

        // Quiet now: every structure agrees with every other after the storm...
        store.check_invariants().unwrap();
        let live = store.ids().unwrap();
        store.sweep();
        clock.advance(Duration::from_secs(1));
        store.sweep();
        assert_eq!(store.len(), 0, "all sessions expired and were reclaimed");
        assert_eq!(store.stats().bytes, 0);
        assert!(store.ids().unwrap().is_empty());
        store.check_invariants().unwrap();
        for user in 0..7 {
            assert!(
                store
                    .sessions_of(&format!("user-{user}"))
                    .unwrap()
                    .is_empty()
            );
        }
        drop(live);
    });
}

#[test]
fn len_agrees_with_ids_when_quiet() {
    with_watchdog(Duration::from_secs(60), || {
        let (store, _) = manual_store(|_| {});
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                thread::spawn(move || {
                    for i in 0..5_000 {
                        let id = store.create(b"v", None).unwrap();
                        if i % 3 == 0 {
                            store.destroy(&id).unwrap();
                        } else if i % 3 == 1 {
                            store.regenerate(&id).unwrap().unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let ids = store.ids().unwrap();
        assert_eq!(store.len(), ids.len());
        assert_eq!(ids.len(), 4 * (5_000 - 5_000 / 3 - 1));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        store.check_invariants().unwrap();
    });
}
