//! The session operations, their versions, and their answers to bad input.

mod common;

use std::collections::HashSet;

use coatcheck::{Config, Error, GENERATED_ID_LEN, MAX_ID_LEN, Store};
use common::{SECOND, manual_store};

#[test]
fn create_generates_distinct_url_safe_ids_and_stores_the_value() {
    let (store, _) = manual_store(|_| {});
    let ids: HashSet<String> = (0..1000)
        .map(|i| store.create(format!("v{i}").as_bytes(), None).unwrap())
        .collect();
    assert_eq!(ids.len(), 1000);
    for id in &ids {
        assert_eq!(id.len(), GENERATED_ID_LEN);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
    assert_eq!(store.len(), 1000);
    let mut listed = store.ids().unwrap();
    listed.sort();
    let mut expected: Vec<_> = ids.into_iter().collect();
    expected.sort();
    assert_eq!(listed, expected);
}

#[test]
fn set_upserts_and_bumps_the_version() {
    let (store, _) = manual_store(|_| {});
    assert_eq!(store.set("abc", b"one", None).unwrap(), 1);
    assert_eq!(store.set("abc", b"two", None).unwrap(), 2);
    let s = store.get_session("abc").unwrap().unwrap();
    assert_eq!((s.value.as_slice(), s.version), (&b"two"[..], 2));
    let stats = store.stats();
    assert_eq!((stats.inserts, stats.updates, stats.sessions), (1, 1, 1));
}

#[test]
fn set_if_version_rejects_a_stale_writer_and_keeps_the_winner() {
    let (store, _) = manual_store(|_| {});
    let id = store.create(b"v1", None).unwrap();
    let read_by_a = store.get_session(&id).unwrap().unwrap().version;
    let read_by_b = read_by_a;
    assert_eq!(
        store
            .set_if_version(&id, b"from a", read_by_a, None)
            .unwrap(),
        2
    );
    let err = store
        .set_if_version(&id, b"from b", read_by_b, None)
        .unwrap_err();
    assert_eq!(
        err,
        Error::Conflict {
            expected: 1,
            actual: 2
        }
    );
    assert_eq!(err.code(), "conflict");
    assert_eq!(store.get(&id).unwrap().unwrap(), b"from a");
    assert_eq!(store.stats().conflicts, 1);
    assert_eq!(
        store.set_if_version("missing", b"x", 1, None).unwrap_err(),
        Error::NotFound
    );
    assert!(
        store.peek("missing").unwrap().is_none(),
        "a failed conditional write creates nothing"
    );
}

#[test]
fn set_then_in_a_store_of_this_process_answers_before_it_returns() {
    let (store, _) = manual_store(|_| {});
    let id = store.create(b"v1", None).unwrap();
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for (value, expected) in [(&b"v2"[..], Some(1)), (b"stale", Some(1)), (b"v3", None)] {
        let answers = answers.clone();
        let caller = std::thread::current().id();
        store.set_then(id.clone(), value.to_vec(), None, expected, move |r| {
            assert_eq!(std::thread::current().id(), caller);
            answers.lock().unwrap().push(r);
        });
    }
    let too_large = vec![0u8; 2 << 20];
    let answers_ = answers.clone();
    store.set_then(id.clone(), too_large, None, None, move |r| {
        answers_.lock().unwrap().push(r)
    });
    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 4, "each done ran before set_then returned");
    assert_eq!(answers[0], Ok(2));
    assert_eq!(
        answers[1],
        Err(Error::Conflict {
            expected: 1,
            actual: 2
        })
    );
    assert_eq!(answers[2], Ok(3));
    assert!(matches!(answers[3], Err(Error::TooLarge { .. })));
    assert_eq!(store.get(&id).unwrap().unwrap(), b"v3");
}

#[test]
fn update_writes_only_live_sessions() {
    let (store, clock) = manual_store(|_| {});
    let id = store.create(b"v1", Some(10 * SECOND)).unwrap();
    assert_eq!(store.update(&id, b"v2", None).unwrap(), 2);
    assert_eq!(store.get(&id).unwrap().unwrap(), b"v2");
    assert_eq!(
        store.update("never-created", b"x", None).unwrap_err(),
        Error::NotFound
    );
    assert!(store.peek("never-created").unwrap().is_none());
    clock.advance(11 * SECOND);
    assert_eq!(store.update(&id, b"v3", None).unwrap_err(), Error::NotFound);
    assert_eq!(store.len(), 1, "the expired session is not revived");
    assert_eq!(
        store.update("bad id", b"x", None).unwrap_err().code(),
        "invalid_id"
    );
    let destroyed = store.create(b"gone", None).unwrap();
    store.destroy(&destroyed).unwrap();
    assert_eq!(
        store.update(&destroyed, b"back?", None).unwrap_err(),
        Error::NotFound
    );
    assert!(store.peek(&destroyed).unwrap().is_none(), "not revived");
}

