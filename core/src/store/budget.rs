//! The store-wide budgets (`max_sessions`, `max_bytes`), making room under them, reclaiming
//! expired sessions, and handing freed memory back.
//!
//! Room is made in a fixed order: expired sessions first (found through the wheels of the
//! stripes that have something due, so "expired first" holds exactly), then sessions never read
//! since they were created, then the least recently used. Every step holds one stripe lock for a
//! bounded number of records.

use std::sync::atomic::Ordering::Relaxed;

use super::changes::{Cause, Outbox, Pending};
use super::stripe::{Scan, Victim, cost_of};
use super::{Inner, Shard};
use crate::config::Eviction;
use crate::error::{Error, Result};
use crate::trim;

/// Due wheel records processed per stripe lock hold by the sweeper.
const SWEEP_BATCH: usize = 64;
/// Records a hand examines per lock hold when eviction looks for a victim.
const EVICT_BATCH: usize = 64;

/// When to hand freed memory back to the OS.
#[derive(Default)]
pub(super) struct TrimState {
    /// Bytes the sweeper freed since the last trim.
    freed: usize,
    /// Most bytes the store held since the last trim (sampled at each sweep).
    peak: usize,
}

impl Inner {
    pub(super) fn has_budget(&self) -> bool {
        self.max_sessions != usize::MAX || self.max_bytes != usize::MAX
    }

    /// Whether a write adding at most one session of `id_and_value` bytes could take the
    /// store over a budget. Two atomic loads: the common case, far from the budget, skips the
    /// lookup that [`make_room_for`](Self::make_room_for) does.
    pub(super) fn may_need_room(&self, id_and_value: usize) -> bool {
        self.sessions.load(Relaxed).saturating_add(1) > self.max_sessions
            || self
                .bytes
                .load(Relaxed)
                .saturating_add(cost_of(id_and_value, 0))
                > self.max_bytes
    }

    /// Before a write of `value_len` bytes to `id`: evicts until the write fits.
    pub(super) fn make_room_for(
        &self,
        shard_index: usize,
        hash: u32,
        id: &str,
        value_len: usize,
    ) -> Result<()> {
        let now = self.now();
        let (extra_sessions, old_cost, owner_len) = {
            let stripe = self.shards[shard_index].state.read();
            match stripe.find_live(hash, id, now) {
                Some(i) => (0, stripe.cost(i), stripe.owner(i).map_or(0, str::len)),
                None => (1, 0, 0),
            }
        };
        let new_cost = cost_of(id.len() + value_len, owner_len);
        if new_cost > self.max_bytes {
            return Err(Error::StoreFull);
        }
        self.make_room(
            extra_sessions,
            new_cost.saturating_sub(old_cost),
            (shard_index, hash),
        )
    }

    /// Evicts until `extra_sessions` more sessions and `extra_bytes` more bytes fit.
    fn make_room(
        &self,
        extra_sessions: usize,
        extra_bytes: usize,
        spare: (usize, u32),
    ) -> Result<()> {
        while self.sessions.load(Relaxed).saturating_add(extra_sessions) > self.max_sessions
            || self.bytes.load(Relaxed).saturating_add(extra_bytes) > self.max_bytes
        {
            if !self.evict_one(spare) {
                return Err(Error::StoreFull);
            }
        }
        Ok(())
    }

    /// After a write: concurrent writers may each have made room for one session and together
    /// overshot; trim back to the budget without failing the write that already happened.
    pub(super) fn settle_budget(&self, shard_index: usize, hash: u32) {
        if self.has_budget() {
            let _ = self.make_room(0, 0, (shard_index, hash));
        }
    }

