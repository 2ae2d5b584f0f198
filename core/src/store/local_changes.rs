//! Changes made locally while Redis is down, counted per stripe, so that a resync which
//! overlaps one does not mark the stripe verified.
//!
//! A resync takes the stripe's copies and the changes noted for them, checks them against
//! Redis, then marks the stripe verified. A local change that starts before the link came back
//! can land after that snapshot: its copy (with a version issued here) and its note would then
//! sit in a stripe trusted as checked, unreplayed until the next outage, and a forked child
//! would keep the copy. So each local change is counted as it starts and as it ends, and the
//! resync marks the stripe verified only if none ended since its snapshot and none is under way.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

#[derive(Default)]
pub(super) struct LocalChanges {
    started: AtomicU64,
    finished: AtomicU64,
}

/// A local change under way; ends when dropped (after its change is noted for the resync).
pub(super) struct LocalChange<'a>(&'a LocalChanges);

/// How many local changes had ended when a resync took its snapshot.
#[derive(Clone, Copy)]
pub(super) struct Before(u64);

impl LocalChanges {
    pub(super) fn begin(&self) -> LocalChange<'_> {
        self.started.fetch_add(1, SeqCst);
        LocalChange(self)
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
        self.0.finished.fetch_add(1, SeqCst);
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
