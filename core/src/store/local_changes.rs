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
//! A resync holds the local changes off (`hold_off`) while it takes a copy and what is noted
//! for it, and while it applies Redis's answer (it adopts the version Redis gave the copy, or
//! drops it, unless a change was noted since it was sent). A local change reads the copy's
//! version as its base, changes the copy and notes the change: all of it before (the answer
//! then sees the note and keeps it over the version written back) or all after (it then reads
//! what the answer left, and a call that found the session pending before the answer goes to
//! Redis instead: see `Inner::change_if_pending`). Interleaved, the change was noted over a
//! version Redis no longer held, or made on a copy just dropped, and its replay was refused as
//! a conflict: a write that had returned was lost.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Default)]
pub(super) struct LocalChanges {
    started: AtomicU64,
    finished: AtomicU64,
    /// Shared by each local change for its length, exclusive while a resync applies an answer.
    gate: RwLock<()>,
}

/// A local change under way; ends when dropped (after its change is noted for the resync).
pub(super) struct LocalChange<'a> {
    changes: &'a LocalChanges,
    _gate: RwLockReadGuard<'a, ()>,
}

/// Proof that no local change in the stripe is under way, and none begins, while it is held.
pub(super) struct NoLocalChange<'a> {
    _gate: RwLockWriteGuard<'a, ()>,
}

/// How many local changes had ended when a resync took its snapshot.
#[derive(Clone, Copy)]
pub(super) struct Before(u64);

impl LocalChanges {
    pub(super) fn begin(&self) -> LocalChange<'_> {
        // Not recursive: no change takes one stripe's twice (a regenerate takes each once, in
        // order), and a fair lock lets a waiting `hold_off` in past a stream of changes.
        let gate = self.gate.read();
        self.started.fetch_add(1, SeqCst);
        LocalChange {
            changes: self,
            _gate: gate,
        }
    }

    /// Waits for the local changes under way to end, and keeps new ones from beginning until
    /// dropped. Taken before any stripe lock.
    pub(super) fn hold_off(&self) -> NoLocalChange<'_> {
        NoLocalChange {
            _gate: self.gate.write(),
        }
    }

    /// Taken before the resync reads the stripe's copies.
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

impl Drop for LocalChange<'_> {
    fn drop(&mut self) {
        self.changes.finished.fetch_add(1, SeqCst);
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
}
