//! A slab record: one session's fixed-size bookkeeping, 32 bytes (two to a cache line).
//!
//! The deadline and the eviction bits share one atomic word, so a read that slides the deadline
//! under a shared lock publishes it in one store, and no reader can ever combine an old half with
//! a new one. The deadline only grows while the record is under a shared lock; anything that
//! moves it earlier takes the stripe's exclusive lock and files the record again.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::block::Block;

/// Low 48 bits of the word: the deadline in ms on the store clock (≈ 8,900 years of range).
pub(crate) const DEADLINE_MASK: u64 = (1 << 48) - 1;
/// Read or touched at least once since it was created.
pub(crate) const READ: u64 = 1 << 63;
/// CLOCK's second-chance bit: set by every read, cleared when the eviction hand passes.
pub(crate) const REFERENCED: u64 = 1 << 62;
/// The stripe's owner map has an entry for this record.
pub(crate) const OWNED: u64 = 1 << 61;
/// On the shared tier: an invalidation named this copy (another process's write, or this
/// process's own: Redis 7.0 does not honour NOLOOP for writes made by scripts), or it was filled
/// from a reply an invalidation overtook. It is served only after Redis confirms its version.
pub(crate) const SUSPECT: u64 = 1 << 60;

/// On the shared tier: this process wrote the session and the copy is that write's result.
/// Redis 7.0 reports the write back to this process too (it does not honour NOLOOP for writes
/// made by scripts), so the first invalidation that names the copy is confirmed in the
/// background; any other suspect copy is confirmed only when a read needs it, so that a write
/// costs one background round trip in the writer, not one in every process that held a copy.
pub(crate) const ECHO: u64 = 1 << 59;

/// On the shared tier: bits 48..59 count the invalidations that named this copy (mod 2048), so
/// a background confirmation of a suspect copy can tell that another invalidation came since.
pub(crate) const MARKS: u64 = 0x7FF << 48;
const MARK_ONE: u64 = 1 << 48;

/// Slab index meaning "none".
pub(crate) const NIL: u32 = u32::MAX;

pub(crate) struct Record {
    /// `None` for a vacant slot.
    pub(crate) block: Option<Block>,
    /// Deadline and flags; see the constants above.
    pub(crate) word: AtomicU64,
    /// Low 32 bits of the id's hash, so the index can be rehashed without touching the blocks.
    pub(crate) hash: u32,
    /// The idle timeout, encoded by [`encode_ttl`].
    pub(crate) ttl: u32,
    /// Wheel links while live (the wheel owns them); `next` links the free list while vacant.
    pub(crate) next: u32,
    pub(crate) prev: u32,
}

impl Record {
    pub(crate) fn vacant(next_free: u32) -> Self {
        Self {
            block: None,
            word: AtomicU64::new(0),
            hash: 0,
            ttl: 0,
            next: next_free,
            prev: NIL,
        }
    }

    pub(crate) fn deadline(&self) -> u64 {
        self.word.load(Relaxed) & DEADLINE_MASK
    }

    pub(crate) fn flags(&self) -> u64 {
        self.word.load(Relaxed) & !DEADLINE_MASK
    }

    pub(crate) fn is_expired(&self, now: u64) -> bool {
        now >= self.deadline()
    }

    pub(crate) fn ttl_ms(&self) -> u64 {
        decode_ttl(self.ttl)
    }

    /// The deadline a use at `now` gives this session: its idle timeout from now, capped by
    /// its absolute deadline.
    pub(crate) fn slid_deadline(&self, now: u64) -> u64 {
        let idle = now.saturating_add(self.ttl_ms());
        let absolute = self.block.as_ref().and_then(Block::absolute);
        clamp_deadline(absolute.map_or(idle, |a| idle.min(a)))
    }

