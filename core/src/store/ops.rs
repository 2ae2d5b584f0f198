//! Every operation on sessions. Each kind of change has one path: sessions enter the totals
//! through [`Inner::admit`] and leave through [`Inner::retire`], and every locked section ends in
//! [`Inner::release`], which delivers its changes after the lock is gone and frees what it
//! removed outside the lock.

use std::time::Duration;

use parking_lot::RwLockReadGuard;

use super::block::Block;
use super::changes::{Cause, Meta, Outbox, Pending, deliver};
use super::record::{READ, REFERENCED};
use super::stripe::{NewSession, Removed, Stripe};
use super::{Inner, Shard, bump, bump_locked, ttl_ms, validate_owner};
use crate::error::{Error, Result};
use crate::id::{generate_id, validate_id};

use std::sync::atomic::Ordering::Relaxed;

/// What must hold for a write to go ahead.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Nothing: insert or overwrite.
    None,
    /// The session exists and is live.
    Live,
    /// The session is live at this version.
    Version(u64),
    /// No live session has the id.
    Absent,
}

impl Inner {
    pub(super) fn meta(&self, stripe: &Stripe, index: u32) -> Meta {
        let record = stripe.record(index);
        Meta {
            version: stripe.block(index).version(),
            deadline: record.deadline(),
            ttl_ms: record.ttl_ms(),
            absolute: stripe.block(index).absolute(),
        }
    }

    fn owner_copy(&self, stripe: &Stripe, index: u32) -> Option<Box<str>> {
        self.listener.as_ref()?;
        stripe.owner(index).map(Box::from)
    }

