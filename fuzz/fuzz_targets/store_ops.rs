//! Sequences of store operations under a manual clock, with budgets, and the core's invariant
//! checker after every step: no panic, every error one of the documented ones, and the
//! bookkeeping (index, wheel, free list, owners, totals) consistent throughout.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use coatcheck::{Config, Eviction, ManualClock, Store};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    Create {
        size: u16,
        ttl_ms: Option<u16>,
    },
    Insert {
        id: u8,
        size: u16,
    },
    Set {
        at: u8,
        size: u16,
        ttl_ms: Option<u16>,
    },
    Update {
        at: u8,
        size: u16,
    },
    SetIfVersion {
        at: u8,
        version: u8,
        size: u16,
    },
    Get {
        at: u8,
    },
    Peek {
        at: u8,
    },
    Touch {
        at: u8,
        ttl_ms: Option<u16>,
    },
    TouchIfIdle {
        at: u8,
        min_idle_ms: u16,
    },
    Destroy {
        at: u8,
    },
    Regenerate {
        at: u8,
    },
    SetOwner {
        at: u8,
        owner: Option<u8>,
    },
    DestroyOwner {
        owner: u8,
        keep: Option<u8>,
    },
    Advance {
        ms: u16,
    },
    Sweep,
    Clear,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_sessions: Option<u8>,
    max_bytes: Option<u16>,
    refuse: bool,
    slide_on_read: bool,
    absolute_ms: Option<u16>,
    ops: Vec<Op>,
}

const DOCUMENTED: &[&str] = &[
    "bad_signature",
    "not_found",
    "too_large",
    "store_full",
    "conflict",
    "invalid_id",
    "invalid_config",
    "invalid_argument",
];

fn ttl(ms: Option<u16>) -> Option<Duration> {
    ms.map(|ms| Duration::from_millis(u64::from(ms)))
}

fuzz_target!(|input: Input| {
    let mut config = Config::default();
    config.background_sweeper = false;
    config.shards = Some(4);
    config.idle_timeout = Duration::from_millis(500);
    config.max_session_bytes = 4096;
    config.slide_on_read = input.slide_on_read;
    config.max_sessions = input.max_sessions.map(|n| usize::from(n).max(1));
    config.max_bytes = input.max_bytes.map(|n| usize::from(n).max(1));
    config.absolute_timeout = input
        .absolute_ms
        .map(|ms| Duration::from_millis(u64::from(ms).max(1)));
    if input.refuse {
        config.eviction = Eviction::Refuse;
    }
    let clock = ManualClock::new();
    let store = Store::with_clock(config, clock.clone()).expect("a valid config");
    // Ids seen so far, including destroyed and malformed ones, so operations hit them too.
    let mut ids: Vec<String> = vec!["never-created".into(), String::new(), "bad id".into()];
    let pick = |ids: &Vec<String>, at: u8| ids[usize::from(at) % ids.len()].clone();
    let check = |what: &str, result: Result<(), coatcheck::Error>| {
        if let Err(e) = result {
            assert!(
                DOCUMENTED.contains(&e.code()),
                "{what}: undocumented error {e:?}"
            );
        }
    };
    for op in input.ops.into_iter().take(256) {
        match op {
            Op::Create { size, ttl_ms } => {
                match store.create(&vec![1; usize::from(size)], ttl(ttl_ms)) {
                    Ok(id) => ids.push(id),
                    Err(e) => check("create", Err(e)),
                }
            }
            Op::Insert { id, size } => {
                let id = format!("caller-chosen-{id}");
                check(
                    "insert",
                    store
                        .insert(&id, &vec![2; usize::from(size)], None)
                        .map(drop),
                );
                ids.push(id);
            }
            Op::Set { at, size, ttl_ms } => check(
                "set",
                store
                    .set(&pick(&ids, at), &vec![3; usize::from(size)], ttl(ttl_ms))
                    .map(drop),
            ),
            Op::Update { at, size } => check(
                "update",
                store
                    .update(&pick(&ids, at), &vec![4; usize::from(size)], None)
                    .map(drop),
            ),
            Op::SetIfVersion { at, version, size } => check(
                "set_if_version",
                store
                    .set_if_version(
                        &pick(&ids, at),
                        &vec![5; usize::from(size)],
                        u64::from(version),
                        None,
                    )
                    .map(drop),
            ),
            Op::Get { at } => check("get", store.get(&pick(&ids, at)).map(drop)),
            Op::Peek { at } => check("peek", store.peek(&pick(&ids, at)).map(drop)),
            Op::Touch { at, ttl_ms } => {
                check("touch", store.touch(&pick(&ids, at), ttl(ttl_ms)).map(drop))
            }
            Op::TouchIfIdle { at, min_idle_ms } => check(
                "touch_if_idle",
                store
                    .touch_if_idle(
                        &pick(&ids, at),
                        None,
                        Duration::from_millis(u64::from(min_idle_ms)),
                    )
                    .map(drop),
            ),
            Op::Destroy { at } => check("destroy", store.destroy(&pick(&ids, at)).map(drop)),
            Op::Regenerate { at } => match store.regenerate(&pick(&ids, at)) {
                Ok(Some(id)) => ids.push(id),
                other => check("regenerate", other.map(drop)),
            },
            Op::SetOwner { at, owner } => {
                let owner = owner.map(|o| format!("user-{o}"));
                check(
                    "set_owner",
                    store.set_owner(&pick(&ids, at), owner.as_deref()),
                )
            }
            Op::DestroyOwner { owner, keep } => {
                let keep = keep.map(|k| pick(&ids, k));
                check(
                    "destroy_owner",
                    store
                        .destroy_owner(&format!("user-{owner}"), keep.as_deref())
                        .map(drop),
                )
            }
            Op::Advance { ms } => clock.advance(Duration::from_millis(u64::from(ms))),
            Op::Sweep => drop(store.sweep()),
            Op::Clear => store.clear().expect("a store without Redis always clears"),
        }
        if let Err(broken) = store.check_invariants() {
            panic!("invariant broken: {broken}");
        }
    }
});
