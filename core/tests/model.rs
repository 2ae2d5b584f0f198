//! Model-based test: random operation sequences against a plain `HashMap` model under a
//! simulated clock. Any divergence in what a read returns, in versions, in the owner index or
//! in the set of live ids fails with the shrunk sequence. After every step the store's own
//! invariant checker runs, and a replica built only from the change stream must agree with the
//! model. Ids are reused (fixed custom ids, destroyed and expired ids), owners change, touches
//! change TTLs, sessions regenerate, and a second property runs under both eviction policies
//! and both budgets.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use std::sync::{Arc, Mutex};

use coatcheck::{Cause, ChangeKind, Config, Error, Eviction, ManualClock, Store};
use proptest::prelude::*;

const IDLE_MS: u64 = 10_000;
const ABSOLUTE_MS: u64 = 25_000;

#[derive(Debug, Clone)]
enum Op {
    Create {
        value: u8,
        ttl: Option<u16>,
    },
    Get(usize),
    Peek(usize),
    Set {
        target: usize,
        value: u8,
        ttl: Option<u16>,
    },
    SetIfVersion {
        target: usize,
        value: u8,
        stale: bool,
    },
    Touch {
        target: usize,
        ttl: Option<u16>,
    },
    Insert {
        target: usize,
        value: u8,
    },
    Destroy(usize),
    Regenerate(usize),
    SetOwner {
        target: usize,
        owner: Option<u8>,
    },
    DestroyOwner {
        owner: u8,
        keep: Option<usize>,
    },
    Advance(u16),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let ttl = proptest::option::of(1u16..20_000);
    prop_oneof![
        (any::<u8>(), ttl.clone()).prop_map(|(value, ttl)| Op::Create { value, ttl }),
        any::<usize>().prop_map(Op::Get),
        any::<usize>().prop_map(Op::Peek),
        (any::<usize>(), any::<u8>(), ttl.clone()).prop_map(|(target, value, ttl)| Op::Set {
            target,
            value,
            ttl
        }),
        (any::<usize>(), any::<u8>(), any::<bool>()).prop_map(|(target, value, stale)| {
            Op::SetIfVersion {
                target,
                value,
                stale,
            }
        }),
        (any::<usize>(), ttl).prop_map(|(target, ttl)| Op::Touch { target, ttl }),
        (any::<usize>(), any::<u8>()).prop_map(|(target, value)| Op::Insert { target, value }),
        any::<usize>().prop_map(Op::Destroy),
        any::<usize>().prop_map(Op::Regenerate),
        (any::<usize>(), proptest::option::of(0u8..3))
            .prop_map(|(target, owner)| Op::SetOwner { target, owner }),
        (0u8..3, proptest::option::of(any::<usize>()))
            .prop_map(|(owner, keep)| Op::DestroyOwner { owner, keep }),
        (1u16..15_000).prop_map(Op::Advance),
        Just(Op::Sweep),
    ]
}

#[derive(Debug, Clone)]
struct Modeled {
    value: Vec<u8>,
    version: u64,
    last_access: u64,
    ttl: u64,
    absolute: u64,
    owner: Option<String>,
}

impl Modeled {
    fn deadline(&self) -> u64 {
        (self.last_access + self.ttl).min(self.absolute)
    }
}

#[derive(Default)]
struct Model {
    now: u64,
    sessions: HashMap<String, Modeled>,
}

impl Model {
    fn live(&self, id: &str) -> Option<&Modeled> {
        self.sessions.get(id).filter(|s| self.now < s.deadline())
    }
    fn live_mut(&mut self, id: &str) -> Option<&mut Modeled> {
        let now = self.now;
        self.sessions.get_mut(id).filter(|s| now < s.deadline())
    }
    fn fresh(&self, value: u8, ttl: Option<u16>, version: u64) -> Modeled {
        Modeled {
            value: vec![value],
            version,
            last_access: self.now,
            ttl: ttl.map_or(IDLE_MS, u64::from),
            absolute: self.now + ABSOLUTE_MS,
            owner: None,
        }
    }
}