    /// Removes one session to make room: an expired one if any stripe has one, else one never
    /// read since creation, else the least recently used. Never the session `spare`.
    fn evict_one(&self, spare: (usize, u32)) -> bool {
        let now = self.now();
        let n = self.shards.len();
        let start = self.evict_cursor.fetch_add(1, Relaxed);
        for i in 0..n {
            let shard = &self.shards[(start + i) & (n - 1)];
            while shard.next_due.load(Relaxed) <= now {
                let (reclaimed, more) = self.sweep_step(shard, now, EVICT_BATCH);
                if reclaimed > 0 {
                    return true;
                }
                if !more {
                    break;
                }
            }
        }
        if self.eviction == Eviction::Refuse {
            return false;
        }
        for unread_tier in [true, false] {
            for i in 0..n {
                let index = (start + i) & (n - 1);
                let shard = &self.shards[index];
                let spare_hash = (spare.0 == index).then_some(spare.1);
                let mut scan = Scan::default();
                loop {
                    let mut stripe = shard.state.write();
                    let victim = if unread_tier {
                        stripe.find_unread(&mut scan, EVICT_BATCH, spare_hash, now)
                    } else {
                        stripe.find_least_recent(&mut scan, EVICT_BATCH, spare_hash, now)
                    };
                    match victim {
                        Victim::Found(at) => {
                            let cause = if stripe.record(at).is_expired(now) {
                                Cause::Expired
                            } else {
                                Cause::Evicted
                            };
                            let removed = stripe.remove(at);
                            self.retire(shard, &removed, cause);
                            self.release(shard, stripe, &[Pending::removed(removed, cause)]);
                            return true;
                        }
                        Victim::Continue => drop(stripe),
                        Victim::Exhausted => break,
                    }
                }
            }
        }
        false
    }

    /// Processes up to `budget` due wheel records of one stripe under one lock hold: expired
    /// ones are removed, live ones filed again. Returns how many were removed and whether more
    /// are due.
    fn sweep_step(&self, shard: &Shard, now: u64, budget: usize) -> (usize, bool) {
        let mut stripe = shard.state.write();
        let mut pending = Outbox::new();
        let mut more = true;
        for _ in 0..budget {
            let Some(index) = stripe.pop_due(now) else {
                more = false;
                break;
            };
            if stripe.record(index).is_expired(now) {
                let removed = stripe.remove(index);
                self.retire(shard, &removed, Cause::Expired);
                pending.push(Pending::removed(removed, Cause::Expired));
            } else {
                stripe.file_again(index);
            }
        }
        let old_slab = if !more && !pending.is_empty() {
            stripe.shrink_if_sparse()
        } else {
            None
        };
        shard.next_due.store(stripe.next_due(), Relaxed);
        let reclaimed = pending.len();
        self.release(shard, stripe, &pending);
        drop(old_slab);
        (reclaimed, more)
    }

    /// One sweep pass over every stripe, each lock hold bounded.
    pub(super) fn sweep_all(&self) -> usize {
        let now = self.now();
        let bytes_before = self.bytes.load(Relaxed);
        let mut reclaimed = 0;
        for shard in self.shards.iter() {
            while shard.next_due.load(Relaxed) <= now {
                let (n, more) = self.sweep_step(shard, now, SWEEP_BATCH);
                reclaimed += n;
                if !more {
                    break;
                }
            }
        }
        let freed = bytes_before.saturating_sub(self.bytes.load(Relaxed));
        self.maybe_trim(freed);
        reclaimed
    }

    /// Trims once the store has shrunk to half of its peak and enough has been freed since the
    /// last trim: after a mass expiry, or when churn stops. Steady churn, where freed memory is
    /// reused at once, never trims (a trim holds the allocator's arena lock while it works).
    fn maybe_trim(&self, freed_now: usize) {
        let Some(threshold) = self.trim_after_freeing else {
            return;
        };
        let live = self.bytes.load(Relaxed);
        let mut state = self.trim.lock();
        state.freed += freed_now;
        state.peak = state.peak.max(live + freed_now);
        if state.freed >= threshold && live <= state.peak / 2 {
            state.freed = 0;
            state.peak = live;
            drop(state);
            trim::release_free_memory();
        }
    }
}
