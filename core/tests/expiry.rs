//! Idle and absolute timeouts, per-call TTLs, and reclamation by the sweeper.

mod common;

use std::time::Duration;

use common::{SECOND, manual_store};

#[test]
fn idle_session_expires_after_the_idle_timeout() {
    let (store, clock) = manual_store(|_| {});
    let id = store.create(b"v", None).unwrap();
    clock.advance(Duration::from_millis(59_999));
    assert!(store.peek(&id).unwrap().is_some());
    clock.advance(Duration::from_millis(1));
    assert_eq!(store.get(&id).unwrap(), None);
}

#[test]
fn get_slides_the_idle_deadline() {
    let (store, clock) = manual_store(|_| {});
    let id = store.create(b"v", None).unwrap();
    for _ in 0..5 {
        clock.advance(40 * SECOND);
        assert!(store.get(&id).unwrap().is_some());
    }
    clock.advance(61 * SECOND);
    assert_eq!(store.get(&id).unwrap(), None);
}

#[test]
fn peek_does_not_slide_the_idle_deadline() {
    let (store, clock) = manual_store(|_| {});
    let id = store.create(b"v", None).unwrap();
    clock.advance(40 * SECOND);
    assert!(store.peek(&id).unwrap().is_some());
    clock.advance(20 * SECOND);
    assert_eq!(store.peek(&id).unwrap(), None);
}

#[test]
fn touch_extends_expiry_and_keeps_the_data_and_version() {
    let (store, clock) = manual_store(|_| {});
    let id = store.create(b"data", None).unwrap();
    clock.advance(50 * SECOND);
    assert!(store.touch(&id, None).unwrap());
    clock.advance(50 * SECOND);
    let session = store.peek(&id).unwrap().expect("touched session is live");
    assert_eq!(session.value, b"data");
    assert_eq!(session.version, 1);
    assert_eq!(session.expires_in, 10 * SECOND);
}

#[test]
fn touch_of_an_expired_session_reports_false_and_does_not_revive_it() {
    let (store, clock) = manual_store(|_| {});
    let id = store.create(b"v", None).unwrap();
    clock.advance(60 * SECOND);
    assert!(!store.touch(&id, None).unwrap());
    assert_eq!(store.get(&id).unwrap(), None);
}

#[test]
fn per_call_ttl_overrides_the_idle_timeout_for_that_session() {
    let (store, clock) = manual_store(|_| {});
    let short = store.create(b"s", Some(5 * SECOND)).unwrap();
    let long = store.create(b"l", Some(600 * SECOND)).unwrap();
    clock.advance(5 * SECOND);
    assert_eq!(store.get(&short).unwrap(), None);
    clock.advance(300 * SECOND);
    assert!(store.get(&long).unwrap().is_some());
    // The override sticks: the next slide uses the session's own TTL, not the default.
    clock.advance(599 * SECOND);
    assert!(store.get(&long).unwrap().is_some());
}

#[test]
fn set_and_touch_with_ttl_replace_the_sliding_window() {
    let (store, clock) = manual_store(|_| {});
    store.set("sid", b"v", Some(10 * SECOND)).unwrap();
    assert_eq!(store.peek("sid").unwrap().unwrap().expires_in, 10 * SECOND);
    store.touch("sid", Some(100 * SECOND)).unwrap();
    clock.advance(99 * SECOND);
    assert!(store.peek("sid").unwrap().is_some());
}

#[test]
fn a_shortened_ttl_is_reclaimed_at_the_new_deadline() {
    let (store, clock) = manual_store(|_| {});
    store.set("sid", b"v", Some(1000 * SECOND)).unwrap();
    store.sweep();
    store.set("sid", b"w", Some(2 * SECOND)).unwrap();
    clock.advance(2 * SECOND);
    assert_eq!(store.get("sid").unwrap(), None);
    assert_eq!(store.sweep(), 1);
    assert_eq!(store.len(), 0);
}

#[test]
fn absolute_timeout_is_never_extended_by_activity() {
    let (store, clock) = manual_store(|c| c.absolute_timeout = Some(100 * SECOND));
    let id = store.create(b"v", Some(1000 * SECOND)).unwrap();
    for _ in 0..9 {
        clock.advance(10 * SECOND);
        assert!(store.get(&id).unwrap().is_some());
        store.touch(&id, None).unwrap();
        store.set(&id, b"w", None).unwrap();
    }
    assert_eq!(store.peek(&id).unwrap().unwrap().expires_in, 10 * SECOND);
    clock.advance(10 * SECOND);
    assert_eq!(store.get(&id).unwrap(), None);
}

#[test]
fn regenerate_keeps_the_absolute_deadline() {
    let (store, clock) = manual_store(|c| c.absolute_timeout = Some(100 * SECOND));
    let id = store.create(b"v", None).unwrap();
    clock.advance(50 * SECOND);
    let new_id = store.regenerate(&id).unwrap().unwrap();
    clock.advance(50 * SECOND);
    assert_eq!(store.get(&new_id).unwrap(), None);
}

#[test]
fn expired_sessions_are_never_returned_before_the_sweeper_runs() {
    let (store, clock) = manual_store(|_| {});
    let id = store.create(b"v", None).unwrap();
    clock.advance(61 * SECOND);
    assert_eq!(store.get(&id).unwrap(), None);
    assert_eq!(store.peek(&id).unwrap(), None);
    assert_eq!(store.get_session(&id).unwrap(), None);
    assert!(!store.touch(&id, None).unwrap());
    assert!(store.ids().unwrap().is_empty());
    assert_eq!(store.regenerate(&id).unwrap(), None);
    assert_eq!(
        store.set_if_version(&id, b"w", 1, None).unwrap_err().code(),
        "not_found"
    );
    assert_eq!(
        store.set_owner(&id, Some("u")).unwrap_err().code(),
        "not_found"
    );
}