fn ms(ttl: Option<u16>) -> Option<Duration> {
    ttl.map(|t| Duration::from_millis(u64::from(t)))
}

fn owner_name(o: u8) -> String {
    format!("owner-{o}")
}

/// What the change stream says each session holds: (value, version, owner).
type Replica = Arc<Mutex<HashMap<String, (Vec<u8>, u64, Option<String>)>>>;

fn store_with_replica(configure: impl FnOnce(&mut Config)) -> (Store, ManualClock, Replica) {
    let clock = ManualClock::new();
    let mut config = Config::default();
    config.background_sweeper = false;
    config.shards = Some(4);
    configure(&mut config);
    let replica: Replica = Arc::default();
    let sink = replica.clone();
    let store = Store::builder(config)
        .clock(clock.clone())
        .listener(Duration::from_millis(1), move |change| {
            let mut replica = sink.lock().unwrap();
            let owner = change.owner.map(str::to_string);
            match change.kind {
                ChangeKind::Created { value } => {
                    let previous =
                        replica.insert(change.id.into(), (value.to_vec(), change.version, owner));
                    assert!(previous.is_none(), "created twice: {}", change.id);
                }
                ChangeKind::Written { value } => {
                    let slot = replica.get_mut(change.id).expect("written before created");
                    assert!(change.version > slot.1, "versions must grow");
                    *slot = (value.to_vec(), change.version, owner);
                }
                ChangeKind::OwnerChanged | ChangeKind::Slid => {
                    let slot = replica.get_mut(change.id).expect("changed before created");
                    assert_eq!(slot.1, change.version);
                    slot.2 = owner;
                }
                ChangeKind::Removed { cause, replaced_by } => {
                    assert!(replica.remove(change.id).is_some(), "removed twice");
                    assert_eq!(cause == Cause::Replaced, replaced_by.is_some());
                }
                _ => unreachable!("a kind this test does not know"),
            }
        })
        .build()
        .expect("valid config");
    (store, clock, replica)
}

