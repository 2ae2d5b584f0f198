//! Changes made locally while Redis is down, counted per stripe, so that a resync which
//! overlaps one does not mark the stripe verified.
//!
//! A resync takes the stripe's copies and the changes noted for them, checks them against
//! Redis, then marks the stripe verified. A local change that starts before the link came back
//! can land after that snapshot: its copy (with a version issued here) and its note would then
//! sit in a stripe trusted as checked, unreplayed until the next outage, and a forked child
//! would keep the copy. So each local change is counted as it starts and as it ends, and the
//! resync marks the stripe verified only if none ended since its snapshot and none is under way.
//!
//! The local changes of a stripe also take turns, one at a time, and a resync holds them off
//! (`hold_off`) while it takes a copy with what is noted for it, and while it applies Redis's
//! answer (it adopts the version Redis gave the copy, or drops it, unless a change was noted
//! since it was sent). A local change reads the copy's version as its base, changes the copy
//! and notes the change, all in its turn:
//! - before an answer, which then sees the note and keeps it over the version written back;
//!   or after it, reading what the answer left (a call that found the session pending before
//!   the answer goes to Redis instead: see `Inner::change_if_still_local`). Interleaved, the
//!   change was noted over a version Redis no longer held, or made on a copy just dropped,
//!   and its replay was refused as a conflict: a write that had returned was lost.
//! - before or after another local change, so that notes merge in the order the changes were
//!   made. Interleaved, a touch applied before a destroy but noted after it turned the destroy
//!   into a write with no copy to send, and the logout was lost.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use parking_lot::{Mutex, MutexGuard};

#[derive(Default)]
pub(super) struct LocalChanges {
    started: AtomicU64,
    finished: AtomicU64,
    /// Held by each local change for its length, and by a resync taking or applying a copy.
    turn: Mutex<()>,
}

/// A local change under way; ends when dropped (after its change is noted for the resync).
pub(super) struct LocalChange<'a> {
    changes: &'a LocalChanges,
    /// False once abandoned: nothing was changed.
    counted: bool,
    _turn: MutexGuard<'a, ()>,
}

/// Proof that no local change in the stripe is under way, and none begins, while it is held.
pub(super) struct NoLocalChange<'a> {
    _turn: MutexGuard<'a, ()>,
}

/// How many local changes had ended when a resync took its snapshot.
#[derive(Clone, Copy)]
pub(super) struct Before(u64);

impl LocalChanges {
    /// Waits for the stripe's turn. No thread takes one stripe's twice (a regenerate takes
    /// every stripe's once, in order); the lock is eventually fair, so a waiting `hold_off`
    /// gets in past a stream of changes.
    pub(super) fn begin(&self) -> LocalChange<'_> {
        let turn = self.turn.lock();
        self.started.fetch_add(1, SeqCst);
        LocalChange {
            changes: self,
            counted: true,
            _turn: turn,
        }
    }

    /// Waits for the local change under way to end, and keeps new ones from beginning until
    /// dropped. Taken before any stripe lock: by a resync, and by a read served here because
    /// its session is pending (which a resync's answer must not drop as it reads).
    pub(super) fn hold_off(&self) -> NoLocalChange<'_> {
        NoLocalChange {
            _turn: self.turn.lock(),
        }
    }

    /// Taken before the resync reads the stripe's copies (under `hold_off`).
    pub(super) fn before_snapshot(&self) -> Before {
        Before(self.finished.load(SeqCst))
    }

    /// Whether a local change is under way.
    pub(super) fn under_way(&self) -> bool {
        self.started.load(SeqCst) != self.finished.load(SeqCst)
    }

    /// Whether no local change ended since `before` and none is under way (checked under the
    /// stripe's exclusive lock, just before the stripe is marked verified).
    pub(super) fn none_since(&self, before: Before) -> bool {
        let finished = self.finished.load(SeqCst);
        finished == before.0 && self.started.load(SeqCst) == finished
    }
}

impl LocalChange<'_> {
    /// Ends a change that changed nothing: not counted as one, so a resync need not check the
    /// stripe again for it.
    pub(super) fn abandon(mut self) {
        self.counted = false;
        self.changes.started.fetch_sub(1, SeqCst);
    }
}

impl Drop for LocalChange<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.changes.finished.fetch_add(1, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_under_way_or_ended_since_the_snapshot_keeps_the_stripe_unverified() {
        let changes = LocalChanges::default();
        let before = changes.before_snapshot();
        assert!(changes.none_since(before));
        let change = changes.begin();
        assert!(!changes.none_since(before), "under way");
        drop(change);
        assert!(!changes.none_since(before), "ended since the snapshot");
        assert!(changes.none_since(changes.before_snapshot()));
    }

    #[test]
    fn an_abandoned_change_leaves_the_stripe_as_it_was() {
        let changes = LocalChanges::default();
        let before = changes.before_snapshot();
        changes.begin().abandon();
        assert!(changes.none_since(before));
        assert!(!changes.under_way());
    }

    #[test]
    fn a_resync_holding_local_changes_off_waits_for_the_one_under_way() {
        use std::sync::atomic::AtomicBool;
        let changes = LocalChanges::default();
        let noted = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let change = changes.begin();
            let resync = scope.spawn(|| {
                let _held = changes.hold_off();
                noted.load(SeqCst)
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            noted.store(true, SeqCst);
            drop(change);
            assert!(
                resync.join().unwrap(),
                "held off before the change was noted"
            );
        });
    }
}