#[test]
fn setting_an_expired_id_starts_a_fresh_session() {
    let (store, clock) = manual_store(|_| {});
    store.set("sid", b"old", None).unwrap();
    store.set("sid", b"old2", None).unwrap();
    clock.advance(61 * SECOND);
    // The new session's version continues above the old one's: a writer still holding a
    // version of the expired session must not overwrite the new one.
    assert_eq!(store.set("sid", b"new", None).unwrap(), 3);
    for stale in [1, 2] {
        assert_eq!(
            store
                .set_if_version("sid", b"stale", stale, None)
                .unwrap_err()
                .code(),
            "conflict"
        );
    }
    let stats = store.stats();
    assert_eq!((stats.sessions, stats.expirations), (1, 1));
    assert_eq!(store.get("sid").unwrap().unwrap(), b"new");
}

#[test]
fn sweep_reclaims_only_expired_sessions() {
    let (store, clock) = manual_store(|_| {});
    let stale: Vec<_> = (0..1000)
        .map(|_| store.create(b"x", None).unwrap())
        .collect();
    clock.advance(30 * SECOND);
    let fresh: Vec<_> = (0..500)
        .map(|_| store.create(b"y", None).unwrap())
        .collect();
    // Half of the old ones are kept alive by a read.
    for id in &stale[..500] {
        store.get(id).unwrap();
    }
    clock.advance(31 * SECOND);
    assert_eq!(store.sweep(), 500);
    assert_eq!(store.len(), 1000);
    let stats = store.stats();
    assert_eq!(stats.expirations, 500);
    assert!(stats.bytes > 0);
    for id in stale[..500].iter().chain(&fresh) {
        assert!(store.peek(id).unwrap().is_some());
    }
    clock.advance(61 * SECOND);
    assert_eq!(store.sweep(), 1000);
    assert_eq!((store.len(), store.stats().bytes), (0, 0));
}

#[test]
fn sweep_before_anything_is_due_reclaims_nothing() {
    let (store, clock) = manual_store(|_| {});
    store.create(b"v", None).unwrap();
    clock.advance(59 * SECOND);
    assert_eq!(store.sweep(), 0);
    assert_eq!(store.len(), 1);
}

#[test]
fn touch_if_idle_skips_sessions_used_recently() {
    let (store, clock) = manual_store(|_| {});
    let id = store.create(b"v", None).unwrap();
    clock.advance(5 * SECOND);
    assert!(
        store.touch_if_idle(&id, None, 10 * SECOND).unwrap(),
        "live, but not touched"
    );
    assert_eq!(store.peek(&id).unwrap().unwrap().expires_in, 55 * SECOND);
    clock.advance(5 * SECOND);
    assert!(
        store
            .touch_if_idle(&id, Some(120 * SECOND), 10 * SECOND)
            .unwrap()
    );
    assert_eq!(store.peek(&id).unwrap().unwrap().expires_in, 120 * SECOND);
    assert!(!store.touch_if_idle("absent", None, SECOND).unwrap());
    assert_eq!(
        store
            .touch_if_idle("bad id", None, SECOND)
            .unwrap_err()
            .code(),
        "invalid_id"
    );
}

#[test]
fn without_slide_on_read_a_session_expires_its_idle_timeout_after_the_last_write_or_touch() {
    let (store, clock) = manual_store(|c| c.slide_on_read = false);
    let id = store.create(b"v", None).unwrap();
    clock.advance(40 * SECOND);
    assert!(store.get(&id).unwrap().is_some(), "reads still return it");
    clock.advance(19 * SECOND);
    assert!(store.get(&id).unwrap().is_some());
    // 59 s of reads left the deadline where the create put it.
    assert_eq!(store.peek(&id).unwrap().unwrap().expires_in, SECOND);
    assert!(store.touch(&id, None).unwrap());
    clock.advance(59 * SECOND);
    assert!(store.get(&id).unwrap().is_some(), "the touch slid it");
    clock.advance(SECOND);
    assert_eq!(store.get(&id).unwrap(), None);
}

#[test]
fn touch_if_idle_counts_from_the_last_write_or_touch_when_reads_do_not_slide() {
    // connect-mongo's touchAfter: reads on every request must not keep postponing the touch.
    let (store, clock) = manual_store(|c| c.slide_on_read = false);
    let id = store.create(b"v", None).unwrap();
    for _ in 0..4 {
        clock.advance(3 * SECOND);
        store.get(&id).unwrap();
        store.touch_if_idle(&id, None, 10 * SECOND).unwrap();
    }
    // 12 s after the create, the fourth request touched it.
    assert_eq!(store.peek(&id).unwrap().unwrap().expires_in, 60 * SECOND);
    clock.advance(3 * SECOND);
    store.get(&id).unwrap();
    store.touch_if_idle(&id, None, 10 * SECOND).unwrap();
    assert_eq!(
        store.peek(&id).unwrap().unwrap().expires_in,
        57 * SECOND,
        "touched 3 s ago: skipped"
    );
}

#[test]
fn the_store_reports_its_timeouts() {
    let (store, _) = manual_store(|c| c.absolute_timeout = Some(Duration::from_secs(3600)));
    assert_eq!(store.idle_timeout(), Duration::from_secs(60));
    assert_eq!(store.absolute_timeout(), Some(Duration::from_secs(3600)));
}