#[test]
fn empty_and_nul_containing_values_read_back_exactly() {
    let (store, _) = manual_store(|_| {});
    let empty = store.create(b"", None).unwrap();
    let nul = store.create(b"a\0b\0", None).unwrap();
    assert_eq!(store.get(&empty).unwrap().unwrap(), b"");
    assert_eq!(store.get(&nul).unwrap().unwrap(), b"a\0b\0");
    store.set(&nul, b"\0", None).unwrap();
    assert_eq!(store.peek(&nul).unwrap().unwrap().value, b"\0");
}

#[test]
fn get_with_lends_the_value_without_copying() {
    let (store, _) = manual_store(|_| {});
    let id = store.create(b"hello", None).unwrap();
    assert_eq!(
        store.get_with(&id, |s| (s.value.len(), s.version)).unwrap(),
        Some((5, 1))
    );
    assert_eq!(store.peek_with("nope", |s| s.value.len()).unwrap(), None);
}

#[test]
fn destroy_removes_and_reports_whether_anything_was_live() {
    let (store, _) = manual_store(|_| {});
    let id = store.create(b"v", None).unwrap();
    assert!(store.destroy(&id).unwrap());
    assert!(!store.destroy(&id).unwrap());
    assert_eq!(store.get(&id).unwrap(), None);
    assert_eq!(
        (store.len(), store.stats().bytes, store.stats().destroys),
        (0, 0, 1)
    );
}

#[test]
fn regenerate_moves_data_to_a_new_id_and_the_old_id_is_gone() {
    let (store, _) = manual_store(|_| {});
    let old = store.create(b"cart", None).unwrap();
    store.set_owner(&old, Some("user-1")).unwrap();
    let version_before = store.peek(&old).unwrap().unwrap().version;
    let new = store.regenerate(&old).unwrap().expect("live session");
    assert_ne!(new, old);
    assert_eq!(store.get(&old).unwrap(), None);
    let moved = store.get_session(&new).unwrap().unwrap();
    assert_eq!(moved.value, b"cart");
    assert_eq!(moved.owner.as_deref(), Some("user-1"));
    assert!(
        moved.version > version_before,
        "a writer holding the old version must conflict"
    );
    assert_eq!(store.sessions_of("user-1").unwrap(), vec![new.clone()]);
    assert_eq!(store.len(), 1);
    assert_eq!(store.regenerate("not-there").unwrap(), None);
}

#[test]
fn regenerate_of_many_sessions_keeps_totals_consistent() {
    let (store, _) = manual_store(|_| {});
    let ids: Vec<_> = (0..200)
        .map(|_| store.create(b"0123456789", None).unwrap())
        .collect();
    let bytes = store.stats().bytes;
    for id in &ids {
        store.regenerate(id).unwrap().unwrap();
    }
    assert_eq!(
        (store.len(), store.stats().bytes, store.ids().unwrap().len()),
        (200, bytes, 200)
    );
}

#[test]
fn clear_empties_the_store_and_the_owner_index() {
    let (store, _) = manual_store(|_| {});
    for _ in 0..100 {
        let id = store.create(b"v", None).unwrap();
        store.set_owner(&id, Some("u")).unwrap();
    }
    store.clear().unwrap();
    assert_eq!((store.len(), store.stats().bytes), (0, 0));
    assert!(store.ids().unwrap().is_empty());
    assert!(store.sessions_of("u").unwrap().is_empty());
    // Still usable afterwards.
    let id = store.create(b"again", None).unwrap();
    assert_eq!(store.get(&id).unwrap().unwrap(), b"again");
}

#[test]
fn stats_count_hits_misses_and_bytes() {
    let (store, _) = manual_store(|_| {});
    let id = store.create(&[0u8; 100], None).unwrap();
    store.get(&id).unwrap();
    store.get(&id).unwrap();
    store.get("absent").unwrap();
    let stats = store.stats();
    assert_eq!((stats.hits, stats.misses), (2, 1));
    assert_eq!(
        stats.bytes,
        100 + GENERATED_ID_LEN + coatcheck::ENTRY_OVERHEAD_BYTES
    );
}

