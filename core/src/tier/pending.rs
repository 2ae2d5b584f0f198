//! The changes made locally while Redis was down, by session id, until a resync has written
//! them back: the invariant is that an id is *pending* from its first such change until Redis
//! has answered the resync request that carried its last one.
//!
//! While an id is pending its calls are made here, as while Redis is down (see
//! `Inner::link_for`): Redis does not hold those changes yet, so a read asked of it would miss
//! a session made during the outage and drop its copy, and a write would fail past it. A
//! resync takes an id's change to send it (`take`); the id stays pending, as *replaying*, until
//! the answer is applied (`landed`), or the change is put back (`restore`) if none came. A
//! write noted for a copy that is gone since (evicted, expired) has nothing to send: each
//! resync pass forgets those (`forget_writes_without_copies`), so that no id stays pending
//! without a copy to serve, and a pass ends only when nothing is left noted. Once the resync
//! of a link has replayed everything, no id is pending under that link whatever is noted
//! (`Tier::is_pending`): no call is made locally past a live Redis for longer than a resync.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use parking_lot::Mutex;

use super::Dirty;

#[derive(Default)]
pub(crate) struct PendingChanges {
    inner: Mutex<Pending>,
    /// Whether any id is pending: read without the lock, so that calls pay nothing for this
    /// when no outage left changes to replay (set under the lock).
    any: AtomicBool,
}

#[derive(Default)]
struct Pending {
    /// Changes not yet sent, each with the number of the last note merged into it.
    noted: HashMap<String, (Dirty, u64)>,
    /// Numbers notes, so that a sweep can tell a note unchanged since it looked.
    notes: u64,
    /// Changes a resync has sent and whose answer is not yet applied.
    replaying: HashMap<String, Dirty>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.noted.is_empty() && self.replaying.is_empty()
    }

    /// Files `dirty` for `id`, merged with what is noted as `merge` says.
    fn file(&mut self, id: &str, merge: impl FnOnce(Option<Dirty>) -> Dirty) {
        self.notes += 1;
        let merged = merge(self.noted.get(id).map(|&(d, _)| d));
        self.noted.insert(id.to_string(), (merged, self.notes));
    }
}

impl PendingChanges {
    /// Runs `change` under the lock and keeps `any` true to what it leaves.
    fn with<T>(&self, change: impl FnOnce(&mut Pending) -> T) -> T {
        let mut pending = self.inner.lock();
        let out = change(&mut pending);
        self.any.store(!pending.is_empty(), Relaxed);
        out
    }

    /// How many ids are pending.
    pub(crate) fn len(&self) -> usize {
        if !self.any.load(Relaxed) {
            return 0;
        }
        let pending = self.inner.lock();
        let both = pending
            .noted
            .keys()
            .filter(|id| pending.replaying.contains_key(*id))
            .count();
        pending.noted.len() + pending.replaying.len() - both
    }

    pub(crate) fn is_pending(&self, id: &str) -> bool {
        if !self.any.load(Relaxed) {
            return false;
        }
        let pending = self.inner.lock();
        pending.noted.contains_key(id) || pending.replaying.contains_key(id)
    }

