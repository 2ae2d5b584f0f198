//! The change stream as its consumers (the Redis tier, the restart log) rely on it: every
//! change reported once with its cause, removals told apart (expired, evicted, destroyed,
//! replaced, cleared), small read slides skipped, and one session's changes in order even when
//! several threads change it at once.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coatcheck::{Cause, ChangeKind, Config, ManualClock, Store};
use common::{SECOND, with_watchdog};

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Created(String, Vec<u8>),
    Written(String, Vec<u8>),
    Slid(String, u64),
    Owner(String, Option<String>),
    Removed(String, Cause, Option<String>),
}

fn recording_store(
    slack: Duration,
    configure: impl FnOnce(&mut Config),
) -> (Store, ManualClock, Arc<Mutex<Vec<Seen>>>) {
    let clock = ManualClock::new();
    let mut config = Config::default();
    config.background_sweeper = false;
    config.idle_timeout = Duration::from_secs(60);
    configure(&mut config);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let store = Store::builder(config)
        .clock(clock.clone())
        .listener(slack, move |c| {
            let id = c.id.to_string();
            let event = match c.kind {
                ChangeKind::Created { value } => Seen::Created(id, value.to_vec()),
                ChangeKind::Written { value } => Seen::Written(id, value.to_vec()),
                ChangeKind::Slid => Seen::Slid(id, c.deadline_ms),
                ChangeKind::OwnerChanged => Seen::Owner(id, c.owner.map(Into::into)),
                ChangeKind::Removed { cause, replaced_by } => {
                    Seen::Removed(id, cause, replaced_by.map(Into::into))
                }
                _ => unreachable!(),
            };
            sink.lock().unwrap().push(event);
        })
        .build()
        .unwrap();
    (store, clock, seen)
}

#[test]
fn every_kind_of_change_is_reported_with_its_cause() {
    let (store, clock, seen) = recording_store(Duration::from_secs(10), |c| {
        c.max_sessions = Some(2);
    });
    let a = store.create(b"a", None).unwrap();
    store.set(&a, b"a2", None).unwrap();
    store.set_owner(&a, Some("u1")).unwrap();
    let b = store.regenerate(&a).unwrap().unwrap();
    store.insert("short", b"s", Some(SECOND)).unwrap();
    clock.advance(2 * SECOND);
    store.sweep();
    let c = store.create(b"c", None).unwrap();
    let d = store.create(b"d", None).unwrap(); // full: evicts c (never read)
    store.destroy(&b).unwrap();
    store.clear().unwrap();
    let expected = vec![
        Seen::Created(a.clone(), b"a".to_vec()),
        Seen::Written(a.clone(), b"a2".to_vec()),
        Seen::Owner(a.clone(), Some("u1".into())),
        Seen::Created(b.clone(), b"a2".to_vec()),
        Seen::Removed(a.clone(), Cause::Replaced, Some(b.clone())),
        Seen::Created("short".into(), b"s".to_vec()),
        Seen::Removed("short".into(), Cause::Expired, None),
        Seen::Created(c.clone(), b"c".to_vec()),
        Seen::Removed(c.clone(), Cause::Evicted, None),
        Seen::Created(d.clone(), b"d".to_vec()),
        Seen::Removed(b.clone(), Cause::Destroyed, None),
        Seen::Removed(d.clone(), Cause::Cleared, None),
    ];
    assert_eq!(*seen.lock().unwrap(), expected);
}

