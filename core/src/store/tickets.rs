//! Fill tickets: a reply from Redis is cached as trusted only if no invalidation named its
//! session between the request and the reply (nor a lost link, which the caller checks).
//!
//! Each stripe counts its invalidations and remembers the keys of the last few. A ticket is
//! the count when the request went out; it goes stale when one of the invalidations since
//! named the same key, or when more came than are remembered. A stripe-wide count alone would
//! call every reply stale under write load, for other sessions' writes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use crate::tier::KeyHash;

/// Invalidations remembered per stripe.
const REMEMBERED: usize = 16;

#[derive(Default)]
pub(super) struct Invalidations {
    count: AtomicU64,
    /// The key of invalidation `n`, at `n % REMEMBERED`.
    keys: [AtomicU64; REMEMBERED],
}

/// The stripe's invalidation count when a request went out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket(u64);

impl Invalidations {
    pub(super) fn ticket(&self) -> Ticket {
        Ticket(self.count.load(SeqCst))
    }

    /// An invalidation of `key`. Called under the stripe's exclusive lock.
    pub(super) fn note(&self, key: &KeyHash) {
        let n = self.count.load(SeqCst);
        self.keys[(n % REMEMBERED as u64) as usize].store(key.fingerprint(), Relaxed);
        self.count.store(n + 1, SeqCst);
    }

    /// Whether an invalidation since `ticket` may have named `key`. Called under the stripe's
    /// exclusive lock.
    pub(super) fn named_since(&self, ticket: Ticket, key: &KeyHash) -> bool {
        let now = self.count.load(SeqCst);
        if now.saturating_sub(ticket.0) > REMEMBERED as u64 {
            return true;
        }
        let fingerprint = key.fingerprint();
        (ticket.0..now)
            .any(|n| self.keys[(n % REMEMBERED as u64) as usize].load(Relaxed) == fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> KeyHash {
        KeyHash::of(&format!("session-{n}"))
    }

    #[test]
    fn a_ticket_goes_stale_when_its_own_key_is_invalidated() {
        let invalidations = Invalidations::default();
        let ticket = invalidations.ticket();
        invalidations.note(&key(1));
        assert!(invalidations.named_since(ticket, &key(1)));
    }

    #[test]
    fn other_keys_invalidations_leave_a_ticket_fresh() {
        let invalidations = Invalidations::default();
        invalidations.note(&key(1));
        let ticket = invalidations.ticket();
        for n in 2..2 + REMEMBERED as u32 {
            invalidations.note(&key(n));
        }
        assert!(!invalidations.named_since(ticket, &key(1)));
    }

    #[test]
    fn more_invalidations_than_remembered_make_every_ticket_stale() {
        let invalidations = Invalidations::default();
        let ticket = invalidations.ticket();
        for n in 2..3 + REMEMBERED as u32 {
            invalidations.note(&key(n));
        }
        assert!(invalidations.named_since(ticket, &key(1)));
    }
}
