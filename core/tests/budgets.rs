//! `max_sessions`, `max_bytes` and `max_session_bytes`, and who gets evicted.

mod common;

use coatcheck::{ENTRY_OVERHEAD_BYTES, Eviction};
use common::{SECOND, manual_store};

#[test]
fn a_flood_of_new_sessions_does_not_push_out_active_users() {
    let capacity = 1000;
    let (store, clock) = manual_store(|c| c.max_sessions = Some(capacity));
    let active: Vec<_> = (0..capacity)
        .map(|_| store.create(b"user", None).unwrap())
        .collect();
    for id in &active {
        assert!(store.get(id).unwrap().is_some());
    }
    for _ in 0..capacity * 10 {
        store.create(b"bot", None).unwrap();
    }
    clock.advance(SECOND);
    let survivors = active
        .iter()
        .filter(|id| store.peek(id).unwrap().is_some())
        .count();
    assert_eq!(
        survivors,
        capacity - 1,
        "only room for the newest flood session is made"
    );
    assert_eq!(store.len(), capacity);
    let stats = store.stats();
    assert_eq!(stats.evicted_unread, (capacity * 10 - 1) as u64);
    assert_eq!(stats.evicted_lru, 1);
}

#[test]
fn expired_sessions_are_evicted_before_live_ones() {
    let (store, clock) = manual_store(|c| c.max_sessions = Some(10));
    let doomed: Vec<_> = (0..5)
        .map(|_| store.create(b"x", Some(SECOND)).unwrap())
        .collect();
    let unread: Vec<_> = (0..5).map(|_| store.create(b"y", None).unwrap()).collect();
    clock.advance(2 * SECOND);
    for _ in 0..5 {
        store.create(b"z", None).unwrap();
    }
    assert!(unread.iter().all(|id| store.peek(id).unwrap().is_some()));
    assert!(doomed.iter().all(|id| store.peek(id).unwrap().is_none()));
    assert_eq!(store.stats().expirations, 5);
    assert_eq!(store.stats().evicted_unread, 0);
}

#[test]
fn least_recently_used_goes_first_among_read_sessions() {
    let (store, _) = manual_store(|c| {
        c.max_sessions = Some(4);
        c.shards = Some(1);
    });
    let ids: Vec<_> = (0..4).map(|_| store.create(b"x", None).unwrap()).collect();
    for id in &ids {
        store.get(id).unwrap();
    }
    // One eviction sweeps the clock hand over everyone, clearing their second-chance bits...
    let fifth = store.create(b"x", None).unwrap();
    store.get(&fifth).unwrap();
    let survivors: Vec<_> = ids
        .iter()
        .filter(|id| store.peek(id).unwrap().is_some())
        .cloned()
        .collect();
    assert_eq!(survivors.len(), 3);
    // ...then only the sessions read again keep their second chance.
    store.get(&survivors[0]).unwrap();
    store.get(&survivors[2]).unwrap();
    store.get(&fifth).unwrap();
    store.create(b"x", None).unwrap();
    assert!(store.peek(&survivors[0]).unwrap().is_some());
    assert!(store.peek(&survivors[2]).unwrap().is_some());
    assert!(store.peek(&fifth).unwrap().is_some());
    assert!(store.peek(&survivors[1]).unwrap().is_none());
}

#[test]
fn max_bytes_bounds_the_accounted_size() {
    let per_session = 1000 + 32 + ENTRY_OVERHEAD_BYTES;
    let (store, _) = manual_store(|c| c.max_bytes = Some(per_session * 50));
    for _ in 0..500 {
        store.create(&[7u8; 1000], None).unwrap();
        assert!(store.stats().bytes <= per_session * 50);
    }
    assert_eq!(store.len(), 50);
}

#[test]
fn growing_a_session_past_max_bytes_evicts_others_not_itself() {
    let small = 10 + 32 + ENTRY_OVERHEAD_BYTES;
    let (store, _) = manual_store(|c| c.max_bytes = Some(small * 10));
    let ids: Vec<_> = (0..10)
        .map(|_| store.create(&[1u8; 10], None).unwrap())
        .collect();
    store.set(&ids[0], &[2u8; 400], None).unwrap();
    assert_eq!(store.get(&ids[0]).unwrap().unwrap(), vec![2u8; 400]);
    assert!(store.len() < 10);
    assert!(store.stats().bytes <= small * 10);
}

#[test]
fn a_value_over_max_session_bytes_is_too_large_and_changes_nothing() {
    let (store, _) = manual_store(|c| c.max_session_bytes = 100);
    let id = store.create(&[1u8; 100], None).unwrap();
    let before = store.stats();
    let err = store.set(&id, &[2u8; 101], None).unwrap_err();
    assert_eq!(err.code(), "too_large");
    assert!(err.to_string().contains("101"));
    assert_eq!(
        store.create(&[2u8; 101], None).unwrap_err().code(),
        "too_large"
    );
    assert_eq!(
        store
            .set_if_version(&id, &[2u8; 101], 1, None)
            .unwrap_err()
            .code(),
        "too_large"
    );
    assert_eq!(
        store.update(&id, &[2u8; 101], None).unwrap_err().code(),
        "too_large"
    );
    assert_eq!(
        store
            .insert("not-yet-there", &[2u8; 101], None)
            .unwrap_err()
            .code(),
        "too_large"
    );
    assert_eq!(store.stats(), before);
    assert!(store.peek("not-yet-there").unwrap().is_none());
    let after = store.peek(&id).unwrap().unwrap();
    assert_eq!((after.value, after.version), (vec![1u8; 100], 1));
}

#[test]
fn the_default_value_limit_is_one_mebibyte() {
    let (store, _) = manual_store(|_| {});
    assert!(store.create(&vec![0u8; 1 << 20], None).is_ok());
    assert_eq!(
        store
            .create(&vec![0u8; (1 << 20) + 1], None)
            .unwrap_err()
            .code(),
        "too_large"
    );
}

#[test]
fn a_session_that_can_never_fit_is_store_full_without_evicting() {
    let (store, _) = manual_store(|c| c.max_bytes = Some(ENTRY_OVERHEAD_BYTES + 100));
    let id = store.create(b"small", None).unwrap();
    assert_eq!(
        store.create(&[0u8; 200], None).unwrap_err().code(),
        "store_full"
    );
    assert!(store.get(&id).unwrap().is_some());
}

#[test]
fn refuse_policy_reports_store_full_and_keeps_everyone() {
    let (store, clock) = manual_store(|c| {
        c.max_sessions = Some(3);
        c.eviction = Eviction::Refuse;
    });
    let ids: Vec<_> = (0..3)
        .map(|_| store.create(b"x", Some(10 * SECOND)).unwrap())
        .collect();
    assert_eq!(store.create(b"x", None).unwrap_err().code(), "store_full");
    assert_eq!(
        store.set("fresh", b"x", None).unwrap_err().code(),
        "store_full"
    );
    assert!(ids.iter().all(|id| store.peek(id).unwrap().is_some()));
    let before = store.peek(&ids[0]).unwrap().unwrap().version;
    assert!(store.set(&ids[0], b"update is fine", None).unwrap() > before);
    // Expired sessions still make room under this policy.
    clock.advance(10 * SECOND);
    assert!(store.create(b"x", None).is_ok());
}