fn run(ops: Vec<Op>, slide_on_read: bool) -> Result<(), TestCaseError> {
    let (store, clock, replica) = store_with_replica(|c| {
        c.slide_on_read = slide_on_read;
        c.idle_timeout = Duration::from_millis(IDLE_MS);
        c.absolute_timeout = Some(Duration::from_millis(ABSOLUTE_MS));
        c.sweep_interval = Duration::from_millis(500);
    });
    let mut model = Model::default();
    // The highest version each id has ever had: a new version must always be above it.
    let mut highest: HashMap<String, u64> = HashMap::new();
    // Every id ever seen, so operations also hit destroyed and expired ones.
    let mut known: Vec<String> = vec!["never-created".into()];
    let pick = |known: &Vec<String>, i: usize| known[i % known.len()].clone();

    for op in ops {
        let op_text = format!("{op:?}");
        match op {
            Op::Create { value, ttl } => {
                let id = store.create(&[value], ms(ttl)).unwrap();
                prop_assert!(!model.sessions.contains_key(&id));
                let version = store.peek(&id).unwrap().unwrap().version;
                highest.insert(id.clone(), version);
                model
                    .sessions
                    .insert(id.clone(), model.fresh(value, ttl, version));
                known.push(id);
            }
            Op::Insert { target, value } => {
                let id = format!("custom-{}", target % 7);
                let result = store.insert(&id, &[value], None);
                match model.live(&id) {
                    Some(s) => prop_assert_eq!(
                        result,
                        Err(Error::Conflict {
                            expected: 0,
                            actual: s.version
                        })
                    ),
                    None => {
                        let version = result.unwrap();
                        prop_assert!(highest.get(&id).is_none_or(|&h| version > h));
                        highest.insert(id.clone(), version);
                        let fresh = model.fresh(value, None, version);
                        model.sessions.insert(id.clone(), fresh);
                        known.push(id);
                    }
                }
            }
            Op::Get(i) => {
                let id = pick(&known, i);
                let got = store.get_session(&id).unwrap();
                let now = model.now;
                let expected = model.live_mut(&id).map(|s| {
                    if slide_on_read {
                        s.last_access = now;
                    }
                    (s.value.clone(), s.version, s.owner.clone())
                });
                prop_assert_eq!(got.map(|s| (s.value, s.version, s.owner)), expected);
            }
            Op::Peek(i) => {
                let id = pick(&known, i);
                let got = store.peek(&id).unwrap();
                let expected = model
                    .live(&id)
                    .map(|s| (s.value.clone(), s.version, s.deadline() - model.now));
                prop_assert_eq!(
                    got.map(|s| (s.value, s.version, s.expires_in.as_millis() as u64)),
                    expected
                );
            }
            Op::Set { target, value, ttl } => {
                let id = if target % 4 == 0 {
                    format!("custom-{}", target % 7)
                } else {
                    pick(&known, target)
                };
                let version = store.set(&id, &[value], ms(ttl)).unwrap();
                prop_assert!(highest.get(&id).is_none_or(|&h| version > h));
                highest.insert(id.clone(), version);
                let now = model.now;
                match model.live_mut(&id) {
                    Some(s) => {
                        s.value = vec![value];
                        s.version = version;
                        s.last_access = now;
                        if let Some(t) = ttl {
                            s.ttl = u64::from(t);
                        }
                    }
                    None => {
                        let fresh = model.fresh(value, ttl, version);
                        model.sessions.insert(id.clone(), fresh);
                    }
                }
                known.push(id);
            }
            Op::SetIfVersion {
                target,
                value,
                stale,
            } => {
                let id = pick(&known, target);
                let current = model.live(&id).map(|s| s.version);
                let offered = current.map_or(1, |v| if stale { v - 1 } else { v });
                let result = store.set_if_version(&id, &[value], offered, None);
                let now = model.now;
                match model.live_mut(&id) {
                    None => prop_assert_eq!(result, Err(Error::NotFound)),
                    Some(s) if stale => {
                        prop_assert_eq!(
                            result,
                            Err(Error::Conflict {
                                expected: offered,
                                actual: s.version
                            })
                        )
                    }
                    Some(s) => {
                        let version = result.unwrap();
                        prop_assert!(version > highest[&id]);
                        highest.insert(id.clone(), version);
                        s.value = vec![value];
                        s.version = version;
                        s.last_access = now;
                    }
                }
            }
            Op::Touch { target, ttl } => {
                let id = pick(&known, target);
                let touched = store.touch(&id, ms(ttl)).unwrap();
                let now = model.now;
                let expected = match model.live_mut(&id) {
                    Some(s) => {
                        s.last_access = now;
                        if let Some(t) = ttl {
                            s.ttl = u64::from(t);
                        }
                        true
                    }
                    None => false,
                };
                prop_assert_eq!(touched, expected);
            }
            Op::Destroy(i) => {
                let id = pick(&known, i);
                let expected = model.live(&id).is_some();
                model.sessions.remove(&id);
                prop_assert_eq!(store.destroy(&id).unwrap(), expected);
            }
            Op::Regenerate(i) => {
                let id = pick(&known, i);
                let new_id = store.regenerate(&id).unwrap();
                let now = model.now;
                match model.live(&id).cloned() {
                    Some(mut s) => {
                        let new_id = new_id.expect("live session regenerates");
                        model.sessions.remove(&id);
                        let version = store.peek(&new_id).unwrap().unwrap().version;
                        prop_assert!(version > s.version);
                        highest.insert(new_id.clone(), version);
                        s.version = version;
                        s.last_access = now;
                        model.sessions.insert(new_id.clone(), s);
                        known.push(new_id);
                    }
                    None => prop_assert_eq!(new_id, None),
                }
            }
            Op::SetOwner { target, owner } => {
                let id = pick(&known, target);
                let name = owner.map(owner_name);
                let result = store.set_owner(&id, name.as_deref());
                match model.live_mut(&id) {
                    Some(s) => {
                        s.owner = name;
                        prop_assert_eq!(result, Ok(()));
                    }
                    None => prop_assert_eq!(result, Err(Error::NotFound)),
                }
            }
            Op::DestroyOwner { owner, keep } => {
                let name = owner_name(owner);
                let keep = keep.map(|k| pick(&known, k));
                let now = model.now;
                let doomed: Vec<String> = model
                    .sessions
                    .iter()
                    .filter(|(id, s)| {
                        s.owner.as_deref() == Some(&name)
                            && Some(*id) != keep.as_ref()
                            && now < s.deadline()
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &doomed {
                    model.sessions.remove(id);
                }
                prop_assert_eq!(
                    store.destroy_owner(&name, keep.as_deref()).unwrap(),
                    doomed.len()
                );
            }
            Op::Advance(by) => {
                clock.advance(Duration::from_millis(u64::from(by)));
                model.now += u64::from(by);
            }
            Op::Sweep => {
                store.sweep();
            }
        }
        // Invariants after every step: the store's own structures agree with each other, and
        // the live set, the owner index and the change stream's replica agree with the model.
        if let Err(broken) = store.check_invariants() {
            return Err(TestCaseError::fail(format!("after {op_text}: {broken}")));
        }
        {
            let replica = replica.lock().unwrap();
            for (id, s) in model
                .sessions
                .iter()
                .filter(|(id, _)| model.live(id).is_some())
            {
                prop_assert_eq!(
                    replica.get(id),
                    Some(&(s.value.clone(), s.version, s.owner.clone())),
                    "replica of {}",
                    id
                );
            }
            prop_assert!(replica.len() <= store.len());
        }
        let mut live: Vec<String> = model
            .sessions
            .keys()
            .filter(|id| model.live(id).is_some())
            .cloned()
            .collect();
        live.sort();
        let mut ids = store.ids().unwrap();
        ids.sort();
        prop_assert_eq!(&ids, &live);
        prop_assert!(store.len() >= live.len());
        for o in 0..3 {
            let name = owner_name(o);
            let mut owned: Vec<String> = live
                .iter()
                .filter(|id| model.sessions[*id].owner.as_deref() == Some(&name))
                .cloned()
                .collect();
            owned.sort();
            prop_assert_eq!(store.sessions_of(&name).unwrap(), owned);
        }
    }
    // Once every session is long expired and swept, nothing is left behind.
    clock.advance(Duration::from_millis(ABSOLUTE_MS + 1000));
    store.sweep();
    prop_assert_eq!(store.len(), 0);
    prop_assert_eq!(store.stats().bytes, 0);
    prop_assert!(replica.lock().unwrap().is_empty());
    store.check_invariants().map_err(TestCaseError::fail)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_behaves_like_a_hash_map_with_deadlines(
        ops in proptest::collection::vec(op(), 1..120),
        slide_on_read in any::<bool>(),
    ) {
        run(ops, slide_on_read)?;
    }

    #[test]
    fn budgets_hold_after_every_operation(
        creates in proptest::collection::vec((1usize..400, proptest::option::of(1u16..5000), any::<bool>()), 1..300),
        refuse in any::<bool>(),
        by_bytes in any::<bool>(),
    ) {
        let (store, clock, replica) = store_with_replica(|c| {
            c.shards = Some(2);
            if by_bytes {
                c.max_bytes = Some(20 * 500);
            } else {
                c.max_sessions = Some(20);
            }
            if refuse {
                c.eviction = Eviction::Refuse;
            }
        });
        let mut last = None;
        for (size, ttl, read) in creates {
            match store.create(&vec![1u8; size], ms(ttl)) {
                Ok(id) => {
                    if read {
                        store.get(&id).unwrap();
                    }
                    if let Some(prev) = last.replace(id) {
                        match store.set(&prev, &vec![2u8; size], None) {
                            Ok(_) => {}
                            Err(e) => prop_assert!(refuse && e.code() == "store_full", "{e}"),
                        }
                    }
                }
                Err(e) => prop_assert!(refuse && e.code() == "store_full", "{e}"),
            }
            clock.advance(Duration::from_millis(37));
            prop_assert!(store.len() <= 20 || by_bytes);
            prop_assert!(store.stats().bytes <= 20 * 500 || !by_bytes);
            prop_assert_eq!(store.ids().unwrap().len() <= store.len(), true);
            store.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert_eq!(replica.lock().unwrap().len(), store.len());
        }
    }
}
