//! One lock stripe: a hash table of sessions, the expiry wheel that finds expired ones without
//! scanning, and the two eviction queues.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hashbrown::HashTable;
use parking_lot::RwLock;

use super::entry::{Entry, REFERENCED};

/// Per-stripe counters. Kept beside each stripe rather than global so readers on different
/// stripes never contend on one cache line.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) inserts: AtomicU64,
    pub(crate) updates: AtomicU64,
    pub(crate) destroys: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) evicted_unread: AtomicU64,
    pub(crate) evicted_lru: AtomicU64,
    pub(crate) conflicts: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

// Aligned to two cache lines so neighbouring stripes' locks and counters never share one.
#[repr(align(128))]
pub(crate) struct Shard {
    pub(crate) state: RwLock<ShardState>,
    /// Store time (ms) at which the earliest wheel bucket falls due; `u64::MAX` when empty.
    /// Lets eviction skip stripes with nothing expired without taking their lock.
    pub(crate) next_due: AtomicU64,
    pub(crate) counters: Counters,
}

impl Shard {
    pub(crate) fn new() -> Self {
        Self {
            state: RwLock::new(ShardState::default()),
            next_due: AtomicU64::new(u64::MAX),
            counters: Counters::default(),
        }
    }
}

#[derive(Default)]
pub(crate) struct ShardState {
    /// Entries are boxed: an 8-byte slot keeps the half-empty table cheap right after it
    /// doubles, and growing it moves pointers rather than whole entries under the lock.
    pub(crate) table: HashTable<Box<Entry>>,
    /// Expiry wheel: bucket number -> hashes of sessions whose deadline falls in that bucket.
    /// Reads slide deadlines without touching it; a live session found in a due bucket is
    /// filed again under its current deadline.
    pub(crate) wheel: BTreeMap<u64, Vec<u64>>,
    /// Hashes of sessions not yet seen read since creation, oldest first.
    pub(crate) probation: VecDeque<u64>,
    /// Hashes of sessions that have been read; a CLOCK ring for least-recently-used eviction.
    pub(crate) protected: VecDeque<u64>,
}

/// What a step over an eviction queue found.
pub(crate) enum QueueStep {
    /// Removed this session.
    Evicted(Box<Entry>),
    /// Did the allowed work without finding a victim; call again.
    Continue,
    /// Nothing left to look at.
    Exhausted,
}

impl ShardState {
    pub(crate) fn find(&self, hash: u64, id: &str) -> Option<&Entry> {
        self.table.find(hash, |e| e.is(hash, id)).map(|e| &**e)
    }

    pub(crate) fn file(&mut self, entry_bucket: u64, hash: u64) {
        self.wheel.entry(entry_bucket).or_default().push(hash);
    }

    pub(crate) fn next_due_bucket(&self) -> Option<u64> {
        self.wheel.first_key_value().map(|(k, _)| *k)
    }

    /// Moves up to `budget` hashes from the front of the probation queue. Sessions read since
    /// creation are promoted to the protected ring; the first never-read one is evicted.
    pub(crate) fn evict_unread(&mut self, exclude: u64, budget: usize) -> QueueStep {
        for _ in 0..budget {
            let Some(hash) = self.probation.pop_front() else {
                return QueueStep::Exhausted;
            };
            if hash == exclude {
                self.probation.push_back(hash);
                if self.probation.len() == 1 {
                    return QueueStep::Exhausted;
                }
                continue;
            }
            let Ok(slot) = self
                .table
                .find_entry(hash, |e| e.hash == hash && !e.protected)
            else {
                continue; // destroyed or expired since: drop the stale reference
            };
            if slot.get().was_read() {
                slot.into_mut().protected = true;
                self.protected.push_back(hash);
                continue;
            }
            let (entry, _) = slot.remove();
            return QueueStep::Evicted(entry);
        }
        QueueStep::Continue
    }

    /// One sweep of the CLOCK hand over the protected ring: a referenced session gets a
    /// second chance, the first unreferenced one is evicted.
    pub(crate) fn evict_least_recent(&mut self, exclude: u64, budget: usize) -> QueueStep {
        for _ in 0..budget {
            let Some(hash) = self.protected.pop_front() else {
                return QueueStep::Exhausted;
            };
            if hash == exclude {
                self.protected.push_back(hash);
                if self.protected.len() == 1 {
                    return QueueStep::Exhausted;
                }
                continue;
            }
            let Ok(slot) = self
                .table
                .find_entry(hash, |e| e.hash == hash && e.protected)
            else {
                continue;
            };
            let flags = &slot.get().flags;
            if flags.load(Relaxed) & REFERENCED != 0 {
                flags.fetch_and(!REFERENCED, Relaxed);
                self.protected.push_back(hash);
                continue;
            }
            let (entry, _) = slot.remove();
            return QueueStep::Evicted(entry);
        }
        QueueStep::Continue
    }

    /// Drops up to `budget` stale references from the eviction queues (sessions that were
    /// destroyed or expired), keeping the survivors in order. Returns whether more is left.
    pub(crate) fn compact_queues(&mut self, budget: usize) -> bool {
        let live = self.table.len();
        let mut work = 0;
        for protected in [false, true] {
            let queue_len = if protected {
                self.protected.len()
            } else {
                self.probation.len()
            };
            if queue_len <= live + 64 {
                continue;
            }
            let turns = queue_len.min(budget - work);
            for _ in 0..turns {
                let queue = if protected {
                    &mut self.protected
                } else {
                    &mut self.probation
                };
                let Some(hash) = queue.pop_front() else { break };
                if self
                    .table
                    .find(hash, |e| e.hash == hash && e.protected == protected)
                    .is_some()
                {
                    queue.push_back(hash);
                }
            }
            work += turns;
            if work >= budget {
                return true;
            }
        }
        false
    }

    /// Gives memory back once a stripe has emptied out: a hash table never shrinks by itself.
    pub(crate) fn shrink_if_sparse(&mut self) {
        let len = self.table.len();
        if self.table.capacity() > 64 && len * 4 < self.table.capacity() {
            self.table.shrink_to(len * 2, |e| e.hash);
        }
        for queue in [&mut self.probation, &mut self.protected] {
            if queue.capacity() > 64 && queue.len() * 4 < queue.capacity() {
                queue.shrink_to(queue.len() * 2);
            }
        }
    }
}
