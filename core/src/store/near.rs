//! The store on the shared tier: what each operation does when the table is a near cache of
//! sessions that live in Redis (see `crate::tier`).
//!
//! - A write goes to Redis first (the version check runs there), then the reply is filled into
//!   the local table under the version Redis issued.
//! - A read is answered from a local copy only if its stripe is verified under the current link
//!   generation (and the store is not strict); otherwise it goes to Redis and fills the copy.
//! - A fill is dropped if the link generation or the stripe's invalidation count moved since the
//!   request was sent (a fill ticket): an invalidation that overtook the reply wins.
//! - An invalidation drops the copy; expiry and eviction drop copies and never touch Redis.
//! - With the link down, `WhenRedisDown` decides: serve and write locally (remembering what to
//!   replay), or fail with `Error::Unavailable`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use super::block::Block;
use super::changes::{Cause, Outbox, Pending};
use super::local_changes::LocalChange;
use super::ops::Precondition as LocalPrecondition;
use super::record::{ECHO, READ, REFERENCED, SUSPECT};
use super::stripe::{NewSession, Removed, Stripe};
use super::tickets::Ticket;
use super::{Inner, SessionView, bump, ttl_ms, validate_owner};
use crate::config::WhenRedisDown;
use crate::error::{Error, Result};
use crate::id::{generate_id, validate_id};
use crate::tier::{
    CopyState, Dirty, Found, KeyHash, Loaded, Move, MovedFrom, PassOutcome, Precondition, Replay,
    Resynced, Since, Sink, Suspect, Tier, Touch, WriteRequest,
};

/// What an untrusted local copy holds, for Redis to say whether it is current: its version
/// (0: no copy) and its owner (a change of owner keeps the version).
#[derive(Default)]
struct Held {
    version: u64,
    owner: Option<Box<str>>,
}

impl Held {
    fn as_known(&self) -> (u64, Option<&str>) {
        (self.version, self.owner.as_deref())
    }
}

/// A write on its way to Redis: what its answer is applied with.
struct NearWrite {
    place: Place,
    ttl: Option<Duration>,
    ttl_ms: Option<u64>,
    precondition: LocalPrecondition,
    generated: bool,
}

impl NearWrite {
    /// Checked as a local write is: a malformed id or TTL, or a value too large, fail here.
    fn new(
        inner: &Inner,
        id: &str,
        value: &[u8],
        ttl: Option<Duration>,
        precondition: LocalPrecondition,
        generated: bool,
    ) -> Result<Self> {
        let ttl_ms = inner.check_write(id, value, ttl)?;
        Ok(Self {
            place: inner.place(id),
            ttl,
            ttl_ms,
            precondition,
            generated,
        })
    }

    fn request<'a>(&'a self, inner: &Inner, id: &'a str, value: &'a [u8]) -> WriteRequest<'a> {
        WriteRequest {
            hash: &self.place.key,
            id,
            value,
            precondition: match self.precondition {
                LocalPrecondition::None => Precondition::None,
                LocalPrecondition::Live => Precondition::Live,
                LocalPrecondition::Version(v) => Precondition::Version(v),
                LocalPrecondition::Absent => Precondition::Absent,
            },
            ttl_ms: self.ttl_ms,
            default_idle_ms: inner.idle_ttl_ms,
            absolute_ttl_ms: inner.absolute_ttl_ms,
        }
    }
}

/// A read on its way to Redis: what its answer is applied with.
struct NearRead {
    place: Place,
    /// What the untrusted local copy holds (version 0: no copy).
    known: Held,
    slide: bool,
    generation: u64,
    ticket: Ticket,
}

/// Whether a read of a trusted copy may wait, briefly, for the link to apply what it has
/// received (see `Tier::settle`).
#[derive(Clone, Copy)]
enum Settling {
    Wait,
    /// The caller must not spin: if the link is not settled now, the read is not answered
    /// here (`Untrusted::Unsettled`).
    NoWait,
    /// On the link thread, after waiting there: settled as `Wait` judges it, for a read that
    /// began at `Since` (`Tier::handled_since`), without waiting again.
    Since(Since),
}

/// Why a read is not answered from the local copy.
enum Untrusted<F> {
    /// Redis must be asked, told what the copy holds.
    Ask(F, Held),
    /// The copy would be served, but under `Settling::NoWait` the link had input or answers
    /// pending that may yet invalidate it: to be read again once the link has handled them.
    Unsettled(F),
}

impl<F> Untrusted<F> {
    /// What Redis is asked: an unsettled copy is asked about as no copy, as it was seen
    /// before the link had applied what may invalidate it.
    fn into_ask(self) -> (F, Held) {
        match self {
            Untrusted::Ask(f, held) => (f, held),
            Untrusted::Unsettled(f) => (f, Held::default()),
        }
    }
}

/// A read's first step.
enum Begun<R, F> {
    /// No network needed: a trusted copy, or the local table with the link down.
    Answered(Result<Option<R>>),
    /// Redis must be asked.
    Ask(NearRead, F),
    /// Under `Settling::NoWait`: a copy to read again once the link has handled what it had
    /// received (see `Untrusted::Unsettled`).
    Unsettled(F),
}

/// What a read does once Redis has answered.
enum AfterLoad<R, F> {
    Done(Result<Option<R>>),
    /// Redis called the copy current, but an invalidation dropped it before it could be
    /// served: ask again, for the whole session.
    LoadAgain(F),
}

/// The error a caller gets if reading the local table panicked.
fn reading_failed() -> Error {
    Error::Unavailable("coatcheck: reading the local table failed".into())
}

/// The error a caller gets if applying Redis's answer panicked.
fn applying_failed() -> Error {
    Error::Unavailable("coatcheck: applying Redis's answer to the local table failed".into())
}

/// Where a session is: its Redis hash, its 32-bit record hash and its stripe.
struct Place {
    key: KeyHash,
    hash: u32,
    shard: usize,
}

impl Inner {
    fn place(&self, id: &str) -> Place {
        let key = KeyHash::of(id);
        let (hash, stripe_bits) = key.placement();
        Place {
            key,
            hash,
            shard: (stripe_bits as usize) & self.shard_mask,
        }
    }

    /// The 32-bit hash and stripe of `id` on the tier: from its Redis hash, so an invalidation
    /// (which names only the Redis key) finds the copy.
    pub(super) fn tier_locate(id: &str, shard_mask: usize) -> (u32, usize) {
        let (hash, stripe_bits) = KeyHash::of(id).placement();
        (hash, (stripe_bits as usize) & shard_mask)
    }

    fn tier(&self) -> &Tier {
        self.tier
            .as_ref()
            .unwrap_or_else(|| unreachable!("near-cache path without a tier"))
    }

    /// The link generation under which a call on `id` may ask Redis; `None`: the call is made
    /// locally, as while Redis is down. So are calls on an id with changes made while it was
    /// down that the resync has not written back yet (see `tier::pending`): Redis does not
    /// hold them, so a read would miss a session made during the outage (and drop its copy)
    /// and a write would fail past it.
    fn link_for(&self, id: &str) -> Option<u64> {
        let tier = self.tier();
        if tier.is_pending(id) {
            return None;
        }
        tier.up_generation()
    }

    /// Whether a failed Redis call goes the local way: only under `ServeLocal`, and only once
    /// the link is declared lost (a single slow reply or an error reply from a live server,
    /// such as OOM or READONLY, is the caller's error: writing locally past a live Redis would
    /// fork the session's history).
    fn falls_back(&self, error: &Error) -> bool {
        matches!(error, Error::Unavailable(_))
            && self.tier().settings().when_down == WhenRedisDown::ServeLocal
            && !self.tier().is_up()
            && !self.tier().is_closed()
    }

    fn fail_or_serve_local(&self) -> Result<()> {
        if self.tier().is_closed() {
            return Err(self.tier().unavailable());
        }
        match self.tier().settings().when_down {
            WhenRedisDown::ServeLocal => Ok(()),
            WhenRedisDown::Fail => Err(self.tier().unavailable()),
        }
    }

    /// A read answered by a trusted local copy, with no network: `Ok(answer)`, or `Err` with
    /// `f` back and why not.
    fn trusted_hit<R, F: FnOnce(SessionView<'_>) -> R>(
        &self,
        place: &Place,
        id: &str,
        slide: bool,
        settling: Settling,
        f: F,
    ) -> std::result::Result<R, Untrusted<F>> {
        let tier = self.tier();
        let shard = &self.shards[place.shard];
        let verified = || {
            tier.up_generation()
                .is_some_and(|g| shard.verified.load(SeqCst) == g)
        };
        let strict = tier.settings().strict;
        // An invalidation already received but not yet applied must win over the copy.
        let settled = || match settling {
            Settling::Wait => tier.settle(),
            Settling::NoWait => tier.settled(),
            Settling::Since(since) => tier.handled_since(since),
        };
        if !verified() {
            return Err(Untrusted::Ask(f, Held::default()));
        }
        let unsettled = !strict && !settled();
        // Asked again after the link was found settled: a link declared lost meanwhile (by
        // another thread) reads as settled once detached, with what it had unread abandoned;
        // its generation moved first (`link_lost`), so this sees it.
        if !unsettled && !verified() {
            return Err(Untrusted::Ask(f, Held::default()));
        }
        let now = self.now();
        let stripe = shard.state.read();
        let Some(index) = stripe.find_live(place.hash, id, now) else {
            return Err(Untrusted::Ask(f, Held::default()));
        };
        let suspect = stripe.record(index).flags() & SUSPECT != 0;
        if unsettled {
            // Not served: what the link has yet to apply may invalidate it.
            return Err(match settling {
                Settling::NoWait if !suspect => Untrusted::Unsettled(f),
                _ => Untrusted::Ask(f, Held::default()),
            });
        }
        if strict || suspect {
            let held = Held {
                version: stripe.block(index).version(),
                owner: stripe.owner(index).map(Box::from),
            };
            return Err(Untrusted::Ask(f, held));
        }
        bump(&shard.counters.hits);
        tier.count_near_hit();
        if slide {
            self.slide(shard, &stripe, index, id, self.slide_from(now));
        }
        Ok(f(super::view(&stripe, index, now)))
    }

