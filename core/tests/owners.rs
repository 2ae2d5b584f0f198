//! The per-owner index: list, count and "log out everywhere else".

mod common;

use common::{SECOND, manual_store};

#[test]
fn sessions_of_an_owner_are_listed_and_counted() {
    let (store, _) = manual_store(|_| {});
    let mut alice: Vec<_> = (0..3).map(|_| store.create(b"a", None).unwrap()).collect();
    let bob = store.create(b"b", None).unwrap();
    for id in &alice {
        store.set_owner(id, Some("alice")).unwrap();
    }
    store.set_owner(&bob, Some("bob")).unwrap();
    alice.sort();
    assert_eq!(store.sessions_of("alice").unwrap(), alice);
    assert_eq!(store.count_of("alice").unwrap(), 3);
    assert_eq!(store.count_of("nobody").unwrap(), 0);
    assert_eq!(
        store.peek(&bob).unwrap().unwrap().owner.as_deref(),
        Some("bob")
    );
}

#[test]
fn destroy_owner_keeps_only_the_current_session() {
    let (store, _) = manual_store(|_| {});
    let ids: Vec<_> = (0..5).map(|_| store.create(b"a", None).unwrap()).collect();
    for id in &ids {
        store.set_owner(id, Some("alice")).unwrap();
    }
    let other = store.create(b"b", None).unwrap();
    store.set_owner(&other, Some("bob")).unwrap();
    assert_eq!(store.destroy_owner("alice", Some(&ids[2])).unwrap(), 4);
    assert_eq!(store.sessions_of("alice").unwrap(), vec![ids[2].clone()]);
    assert!(store.get(&other).unwrap().is_some());
    assert_eq!(store.len(), 2);
    assert_eq!(store.destroy_owner("alice", None).unwrap(), 1);
    assert_eq!(store.count_of("alice").unwrap(), 0);
}

#[test]
fn changing_or_clearing_the_owner_moves_the_session_in_the_index() {
    let (store, _) = manual_store(|_| {});
    let id = store.create(b"a", None).unwrap();
    store.set_owner(&id, Some("alice")).unwrap();
    store.set_owner(&id, Some("bob")).unwrap();
    assert_eq!(store.count_of("alice").unwrap(), 0);
    assert_eq!(store.count_of("bob").unwrap(), 1);
    store.set_owner(&id, None).unwrap();
    assert_eq!(store.count_of("bob").unwrap(), 0);
    assert_eq!(store.peek(&id).unwrap().unwrap().owner, None);
}

#[test]
fn expired_and_destroyed_sessions_leave_the_owner_index() {
    let (store, clock) = manual_store(|_| {});
    let short = store.create(b"a", Some(5 * SECOND)).unwrap();
    let gone = store.create(b"a", None).unwrap();
    let kept = store.create(b"a", None).unwrap();
    for id in [&short, &gone, &kept] {
        store.set_owner(id, Some("alice")).unwrap();
    }
    store.destroy(&gone).unwrap();
    clock.advance(5 * SECOND);
    assert_eq!(
        store.sessions_of("alice").unwrap(),
        vec![kept.clone()],
        "expired ones are filtered at once"
    );
    store.sweep();
    store.destroy(&kept).unwrap();
    assert_eq!(store.count_of("alice").unwrap(), 0);
}

#[test]
fn malformed_owners_are_refused_and_change_nothing() {
    let (store, _) = manual_store(|_| {});
    let id = store.create(b"a", None).unwrap();
    store.set_owner(&id, Some("alice")).unwrap();
    let long = "x".repeat(coatcheck::MAX_OWNER_LEN + 1);
    for bad in ["", long.as_str()] {
        assert_eq!(
            store.set_owner(&id, Some(bad)).unwrap_err().code(),
            "invalid_argument"
        );
        assert_eq!(
            store.sessions_of(bad).unwrap_err().code(),
            "invalid_argument"
        );
        assert_eq!(store.count_of(bad).unwrap_err().code(), "invalid_argument");
        assert_eq!(
            store.destroy_owner(bad, None).unwrap_err().code(),
            "invalid_argument"
        );
    }
    assert_eq!(store.sessions_of("alice").unwrap(), vec![id]);
    assert_eq!(
        store.set_owner("absent", Some("alice")).unwrap_err().code(),
        "not_found"
    );
}

#[test]
fn owners_are_any_text_up_to_the_limit_non_ascii_and_nul_included() {
    let (store, _) = manual_store(|_| {});
    let longest = "o".repeat(coatcheck::MAX_OWNER_LEN);
    for owner in ["zo\u{eb} \u{1f9e5}", "nul\0inside", longest.as_str()] {
        let id = store.create(b"x", None).unwrap();
        store.set_owner(&id, Some(owner)).unwrap();
        assert_eq!(store.sessions_of(owner).unwrap(), vec![id.clone()]);
        assert_eq!(store.destroy_owner(owner, None).unwrap(), 1);
        assert!(store.get(&id).unwrap().is_none());
    }
    store.check_invariants().unwrap();
}