#[test]
fn read_slides_are_reported_only_across_the_slack() {
    let (store, clock, seen) = recording_store(Duration::from_secs(10), |_| {});
    let id = store.create(b"x", None).unwrap();
    seen.lock().unwrap().clear();
    for _ in 0..100 {
        clock.advance(Duration::from_millis(250)); // 25 s of reads, one every 250 ms
        store.get(&id).unwrap();
    }
    let slides: Vec<u64> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| match s {
            Seen::Slid(_, deadline) => *deadline,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // The deadline moved 25 s: two or three 10 s boundaries crossed, not 100 reports.
    assert!((2..=3).contains(&slides.len()), "{slides:?}");
    assert!(slides.windows(2).all(|w| w[0] < w[1]));
    let last = *slides.last().unwrap();
    let truth = store.clock_ms() + 60_000;
    assert!(
        truth - last < 10_000,
        "reported {last}, true deadline {truth}"
    );
}

#[test]
fn one_sessions_changes_arrive_in_order_from_many_threads() {
    with_watchdog(Duration::from_secs(60), || {
        let (store, _, _) = recording_store(Duration::from_secs(1), |_| {});
        drop(store);
        let versions: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
        let sink = versions.clone();
        let mut config = Config::default();
        config.background_sweeper = false;
        config.shards = Some(1);
        let store = Store::builder(config)
            .listener(Duration::from_secs(1), move |c| {
                if matches!(
                    c.kind,
                    ChangeKind::Written { .. } | ChangeKind::Created { .. }
                ) {
                    sink.lock()
                        .unwrap()
                        .entry(c.id.into())
                        .or_default()
                        .push(c.version);
                }
            })
            .build()
            .unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let id = format!("s{}", i % 3);
                        store.set(&id, format!("{t}:{i}").as_bytes(), None).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let versions = versions.lock().unwrap();
        assert_eq!(versions.values().map(Vec::len).sum::<usize>(), 8_000);
        for (id, seen) in versions.iter() {
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{id}: out of order");
            assert_eq!(
                *seen.last().unwrap(),
                store.peek(id).unwrap().unwrap().version
            );
        }
    });
}

/// Under concurrent writers, readers, regenerates across stripes, evictions at a full budget,
/// expiry and a sweeper, a replica built only from the change stream ends up holding exactly
/// the sessions the store holds, each at its version and value.
#[test]
fn a_replica_fed_by_the_stream_matches_the_store_after_concurrent_churn() {
    type Replica = HashMap<String, (Vec<u8>, u64)>;
    with_watchdog(Duration::from_secs(60), || {
        let replica: Arc<Mutex<Replica>> = Arc::default();
        let sink = replica.clone();
        let clock = ManualClock::new();
        let mut config = Config::default();
        config.background_sweeper = false;
        config.max_sessions = Some(500);
        config.shards = Some(8);
        let store = Store::builder(config)
            .clock(clock.clone())
            .listener(Duration::from_millis(1), move |c| {
                let mut replica = sink.lock().unwrap();
                match c.kind {
                    ChangeKind::Created { value } | ChangeKind::Written { value } => {
                        replica.insert(c.id.into(), (value.to_vec(), c.version));
                    }
                    ChangeKind::Removed { .. } => {
                        assert!(replica.remove(c.id).is_some(), "removed unknown {}", c.id);
                    }
                    _ => {}
                }
            })
            .build()
            .unwrap();
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (store, clock) = (store.clone(), clock.clone());
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..3_000u32 {
                        let ttl = (i % 5 == 0).then_some(Duration::from_millis(50));
                        let id = store.create(format!("{t}:{i}").as_bytes(), ttl).unwrap();
                        mine.push(id);
                        let pick = mine[(i as usize * 7) % mine.len()].clone();
                        match i % 6 {
                            0 => {
                                store.get(&pick).unwrap();
                            }
                            1 => {
                                let _ = store.update(&pick, format!("w{i}").as_bytes(), None);
                            }
                            2 => {
                                if let Ok(Some(new)) = store.regenerate(&pick) {
                                    mine.push(new);
                                }
                            }
                            3 => {
                                store.destroy(&pick).unwrap();
                            }
                            4 if t == 0 => {
                                clock.advance(Duration::from_millis(7));
                                store.sweep();
                            }
                            _ => {
                                let _ = store.set(&format!("chosen-{}", i % 50), b"c", None);
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        clock.advance(Duration::from_secs(1));
        store.sweep();
        store.check_invariants().unwrap();
        let replica = replica.lock().unwrap();
        let ids = store.ids().unwrap();
        assert_eq!(ids.len(), store.len(), "everything expired was swept");
        assert_eq!(replica.len(), ids.len());
        for id in &ids {
            let s = store.peek(id).unwrap().unwrap();
            assert_eq!(replica.get(id), Some(&(s.value, s.version)), "{id}");
        }
    });
}