    /// A read that never waits on the network: `None` if only Redis (or, under
    /// `Settling::NoWait`, the link thread) can answer it.
    fn near_read_local<R>(
        &self,
        id: &str,
        slide: bool,
        settling: Settling,
        f: impl FnOnce(SessionView<'_>) -> R,
    ) -> Result<Option<Option<R>>> {
        validate_id(id)?;
        let place = self.place(id);
        let f = match self.trusted_hit(&place, id, slide, settling, f) {
            Ok(answer) => return Ok(Some(Some(answer))),
            Err(Untrusted::Unsettled(_)) => return Ok(None),
            Err(Untrusted::Ask(f, _)) => f,
        };
        if self.link_is_down_and_not_pending(id) {
            return self.read_locally(id, slide, f).map(Some);
        }
        if self.link_for(id).is_none() {
            return match self.read_if_still_local(&place, id, slide, f) {
                Ok(answer) => answer.map(Some),
                Err(_) => Ok(None),
            };
        }
        Ok(None)
    }

    /// [`near_read_local`](Inner::near_read_local) for a caller that must not spin (Node's
    /// `get`): a copy the link may be about to invalidate is left to
    /// [`near_read_then`](Inner::near_read_then), which waits for the link on its thread.
    pub(super) fn near_read_local_now<R>(
        &self,
        id: &str,
        slide: bool,
        f: impl FnOnce(SessionView<'_>) -> R,
    ) -> Result<Option<Option<R>>> {
        self.near_read_local(id, slide, Settling::NoWait, f)
    }

    pub(super) fn near_read<R>(
        &self,
        id: &str,
        slide: bool,
        f: impl FnOnce(SessionView<'_>) -> R,
    ) -> Result<Option<R>> {
        let (read, f) = match self.begin_near_read(id, slide, Settling::Wait, f) {
            Begun::Answered(result) => return result,
            Begun::Ask(read, f) => (read, f),
            // Only a read that does not wait is left unsettled; this one waits.
            Begun::Unsettled(f) => return self.near_read(id, slide, f),
        };
        let found = self.tier().load(&read.place.key, read.known.as_known());
        match self.after_load(&read, id, found, f) {
            AfterLoad::Done(result) => result,
            AfterLoad::LoadAgain(f) => {
                let found = self.tier().load(&read.place.key, (0, None));
                self.after_reload(&read, id, found, f)
            }
        }
    }

    /// [`near_read`](Inner::near_read) for a caller that must not wait: `done` gets the
    /// answer here if no network is needed, else on the Redis link thread: once the link has
    /// handled what it had received, for a copy it may have been about to invalidate, or when
    /// Redis answers (after a second round trip in the rare case the copy Redis called
    /// current was dropped meanwhile).
    pub(super) fn near_read_then<R, F, D>(self: &Arc<Self>, id: String, slide: bool, f: F, done: D)
    where
        R: Send + 'static,
        F: FnOnce(SessionView<'_>) -> R + Send + 'static,
        D: FnOnce(Result<Option<R>>) + Send + 'static,
    {
        // Called on an event loop, which must not spin. Taken before the copy is looked at: the
        // link must handle what it had received by now before the copy is served.
        let since = self.tier().since();
        // A panic here must not unwind into the caller's runtime without settling `done`.
        let begun = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.begin_near_read(&id, slide, Settling::NoWait, f)
        }));
        match begun {
            Ok(Begun::Answered(result)) => done(result),
            Ok(Begun::Ask(read, f)) => self.ask_redis_then(read, id, f, done),
            Ok(Begun::Unsettled(f)) => {
                let inner = Arc::clone(self);
                self.tier().after_handled(since, move || {
                    let begun = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        inner.begin_near_read(&id, slide, Settling::Since(since), f)
                    }));
                    match begun {
                        Ok(Begun::Answered(result)) => done(result),
                        Ok(Begun::Ask(read, f)) => inner.ask_redis_then(read, id, f, done),
                        // Only a read that does not wait is left unsettled.
                        Ok(Begun::Unsettled(_)) | Err(_) => done(Err(reading_failed())),
                    }
                });
            }
            Err(_) => done(Err(reading_failed())),
        }
    }

    /// The rest of [`near_read_then`](Inner::near_read_then) once Redis must be asked.
    fn ask_redis_then<R, F, D>(self: &Arc<Self>, read: NearRead, id: String, f: F, done: D)
    where
        R: Send + 'static,
        F: FnOnce(SessionView<'_>) -> R + Send + 'static,
        D: FnOnce(Result<Option<R>>) + Send + 'static,
    {
        let inner = Arc::clone(self);
        let key = read.place.key;
        let known = (read.known.version, read.known.owner.clone());
        self.tier()
            .load_then(&key, (known.0, known.1.as_deref()), move |found| {
                // `done` settles the caller's promise: it runs whatever happens here.
                let after = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    inner.after_load(&read, &id, found, f)
                }));
                match after {
                    Ok(AfterLoad::Done(result)) => done(result),
                    Ok(AfterLoad::LoadAgain(f)) => {
                        let again = Arc::clone(&inner);
                        inner.tier().load_then(&key, (0, None), move |found| {
                            let served =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    again.after_reload(&read, &id, found, f)
                                }));
                            done(served.unwrap_or_else(|_| Err(applying_failed())));
                        });
                    }
                    Err(_) => done(Err(applying_failed())),
                }
            });
    }

    /// A read's first step: answered from a trusted copy (or locally with the link down), or
    /// what to ask Redis.
    fn begin_near_read<R, F: FnOnce(SessionView<'_>) -> R>(
        &self,
        id: &str,
        slide: bool,
        settling: Settling,
        f: F,
    ) -> Begun<R, F> {
        if let Err(e) = validate_id(id) {
            return Begun::Answered(Err(e));
        }
        let place = self.place(id);
        let (f, known) = match self.trusted_hit(&place, id, slide, settling, f) {
            Ok(answer) => return Begun::Answered(Ok(Some(answer))),
            Err(Untrusted::Unsettled(f)) => return Begun::Unsettled(f),
            Err(untrusted) => untrusted.into_ask(),
        };
        // A suspect copy outside a verified stripe is asked about like any other miss.
        let (f, generation) = match self.link_for(id) {
            Some(generation) => (f, generation),
            // Down: nothing answers a write-back meanwhile (decided on one look at the link).
            None if self.link_is_down_and_not_pending(id) => {
                return Begun::Answered(self.read_locally(id, slide, f));
            }
            None => match self.read_if_still_local(&place, id, slide, f) {
                Ok(answer) => return Begun::Answered(answer),
                Err(ask_redis) => ask_redis,
            },
        };
        let ticket = self.shards[place.shard].invalidations.ticket();
        Begun::Ask(
            NearRead {
                place,
                known,
                slide,
                generation,
                ticket,
            },
            f,
        )
    }

    /// What Redis's answer to a read's LOAD means for the caller and the local table.
    fn after_load<R, F: FnOnce(SessionView<'_>) -> R>(
        &self,
        read: &NearRead,
        id: &str,
        found: Result<Found>,
        f: F,
    ) -> AfterLoad<R, F> {
        let (place, slide) = (&read.place, read.slide);
        let shard = &self.shards[place.shard];
        let found = match found {
            Err(ref e) if self.falls_back(e) => {
                return AfterLoad::Done(self.read_locally(id, slide, f));
            }
            Err(e) => return AfterLoad::Done(Err(e)),
            Ok(found) => found,
        };
        match found {
            // A session made here while Redis was down (a login, a regenerate's new id) is not
            // in Redis until the resync writes it back: meanwhile its copy is the session.
            Found::Gone => {
                bump(&shard.counters.misses);
                self.drop_copy(place, id, Cause::Invalidated, None);
                AfterLoad::Done(Ok(None))
            }
            Found::Same {
                idle_ms,
                key_ttl_ms,
            } => {
                // The copy is current (strict mode, or a suspect copy): serve it like a hit.
                self.confirm_copy(
                    place,
                    id,
                    &read.known,
                    (idle_ms, key_ttl_ms),
                    read.generation,
                    read.ticket,
                );
                let now = self.now();
                let stripe = shard.state.read();
                match stripe.find_live(place.hash, id, now) {
                    Some(index) if stripe.block(index).version() == read.known.version => {
                        bump(&shard.counters.hits);
                        if slide {
                            self.slide(shard, &stripe, index, id, self.slide_from(now));
                        }
                        AfterLoad::Done(Ok(Some(f(super::view(&stripe, index, now)))))
                    }
                    // Dropped meanwhile by an invalidation: ask again, for the whole session.
                    _ => AfterLoad::LoadAgain(f),
                }
            }
            Found::Session(loaded) => {
                bump(&shard.counters.hits);
                AfterLoad::Done(Ok(Some(self.serve_loaded(
                    place,
                    id,
                    &loaded,
                    slide,
                    read.generation,
                    read.ticket,
                    f,
                ))))
            }
        }
    }

    /// The answer to a read's second LOAD, for the whole session (see [`AfterLoad`]).
    fn after_reload<R>(
        &self,
        read: &NearRead,
        id: &str,
        found: Result<Found>,
        f: impl FnOnce(SessionView<'_>) -> R,
    ) -> Result<Option<R>> {
        match found? {
            Found::Session(loaded) => Ok(Some(self.serve_loaded(
                &read.place,
                id,
                &loaded,
                read.slide,
                read.generation,
                read.ticket,
                f,
            ))),
            _ => Ok(None),
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the fill ticket travels with the reply"
    )]
    fn serve_loaded<R>(
        &self,
        place: &Place,
        id: &str,
        loaded: &Loaded,
        slide: bool,
        generation: u64,
        ticket: Ticket,
        f: impl FnOnce(SessionView<'_>) -> R,
    ) -> R {
        let slides = slide && self.slide_on_read;
        let ttl = if slides {
            loaded
                .absolute_in_ms
                .map_or(loaded.idle_ms, |a| a.min(loaded.idle_ms))
        } else {
            // The earliest the deadline can be: a copy never outlives the session.
            loaded.ttl_ms.max(1)
        };
        if slides {
            self.keep_key_past(
                place,
                ttl,
                loaded.idle_ms,
                loaded.key_ttl_ms,
                loaded.absolute_in_ms,
                loaded.version,
            );
        }
        let flags = if slide { READ | REFERENCED } else { 0 };
        self.fill(
            place,
            id,
            loaded,
            &loaded.value,
            ttl,
            flags,
            generation,
            ticket,
        );
        f(SessionView {
            value: &loaded.value,
            version: loaded.version,
            expires_in: Duration::from_millis(ttl),
            owner: loaded.owner.as_deref(),
        })
    }

    /// A copy whose deadline is `ttl_ms` from now, in a session whose key Redis expires in
    /// `key_ttl_ms`: its later reads tell Redis only when the deadline crosses a touch point
    /// (see `Inner::slide`), so until the next point the key must outlive every deadline they
    /// set; if it may not, a touch moves it. No copy outlives the absolute deadline, so a key
    /// that ends there needs none.
    fn keep_key_past(
        &self,
        place: &Place,
        ttl_ms: u64,
        idle_ms: u64,
        key_ttl_ms: u64,
        absolute_in_ms: Option<u64>,
        version: u64,
    ) {
        let now = self.now();
        let next_point =
            crate::tier::TouchPoints::new(idle_ms, place.hash).next_after(now + ttl_ms);
        let needed = absolute_in_ms.map_or(next_point, |a| next_point.min(now + a));
        if now + key_ttl_ms < needed {
            let touch = crate::tier::Touch::new(ttl_ms, None, version);
            self.tier().queue_touch(place.key, touch);
        }
    }

    /// Whether a read of `id` is made here without the stripe's turn: the session is not
    /// pending, so no resync answers a write-back of it, and the link is down. In that order:
    /// a session found pending while the link was down may be written back by the time the
    /// link is looked at.
    fn link_is_down_and_not_pending(&self, id: &str) -> bool {
        !self.tier().is_pending(id) && self.tier().up_generation().is_none()
    }

    /// A read of a pending session, which [`link_for`](Inner::link_for) sends here, served in
    /// the stripe's turn if it still does; `Err` with `f` back and the link generation if a resync answered the
    /// session's write-back in between (and may have dropped the copy): Redis is asked.
    fn read_if_still_local<R, F: FnOnce(SessionView<'_>) -> R>(
        &self,
        place: &Place,
        id: &str,
        slide: bool,
        f: F,
    ) -> std::result::Result<Result<Option<R>>, (F, u64)> {
        let _turn = self.shards[place.shard].local_changes.hold_off();
        match self.link_for(id) {
            None => Ok(self.read_locally(id, slide, f)),
            Some(generation) => Err((f, generation)),
        }
    }

    /// A read with the link down: the local copy, unverified, if the policy allows.
    fn read_locally<R>(
        &self,
        id: &str,
        slide: bool,
        f: impl FnOnce(SessionView<'_>) -> R,
    ) -> Result<Option<R>> {
        self.fail_or_serve_local()?;
        // A copy an invalidation named is not served unverified: it may be a revoked session.
        // But for one with changes Redis does not hold yet (see `link_for`), which the
        // resync's own write-back names too: served as while Redis was down, until its
        // write-back is answered.
        let place = self.place(id);
        if !self.tier().is_pending(id) {
            let stripe = self.shards[place.shard].state.read();
            let suspect = stripe
                .find(place.hash, id)
                .is_some_and(|i| stripe.record(i).flags() & SUSPECT != 0);
            if suspect {
                return Ok(None);
            }
        }
        let result = self.read(id, slide, f)?;
        if result.is_some() {
            self.tier().count_served_unverified();
        }
        Ok(result)
    }

    fn slide_from(&self, now: u64) -> u64 {
        if self.slide_on_read { now } else { 0 }
    }

    /// Puts what Redis holds into the local table. A newer copy there is kept; a copy of the
    /// same version takes the reply's timing; a reply that an invalidation or a lost link may
    /// have overtaken since the request was sent (a stale ticket) is cached as suspect.
    #[expect(clippy::too_many_arguments, reason = "one call per kind of reply")]
    fn fill(
        &self,
        place: &Place,
        id: &str,
        loaded: &Loaded,
        value: &[u8],
        ttl: u64,
        flags: u64,
        generation: u64,
        ticket: Ticket,
    ) {
        let tier = self.tier();
        let shard = &self.shards[place.shard];
        if self.has_budget() && self.may_need_room(id.len() + value.len()) {
            // A copy that does not fit is simply not cached: Redis holds the session.
            if self
                .make_room_for(place.shard, place.hash, id, value.len())
                .is_err()
            {
                self.drop_copy(place, id, Cause::Evicted, None);
                return;
            }
        }
        let now = self.now();
        let absolute = loaded.absolute_in_ms.map(|ms| now.saturating_add(ms));
        let deadline = {
            let idle = now.saturating_add(ttl);
            absolute.map_or(idle, |a| idle.min(a))
        };
        let block = Block::new(id.as_bytes(), value, absolute);
        let mut stripe = shard.state.write();
        let stale_ticket = tier.generation() != generation
            || !tier.is_up()
            || shard.invalidations.named_since(ticket, &place.key);
        if stale_ticket && flags & ECHO == 0 {
            // Cached all the same, but not trusted until Redis confirms the version. Not
            // counted for an own write: Redis reports every one back, so its reply is always
            // overtaken, and a counter of writes would hide the races it is there to show.
            tier.count_invalidation_race();
        }
        // Stale on an own write: its report from Redis (see `ECHO`) came before this reply was
        // cached, so the copy is confirmed now rather than on the report.
        let (suspect, echo) = if stale_ticket {
            (SUSPECT, 0)
        } else {
            (0, flags & ECHO)
        };
        let mut pending = Outbox::new();
        let existing = stripe.find(place.hash, id);
        if let Some(index) = existing {
            let have = stripe.block(index).version();
            // A change of owner keeps the version: the copy is replaced all the same.
            let same_owner = stripe.owner(index) == loaded.owner.as_deref();
            if have > loaded.version {
                return;
            }
            if have == loaded.version && !stale_ticket && same_owner {
                // The copy is current, but its deadline may not be: a read elsewhere may have
                // slid the session, or this copy ran past its deadline while the key lives a
                // step longer. Left alone, every read would load it again until it is swept.
                let old_idle = stripe.record(index).ttl_ms();
                let (before, after) = stripe.take_timing(index, loaded.idle_ms, deadline);
                let new_idle = stripe.record(index).ttl_ms();
                // A reply no invalidation overtook confirms this version, as `confirm_copy` does.
                stripe.set_flags(index, SUSPECT, false);
                if flags & READ != 0 {
                    stripe.mark_read(index);
                }
                shard.note_deadline(after);
                if self
                    .listener
                    .as_ref()
                    .is_some_and(|l| l.reports_retime((before, after), (old_idle, new_idle)))
                {
                    pending.push(self.slid(&stripe, index, id));
                }
                self.release(shard, stripe, &pending);
                return;
            }
            if have == loaded.version && stale_ticket {
                stripe.set_flags(index, SUSPECT, true);
                let marks = stripe.bump_marks(index);
                let owner = stripe.owner(index).map(Box::from);
                drop(stripe);
                if flags & ECHO == 0 {
                    return;
                }
                tier.revalidate(Suspect {
                    hash: place.key,
                    id: id.to_string(),
                    version: have,
                    owner,
                    marks,
                });
                return;
            }
            let removed = stripe.remove(index);
            self.retire(shard, &removed, Cause::Invalidated);
            pending.push(Pending::removed(removed, Cause::Invalidated));
        }
        let (index, _, cost) = stripe.insert(NewSession {
            block,
            hash: place.hash,
            ttl_ms: loaded.idle_ms,
            deadline,
            flags: (flags & !ECHO) | echo | suspect,
            owner: loaded.owner.as_deref().map(Box::from),
            fresh_id_above: Some(loaded.version.saturating_sub(1)),
        });
        self.admit(cost, id, loaded.owner.as_deref());
        shard.note_deadline(deadline);
        let to_revalidate = (stale_ticket && flags & ECHO != 0).then(|| Suspect {
            hash: place.key,
            id: id.to_string(),
            version: loaded.version,
            owner: loaded.owner.as_deref().map(Box::from),
            marks: stripe.bump_marks(index),
        });
        if self.listener.is_some() {
            pending.push(Pending::Stored {
                id,
                value,
                created: existing.is_none(),
                meta: self.meta(&stripe, index),
                owner: loaded.owner.as_deref().map(Box::from),
                // The restart log, the only reader of this, is off with the shared tier.
                previous: None,
            });
        }
        self.release(shard, stripe, &pending);
        if let Some(suspect) = to_revalidate {
            // This process's own write, whose report from Redis overtook the reply:
            // confirmed within a round trip, off the request path.
            tier.revalidate(suspect);
        }
        self.settle_budget(place.shard, place.hash);
    }

    /// Removes the local copy of `id`, if any (and only at `version`, if given).
    fn drop_copy(
        &self,
        place: &Place,
        id: &str,
        cause: Cause,
        version: Option<u64>,
    ) -> Option<u64> {
        self.drop_copy_as(place, id, cause, version, |removed| {
            Pending::removed(removed, cause)
        })
    }

    /// [`drop_copy`](Inner::drop_copy), reported to the listener as `change` says.
    fn drop_copy_as(
        &self,
        place: &Place,
        id: &str,
        cause: Cause,
        version: Option<u64>,
        change: impl FnOnce(Removed) -> Pending<'static>,
    ) -> Option<u64> {
        let shard = &self.shards[place.shard];
        let mut stripe = shard.state.write();
        shard.invalidations.note(&place.key);
        let index = stripe.find(place.hash, id)?;
        let had = stripe.block(index).version();
        if version.is_some_and(|v| v != had) {
            return None;
        }
        let removed = stripe.remove(index);
        self.retire(shard, &removed, cause);
        self.release(shard, stripe, &[change(removed)]);
        Some(had)
    }

    pub(super) fn near_write(
        &self,
        id: &str,
        value: &[u8],
        ttl: Option<Duration>,
        precondition: LocalPrecondition,
        generated: bool,
    ) -> Result<u64> {
        let write = NearWrite::new(self, id, value, ttl, precondition, generated)?;
        loop {
            let Some((generation, ticket)) = self.write_ticket(id, &write.place) else {
                let local = self.change_if_still_local(&write.place, id, || {
                    self.write_here(&write.place, id, value, ttl, precondition, generated)
                })?;
                match local {
                    Some(version) => return Ok(version),
                    None => continue,
                }
            };
            let written = self.tier().write(write.request(self, id, value));
            return self.finish_write(&write, id, value, generation, ticket, written);
        }
    }

    /// [`near_write`](Inner::near_write) for a caller that must not wait: `done` gets the
    /// outcome on the Redis link thread when the reply comes, or here if it needs no network.
    pub(super) fn near_write_then(
        self: &Arc<Self>,
        id: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
        precondition: LocalPrecondition,
        done: impl FnOnce(Result<u64>) + Send + 'static,
    ) {
        let write = match NearWrite::new(self, &id, &value, ttl, precondition, false) {
            Ok(write) => write,
            Err(e) => return done(Err(e)),
        };
        let Some((generation, ticket)) = self.write_ticket(&id, &write.place) else {
            let local = self.change_if_still_local(&write.place, &id, || {
                self.write_here(&write.place, &id, &value, ttl, precondition, false)
            });
            return match local {
                Ok(Some(version)) => done(Ok(version)),
                Ok(None) => self.near_write_then(id, value, ttl, precondition, done),
                Err(e) => done(Err(e)),
            };
        };
        let prepared = self.tier().prepare_write(write.request(self, &id, &value));
        let inner = Arc::clone(self);
        self.tier().write_then(prepared, move |written| {
            // `done` settles the caller's promise: it runs whatever happens here.
            let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inner.finish_write(&write, &id, &value, generation, ticket, written)
            }));
            done(finished.unwrap_or_else(|_| Err(applying_failed())));
        });
    }

    /// Runs `change`, made here without Redis, as a local change of `place`'s stripe (see
    /// `local_changes`), if the policy allows.
    fn change_locally<T>(&self, place: &Place, change: impl FnOnce() -> Result<T>) -> Result<T> {
        let _change = self.shards[place.shard].begin_local_change();
        self.fail_or_serve_local()?;
        change()
    }

    /// [`change_locally`](Inner::change_locally) for a call that [`link_for`](Inner::link_for)
    /// sent here, if it still does: `Ok(None)` if a resync answered the session's write-back
    /// in between (adopting Redis's version for the copy, or dropping it), and the call goes
    /// to Redis instead. Checked inside the local change, where no answer is applied to the
    /// stripe.
    fn change_if_still_local<T>(
        &self,
        place: &Place,
        id: &str,
        change: impl FnOnce() -> Result<T>,
    ) -> Result<Option<T>> {
        let Some(_turn) = self.turn_if_still_local(place, id) else {
            return Ok(None);
        };
        self.shards[place.shard].unverify();
        self.fail_or_serve_local()?;
        change().map(Some)
    }

    /// The stripe's turn for a local change of a call that [`link_for`](Inner::link_for) sent
    /// here, if it still does (see [`change_if_still_local`](Inner::change_if_still_local));
    /// the caller unverifies the stripe before it changes anything. `None` (the call goes to
    /// Redis) before the stripe is unverified: no resync may be left to verify it again.
    fn turn_if_still_local(&self, place: &Place, id: &str) -> Option<LocalChange<'_>> {
        let turn = self.shards[place.shard].local_changes.begin();
        if self.link_for(id).is_some() {
            turn.abandon();
            return None;
        }
        Some(turn)
    }

    /// The link generation and the stripe's fill ticket a write starts from; `None` if the
    /// link is down.
    fn write_ticket(&self, id: &str, place: &Place) -> Option<(u64, Ticket)> {
        let generation = self.link_for(id)?;
        Some((generation, self.shards[place.shard].invalidations.ticket()))
    }

    /// What Redis answered a write means for the local table.
    fn finish_write(
        &self,
        write: &NearWrite,
        id: &str,
        value: &[u8],
        generation: u64,
        ticket: Ticket,
        written: Result<Loaded>,
    ) -> Result<u64> {
        let place = &write.place;
        let shard = &self.shards[place.shard];
        match written {
            Ok(stored) => {
                let flags = ECHO
                    | if write.generated {
                        0
                    } else {
                        READ | REFERENCED
                    };
                self.fill(
                    place,
                    id,
                    &stored,
                    value,
                    stored.ttl_ms,
                    flags,
                    generation,
                    ticket,
                );
                bump(&shard.counters.updates);
                Ok(stored.version)
            }
            Err(e @ (Error::Conflict { .. } | Error::NotFound)) => {
                // The local copy, if any, is not what Redis holds.
                self.drop_copy(place, id, Cause::Invalidated, None);
                bump(&shard.counters.conflicts);
                Err(e)
            }
            Err(ref e) if self.falls_back(e) => self.change_locally(place, || {
                self.write_here(
                    place,
                    id,
                    value,
                    write.ttl,
                    write.precondition,
                    write.generated,
                )
            }),
            Err(e) => Err(e),
        }
    }

    /// A write made here without Redis (inside a local change): applied to the local table
    /// and remembered for the resync.
    fn write_here(
        &self,
        place: &Place,
        id: &str,
        value: &[u8],
        ttl: Option<Duration>,
        precondition: LocalPrecondition,
        generated: bool,
    ) -> Result<u64> {
        let base = self.local_version(place, id);
        let version = self.write_as(id, value, ttl, precondition, generated)?;
        let owner_set = false;
        self.tier()
            .note_dirty(id, Dirty::Written { base, owner_set });
        Ok(version)
    }

    /// The local copy's version (0: none) and idle timeout.
    fn local_version_and_idle(&self, place: &Place, id: &str) -> (u64, Option<u64>) {
        let stripe = self.shards[place.shard].state.read();
        stripe.find(place.hash, id).map_or((0, None), |i| {
            (stripe.block(i).version(), Some(stripe.record(i).ttl_ms()))
        })
    }

    fn local_version(&self, place: &Place, id: &str) -> u64 {
        let stripe = self.shards[place.shard].state.read();
        stripe
            .find(place.hash, id)
            .map_or(0, |i| stripe.block(i).version())
    }

    pub(super) fn near_touch(
        &self,
        id: &str,
        ttl: Option<Duration>,
        min_idle: Option<u64>,
    ) -> Result<bool> {
        let new_idle = ttl_ms(ttl)?;
        // Make sure a verified copy is here (or learn the session is gone), then touch it
        // locally: the slide reaches Redis through the batched touches.
        let mut asked_again = false;
        loop {
            let was_pending = self.tier().is_pending(id);
            if self.near_read(id, false, |_| ())?.is_none() {
                return Ok(false);
            }
            let again = was_pending || !asked_again;
            match self.touch_copy(id, ttl, min_idle, again)? {
                // Redis has just called the session live, but the table keeps no copy of it
                // (a full table that refuses, a session larger than the budget).
                Some(false) if asked_again && self.link_for(id).is_some() => {
                    return self.touch_in_redis(id, new_idle, min_idle);
                }
                Some(touched) => return Ok(touched),
                None => asked_again = true,
            }
        }
    }

    /// A touch of a session that Redis holds and the table keeps no copy of: no local slide
    /// queues its TTL move, so it is queued here from what Redis holds, or Redis would expire
    /// a session in use. By the rules of a touch of a copy, so that each touch does not
    /// invalidate every other copy: a slide only when the key would not outlive the deadline
    /// until the next touch point (as after a read), a new timeout as `Inner::touch` sends
    /// one, and nothing within `min_idle` of the last use Redis knows of.
    fn touch_in_redis(
        &self,
        id: &str,
        new_idle: Option<u64>,
        min_idle: Option<u64>,
    ) -> Result<bool> {
        let place = self.place(id);
        let loaded = match self.tier().load(&place.key, (0, None)) {
            Ok(Found::Session(loaded)) => loaded,
            Ok(Found::Same { .. } | Found::Gone) => return Ok(false),
            // With no copy here, a read with the link down finds nothing either.
            Err(ref e) if self.falls_back(e) => return Ok(false),
            Err(e) => return Err(e),
        };
        // The deadline is known up to a step early (reads elsewhere slide it without telling
        // Redis), so the last use may be later than this says: a touch too many, not too few.
        let since_use = loaded.idle_ms.saturating_sub(loaded.ttl_ms);
        if min_idle.is_some_and(|min| since_use < min) {
            return Ok(true);
        }
        let capped = |idle: u64| loaded.absolute_in_ms.map_or(idle, |a| a.min(idle));
        let now = self.now();
        if let Some(idle) = new_idle.filter(|&idle| {
            let (before, after) = (now + loaded.ttl_ms, now + capped(idle));
            crate::tier::timeout_change_moves_key(loaded.idle_ms, idle, place.hash, before, after)
        }) {
            let touch = Touch::new(capped(idle), Some(idle), loaded.version);
            self.tier().queue_touch(place.key, touch);
        } else {
            self.keep_key_past(
                &place,
                capped(loaded.idle_ms),
                loaded.idle_ms,
                loaded.key_ttl_ms,
                loaded.absolute_in_ms,
                loaded.version,
            );
        }
        Ok(true)
    }

    /// A touch that never waits on the network: `None` if only Redis can tell whether the
    /// session is live.
    pub(super) fn near_touch_local(
        &self,
        id: &str,
        ttl: Option<Duration>,
        min_idle: Option<u64>,
    ) -> Result<Option<bool>> {
        ttl_ms(ttl)?;
        match self.near_read_local(id, false, Settling::Wait, |_| ())? {
            // A copy gone since the read: the caller's network path asks Redis.
            Some(Some(())) => self.touch_copy(id, ttl, min_idle, true),
            Some(None) => Ok(Some(false)),
            None => Ok(None),
        }
    }

    /// Touches the local copy that a read just found; `Inner::touch` queues the TTL move for
    /// Redis when there is one to make, and the batched touches carry it. `None` if the copy
    /// is gone since and Redis is to be asked again (`ask_again`; a resync may have dropped it
    /// as it answered the session's write-back, or a concurrent fill evicted it). Asked again
    /// a bounded number of times: a table that refuses to keep the session keeps no copy.
    fn touch_copy(
        &self,
        id: &str,
        ttl: Option<Duration>,
        min_idle: Option<u64>,
        ask_again: bool,
    ) -> Result<Option<bool>> {
        if ttl.is_some() && self.tier().is_pending(id) {
            return self.touch_if_still_local(&self.place(id), id, ttl, min_idle);
        }
        match self.touch(id, ttl, min_idle)? {
            false if ask_again && self.link_for(id).is_some() => Ok(None),
            touched => Ok(Some(touched)),
        }
    }

    /// A touch that sets an idle timeout on a pending session, in the stripe's turn if the
    /// session is still pending (`None` if not: see
    /// [`change_if_still_local`](Inner::change_if_still_local)). A new timeout is noted as a
    /// change of its own, which the write-back carries: the queued touch names the version the
    /// copy holds here, which Redis refuses once the write-back has given the session a
    /// version of its own, and a write-back already sent carries the old timeout. A timeout
    /// restated (express-session restates it on every request) is no change to note, and is
    /// not counted as a local change: the stripe stays as it is.
    fn touch_if_still_local(
        &self,
        place: &Place,
        id: &str,
        ttl: Option<Duration>,
        min_idle: Option<u64>,
    ) -> Result<Option<bool>> {
        let Some(turn) = self.turn_if_still_local(place, id) else {
            return Ok(None);
        };
        let new_idle =
            ttl_ms(ttl)?.map(|ms| super::record::decode_ttl(super::record::encode_ttl(ms)));
        let (base, idle_before) = self.local_version_and_idle(place, id);
        if idle_before.is_none() || idle_before == new_idle {
            let touched = self.touch(id, ttl, min_idle);
            turn.abandon();
            return touched.map(Some);
        }
        let _turn = turn;
        self.shards[place.shard].unverify();
        self.fail_or_serve_local()?;
        let touched = self.touch(id, ttl, min_idle)?;
        // (Skipped by `min_idle`, it changed nothing.)
        if touched && self.local_version_and_idle(place, id).1 != idle_before {
            let owner_set = false;
            self.tier()
                .note_dirty(id, Dirty::Written { base, owner_set });
        }
        Ok(Some(touched))
    }

    pub(super) fn near_destroy(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        let place = self.place(id);
        while self.link_for(id).is_none() {
            let local = self.change_if_still_local(&place, id, || self.destroy_here(&place, id))?;
            if let Some(existed) = local {
                return Ok(existed);
            }
        }
        let destroyed = self.tier().destroy(&place.key);
        self.finish_destroy(&place, id, destroyed)
    }

    /// [`near_destroy`](Inner::near_destroy) for a caller that must not wait: `done` gets the
    /// outcome on the Redis link thread when the reply comes, or here if it needs no network.
    pub(super) fn near_destroy_then(
        self: &Arc<Self>,
        id: String,
        done: impl FnOnce(Result<bool>) + Send + 'static,
    ) {
        if let Err(e) = validate_id(&id) {
            return done(Err(e));
        }
        let place = self.place(&id);
        if self.link_for(&id).is_none() {
            return match self.change_if_still_local(&place, &id, || self.destroy_here(&place, &id))
            {
                Ok(Some(existed)) => done(Ok(existed)),
                Ok(None) => self.near_destroy_then(id, done),
                Err(e) => done(Err(e)),
            };
        }
        let inner = Arc::clone(self);
        let key = place.key;
        self.tier().destroy_then(&key, move |destroyed| {
            // `done` settles the caller's promise: it runs whatever happens here.
            let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                inner.finish_destroy(&place, &id, destroyed)
            }));
            done(finished.unwrap_or_else(|_| Err(applying_failed())));
        });
    }

    /// What Redis answered a destroy means for the local table.
    fn finish_destroy(&self, place: &Place, id: &str, destroyed: Result<bool>) -> Result<bool> {
        match destroyed {
            Ok(existed) => {
                self.drop_copy(place, id, Cause::Destroyed, None);
                Ok(existed)
            }
            Err(ref e) if self.falls_back(e) => {
                self.change_locally(place, || self.destroy_here(place, id))
            }
            Err(e) => Err(e),
        }
    }

    /// A destroy made here without Redis (inside a local change): applied to the local table
    /// and remembered for the resync.
    fn destroy_here(&self, place: &Place, id: &str) -> Result<bool> {
        // Revocation stays final: the destroy is replayed on reconnect whatever the version.
        self.tier().note_dirty(id, Dirty::Destroyed);
        Ok(self.drop_copy(place, id, Cause::Destroyed, None).is_some())
    }

    pub(super) fn near_regenerate(&self, id: &str) -> Result<Option<String>> {
        validate_id(id)?;
        let old = self.place(id);
        loop {
            let sent_here = match self.link_for(id) {
                None => true,
                Some(generation) => match self.regenerate_on_redis(id, &old, generation)? {
                    Some(answer) => return Ok(answer),
                    None => false,
                },
            };
            // The new id may fall in any stripe.
            let changes: Vec<_> = self
                .shards
                .iter()
                .map(|shard| shard.local_changes.begin())
                .collect();
            // Unless a resync answered the session's write-back meanwhile (see
            // `change_if_still_local`).
            if sent_here && self.link_for(id).is_some() {
                changes.into_iter().for_each(|change| change.abandon());
                continue;
            }
            let _changes = changes;
            self.shards[old.shard].unverify();
            self.fail_or_serve_local()?;
            return self.regenerate_here(id);
        }
    }

    /// The regenerate made in Redis: `None` if the link was lost meanwhile and the regenerate
    /// goes the local way.
    fn regenerate_on_redis(
        &self,
        id: &str,
        old: &Place,
        generation: u64,
    ) -> Result<Option<Option<String>>> {
        loop {
            let new_id = generate_id();
            let new = self.place(&new_id);
            let ticket = self.shards[new.shard].invalidations.ticket();
            match self.tier().regenerate(&old.key, &new_id, &new.key) {
                Ok(None) => {
                    self.drop_copy(old, id, Cause::Invalidated, None);
                    return Ok(Some(None));
                }
                Ok(Some(loaded)) => {
                    // The new id first, as a regenerate in this process alone reports it.
                    let flags = ECHO | READ | REFERENCED;
                    self.fill(
                        &new,
                        &new_id,
                        &loaded,
                        &loaded.value,
                        loaded.ttl_ms,
                        flags,
                        generation,
                        ticket,
                    );
                    self.drop_copy_as(old, id, Cause::Replaced, None, |removed| {
                        Pending::replaced(removed, new_id.clone())
                    });
                    return Ok(Some(Some(new_id)));
                }
                Err(Error::Conflict { .. }) => continue,
                Err(ref e) if self.falls_back(e) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// A regenerate made here without Redis (inside local changes of every stripe, where the
    /// new id may fall): applied to the local table and remembered for the resync.
    fn regenerate_here(&self, id: &str) -> Result<Option<String>> {
        let tier = self.tier();
        // Written here whatever Redis holds: a creation (base 0), or a re-creation after a
        // destroy (u64::MAX), which the replay forces.
        let from_made_here = tier.made_here(id);
        let from_remade = tier.remade(id);
        let from_resent = tier.resent(id);
        let owner = self
            .read(id, false, |view| view.owner.map(str::to_string))?
            .flatten();
        let new_id = self.regenerate(id)?;
        if let Some(new_id) = &new_id {
            // The move first: while it is pending, the destroy of `id` is not replayed (see
            // `Tier::take_destroyed`), whenever a resync comes.
            tier.note_moved(Move {
                from: id.to_string(),
                from_made_here,
                from_remade,
                from_resent,
                owner,
                to: new_id.clone(),
            });
            tier.note_dirty(id, Dirty::Destroyed);
            tier.note_dirty(
                new_id,
                Dirty::Written {
                    base: 0,
                    owner_set: true,
                },
            );
            self.shards[self.place(new_id).shard].unverify();
        }
        Ok(new_id)
    }

    pub(super) fn near_set_owner(&self, id: &str, owner: Option<&str>) -> Result<()> {
        validate_id(id)?;
        if let Some(owner) = owner {
            validate_owner(owner)?;
        }
        let tier = self.tier();
        let place = self.place(id);
        loop {
            if self.link_for(id).is_none() {
                let local = self
                    .change_if_still_local(&place, id, || self.set_owner_here(&place, id, owner))?;
                match local {
                    Some(()) => return Ok(()),
                    None => continue,
                }
            }
            let ticket = self.shards[place.shard].invalidations.ticket();
            return match tier.set_owner(&place.key, id, owner) {
                Ok(true) => {
                    // The local copy follows; if there is none, the next read loads it.
                    match self.set_owner(id, owner) {
                        Ok(()) => {
                            self.expect_own_echo(&place, id, ticket);
                            Ok(())
                        }
                        Err(Error::NotFound) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Ok(false) => {
                    self.drop_copy(&place, id, Cause::Invalidated, None);
                    Err(Error::NotFound)
                }
                Err(ref e) if self.falls_back(e) => {
                    self.change_locally(&place, || self.set_owner_here(&place, id, owner))
                }
                Err(e) => Err(e),
            };
        }
    }

    /// An owner set here without Redis (inside a local change): applied to the local table and
    /// remembered for the resync.
    fn set_owner_here(&self, place: &Place, id: &str, owner: Option<&str>) -> Result<()> {
        let base = self.local_version(place, id);
        self.set_owner(id, owner)?;
        let owner_set = true;
        self.tier()
            .note_dirty(id, Dirty::Written { base, owner_set });
        Ok(())
    }

    /// This process changed the session in Redis without a new version (its owner), and Redis
    /// reports that change back to it too (see `ECHO`): the copy is confirmed in the
    /// background, as after an own write, rather than asked about at the next read. `ticket`
    /// was taken before the change was sent.
    fn expect_own_echo(&self, place: &Place, id: &str, ticket: Ticket) {
        let shard = &self.shards[place.shard];
        let mut stripe = shard.state.write();
        let Some(index) = stripe.find(place.hash, id) else {
            return;
        };
        if !shard.invalidations.named_since(ticket, &place.key) {
            stripe.set_flags(index, ECHO, true);
            return;
        }
        // The report came first and left the copy suspect: confirmed now.
        if stripe.record(index).flags() & SUSPECT == 0 {
            return;
        }
        let suspect = suspect_copy(&mut stripe, index, place.key);
        drop(stripe);
        self.tier().revalidate(suspect);
    }

    pub(super) fn near_sessions_of(&self, owner: &str) -> Result<Option<Vec<String>>> {
        validate_owner(owner)?;
        let tier = self.tier();
        if tier.is_up() {
            match tier.owner_sessions(owner) {
                Ok(mut ids) => {
                    ids.sort_unstable();
                    return Ok(Some(ids));
                }
                Err(ref e) if self.falls_back(e) => {}
                Err(e) => return Err(e),
            }
        }
        self.fail_or_serve_local()?;
        Ok(None)
    }

    pub(super) fn near_destroy_owner(
        &self,
        owner: &str,
        keep: Option<&str>,
    ) -> Result<Option<usize>> {
        validate_owner(owner)?;
        if let Some(keep) = keep {
            validate_id(keep)?;
        }
        let tier = self.tier();
        if tier.is_up() {
            // The owner's sessions changed here while Redis was down and not yet written
            // back (Redis may not have them, or not under this owner): destroyed here first,
            // the destroy replayed with them.
            let mut pending_gone = 0;
            for id in self.owners.ids_of(owner) {
                if keep == Some(id.as_str()) || !tier.is_pending(&id) {
                    continue;
                }
                // Pending no more (written back meanwhile): Redis's log-out below reaches it.
                let place = self.place(&id);
                let local =
                    self.change_if_still_local(&place, &id, || self.destroy_here(&place, &id))?;
                if local == Some(true) {
                    pending_gone += 1;
                }
            }
            let keep = keep.map(KeyHash::of);
            match tier.destroy_owner(owner, keep.as_slice()) {
                Ok(gone) => {
                    // Drop the copies now rather than when Redis's report of the deletions
                    // comes back: no copy is left to serve once the call returns.
                    for key in &gone {
                        let _ = self.invalidate_copies(key, Some(Cause::Destroyed));
                    }
                    return Ok(Some(gone.len() + pending_gone));
                }
                Err(ref e) if self.falls_back(e) => {}
                Err(e) => return Err(e),
            }
        }
        self.fail_or_serve_local()?;
        // The local copies go now (the caller destroys them one by one); the other processes'
        // sessions when the link is back.
        tier.note_owner_revoked(owner, keep.map(KeyHash::of));
        Ok(None)
    }

    /// Replays the regenerates and log-outs everywhere made while Redis was down, in the order
    /// made; what was not replayed (the link failed, or a session moved on meanwhile) is
    /// tried again on the next pass.
    ///
    /// A session revoked meanwhile elsewhere (a logout, a log-out everywhere) must not come
    /// back under the id a regenerate here moved it to. The copy at the end of each chain of
    /// moves is written back in one step with the check that Redis still holds the session
    /// the chain began from (which that step removes); if Redis does not, the copy and every
    /// id the chain passed through are destroyed instead. A log-out everywhere replayed in its
    /// place reaches the sessions moved before it, and spares the session it kept, every
    /// session written back by a move before it, and every session given an owner here while
    /// Redis was down whose copy is still here: such a copy survived that log-out when it was
    /// made here (which destroyed the copies it reached at once), whatever owner Redis files
    /// it under.
    fn replay_journal(&self, tier: &Tier, redis_lost_data: bool) -> PassOutcome {
        let replays = {
            let _pass = crate::fork::enter();
            tier.take_replays()
        };
        let moves: Vec<&Move> = replays
            .iter()
            .filter_map(|r| match r {
                Replay::Moved(m) => Some(m),
                Replay::OwnerRevoked { .. } => None,
            })
            .collect();
        let chains = Chains::of(&moves);
        // The sessions moves wrote back in this pass.
        let mut written_back: Vec<KeyHash> = Vec::new();
        // What is left to replay from `n` on, but for the moves `answered` (indexes into
        // `replays`), and why the pass ends there.
        let stop = |n: usize, answered: &HashSet<usize>, written_back: &[KeyHash], outcome| {
            let _pass = crate::fork::enter();
            // What moves wrote back stays spared by the log-outs after them.
            let again = replays
                .iter()
                .enumerate()
                .skip(n)
                .filter(|(index, _)| !answered.contains(index))
                .map(|(_, replay)| match replay.clone() {
                    Replay::OwnerRevoked { owner, mut keep } => {
                        keep.extend_from_slice(written_back);
                        Replay::OwnerRevoked { owner, keep }
                    }
                    moved => moved,
                })
                .collect();
            tier.restore_replays(again);
            outcome
        };
        let mut n = 0;
        while n < replays.len() {
            match &replays[n] {
                Replay::OwnerRevoked { owner, keep } => {
                    // Copies here of sessions given an owner while Redis was down survived
                    // this log-out when it was made here, which destroyed those it reached:
                    // Redis may still file them under this owner.
                    let spared: Vec<KeyHash> = {
                        let _pass = crate::fork::enter();
                        let survivors = tier
                            .pending_ids_given_an_owner()
                            .into_iter()
                            .filter(|id| self.has_live_copy(id))
                            .map(|id| KeyHash::of(&id));
                        keep.iter()
                            .chain(&written_back)
                            .copied()
                            .chain(survivors)
                            .collect()
                    };
                    if !self.replay_owner_revoked(tier, owner, &spared) {
                        return stop(n, &HashSet::new(), &written_back, PassOutcome::Failed);
                    }
                    n += 1;
                }
                // Nothing of Redis's to check: a session made here, whose chain the stripe
                // walk writes back, or a move its chain's first move replays.
                Replay::Moved(moved) if moved.from_made_here => n += 1,
                Replay::Moved(_) => {
                    // The moves up to the next log-out everywhere go in one round trip: one
                    // each made the recovery of many logins made while cut off last as many
                    // round trips. Their chains are apart (ids are never reused by a move);
                    // one that met another's would wait for the next batch.
                    // Where each copy's move is in `replays`, and its chain.
                    let mut batch: Vec<(usize, Vec<&str>)> = Vec::new();
                    let mut copies: Vec<CopyState> = Vec::new();
                    let mut in_batch: HashSet<&str> = HashSet::new();
                    let mut deferred = None;
                    let mut end = n;
                    while end < replays.len() && batch.len() < crate::tier::RESYNC_BATCH {
                        let Replay::Moved(moved) = &replays[end] else {
                            break;
                        };
                        if moved.from_made_here {
                            end += 1;
                            continue;
                        }
                        let chain = chains.from(&moved.from);
                        let ids =
                            || std::iter::once(moved.from.as_str()).chain(chain.iter().copied());
                        if ids().any(|id| in_batch.contains(id)) {
                            break;
                        }
                        match self.chain_copy(tier, moved, &chain) {
                            Ok(Some(copy)) => {
                                in_batch.extend(ids());
                                batch.push((end, chain));
                                copies.push(copy);
                            }
                            Ok(None) => {}
                            Err(outcome) => {
                                deferred = Some(outcome);
                                break;
                            }
                        }
                        end += 1;
                    }
                    let answers = if copies.is_empty() {
                        Vec::new()
                    } else {
                        let _pass = crate::fork::enter();
                        tier.resync(&copies, redis_lost_data)
                    };
                    let mut answered = HashSet::new();
                    let mut first_unanswered = None;
                    for (((index, chain), copy), answer) in batch.iter().zip(&copies).zip(answers) {
                        match self.chain_answered(tier, chain, copy, answer) {
                            Some(end) => {
                                written_back.extend(end);
                                answered.insert(*index);
                            }
                            None => {
                                first_unanswered.get_or_insert(*index);
                            }
                        }
                    }
                    // Everything from the first move Redis did not answer is replayed again,
                    // as if the moves had gone one at a time, but for those it answered: the
                    // later moves of its chain too, which it alone replays.
                    if let Some(first) = first_unanswered {
                        return stop(first, &answered, &written_back, PassOutcome::Failed);
                    }
                    if let Some(outcome) = deferred {
                        return stop(end, &HashSet::new(), &written_back, outcome);
                    }
                    n = end;
                }
            }
        }
        tier.replays_done();
        PassOutcome::Done
    }

    /// Replays one log-out everywhere made while Redis was down; false if the link failed.
    fn replay_owner_revoked(&self, tier: &Tier, owner: &str, spared: &[KeyHash]) -> bool {
        let gone = {
            let _pass = crate::fork::enter();
            tier.destroy_owner(owner, spared)
        };
        let Ok(gone) = gone else {
            return false;
        };
        let _pass = crate::fork::enter();
        for key in &gone {
            let _ = self.invalidate_copies(key, Some(Cause::Destroyed));
        }
        true
    }

    /// The copy to replay the chain of moves that `moved` begins with, whose ids are `chain`
    /// (the session is at the last): `Ok(None)` if there is none left to write back (destroyed,
    /// expired or evicted here), `Err(ChangedMeanwhile)` if the session moved on since the
    /// journal was taken (replayed with that move next pass).
    fn chain_copy(
        &self,
        tier: &Tier,
        moved: &Move,
        chain: &[&str],
    ) -> std::result::Result<Option<CopyState>, PassOutcome> {
        let _pass = crate::fork::enter();
        let Some(last) = chain.last() else {
            return Ok(None);
        };
        match self.moved_copy(tier, last, moved, &chain[..chain.len() - 1]) {
            Some(copy) => Ok(Some(copy)),
            None if tier.has_move_from(last) => Err(PassOutcome::ChangedMeanwhile),
            None => Ok(None),
        }
    }

    /// What Redis answered a chain's `copy` (see [`chain_copy`](Inner::chain_copy)):
    /// `Some(Some(hash))` if the session was written back under that hash, `Some(None)` if not
    /// (revoked, or its id taken), `None` if Redis did not answer (the chain is replayed again).
    fn chain_answered(
        &self,
        tier: &Tier,
        chain: &[&str],
        copy: &CopyState,
        answer: Resynced,
    ) -> Option<Option<KeyHash>> {
        let _pass = crate::fork::enter();
        let last = chain.last()?;
        let place = self.place(&copy.id);
        match answer {
            Resynced::Restored(version) => {
                self.give_way(tier, &place, copy, Some(version), true);
                Some(Some(copy.hash))
            }
            Resynced::Rewritten(version) => {
                self.give_way(tier, &place, copy, Some(version), false);
                Some(Some(copy.hash))
            }
            Resynced::MovedBefore(version) => {
                // Redis holds the session there: a move made from it since is checked.
                tier.written_back(last);
                // The copy as it is now is written over what that try wrote, by the walk;
                // before anything noted for it since (a destroy stays a destroy).
                tier.restore_dirty(
                    last,
                    Dirty::Written {
                        base: version,
                        owner_set: true,
                    },
                );
                Some(Some(copy.hash))
            }
            Resynced::Unknown => {
                if let Some(dirty) = copy.dirty {
                    tier.restore_dirty(last, dirty);
                }
                None
            }
            answer => {
                for id in chain {
                    // The copies go now, not at the stripe walk: served and saved again in a
                    // second outage before that, they would be forced back into Redis.
                    let key = KeyHash::of(id);
                    if answer == Resynced::Taken {
                        // Its id holds another session: only the copies go.
                        let _ = self.invalidate_copies(&key, Some(Cause::Invalidated));
                    } else {
                        let _ = self.invalidate_copies(&key, Some(Cause::Destroyed));
                        tier.note_dirty(id, Dirty::Destroyed);
                        // A move made from it since (as this was in flight) is checked, and
                        // Redis does not hold it: judged revoked too. Not one that moved a
                        // session made again there, which the copy sent may have been (that
                        // copy is judged with the moved session all the same: telling them
                        // apart needs moves that name which session of an id they moved).
                        tier.refused(id);
                    }
                }
                tier.landed(last);
                Some(None)
            }
        }
    }

    /// The local copy of `id`, where the chain of moves beginning with `moved` left the
    /// session, with what it has to replay; `None` if there is none.
    fn moved_copy(&self, tier: &Tier, id: &str, moved: &Move, via: &[&str]) -> Option<CopyState> {
        let place = self.place(id);
        let shard = &self.shards[place.shard];
        // A copy and what is noted for it are taken together, between local changes.
        let _no_local_change = shard.local_changes.hold_off();
        let now = self.now();
        let stripe = shard.state.read();
        let index = stripe.find(place.hash, id)?;
        if stripe.record(index).is_expired(now) {
            return None;
        }
        let mut copy = copy_state(&stripe, index, now, tier);
        copy.moved_from = Some(MovedFrom {
            hash: KeyHash::of(&moved.from),
            owner: moved.owner.clone(),
            via: via.iter().map(|id| KeyHash::of(id)).collect(),
        });
        Some(copy)
    }

    /// A resync answered `copy`: Redis holds another session under its id, or none, or
    /// (`written`) this copy's value, written back at that version, with this copy's owner
    /// (`as_sent`) or the one Redis held. The session is pending no more for this change.
    /// Unless it was changed here since it was sent (the link down again, or a call while it
    /// was pending), the copy then takes Redis's version if Redis holds it as it is, and
    /// otherwise gives way (the next read loads what Redis holds). A change made since stays
    /// noted, over the version written back.
    fn give_way(
        &self,
        tier: &Tier,
        place: &Place,
        copy: &CopyState,
        written: Option<u64>,
        as_sent: bool,
    ) {
        let local = copy.session.version;
        // A local change on the copy comes wholly before this (and is noted) or wholly after
        // (and reads what this leaves): see `local_changes`.
        let _no_local_change = self.shards[place.shard].local_changes.hold_off();
        // Pending no more first: a call that finds it not pending asks Redis, which has the
        // answer.
        tier.landed(&copy.id);
        if written.is_some() {
            tier.written_back(&copy.id);
        }
        // Asked of what is noted, not of the copy's version: an owner set here keeps it.
        if tier.dirty_of(&copy.id).is_none() {
            match written {
                // Kept, rather than dropped: a call that found the session pending just before
                // and goes on here still finds it.
                Some(version) if as_sent && version != local => {
                    self.take_version(place, &copy.id, local, version);
                }
                Some(version) if as_sent && version == local => {}
                _ => {
                    self.drop_copy(place, &copy.id, Cause::Invalidated, Some(local));
                }
            }
        } else if let Some(version) = written {
            tier.rebase_dirty(&copy.id, local, version);
        }
    }

    /// Until no change made without Redis is under way (true), or a second has passed.
    fn wait_for_local_changes(&self) -> bool {
        let until = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            if !self.shards.iter().any(|s| s.local_changes.under_way()) {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The copy of `id` at version `local`, if it still is, takes version `version` (reported
    /// to the listener as a store of the same value, as a fill is).
    fn take_version(&self, place: &Place, id: &str, local: u64, version: u64) {
        let shard = &self.shards[place.shard];
        let mut stripe = shard.state.write();
        let Some(index) = stripe.find(place.hash, id) else {
            return;
        };
        if stripe.block(index).version() != local {
            return;
        }
        let old = stripe.take_version(index, version);
        if self.listener.is_some() {
            let value = stripe.block(index).value().to_vec();
            let pending = [Pending::Stored {
                id,
                value: &value,
                created: false,
                meta: self.meta(&stripe, index),
                owner: stripe.owner(index).map(Box::from),
                previous: None,
            }];
            self.release(shard, stripe, &pending);
        } else {
            drop(stripe);
        }
        drop(old);
    }

    /// Whether the table holds a live copy of `id`.
    fn has_live_copy(&self, id: &str) -> bool {
        let place = self.place(id);
        let stripe = self.shards[place.shard].state.read();
        stripe.find_live(place.hash, id, self.now()).is_some()
    }

    /// Marks every local copy whose Redis hash is `key` suspect (`None`) or removes it, and
    /// bumps the stripe's invalidation count so a fill in flight for it is not trusted.
    fn invalidate_copies(&self, key: &KeyHash, remove: Option<Cause>) -> Option<Suspect> {
        let (hash, stripe_bits) = key.placement();
        let shard = &self.shards[(stripe_bits as usize) & self.shard_mask];
        let mut stripe = shard.state.write();
        shard.invalidations.note(key);
        let mut pending = Outbox::new();
        let mut suspect = None;
        for index in stripe.find_by_hash(hash) {
            if KeyHash::of(stripe.block(index).id_str()) != *key {
                continue;
            }
            match remove {
                None => {
                    let echo = stripe.record(index).flags() & ECHO != 0;
                    stripe.set_flags(index, SUSPECT, true);
                    stripe.set_flags(index, ECHO, false);
                    // Only this process's own write is confirmed ahead of need (see `ECHO`).
                    if echo {
                        suspect = Some(suspect_copy(&mut stripe, index, *key));
                    } else {
                        stripe.bump_marks(index);
                    }
                }
                Some(cause) => {
                    let removed = stripe.remove(index);
                    self.retire(shard, &removed, cause);
                    pending.push(Pending::removed(removed, cause));
                }
            }
        }
        self.release(shard, stripe, &pending);
        suspect
    }

    /// Redis confirmed that the copy as `held` is current, with idle timeout `idle_ms` and its
    /// key expiring in `key_ttl_ms`: trust it again (taking that timeout, which a touch
    /// elsewhere may have changed), unless an invalidation or a lost link came after the
    /// confirmation was asked for.
    fn confirm_copy(
        &self,
        place: &Place,
        id: &str,
        held: &Held,
        (idle_ms, key_ttl_ms): (Option<u64>, u64),
        generation: u64,
        ticket: Ticket,
    ) {
        let tier = self.tier();
        let shard = &self.shards[place.shard];
        let mut stripe = shard.state.write();
        if tier.generation() != generation || shard.invalidations.named_since(ticket, &place.key) {
            return;
        }
        if let Some(index) = stripe.find(place.hash, id) {
            if stripe.block(index).version() == held.version
                && stripe.owner(index) == held.owner.as_deref()
            {
                stripe.set_flags(index, SUSPECT, false);
                let record = stripe.record(index);
                if let Some(idle) = idle_ms.filter(|&ms| {
                    super::record::decode_ttl(super::record::encode_ttl(ms)) != record.ttl_ms()
                }) {
                    let now = self.now();
                    stripe.retime(index, Some(idle), now);
                    let deadline = stripe.record(index).deadline();
                    shard.note_deadline(deadline);
                    // The new timeout restarts this copy's deadline from now.
                    self.keep_key_past(
                        place,
                        deadline.saturating_sub(now).max(1),
                        idle,
                        key_ttl_ms,
                        stripe
                            .block(index)
                            .absolute()
                            .map(|a| a.saturating_sub(now).max(1)),
                        held.version,
                    );
                    if self.listener.is_some() {
                        let pending = [self.slid(&stripe, index, id)];
                        self.release(shard, stripe, &pending);
                    }
                }
            }
        }
    }

    /// Checks one stripe's copies against Redis: `Failed` if the link went down meanwhile or a
    /// copy could not be checked, `ChangedMeanwhile` if a call changed the stripe as it was
    /// checked or left a copy to a move not yet replayed. A stripe already checked under
    /// `generation` is not checked again: a resync that is tried again goes on where it
    /// stopped.
    fn resync_stripe(
        &self,
        tier: &Tier,
        shard_index: usize,
        generation: u64,
        redis_lost_data: bool,
    ) -> PassOutcome {
        let shard = &self.shards[shard_index];
        if shard.verified.load(SeqCst) == generation {
            return PassOutcome::Done;
        }
        let mut left_to_a_move = false;
        let (local_changes, copies): (_, Vec<CopyState>) = {
            let _pass = crate::fork::enter();
            // A copy and what is noted for it are taken together, between local changes.
            let _no_local_change = shard.local_changes.hold_off();
            let local_changes = shard.local_changes.before_snapshot();
            // A regenerate's new id is written back by the replay of its move, which checks
            // that the session it came from was not revoked: a move noted after this pass
            // replayed the journal leaves its copy, and the stripe, to the next pass. So does
            // a session made again at the id a move came from (a save on the old cookie),
            // which the move's replay would remove from Redis. (Read between local changes:
            // a regenerate notes its move in its change.)
            let in_moves = tier.ids_in_moves();
            let now = self.now();
            let stripe = shard.state.read();
            let copies = stripe
                .live_indices()
                .filter(|&i| !stripe.record(i).is_expired(now))
                .filter(|&i| {
                    let moved = in_moves.contains(stripe.block(i).id_str());
                    left_to_a_move |= moved;
                    !moved
                })
                .map(|i| copy_state(&stripe, i, now, tier));
            (local_changes, copies.collect())
        };
        let mut unsent = copies.chunks(crate::tier::RESYNC_BATCH);
        while let Some(batch) = unsent.next() {
            // The pass keeps a fork from catching this thread inside the tier's locks.
            let results = {
                let _pass = crate::fork::enter();
                tier.resync(batch, redis_lost_data)
            };
            let mut checked = true;
            for (copy, result) in batch.iter().zip(results) {
                let place = Place {
                    key: copy.hash,
                    hash: copy.hash.placement().0,
                    shard: shard_index,
                };
                let _pass = crate::fork::enter();
                match result {
                    // Touches this copy queued may have been lost with the link.
                    Resynced::Same { key_ttl_ms } => self.keep_key_past(
                        &place,
                        copy.session.ttl_ms,
                        copy.session.idle_ms,
                        key_ttl_ms,
                        copy.session.absolute_in_ms,
                        copy.session.version,
                    ),
                    // (`Taken` and `MovedBefore` answer moves alone, which the walk does not
                    // send.)
                    Resynced::Stale | Resynced::Taken | Resynced::MovedBefore(_) => {
                        if matches!(copy.dirty, Some(Dirty::Written { .. })) {
                            tier.count_replay_conflict();
                        }
                        self.give_way(tier, &place, copy, None, false);
                    }
                    Resynced::Restored(version) => {
                        tier.count_restored();
                        self.give_way(tier, &place, copy, Some(version), true);
                    }
                    Resynced::Rewritten(version) => {
                        tier.count_restored();
                        self.give_way(tier, &place, copy, Some(version), false);
                    }
                    Resynced::Unknown => {
                        checked = false;
                        if let Some(dirty) = copy.dirty {
                            tier.restore_dirty(&copy.id, dirty);
                        }
                    }
                }
            }
            // A copy that could not be checked keeps its stripe unverified, and the copies not
            // sent keep what they have to write back, for the next try.
            if !checked || tier.generation() != generation {
                let _pass = crate::fork::enter();
                for copy in unsent.flatten() {
                    if let Some(dirty) = copy.dirty {
                        tier.restore_dirty(&copy.id, dirty);
                    }
                }
                return PassOutcome::Failed;
            }
        }
        let _pass = crate::fork::enter();
        let _stripe = shard.state.write();
        if tier.generation() != generation || !tier.is_up() {
            return PassOutcome::Failed;
        }
        // A change made here as the link came back may have missed the snapshot: checked again.
        if !shard.local_changes.none_since(local_changes) || left_to_a_move {
            return PassOutcome::ChangedMeanwhile;
        }
        shard.verified.store(generation, SeqCst);
        PassOutcome::Done
    }
}

impl Sink for Inner {
    fn invalidate(&self, key: &KeyHash) -> Option<Suspect> {
        self.invalidate_copies(key, None)
    }

    fn gone_from_redis(&self, key: &KeyHash, generation: u64) {
        let shard = &self.shards[(key.placement().1 as usize) & self.shard_mask];
        if shard.verified.load(SeqCst) == generation {
            let _ = self.invalidate_copies(key, None);
        }
    }

    fn forget_unverified(&self, generation: Option<u64>) {
        for shard in self.shards.iter() {
            if generation != Some(shard.verified.load(SeqCst)) {
                self.clear_stripe(shard, Cause::Invalidated);
            }
        }
    }

    fn confirm(&self, suspect: &Suspect) {
        let (hash, stripe_bits) = suspect.hash.placement();
        let place = Place {
            key: suspect.hash,
            hash,
            shard: (stripe_bits as usize) & self.shard_mask,
        };
        let shard = &self.shards[place.shard];
        let mut stripe = shard.state.write();
        if let Some(index) = stripe.find(place.hash, &suspect.id) {
            // Still the version and owner Redis confirmed, and no invalidation named it since
            // the mark.
            if stripe.block(index).version() == suspect.version
                && stripe.owner(index) == suspect.owner.as_deref()
                && stripe.record(index).marks() == suspect.marks
            {
                stripe.set_flags(index, SUSPECT, false);
            }
        }
    }

    fn resync(&self, generation: u64, redis_lost_data: bool) -> PassOutcome {
        let tier = self.tier();
        let _one_pass = tier.resync_pass();
        // First, in the order made: the regenerates, each written back only if Redis still
        // holds what it moved, and the log-outs everywhere. Before this process's destroys
        // are replayed, which would take a moved session away, and before any copy is
        // written back, which a log-out everywhere would take for a session of before it.
        let journal = self.replay_journal(tier, redis_lost_data);
        if journal != PassOutcome::Done {
            return journal;
        }
        // Destroys made while down whose copies are gone (revoked moves' targets included).
        let taken = {
            let _pass = crate::fork::enter();
            tier.take_destroyed()
        };
        let destroyed: Vec<CopyState> = taken
            .into_iter()
            .map(|id| CopyState {
                hash: KeyHash::of(&id),
                id,
                session: Loaded::default(),
                dirty: Some(Dirty::Destroyed),
                suspect: false,
                moved_from: None,
            })
            .collect();
        let mut batches = destroyed.chunks(crate::tier::RESYNC_BATCH);
        while let Some(batch) = batches.next() {
            let _pass = crate::fork::enter();
            if tier
                .resync(batch, redis_lost_data)
                .contains(&Resynced::Unknown)
            {
                // This batch and the ones not sent are destroyed on the next try.
                for copy in batch.iter().chain(batches.flatten()) {
                    tier.restore_dirty(&copy.id, Dirty::Destroyed);
                }
                return PassOutcome::Failed;
            }
            for copy in batch {
                tier.landed(&copy.id);
            }
        }
        // Every stripe, past one changed as it was checked: the next pass checks only those
        // left unverified.
        let mut walked = PassOutcome::Done;
        for shard_index in 0..self.shards.len() {
            match self.resync_stripe(tier, shard_index, generation, redis_lost_data) {
                PassOutcome::Done => {}
                PassOutcome::ChangedMeanwhile => walked = PassOutcome::ChangedMeanwhile,
                PassOutcome::Failed => return PassOutcome::Failed,
            }
        }
        // Locks are taken inside the fork gate: a fork must not catch this thread holding one.
        let unreplayed = || {
            let _pass = crate::fork::enter();
            tier.has_unreplayed()
        };
        {
            // A write noted for a copy gone since (evicted, expired) has nothing to write back.
            let _pass = crate::fork::enter();
            tier.forget_writes_without_copies(|id| self.has_live_copy(id));
        }
        if walked != PassOutcome::Done || unreplayed() {
            return PassOutcome::ChangedMeanwhile;
        }
        if !tier.mark_resynced(generation) {
            // The link moved on: its own resync takes over.
            return PassOutcome::Failed;
        }
        // From the mark no call is made locally; one that began before it may still note a
        // change: waited for, and then another pass if it did, or if it unverified a stripe.
        // (One that decided before the mark and notes its change after this check starts
        // another resync itself: see `Tier::note_dirty`.)
        if !self.wait_for_local_changes() {
            tier.unmark_resynced();
            return PassOutcome::Failed;
        }
        if unreplayed()
            || self
                .shards
                .iter()
                .any(|s| s.verified.load(SeqCst) != generation)
        {
            tier.unmark_resynced();
            return PassOutcome::ChangedMeanwhile;
        }
        PassOutcome::Done
    }
}

/// The journal's moves by the id each moved from, in the order they were made.
struct Chains<'a> {
    from: HashMap<&'a str, Vec<&'a Move>>,
    count: usize,
}

impl<'a> Chains<'a> {
    fn of(moves: &[&'a Move]) -> Self {
        let mut from: HashMap<&'a str, Vec<&'a Move>> = HashMap::new();
        for &m in moves {
            from.entry(m.from.as_str()).or_default().push(m);
        }
        Self {
            from,
            count: moves.len(),
        }
    }

    /// Where the session at `id` ended up: the ids each move took it to, from the first that
    /// moved it, through each later one made from where it arrived before that was replayed.
    fn from(&self, id: &str) -> Vec<&'a str> {
        let mut chain: Vec<&'a str> = Vec::new();
        let mut at = id;
        while let Some(next) = self.from.get(at).and_then(|moves| {
            moves
                .iter()
                .find(|m| chain.is_empty() || (m.from_made_here && !m.from_remade))
        }) {
            at = &next.to;
            chain.push(&next.to);
            // Ids are never reused by a move, but a bound costs nothing.
            if chain.len() > self.count {
                break;
            }
        }
        chain
    }
}

/// The copy at `index` as a resync checks it, taking what it has to replay (put back if no
/// answer comes; the session stays pending meanwhile: see `tier::pending`).
fn copy_state(stripe: &Stripe, index: u32, now: u64, tier: &Tier) -> CopyState {
    let block = stripe.block(index);
    let record = stripe.record(index);
    let id = block.id_str().to_string();
    let ttl_ms = record.deadline().saturating_sub(now).max(1);
    CopyState {
        hash: KeyHash::of(&id),
        dirty: tier.take_dirty(&id),
        suspect: record.flags() & SUSPECT != 0,
        id,
        session: Loaded {
            value: block.value().to_vec(),
            version: block.version(),
            ttl_ms,
            // RESYNC gives the key its step past the deadline.
            key_ttl_ms: ttl_ms,
            idle_ms: record.ttl_ms(),
            absolute_in_ms: block.absolute().map(|a| a.saturating_sub(now).max(1)),
            owner: stripe.owner(index).map(str::to_string),
        },
        moved_from: None,
    }
}

/// The copy at `index`, just marked suspect, as its revalidation names it: counts the mark.
fn suspect_copy(stripe: &mut Stripe, index: u32, key: KeyHash) -> Suspect {
    Suspect {
        hash: key,
        id: stripe.block(index).id_str().to_string(),
        version: stripe.block(index).version(),
        owner: stripe.owner(index).map(Box::from),
        marks: stripe.bump_marks(index),
    }
}