#[test]
fn every_entry_point_rejects_malformed_ids_and_changes_nothing() {
    let (store, _) = manual_store(|_| {});
    let id = store.create(b"keep", None).unwrap();
    let too_long = "a".repeat(MAX_ID_LEN + 1);
    for bad in ["", "has space", "caf\u{e9}", "nul\0", too_long.as_str()] {
        let invalid =
            |r: Result<(), Error>| assert_eq!(r.unwrap_err().code(), "invalid_id", "{bad:?}");
        invalid(store.get(bad).map(drop));
        invalid(store.get_session(bad).map(drop));
        invalid(store.peek(bad).map(drop));
        invalid(store.get_with(bad, |_| ()).map(drop));
        invalid(store.set(bad, b"x", None).map(drop));
        invalid(store.insert(bad, b"x", None).map(drop));
        invalid(store.set_if_version(bad, b"x", 1, None).map(drop));
        invalid(store.update(bad, b"x", None).map(drop));
        invalid(store.touch(bad, None).map(drop));
        invalid(store.destroy(bad).map(drop));
        invalid(store.regenerate(bad).map(drop));
        invalid(store.set_owner(bad, Some("u")).map(drop));
        invalid(store.destroy_owner("u", Some(bad)).map(drop));
    }
    assert_eq!(store.len(), 1);
    assert_eq!(store.get(&id).unwrap().unwrap(), b"keep");
}

#[test]
fn zero_ttl_is_an_invalid_argument() {
    let (store, _) = manual_store(|_| {});
    let id = store.create(b"v", None).unwrap();
    let zero = Some(std::time::Duration::ZERO);
    assert_eq!(
        store.create(b"v", zero).unwrap_err().code(),
        "invalid_argument"
    );
    assert_eq!(
        store.set(&id, b"w", zero).unwrap_err().code(),
        "invalid_argument"
    );
    assert_eq!(
        store.touch(&id, zero).unwrap_err().code(),
        "invalid_argument"
    );
    assert_eq!(store.get(&id).unwrap().unwrap(), b"v");
    assert_eq!(store.len(), 1);
}

#[test]
fn invalid_configurations_are_refused() {
    type Tweak = Box<dyn Fn(&mut Config)>;
    let cases: Vec<(&str, Tweak)> = vec![
        (
            "zero idle timeout",
            Box::new(|c| c.idle_timeout = std::time::Duration::ZERO),
        ),
        (
            "zero absolute timeout",
            Box::new(|c| c.absolute_timeout = Some(std::time::Duration::ZERO)),
        ),
        ("zero max_sessions", Box::new(|c| c.max_sessions = Some(0))),
        ("zero max_bytes", Box::new(|c| c.max_bytes = Some(0))),
        (
            "zero max_session_bytes",
            Box::new(|c| c.max_session_bytes = 0),
        ),
        (
            "shards not a power of two",
            Box::new(|c| c.shards = Some(12)),
        ),
        ("zero shards", Box::new(|c| c.shards = Some(0))),
        (
            "zero sweep interval",
            Box::new(|c| c.sweep_interval = std::time::Duration::ZERO),
        ),
        (
            "empty secret",
            Box::new(|c| c.secrets = vec![b"ok".to_vec(), Vec::new()]),
        ),
    ];
    for (what, configure) in cases {
        let mut config = Config::default();
        configure(&mut config);
        let err = Store::new(config).unwrap_err();
        assert_eq!(err.code(), "invalid_config", "{what}");
    }
}

#[test]
fn a_default_store_works_on_the_real_clock() {
    let store = Store::new(Config::default()).unwrap();
    let id = store.create(b"v", Some(60 * SECOND)).unwrap();
    assert_eq!(store.get(&id).unwrap().unwrap(), b"v");
}

#[test]
fn error_codes_are_the_public_contract() {
    let codes: Vec<_> = [
        Error::BadSignature,
        Error::NotFound,
        Error::TooLarge { size: 2, limit: 1 },
        Error::StoreFull,
        Error::Conflict {
            expected: 1,
            actual: 2,
        },
        Error::InvalidId("x"),
        Error::InvalidConfig("x".into()),
        Error::InvalidArgument("x"),
    ]
    .iter()
    .map(|e| {
        assert!(!e.to_string().is_empty());
        e.code()
    })
    .collect();
    assert_eq!(
        codes,
        [
            "bad_signature",
            "not_found",
            "too_large",
            "store_full",
            "conflict",
            "invalid_id",
            "invalid_config",
            "invalid_argument"
        ]
    );
}