    /// Every pending id whose owner was set here while Redis was down.
    pub(crate) fn ids_given_an_owner(&self) -> Vec<String> {
        if !self.any.load(Relaxed) {
            return Vec::new();
        }
        let owner_set = |d: &Dirty| {
            matches!(
                d,
                Dirty::Written {
                    owner_set: true,
                    ..
                }
            )
        };
        let pending = self.inner.lock();
        let noted = pending.noted.iter().map(|(id, (d, _))| (id, d));
        noted
            .chain(pending.replaying.iter())
            .filter(|(_, d)| owner_set(d))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether `id` was created here while Redis was down (or created again after a
    /// destroy), and Redis has not answered its write-back yet.
    pub(crate) fn made_here(&self, id: &str) -> bool {
        if !self.any.load(Relaxed) {
            return false;
        }
        let pending = self.inner.lock();
        let made_here = |d: Option<&Dirty>| {
            matches!(
                d,
                Some(Dirty::Written {
                    base: 0 | u64::MAX,
                    ..
                })
            )
        };
        made_here(pending.noted.get(id).map(|(d, _)| d)) || made_here(pending.replaying.get(id))
    }

    /// Whether the session at `id` was made again here after a destroy here that Redis has not
    /// answered: a write noted over that destroy (merged, base `u64::MAX`), or noted while the
    /// destroy is in flight.
    pub(crate) fn remade(&self, id: &str) -> bool {
        if !self.any.load(Relaxed) {
            return false;
        }
        let pending = self.inner.lock();
        match pending.noted.get(id) {
            Some((Dirty::Written { base: u64::MAX, .. }, _)) => true,
            Some((Dirty::Written { .. }, _)) => {
                matches!(pending.replaying.get(id), Some(Dirty::Destroyed))
            }
            _ => false,
        }
    }

    /// Whether the change a resync has in flight for `id` is a write of a session made again
    /// here after a destroy here (base `u64::MAX`): the session at `id` now is that one, which
    /// the resync may have sent as the copy of a move to `id`.
    pub(crate) fn resent(&self, id: &str) -> bool {
        if !self.any.load(Relaxed) {
            return false;
        }
        matches!(
            self.inner.lock().replaying.get(id),
            Some(Dirty::Written { base: u64::MAX, .. })
        )
    }

    /// Notes a change, merged after anything noted for the id before (keeping the first base
    /// version).
    pub(crate) fn note(&self, id: &str, dirty: Dirty) {
        self.with(|p| p.file(id, |noted| noted.map_or(dirty, |n| Dirty::then(n, dirty))));
    }

    /// Puts back a change a resync took and could not get answered: it came before anything
    /// noted for the id since.
    pub(crate) fn restore(&self, id: &str, dirty: Dirty) {
        self.with(|p| {
            p.replaying.remove(id);
            p.file(id, |noted| noted.map_or(dirty, |n| Dirty::then(dirty, n)));
        });
    }

    /// Takes the id's change for a resync to send; the id stays pending until
    /// [`landed`](Self::landed) or [`restore`](Self::restore).
    pub(crate) fn take(&self, id: &str) -> Option<Dirty> {
        if !self.any.load(Relaxed) {
            return None;
        }
        self.with(|p| {
            let taken = p.noted.remove(id).map(|(d, _)| d);
            if let Some(dirty) = taken {
                p.replaying.insert(id.to_string(), dirty);
            }
            taken
        })
    }

    /// The answer to the resync that sent the id's change has been applied.
    pub(crate) fn landed(&self, id: &str) {
        self.with(|p| {
            p.replaying.remove(id);
        });
    }

    /// What is noted for the id and not yet sent.
    pub(crate) fn noted(&self, id: &str) -> Option<Dirty> {
        if !self.any.load(Relaxed) {
            return None;
        }
        self.inner.lock().noted.get(id).map(|&(d, _)| d)
    }

    /// A write noted for `id` over the copy at local version `local` (the copy a resync just
    /// wrote back, unchanged since it was sent) now writes over `version`, the version Redis
    /// gave that copy.
    pub(crate) fn rebase(&self, id: &str, local: u64, version: u64) {
        self.with(|p| {
            if let Some((Dirty::Written { base, .. }, _)) = p.noted.get_mut(id) {
                if *base == local {
                    *base = version;
                }
            }
        });
    }

    /// Whether a change is noted and not yet sent.
    pub(crate) fn has_noted(&self) -> bool {
        self.any.load(Relaxed) && !self.inner.lock().noted.is_empty()
    }

    /// Forgets the writes noted for ids that `has_copy` says have no copy left (evicted,
    /// expired or removed since): there is nothing to write back, and a pending id with no
    /// copy would be missing here while Redis holds it. A write that followed a destroy made
    /// here goes back to being that destroy: Redis's copy, from before it, is still to go.
    pub(crate) fn forget_writes_without_copies(&self, has_copy: impl Fn(&str) -> bool) {
        let noted: Vec<(String, u64)> = {
            let pending = self.inner.lock();
            pending
                .noted
                .iter()
                .filter(|(_, (d, _))| matches!(d, Dirty::Written { .. }))
                .map(|(id, &(_, note))| (id.clone(), note))
                .collect()
        };
        // Checked outside the lock (`has_copy` takes a stripe's). A write noted since (which
        // makes its copy first) changed the note's number: that note stays.
        let gone: Vec<(String, u64)> = noted.into_iter().filter(|(id, _)| !has_copy(id)).collect();
        if gone.is_empty() {
            return;
        }
        self.with(|p| {
            for (id, note) in &gone {
                let Some((dirty, n)) = p.noted.get_mut(id) else {
                    continue;
                };
                if *n != *note {
                    continue;
                }
                match *dirty {
                    Dirty::Written { base: u64::MAX, .. } => *dirty = Dirty::Destroyed,
                    _ => {
                        p.noted.remove(id);
                    }
                }
            }
        });
    }

    /// Takes every destroy noted for an id not in `wait`, for a resync to send.
    pub(crate) fn take_destroyed(&self, wait: &std::collections::HashSet<String>) -> Vec<String> {
        self.with(|p| {
            let ids: Vec<String> = p
                .noted
                .iter()
                .filter(|(id, (d, _))| matches!(d, Dirty::Destroyed) && !wait.contains(*id))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                p.noted.remove(id);
                p.replaying.insert(id.clone(), Dirty::Destroyed);
            }
            ids
        })
    }

    pub(crate) fn clear(&self) {
        self.with(|p| {
            p.noted.clear();
            p.replaying.clear();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_stays_pending_from_its_change_until_its_replay_has_landed() {
        let pending = PendingChanges::default();
        assert!(!pending.is_pending("a"));
        pending.note(
            "a",
            Dirty::Written {
                base: 0,
                owner_set: false,
            },
        );
        assert!(pending.is_pending("a"));
        assert!(pending.take("a").is_some());
        assert!(pending.is_pending("a"), "sent, not yet answered");
        assert_eq!(pending.noted("a"), None);
        pending.landed("a");
        assert!(!pending.is_pending("a"));
        assert!(!pending.any.load(Relaxed));
    }

    #[test]
    fn a_change_put_back_comes_before_one_noted_while_it_was_out() {
        let pending = PendingChanges::default();
        pending.note("a", Dirty::Destroyed);
        let taken = pending.take("a").unwrap();
        pending.note(
            "a",
            Dirty::Written {
                base: 7,
                owner_set: false,
            },
        );
        pending.restore("a", taken);
        // A write after a destroy: replayed whatever Redis holds.
        assert_eq!(
            pending.noted("a"),
            Some(Dirty::Written {
                base: u64::MAX,
                owner_set: true
            })
        );
        assert!(pending.take_destroyed(&Default::default()).is_empty());
    }

    #[test]
    fn a_write_without_a_copy_is_forgotten_unless_it_followed_a_destroy() {
        let pending = PendingChanges::default();
        let written = Dirty::Written {
            base: 3,
            owner_set: false,
        };
        pending.note("evicted", written);
        pending.note("recreated", Dirty::Destroyed);
        pending.note("recreated", written);
        pending.note("kept", written);
        pending.forget_writes_without_copies(|id| id == "kept");
        assert_eq!(pending.noted("evicted"), None);
        assert_eq!(pending.noted("recreated"), Some(Dirty::Destroyed));
        assert_eq!(pending.noted("kept"), Some(written));
    }

    #[test]
    fn a_session_written_after_a_destroy_noted_or_in_flight_is_made_again() {
        let pending = PendingChanges::default();
        let written = Dirty::Written {
            base: 0,
            owner_set: false,
        };
        pending.note("noted", Dirty::Destroyed);
        pending.note("noted", written);
        pending.note("in flight", Dirty::Destroyed);
        assert_eq!(
            pending.take_destroyed(&Default::default()),
            vec!["in flight".to_string()]
        );
        pending.note("in flight", written);
        pending.note("only written", written);
        assert!(pending.remade("noted"));
        assert!(pending.remade("in flight"));
        assert!(!pending.remade("only written"));
    }

    #[test]
    fn a_session_made_again_is_resent_while_a_resync_has_its_write_in_flight() {
        let pending = PendingChanges::default();
        let written = |base| Dirty::Written {
            base,
            owner_set: false,
        };
        pending.note("made again", Dirty::Destroyed);
        pending.note("made again", written(0));
        pending.note("made here", written(0));
        assert!(!pending.resent("made again"), "not in flight yet");
        assert!(pending.take("made again").is_some());
        assert!(pending.take("made here").is_some());
        // A save after it was taken does not change which session is at the id.
        pending.note("made again", written(7));
        assert!(pending.resent("made again"));
        assert!(!pending.resent("made here"));
    }

    #[test]
    fn a_write_over_a_copy_written_back_is_rebased_on_the_version_redis_gave_it() {
        let pending = PendingChanges::default();
        let over = |base| Dirty::Written {
            base,
            owner_set: false,
        };
        pending.note("a", over(3));
        pending.rebase("a", 3, 40);
        assert_eq!(pending.noted("a"), Some(over(40)));
        pending.rebase("a", 3, 50);
        assert_eq!(
            pending.noted("a"),
            Some(over(40)),
            "over another copy: left"
        );
    }
}
