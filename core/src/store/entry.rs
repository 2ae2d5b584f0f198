//! One stored session and the bookkeeping the table keeps beside it.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

/// Set when the session has been read or touched since it was created.
pub(crate) const READ: u8 = 1;
/// CLOCK's second-chance bit: set on every read, cleared when the eviction hand passes.
pub(crate) const REFERENCED: u8 = 2;

pub(crate) struct Entry {
    /// The id followed by the value: one allocation per session.
    data: Box<[u8]>,
    /// The full hash of the id. hashbrown matches candidates on a 7-bit tag only, so every
    /// lookup by hash alone (wheel and queue references) must compare this too.
    pub(crate) hash: u64,
    pub(crate) owner: Option<Box<str>>,
    /// Milliseconds on the store clock. Atomic so a read can slide the idle deadline under a
    /// shared lock.
    pub(crate) last_access: AtomicU64,
    pub(crate) idle_ttl: AtomicU64,
    pub(crate) absolute_deadline: u64,
    pub(crate) version: u64,
    /// The expiry bucket this session is filed under in the shard's wheel.
    pub(crate) filed_bucket: u64,
    id_len: u8,
    pub(crate) flags: AtomicU8,
    /// Which eviction queue holds this session's hash: probation (never read) or protected.
    pub(crate) protected: bool,
}

impl Entry {
    pub(crate) fn new(
        id: &str,
        hash: u64,
        value: &[u8],
        now: u64,
        idle_ttl: u64,
        absolute_deadline: u64,
    ) -> Self {
        Self {
            data: join(id, value),
            hash,
            owner: None,
            last_access: AtomicU64::new(now),
            idle_ttl: AtomicU64::new(idle_ttl),
            absolute_deadline,
            version: 1,
            filed_bucket: u64::MAX,
            // Ids are validated to at most 255 bytes before they get here.
            id_len: u8::try_from(id.len()).unwrap_or(u8::MAX),
            flags: AtomicU8::new(0),
            protected: false,
        }
    }

    /// The same session under a new id, as `regenerate` needs it. Version moves on so that a
    /// writer still holding the old version cannot overwrite the moved data.
    pub(crate) fn moved_to(&self, new_id: &str, new_hash: u64, now: u64) -> Self {
        Self {
            data: join(new_id, self.value()),
            hash: new_hash,
            owner: self.owner.clone(),
            last_access: AtomicU64::new(now),
            idle_ttl: AtomicU64::new(self.idle_ttl.load(Relaxed)),
            absolute_deadline: self.absolute_deadline,
            version: self.version + 1,
            filed_bucket: u64::MAX,
            id_len: u8::try_from(new_id.len()).unwrap_or(u8::MAX),
            flags: AtomicU8::new(READ | REFERENCED),
            protected: true,
        }
    }

    /// Whether this is the session `id` whose hash is `hash`.
    pub(crate) fn is(&self, hash: u64, id: &str) -> bool {
        self.hash == hash && self.id_bytes() == id.as_bytes()
    }

    pub(crate) fn id_bytes(&self) -> &[u8] {
        &self.data[..usize::from(self.id_len)]
    }

    pub(crate) fn id(&self) -> &str {
        // Ids are checked to be printable ASCII before they are stored.
        std::str::from_utf8(self.id_bytes()).unwrap_or_default()
    }

    pub(crate) fn value(&self) -> &[u8] {
        &self.data[usize::from(self.id_len)..]
    }

    /// Replaces the value, returning the old allocation so it can be freed outside the lock.
    pub(crate) fn replace_value(&mut self, value: &[u8]) -> Box<[u8]> {
        let data = join(self.id(), value);
        std::mem::replace(&mut self.data, data)
    }

    pub(crate) fn deadline(&self) -> u64 {
        let idle = self
            .last_access
            .load(Relaxed)
            .saturating_add(self.idle_ttl.load(Relaxed));
        idle.min(self.absolute_deadline)
    }

    pub(crate) fn is_expired(&self, now: u64) -> bool {
        now >= self.deadline()
    }

    /// Slides the idle deadline and marks the session as in use. Safe under a shared lock.
    pub(crate) fn mark_used(&self, now: u64, ttl: Option<u64>) {
        if let Some(ttl) = ttl {
            self.idle_ttl.store(ttl, Relaxed);
        }
        // A plain load first: most reads in the same millisecond need no write at all.
        if self.last_access.load(Relaxed) < now {
            self.last_access.fetch_max(now, Relaxed);
        }
        if self.flags.load(Relaxed) != READ | REFERENCED {
            self.flags.fetch_or(READ | REFERENCED, Relaxed);
        }
    }

    pub(crate) fn was_read(&self) -> bool {
        self.flags.load(Relaxed) & READ != 0
    }

    /// Bytes this session counts against `max_bytes`.
    pub(crate) fn cost(&self) -> usize {
        cost_of(self.data.len(), self.owner.as_ref().map_or(0, |o| o.len()))
    }
}

/// Fixed bytes charged per session on top of its id, owner and value: the boxed entry, its
/// table slot, the queue and expiry-wheel references, and allocator headers.
pub const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Entry>() + 48;

pub(crate) fn cost_of(id_and_value: usize, owner: usize) -> usize {
    id_and_value + owner + ENTRY_OVERHEAD_BYTES
}

fn join(id: &str, value: &[u8]) -> Box<[u8]> {
    let mut data = Vec::with_capacity(id.len() + value.len());
    data.extend_from_slice(id.as_bytes());
    data.extend_from_slice(value);
    data.into_boxed_slice()
}
