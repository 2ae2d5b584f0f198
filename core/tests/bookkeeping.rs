//! Regression tests for the v1 bookkeeping bugs that core v2's storage makes impossible. Each
//! test names the failure it guards against:
//! - a sweep (and the last handle's join) that never returns after one id is destroyed and
//!   written again many times, or expires and is written again;
//! - expiry references that outlive their sessions (destroy, eviction, regenerate);
//! - a touch that shortens the TTL and leaves the session counted until its old deadline;
//! - eviction taking a live session while expired ones are present;
//! - a reader computing a past deadline for a live session while another thread touches it.
//!
//! After each scenario the store's invariant checker must pass: every live session filed once
//! in the expiry wheel and the index, nothing else filed, totals equal to the sums.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coatcheck::{Config, Store};
use common::{SECOND, manual_store, with_watchdog};

#[test]
fn sweeping_finishes_after_one_id_is_destroyed_and_written_again_many_times() {
    with_watchdog(Duration::from_secs(60), || {
        let (store, clock) = manual_store(|c| c.shards = Some(1));
        for round in 0..2_000 {
            store
                .set("chosen-by-caller", format!("{round}").as_bytes(), None)
                .unwrap();
            store.destroy("chosen-by-caller").unwrap();
        }
        for _ in 0..500 {
            store
                .set("chosen-by-caller", b"x", Some(Duration::from_millis(5)))
                .unwrap();
            clock.advance(Duration::from_millis(10)); // expires, then is written again
        }
        store.check_invariants().unwrap();
        clock.advance(SECOND);
        assert_eq!(store.sweep(), 1);
        assert_eq!(store.len(), 0);
        store.check_invariants().unwrap();
    });
}

#[test]
fn the_last_handle_returns_promptly_after_heavy_id_reuse() {
    with_watchdog(Duration::from_secs(60), || {
        let mut config = Config::default();
        config.sweep_interval = Duration::from_millis(1);
        config.idle_timeout = Duration::from_millis(2);
        let store = Store::new(config).unwrap();
        for _ in 0..5_000 {
            store.set("reused", b"x", None).unwrap();
            store.destroy("reused").unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        drop(store); // joins the sweeper
    });
}

#[test]
fn destroyed_evicted_and_regenerated_sessions_leave_nothing_in_the_wheel() {
    let (store, _) = manual_store(|c| {
        c.max_sessions = Some(100);
        c.shards = Some(2);
    });
    for i in 0..10_000 {
        let id = store.create(b"bot", None).unwrap();
        match i % 3 {
            0 => {
                store.destroy(&id).unwrap();
            }
            1 => {
                store.regenerate(&id).unwrap();
            }
            _ => {}
        }
    }
    assert!(store.len() <= 100);
    // The checker counts the wheel's entries: exactly the live sessions, not one per create.
    store.check_invariants().unwrap();
}

#[test]
fn a_touch_that_shortens_the_ttl_is_reclaimed_at_the_new_deadline() {
    let (store, clock) = manual_store(|c| c.idle_timeout = Duration::from_secs(3600));
    let id = store.create(b"x", None).unwrap();
    store.set_owner(&id, Some("user-1")).unwrap();
    assert!(store.touch(&id, Some(SECOND)).unwrap());
    clock.advance(2 * SECOND);
    assert_eq!(store.sweep(), 1);
    assert_eq!((store.len(), store.stats().bytes), (0, 0));
    assert_eq!(store.count_of("user-1").unwrap(), 0);
    store.check_invariants().unwrap();
}

#[test]
fn making_room_takes_every_expired_session_before_any_live_one() {
    let (store, clock) = manual_store(|c| {
        c.max_sessions = Some(100);
        c.sweep_interval = Duration::from_secs(10); // coarse sweeps must not matter
    });
    let expiring: Vec<_> = (0..50)
        .map(|_| {
            store
                .create(b"old", Some(Duration::from_millis(1500)))
                .unwrap()
        })
        .collect();
    let live: Vec<_> = (0..50)
        .map(|_| store.create(b"new", None).unwrap())
        .collect();
    clock.advance(Duration::from_millis(1600));
    for _ in 0..50 {
        store.create(b"more", None).unwrap();
    }
    assert!(live.iter().all(|id| store.peek(id).unwrap().is_some()));
    assert!(expiring.iter().all(|id| store.peek(id).unwrap().is_none()));
    let stats = store.stats();
    assert_eq!((stats.expirations, stats.evicted_unread), (50, 0));
    store.check_invariants().unwrap();
}

#[test]
fn a_reader_never_sees_a_live_session_expire_while_it_is_touched() {
    with_watchdog(Duration::from_secs(60), || {
        let (store, clock) = manual_store(|c| c.idle_timeout = Duration::from_secs(60));
        let id = store.create(b"x", None).unwrap();
        clock.advance(Duration::from_secs(30));
        let stop = Arc::new(AtomicBool::new(false));
        let toucher = {
            let (store, id, stop) = (store.clone(), id.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut long = false;
                while !stop.load(Ordering::Relaxed) {
                    long = !long;
                    let ttl = if long { 120 } else { 90 };
                    assert!(store.touch(&id, Some(Duration::from_secs(ttl))).unwrap());
                }
            })
        };
        for _ in 0..200_000 {
            assert!(
                store.get(&id).unwrap().is_some(),
                "a live session read as gone"
            );
        }
        stop.store(true, Ordering::Relaxed);
        toucher.join().unwrap();
        store.check_invariants().unwrap();
    });
}