    /// The change a listener gets for a moved deadline.
    pub(super) fn slid<'a>(&self, stripe: &Stripe, index: u32, id: &'a str) -> Pending<'a> {
        Pending::Slid {
            id,
            meta: self.meta(stripe, index),
            owner: self.owner_copy(stripe, index),
        }
    }

    /// Books a session that entered a stripe.
    pub(super) fn admit(&self, cost: usize, id: &str, owner: Option<&str>) {
        self.sessions.fetch_add(1, Relaxed);
        self.bytes.fetch_add(cost, Relaxed);
        if let Some(owner) = owner {
            self.owners.add(owner, id);
        }
    }

    /// Books a session that left a stripe, and counts why.
    pub(super) fn retire(&self, shard: &Shard, removed: &Removed, cause: Cause) {
        self.sessions.fetch_sub(1, Relaxed);
        self.bytes.fetch_sub(removed.cost, Relaxed);
        if let Some(owner) = &removed.owner {
            self.owners.remove(owner, removed.block.id_str());
        }
        let c = &shard.counters;
        match cause {
            Cause::Destroyed => bump_locked(&c.destroys),
            Cause::Expired => bump_locked(&c.expirations),
            Cause::Evicted if removed.was_read => bump_locked(&c.evicted_lru),
            Cause::Evicted => bump_locked(&c.evicted_unread),
            Cause::Replaced | Cause::Cleared | Cause::Invalidated => {}
        }
    }

    /// Moves the totals when a live session's size changed.
    pub(super) fn resize(&self, before: usize, after: usize) {
        if after > before {
            self.bytes.fetch_add(after - before, Relaxed);
        } else if before > after {
            self.bytes.fetch_sub(before - after, Relaxed);
        }
    }

    /// Ends a locked section: takes the delivery lock, releases the stripe, and hands the
    /// changes to the listener.
    ///
    /// The caller keeps `pending` and drops it after this returns, with no lock held.
    pub(super) fn release<G>(&self, shard: &Shard, guard: G, pending: &[Pending<'_>]) {
        match &self.listener {
            Some(listener) if !pending.is_empty() => {
                let mut delivery = shard.delivery.lock();
                drop(guard);
                deliver(listener, pending, &mut delivery);
                drop(delivery);
            }
            _ => drop(guard),
        }
    }

    pub(super) fn read<R>(
        &self,
        id: &str,
        slide: bool,
        f: impl FnOnce(super::SessionView<'_>) -> R,
    ) -> Result<Option<R>> {
        validate_id(id)?;
        let (hash, shard_index) = self.locate(id);
        let shard = &self.shards[shard_index];
        let now = self.now();
        let stripe = shard.state.read();
        let Some(index) = stripe.find_live(hash, id, now) else {
            bump(&shard.counters.misses);
            return Ok(None);
        };
        bump(&shard.counters.hits);
        if slide {
            // From time 0 no deadline moves: the read only marks the session used.
            let from = if self.slide_on_read { now } else { 0 };
            self.slide(shard, &stripe, index, id, from);
        }
        Ok(Some(f(super::view(&stripe, index, now))))
    }

    /// Slides a deadline under the shared lock; tells Redis if it crossed a touch point, and the
    /// listener if it crossed the listener's slack.
    pub(super) fn slide(
        &self,
        shard: &Shard,
        stripe: &RwLockReadGuard<'_, Stripe>,
        index: u32,
        id: &str,
        now: u64,
    ) {
        let slide = stripe.record(index).mark_used(now);
        if slide.first_read {
            stripe.note_first_read();
        }
        if let Some(tier) = &self.tier {
            let record = stripe.record(index);
            let points = crate::tier::TouchPoints::new(record.ttl_ms(), record.hash);
            if points.crossed(slide.before, slide.after) {
                tier.queue_touch(
                    crate::tier::KeyHash::of(id),
                    crate::tier::Touch::new(
                        slide.after.saturating_sub(now).max(1),
                        None,
                        stripe.block(index).version(),
                    ),
                );
            }
        }
        if let Some(listener) = &self.listener {
            if listener.reports_slide(slide.before, slide.after) {
                // Taken before the metadata is read: a concurrent slide that delivers first
                // cannot report a later deadline than this one.
                let mut delivery = shard.delivery.lock();
                let pending = [self.slid(stripe, index, id)];
                deliver(listener, &pending, &mut delivery);
                drop(delivery);
            }
        }
    }

    pub(super) fn touch(
        &self,
        id: &str,
        ttl: Option<Duration>,
        min_idle: Option<u64>,
    ) -> Result<bool> {
        let ttl = ttl_ms(ttl)?;
        validate_id(id)?;
        let (hash, shard_index) = self.locate(id);
        let shard = &self.shards[shard_index];
        let now = self.now();
        {
            let stripe = shard.state.read();
            let Some(index) = stripe.find_live(hash, id, now) else {
                return Ok(false);
            };
            let record = stripe.record(index);
            if let Some(min_idle) = min_idle {
                // The last use is where the idle deadline was set from.
                let last_use = record.deadline().saturating_sub(record.ttl_ms());
                if now.saturating_sub(last_use) < min_idle {
                    return Ok(true);
                }
            }
            if ttl.is_none_or(|t| {
                super::record::decode_ttl(super::record::encode_ttl(t)) == record.ttl_ms()
            }) {
                self.slide(shard, &stripe, index, id, now);
                return Ok(true);
            }
        }
        // A new idle timeout may move the deadline earlier: refile under the exclusive lock.
        let mut stripe = shard.state.write();
        let Some(index) = stripe.find_live(hash, id, now) else {
            return Ok(false);
        };
        let first_read = stripe.record(index).flags() & READ == 0;
        let before = stripe.record(index).deadline();
        let old_idle = stripe.record(index).ttl_ms();
        stripe.retime(index, ttl, now);
        if first_read {
            stripe.mark_read(index);
        }
        let after = stripe.record(index).deadline();
        let new_idle = stripe.record(index).ttl_ms();
        shard.note_deadline(after);
        if let Some(tier) = &self.tier {
            // Every TTL move in Redis invalidates every process's copy: a new idle timeout
            // moves it only when the deadline crossed a touch point (as a slide does, see
            // `slide`) or came earlier by more than a step (a shorter timeout, which Redis
            // then takes and must not outlive by much; every copy enforces its own deadline
            // meanwhile), or when the timeout grew by more than a sixteenth of its step, or
            // its step grew. Redis holds the old timeout until told, and a later slide's touch
            // carries no timeout: Redis caps its TTL at the old timeout and the key would end
            // before the copy's next point. (Timeouts restated a few ms apart, as
            // express-session's are, stay within the sixteenth.) A step that did not grow has
            // points among the old step's (`TouchPoints`), so the crossing is checked on it.
            // The timeout itself goes with it, for processes that load it later.
            let hash = stripe.record(index).hash;
            if crate::tier::timeout_change_moves_key(old_idle, new_idle, hash, before, after) {
                tier.queue_touch(
                    crate::tier::KeyHash::of(id),
                    crate::tier::Touch::new(
                        after.saturating_sub(now).max(1),
                        Some(new_idle),
                        stripe.block(index).version(),
                    ),
                );
            }
        }
        let mut pending = Outbox::new();
        if self
            .listener
            .as_ref()
            .is_some_and(|l| l.reports_retime((before, after), (old_idle, new_idle)))
        {
            pending.push(self.slid(&stripe, index, id));
        }
        self.release(shard, stripe, &pending);
        Ok(true)
    }

    pub(super) fn create(&self, value: &[u8], ttl: Option<Duration>) -> Result<String> {
        loop {
            let id = generate_id();
            let written = if self.tier.is_some() {
                self.near_write(&id, value, ttl, Precondition::Absent, true)
            } else {
                self.write_as(&id, value, ttl, Precondition::Absent, true)
            };
            match written {
                Ok(_) => return Ok(id),
                // 2^-192 odds, but the contract is "never collides".
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) fn write(
        &self,
        id: &str,
        value: &[u8],
        ttl: Option<Duration>,
        precondition: Precondition,
    ) -> Result<u64> {
        self.write_as(id, value, ttl, precondition, false)
    }

    /// Checks a write's arguments; its TTL in ms.
    pub(super) fn check_write(
        &self,
        id: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<u64>> {
        validate_id(id)?;
        if value.len() > self.max_session_bytes {
            return Err(Error::TooLarge {
                size: value.len(),
                limit: self.max_session_bytes,
            });
        }
        ttl_ms(ttl)
    }

    /// `generated`: the id was just generated by the store (see `NewSession::fresh_id_above`).
    pub(super) fn write_as(
        &self,
        id: &str,
        value: &[u8],
        ttl: Option<Duration>,
        precondition: Precondition,
        generated: bool,
    ) -> Result<u64> {
        let ttl = self.check_write(id, value, ttl)?;
        let (hash, shard_index) = self.locate(id);
        let shard = &self.shards[shard_index];
        if self.has_budget() && self.may_need_room(id.len() + value.len()) {
            self.make_room_for(shard_index, hash, id, value.len())?;
        }
        let now = self.now();
        // Built before the lock: copying a 2 KB value is the longest step of a write.
        let block = Block::new(id.as_bytes(), value, self.absolute_deadline(now));
        let mut stripe = shard.state.write();
        let found = stripe.find(hash, id);
        let live = found.filter(|&i| !stripe.record(i).is_expired(now));
        let mut pending = Outbox::new();
        let (index, version, mut replaced) = match (live, precondition) {
            (Some(index), Precondition::Version(expected))
                if stripe.block(index).version() != expected =>
            {
                bump_locked(&shard.counters.conflicts);
                return Err(Error::Conflict {
                    expected,
                    actual: stripe.block(index).version(),
                });
            }
            (Some(index), Precondition::Absent) => {
                bump_locked(&shard.counters.conflicts);
                return Err(Error::Conflict {
                    expected: 0,
                    actual: stripe.block(index).version(),
                });
            }
            (Some(index), _) => {
                let (old, version, before, after) =
                    stripe.rewrite(index, value, Some(block), ttl, now);
                self.resize(before, after);
                bump_locked(&shard.counters.updates);
                (index, version, Some(old))
            }
            (None, Precondition::Live | Precondition::Version(_)) => {
                return Err(Error::NotFound);
            }
            (None, Precondition::None | Precondition::Absent) => {
                if let Some(expired) = found {
                    let removed = stripe.remove(expired);
                    self.retire(shard, &removed, Cause::Expired);
                    pending.push(Pending::removed(removed, Cause::Expired));
                }
                let (index, version, cost) = stripe.insert(NewSession {
                    block,
                    hash,
                    ttl_ms: ttl.unwrap_or(self.idle_ttl_ms),
                    deadline: {
                        let idle = now.saturating_add(ttl.unwrap_or(self.idle_ttl_ms));
                        self.absolute_deadline(now).map_or(idle, |a| idle.min(a))
                    },
                    flags: 0,
                    owner: None,
                    fresh_id_above: generated.then_some(0),
                });
                self.admit(cost, id, None);
                bump_locked(&shard.counters.inserts);
                (index, version, None)
            }
        };
        let created = replaced.is_none();
        if self.listener.is_some() {
            pending.push(Pending::Stored {
                id,
                value,
                created,
                meta: self.meta(&stripe, index),
                owner: self.owner_copy(&stripe, index),
                previous: replaced.take(),
            });
        }
        shard.note_deadline(stripe.record(index).deadline());
        self.release(shard, stripe, &pending);
        // The replaced block is freed here, after the stripe is released, listener or not.
        drop(pending);
        drop(replaced);
        if created {
            // Concurrent creators may each have made room for one and together overshot.
            self.settle_budget(shard_index, hash);
        }
        Ok(version)
    }

    pub(super) fn destroy(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        let (hash, shard_index) = self.locate(id);
        let shard = &self.shards[shard_index];
        let now = self.now();
        let mut stripe = shard.state.write();
        let Some(index) = stripe.find(hash, id) else {
            return Ok(false);
        };
        let live = !stripe.record(index).is_expired(now);
        let cause = if live {
            Cause::Destroyed
        } else {
            Cause::Expired
        };
        let removed = stripe.remove(index);
        self.retire(shard, &removed, cause);
        self.release(shard, stripe, &[Pending::removed(removed, cause)]);
        Ok(live)
    }

    pub(super) fn regenerate(&self, id: &str) -> Result<Option<String>> {
        validate_id(id)?;
        let (old_hash, old_index) = self.locate(id);
        loop {
            let new_id = generate_id();
            let (new_hash, new_index) = self.locate(&new_id);
            let now = self.now();
            if old_index == new_index {
                let shard = &self.shards[old_index];
                let mut stripe = shard.state.write();
                let mut pending = Outbox::new();
                let moved = self.move_session(
                    shard,
                    &mut stripe,
                    None,
                    (id, old_hash),
                    (&new_id, new_hash),
                    now,
                    &mut pending,
                );
                self.release(shard, stripe, &pending);
                match moved {
                    Moved::Retry => continue,
                    Moved::Missing => return Ok(None),
                    Moved::Done => return Ok(Some(new_id)),
                }
            }
            // Two stripes: always lock the lower index first, so regenerates cannot deadlock.
            let (low, high) = (old_index.min(new_index), old_index.max(new_index));
            let mut low_guard = self.shards[low].state.write();
            let mut high_guard = self.shards[high].state.write();
            let mut pending = Outbox::new();
            let moved = {
                let (src, dst) = if old_index == low {
                    (&mut *low_guard, &mut *high_guard)
                } else {
                    (&mut *high_guard, &mut *low_guard)
                };
                self.move_session(
                    &self.shards[old_index],
                    src,
                    Some((&self.shards[new_index], dst)),
                    (id, old_hash),
                    (&new_id, new_hash),
                    now,
                    &mut pending,
                )
            };
            // Both changes go out in order under both stripes' delivery locks, taken before
            // either stripe is released: a write to the new id, which takes its stripe and then
            // its delivery lock, is delivered after the change that created it. (No thread
            // holds a delivery lock while it waits for a stripe, so this cannot deadlock.)
            let mut source_delivery = self.shards[old_index].delivery.lock();
            let mut target_delivery = self.shards[new_index].delivery.lock();
            drop(high_guard);
            drop(low_guard);
            if let Some(listener) = &self.listener {
                // Numbered above both stripes' last changes, and both go on from there: each
                // change still follows every earlier change of its session.
                let mut sequence = (*source_delivery).max(*target_delivery);
                deliver(listener, &pending, &mut sequence);
                *source_delivery = sequence;
                *target_delivery = sequence;
            }
            drop(target_delivery);
            drop(source_delivery);
            drop(pending);
            match moved {
                Moved::Retry => continue,
                Moved::Missing => return Ok(None),
                Moved::Done => return Ok(Some(new_id)),
            }
        }
    }

    #[expect(clippy::too_many_arguments, reason = "one call site per stripe layout")]
    fn move_session<'p>(
        &self,
        src_shard: &Shard,
        src: &mut Stripe,
        dst: Option<(&Shard, &mut Stripe)>,
        (old_id, old_hash): (&str, u32),
        (new_id, new_hash): (&str, u32),
        now: u64,
        pending: &mut Outbox<'p>,
    ) -> Moved {
        let collides = match &dst {
            Some((_, d)) => d.find(new_hash, new_id).is_some(),
            None => src.find(new_hash, new_id).is_some(),
        };
        if collides {
            return Moved::Retry;
        }
        let Some(old) = src.find(old_hash, old_id) else {
            bump(&src_shard.counters.misses);
            return Moved::Missing;
        };
        if src.record(old).is_expired(now) {
            let removed = src.remove(old);
            self.retire(src_shard, &removed, Cause::Expired);
            pending.push(Pending::removed(removed, Cause::Expired));
            bump(&src_shard.counters.misses);
            return Moved::Missing;
        }
        let removed = src.remove(old);
        self.retire(src_shard, &removed, Cause::Replaced);
        let (dst_shard, dst) = match dst {
            Some((shard, stripe)) => (shard, stripe),
            None => (src_shard, src),
        };
        let absolute = removed.block.absolute();
        let idle = now.saturating_add(removed.ttl_ms);
        let (index, _, cost) = dst.insert(NewSession {
            block: Block::new(new_id.as_bytes(), removed.block.value(), absolute),
            hash: new_hash,
            ttl_ms: removed.ttl_ms,
            deadline: absolute.map_or(idle, |a| idle.min(a)),
            flags: READ | REFERENCED,
            owner: removed.owner.clone(),
            fresh_id_above: Some(removed.version),
        });
        self.admit(cost, new_id, removed.owner.as_deref());
        dst_shard.note_deadline(dst.record(index).deadline());
        if self.listener.is_some() {
            let meta = self.meta(dst, index);
            let owner = removed.owner.clone();
            let value = removed.block.value().to_vec();
            // The new id first: a crash between the two changes (the restart log appends them
            // one at a time) then leaves the old id valid too, as if the call had not been
            // made, rather than neither.
            pending.push(Pending::StoredOwned {
                id: new_id.to_string(),
                value,
                meta,
                owner,
            });
            pending.push(Pending::replaced(removed, new_id.to_string()));
        } else {
            pending.push(Pending::removed(removed, Cause::Replaced));
        }
        Moved::Done
    }

    pub(super) fn set_owner(&self, id: &str, owner: Option<&str>) -> Result<()> {
        validate_id(id)?;
        if let Some(owner) = owner {
            validate_owner(owner)?;
        }
        let (hash, shard_index) = self.locate(id);
        let shard = &self.shards[shard_index];
        let now = self.now();
        let mut stripe = shard.state.write();
        let index = stripe.find_live(hash, id, now).ok_or(Error::NotFound)?;
        let (previous, before, after) = stripe.set_owner(index, owner.map(Box::from));
        if let Some(previous) = previous {
            self.owners.remove(&previous, id);
        }
        if let Some(owner) = owner {
            self.owners.add(owner, id);
        }
        self.resize(before, after);
        let mut pending = Outbox::new();
        if self.listener.is_some() {
            pending.push(Pending::Owner {
                id,
                meta: self.meta(&stripe, index),
                owner: owner.map(Box::from),
            });
        }
        self.release(shard, stripe, &pending);
        Ok(())
    }

    pub(super) fn clear(&self) {
        for shard in self.shards.iter() {
            self.clear_stripe(shard, Cause::Cleared);
        }
    }

    /// Removes every session of one stripe, for `cause`.
    pub(super) fn clear_stripe(&self, shard: &Shard, cause: Cause) {
        let mut stripe = shard.state.write();
        let removed = stripe.take_all();
        let pending: Vec<Pending<'_>> = removed
            .into_iter()
            .map(|r| {
                self.retire(shard, &r, cause);
                Pending::removed(r, cause)
            })
            .collect();
        shard.next_due.store(stripe.next_due(), Relaxed);
        self.release(shard, stripe, &pending);
    }
}

enum Moved {
    Retry,
    Missing,
    Done,
}