    /// Slides the deadline to `slid_deadline(now)` if that is later, and marks the session used.
    /// Safe under a shared lock. Returns the deadline before and after, and whether this call
    /// was the first read of the session.
    ///
    /// A plain load and store, not a compare-and-swap loop: two readers sliding at once may
    /// leave the smaller of their two new deadlines (they differ by the time between the two
    /// reads), never one below the deadline either of them loaded, so the record stays filed
    /// no later than its deadline. Flags other than READ and REFERENCED change only under the
    /// exclusive lock, so no store can lose one; the first read sets READ with an atomic OR so
    /// that exactly one reader sees it happen.
    pub(crate) fn mark_used(&self, now: u64) -> Slide {
        let target = self.slid_deadline(now);
        let mut old = self.word.load(Relaxed);
        let mut first_read = false;
        if old & READ == 0 {
            let before = self.word.fetch_or(READ | REFERENCED, Relaxed);
            first_read = before & READ == 0;
            old = before | READ | REFERENCED;
        }
        let before = old & DEADLINE_MASK;
        let after = before.max(target);
        let new = after | (old & !DEADLINE_MASK) | REFERENCED;
        if new != old {
            self.word.store(new, Relaxed);
        }
        Slide {
            before,
            after,
            first_read,
        }
    }

    /// Sets the deadline, keeping the flags. Exclusive lock only.
    pub(crate) fn set_deadline(&mut self, deadline: u64) {
        let word = self.word.get_mut();
        *word = (*word & !DEADLINE_MASK) | clamp_deadline(deadline);
    }

    pub(crate) fn set_flags(&mut self, flags: u64, on: bool) {
        let word = self.word.get_mut();
        if on {
            *word |= flags;
        } else {
            *word &= !flags;
        }
    }

    /// Counts one more invalidation of this copy and returns the new count (exclusive lock).
    pub(crate) fn bump_marks(&mut self) -> u64 {
        let word = self.word.get_mut();
        let marks = (*word & MARKS).wrapping_add(MARK_ONE) & MARKS;
        *word = (*word & !MARKS) | marks;
        marks >> 48
    }

    pub(crate) fn marks(&self) -> u64 {
        (self.word.load(Relaxed) & MARKS) >> 48
    }

    /// Clears the second-chance bit; the eviction hand does this under the exclusive lock.
    pub(crate) fn clear_referenced(&mut self) {
        *self.word.get_mut() &= !REFERENCED;
    }
}

/// What [`Record::mark_used`] did.
pub(crate) struct Slide {
    pub(crate) before: u64,
    pub(crate) after: u64,
    pub(crate) first_read: bool,
}

pub(crate) fn clamp_deadline(deadline: u64) -> u64 {
    deadline.min(DEADLINE_MASK)
}

/// Idle timeouts are stored in 32 bits: in ms below 2^31 ms (24.8 days), above that in whole
/// seconds with the top bit set (up to 68 years; longer timeouts are capped there).
pub(crate) fn encode_ttl(ms: u64) -> u32 {
    const SECONDS: u32 = 1 << 31;
    if ms < u64::from(SECONDS) {
        ms as u32
    } else {
        SECONDS | (ms.div_ceil(1000)).min(u64::from(SECONDS - 1)) as u32
    }
}

pub(crate) fn decode_ttl(raw: u32) -> u64 {
    const SECONDS: u32 = 1 << 31;
    if raw & SECONDS == 0 {
        u64::from(raw)
    } else {
        u64::from(raw & !SECONDS) * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_thirty_two_bytes() {
        assert_eq!(std::mem::size_of::<Record>(), 32);
    }

    #[test]
    fn ttls_round_trip_exactly_below_24_days_and_to_the_second_above() {
        for ms in [1, 999, 86_400_000, (1 << 31) - 1] {
            assert_eq!(decode_ttl(encode_ttl(ms)), ms);
        }
        let days_90 = 90 * 86_400_000;
        assert_eq!(decode_ttl(encode_ttl(days_90)), days_90);
        assert_eq!(decode_ttl(encode_ttl(days_90 + 1)), days_90 + 1000);
    }
}