#[test]
fn timeouts_below_the_clock_resolution_are_refused() {
    for (idle, absolute) in [
        (Duration::from_micros(500), None),
        (SECOND, Some(Duration::from_micros(999))),
    ] {
        let mut config = Config::default();
        config.idle_timeout = idle;
        config.absolute_timeout = absolute;
        config.background_sweeper = false;
        let err = Store::new(config).unwrap_err();
        assert_eq!(err.code(), "invalid_config", "{idle:?} {absolute:?}");
        assert!(err.to_string().contains("at least 1 ms"), "{err}");
    }
}

#[test]
fn insert_never_overwrites_a_live_session() {
    let (store, clock) = manual_store(|_| {});
    let v1 = store.insert("mine", b"first", Some(SECOND)).unwrap();
    let err = store.insert("mine", b"second", None).unwrap_err();
    assert_eq!(err.code(), "conflict");
    assert_eq!(store.peek("mine").unwrap().unwrap().value, b"first");
    clock.advance(2 * SECOND);
    let v2 = store.insert("mine", b"third", None).unwrap();
    assert!(v2 > v1);
    assert_eq!(store.peek("mine").unwrap().unwrap().value, b"third");
    assert_eq!(store.stats().conflicts, 1);
    store.check_invariants().unwrap();
}

#[test]
fn a_stripe_emptied_by_expiry_is_rebuilt_around_its_survivors() {
    let (store, clock) = manual_store(|c| c.shards = Some(1));
    let survivors: Vec<_> = (0..10)
        .map(|i| {
            let id = store.create(format!("keep {i}").as_bytes(), None).unwrap();
            store
                .set_owner(&id, Some(&format!("user-{}", i % 3)))
                .unwrap();
            id
        })
        .collect();
    let versions: Vec<_> = survivors
        .iter()
        .map(|id| store.peek(id).unwrap().unwrap().version)
        .collect();
    for _ in 0..5_000 {
        store.create(b"short", Some(SECOND)).unwrap();
    }
    clock.advance(2 * SECOND);
    assert_eq!(store.sweep(), 5_000);
    store.check_invariants().unwrap();
    for (i, id) in survivors.iter().enumerate() {
        let s = store.peek(id).unwrap().unwrap();
        assert_eq!(s.value, format!("keep {i}").as_bytes());
        assert_eq!(s.version, versions[i]);
        assert_eq!(s.owner.as_deref(), Some(format!("user-{}", i % 3).as_str()));
    }
    assert_eq!(store.count_of("user-0").unwrap(), 4);
    // The rebuilt stripe keeps working: new sessions, expiry, destroy.
    let more: Vec<_> = (0..100)
        .map(|_| store.create(b"new", None).unwrap())
        .collect();
    store.destroy(&survivors[0]).unwrap();
    store.check_invariants().unwrap();
    clock.advance(120 * SECOND);
    assert_eq!(store.sweep(), 109);
    assert!(more.iter().all(|id| store.peek(id).unwrap().is_none()));
    store.check_invariants().unwrap();
}
