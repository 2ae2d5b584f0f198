//! v1's expiry wheel and eviction queues referred to sessions by hash alone, and hashbrown
//! matches candidates on a 7-bit tag, so a stale reference (to a session destroyed or expired)
//! could be taken for a live session whose tag collided: sweeps that never finished, the wrong
//! session evicted, sessions never reclaimed. v2 keeps no such references (the wheel and the
//! eviction bits live in the records), and these scenarios guard that it stays so. One stripe
//! and thousands of sessions make tag collisions certain.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{SECOND, manual_store, with_watchdog};

#[test]
fn sweep_finishes_and_reclaims_exactly_the_expired_among_many_unread() {
    with_watchdog(Duration::from_secs(60), || {
        let (store, clock) = manual_store(|c| {
            c.shards = Some(1);
            c.sweep_interval = Duration::from_millis(1);
        });
        let live: Vec<_> = (0..10_000)
            .map(|_| store.create(b"live", None).unwrap())
            .collect();
        for _ in 0..10_000 {
            store
                .create(b"short", Some(Duration::from_millis(5)))
                .unwrap();
        }
        clock.advance(SECOND);
        assert_eq!(store.sweep(), 10_000);
        assert_eq!(store.len(), 10_000);
        assert!(live.iter().all(|id| store.peek(id).unwrap().is_some()));
        // Destroyed sessions must leave nothing behind that a sweep would trip over.
        for id in &live[..9_000] {
            store.destroy(id).unwrap();
        }
        assert_eq!(store.sweep(), 0);
        clock.advance(120 * SECOND);
        assert_eq!(store.sweep(), 1_000);
        assert_eq!((store.len(), store.stats().bytes), (0, 0));
    });
}

#[test]
fn eviction_among_stale_references_takes_only_unread_sessions() {
    with_watchdog(Duration::from_secs(60), || {
        let capacity = 2_000;
        let (store, _) = manual_store(|c| {
            c.shards = Some(1);
            c.max_sessions = Some(capacity);
        });
        // Churn leaves thousands of stale references in both queues.
        for _ in 0..5 {
            let batch: Vec<_> = (0..capacity)
                .map(|_| store.create(b"x", None).unwrap())
                .collect();
            for id in &batch[..capacity / 2] {
                store.get(id).unwrap();
            }
            for id in &batch {
                store.destroy(id).unwrap();
            }
        }
        let active: Vec<_> = (0..capacity)
            .map(|_| store.create(b"user", None).unwrap())
            .collect();
        for id in &active {
            store.get(id).unwrap();
        }
        let mut flood = HashSet::new();
        for _ in 0..capacity * 3 {
            flood.insert(store.create(b"bot", None).unwrap());
        }
        let survivors = active
            .iter()
            .filter(|id| store.peek(id).unwrap().is_some())
            .count();
        assert_eq!(survivors, capacity - 1);
        assert_eq!(store.len(), capacity);
        let ids = store.ids().unwrap();
        assert_eq!(ids.len(), capacity);
        assert_eq!(ids.iter().filter(|id| flood.contains(*id)).count(), 1);
    });
}
