//! The session table: lock stripes, expiry, budgets, and every operation on sessions.
//!
//! Every mutation of the table goes through one method here, so a later tier (a shared Redis
//! tier, a persistence log) can wrap each operation in one place.

mod entry;
mod owners;
mod shard;
mod sweeper;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use hashbrown::DefaultHashBuilder;

use crate::clock::{Clock, MonotonicClock, duration_to_ms};
use crate::config::{Config, Eviction};
use crate::error::{Error, Result};
use crate::id::{generate_id, validate_id};
use crate::signing::Signer;
use crate::trim;

pub use entry::ENTRY_OVERHEAD_BYTES;
use entry::{Entry, cost_of};
pub use owners::MAX_OWNER_LEN;
use owners::OwnerIndex;
use shard::{Counters, QueueStep, Shard, ShardState};

/// Due wheel references processed per stripe lock hold by the background sweeper.
const SWEEP_BATCH: usize = 256;
/// Queue references examined per lock hold when eviction looks for a victim.
const EVICT_BATCH: usize = 64;
/// Stale queue references dropped per lock hold by the sweeper.
const COMPACT_BATCH: usize = 256;

/// A handle to a session store. Cloning is cheap and every clone shares the same table; the
/// background sweeper stops when the last clone is dropped.
///
/// # Concurrency
/// Every method may be called from any number of threads at once. Reads take a shared stripe
/// lock; writes take one stripe's exclusive lock (two for [`regenerate`](Store::regenerate),
/// in a fixed order). No method returns while holding a lock.
#[derive(Clone)]
pub struct Store {
    // Declared first so it is dropped first: the last handle joins the sweeper thread, then
    // frees the table on the caller's thread.
    _sweeper: Option<Arc<sweeper::Sweeper>>,
    inner: Arc<Inner>,
}

/// A copy of a session and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// Starts at 1 and grows by one on every write; see [`Store::set_if_version`].
    pub version: u64,
    /// Time left before the session expires (the earlier of its idle and absolute deadlines).
    pub expires_in: Duration,
    /// The owner key, if one was set with [`Store::set_owner`].
    pub owner: Option<String>,
}

/// A session lent to a closure, without copying the value.
#[derive(Debug, Clone, Copy)]
pub struct SessionView<'a> {
    /// The stored bytes.
    pub value: &'a [u8],
    /// See [`Session::version`].
    pub version: u64,
    /// See [`Session::expires_in`].
    pub expires_in: Duration,
    /// See [`Session::owner`].
    pub owner: Option<&'a str>,
}

impl SessionView<'_> {
    /// An owned copy.
    pub fn to_session(&self) -> Session {
        Session {
            value: self.value.to_vec(),
            version: self.version,
            expires_in: self.expires_in,
            owner: self.owner.map(str::to_string),
        }
    }
}

/// Counters since the store was built, and its current size.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sessions in the table, including expired ones the sweeper has not reclaimed yet.
    pub sessions: usize,
    /// Bytes charged against `max_bytes`.
    pub bytes: usize,
    /// Reads that found a live session.
    pub hits: u64,
    /// Reads that found nothing, or only an expired session.
    pub misses: u64,
    /// Sessions added (create, or set of a new id).
    pub inserts: u64,
    /// Writes to an existing session.
    pub updates: u64,
    /// Sessions removed by destroy (and by destroy-all-for-owner).
    pub destroys: u64,
    /// Sessions reclaimed because they expired.
    pub expirations: u64,
    /// Sessions evicted for room that had never been read since they were created.
    pub evicted_unread: u64,
    /// Sessions evicted for room as least recently used.
    pub evicted_lru: u64,
    /// Tokens that failed signature verification in [`Store::unsign`].
    pub signature_failures: u64,
    /// `set_if_version` calls that lost to another writer.
    pub conflicts: u64,
}

/// Why a session left the table; decides which counter moves.
#[derive(Clone, Copy)]
enum Removal {
    Destroyed,
    Expired,
    EvictedUnread,
    EvictedLru,
    /// Moved to a new id, or dropped by `clear`: no counter.
    Uncounted,
}

struct Inner {
    shards: Box<[Shard]>,
    shard_bits: u32,
    hasher: DefaultHashBuilder,
    clock: Box<dyn Clock>,
    idle_ttl_ms: u64,
    absolute_ttl_ms: Option<u64>,
    bucket_ms: u64,
    max_sessions: usize,
    max_bytes: usize,
    max_session_bytes: usize,
    eviction: Eviction,
    trim_after_freeing: Option<usize>,
    signer: Option<Signer>,
    sessions: AtomicUsize,
    bytes: AtomicUsize,
    signature_failures: AtomicU64,
    evict_cursor: AtomicUsize,
    owners: OwnerIndex,
    trim: parking_lot::Mutex<TrimState>,
}

impl Store {
    /// Builds a store on the real monotonic clock and starts its sweeper.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an out-of-range setting.
    pub fn new(config: Config) -> Result<Self> {
        Self::with_clock(config, MonotonicClock::new())
    }

    /// Builds a store that reads time from `clock`, e.g. a [`ManualClock`](crate::ManualClock)
    /// in tests.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an out-of-range setting, or if the sweeper thread cannot be
    /// started.
    pub fn with_clock(config: Config, clock: impl Clock) -> Result<Self> {
        config.validate()?;
        let shard_count = config.shard_count();
        let signer = if config.secrets.is_empty() {
            None
        } else {
            Some(Signer::new(&config.secrets)?)
        };
        let inner = Arc::new(Inner {
            shards: (0..shard_count).map(|_| Shard::new()).collect(),
            shard_bits: shard_count.trailing_zeros(),
            hasher: DefaultHashBuilder::default(),
            clock: Box::new(clock),
            idle_ttl_ms: duration_to_ms(config.idle_timeout),
            absolute_ttl_ms: config.absolute_timeout.map(duration_to_ms),
            bucket_ms: duration_to_ms(config.sweep_interval).max(1),
            max_sessions: config.max_sessions.unwrap_or(usize::MAX),
            max_bytes: config.max_bytes.unwrap_or(usize::MAX),
            max_session_bytes: config.max_session_bytes,
            eviction: config.eviction,
            trim_after_freeing: config.trim_after_freeing,
            signer,
            sessions: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            signature_failures: AtomicU64::new(0),
            evict_cursor: AtomicUsize::new(0),
            owners: OwnerIndex::new(shard_count),
            trim: parking_lot::Mutex::new(TrimState::default()),
        });
        let sweeper = if config.background_sweeper {
            let sweeper = sweeper::Sweeper::spawn(&inner, config.sweep_interval).map_err(|e| {
                Error::InvalidConfig(format!("could not start the sweeper thread: {e}"))
            })?;
            Some(Arc::new(sweeper))
        } else {
            None
        };
        Ok(Self {
            _sweeper: sweeper,
            inner,
        })
    }

    /// Stores `value` under a new id and returns the id: 24 CSPRNG bytes as 32 base64url
    /// characters. The id is always generated here and never collides with a live session.
    ///
    /// `ttl` replaces the idle timeout for this session.
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::StoreFull`], [`Error::InvalidArgument`] for a zero `ttl`.
    pub fn create(&self, value: &[u8], ttl: Option<Duration>) -> Result<String> {
        let s = &*self.inner;
        s.check_value(value)?;
        let ttl = ttl_ms(ttl)?;
        loop {
            let id = generate_id();
            let (hash, shard) = s.locate(&id);
            if s.has_budget() {
                s.make_room(1, s.fit(cost_of(id.len() + value.len(), 0))?, hash)?;
            }
            let now = s.now();
            {
                let mut state = shard.state.write();
                if state.find(hash, &id).is_some() {
                    continue; // 2^-192 odds, but the contract is "never collides"
                }
                let entry = Entry::new(
                    &id,
                    hash,
                    value,
                    now,
                    ttl.unwrap_or(s.idle_ttl_ms),
                    s.absolute_deadline(now),
                );
                s.insert(shard, &mut state, hash, entry);
                Counters::bump(&shard.counters.inserts);
            }
            s.settle_budget(hash);
            return Ok(id);
        }
    }

    /// The value of a live session, sliding its idle deadline. `None` if it does not exist or
    /// has expired.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for a malformed id.
    pub fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.inner.read(id, true, |e, _| e.value().to_vec())
    }

    /// Like [`get`](Store::get), with the version, time left and owner.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for a malformed id.
    pub fn get_session(&self, id: &str) -> Result<Option<Session>> {
        self.get_with(id, |view| view.to_session())
    }

    /// Like [`get`](Store::get), but lends the session to `f` instead of copying it.
    ///
    /// `f` runs under the stripe's shared lock: keep it short and do not call the store from it.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for a malformed id.
    pub fn get_with<R>(&self, id: &str, f: impl FnOnce(SessionView<'_>) -> R) -> Result<Option<R>> {
        self.inner.read(id, true, |e, now| f(view(e, now)))
    }

    /// A live session without sliding its deadline or marking it used.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for a malformed id.
    pub fn peek(&self, id: &str) -> Result<Option<Session>> {
        self.peek_with(id, |view| view.to_session())
    }

    /// [`peek`](Store::peek), lending the session to `f`; the same rules as
    /// [`get_with`](Store::get_with).
    ///
    /// # Errors
    /// [`Error::InvalidId`] for a malformed id.
    pub fn peek_with<R>(
        &self,
        id: &str,
        f: impl FnOnce(SessionView<'_>) -> R,
    ) -> Result<Option<R>> {
        self.inner.read(id, false, |e, now| f(view(e, now)))
    }

    /// Writes `value` under `id`, creating the session if it does not exist (express-session
    /// calls this with ids it generated). Returns the new version. Resets the idle deadline;
    /// `ttl` replaces the idle timeout for this session.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::TooLarge`], [`Error::StoreFull`],
    /// [`Error::InvalidArgument`] for a zero `ttl`. On error nothing changed.
    pub fn set(&self, id: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64> {
        self.inner.write(id, value, ttl, Precondition::None)
    }

    /// [`set`](Store::set) only if the session exists and is live: never creates one. For
    /// writes through a token whose session may have expired or been destroyed meanwhile.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the session is gone, and the errors of [`set`](Store::set).
    /// On error nothing changed.
    pub fn update(&self, id: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64> {
        self.inner.write(id, value, ttl, Precondition::Live)
    }

    /// [`set`](Store::set) only if the session still has version `expected`, so that two
    /// requests that read the same version cannot silently overwrite each other.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another write got there first, [`Error::NotFound`] if the
    /// session is gone, and the errors of [`set`](Store::set). On error nothing changed.
    pub fn set_if_version(
        &self,
        id: &str,
        value: &[u8],
        expected: u64,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        self.inner
            .write(id, value, ttl, Precondition::Version(expected))
    }

    /// Slides a live session's idle deadline without touching its data (`ttl` replaces its idle
    /// timeout). Returns whether the session was live.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::InvalidArgument`] for a zero `ttl`.
    pub fn touch(&self, id: &str, ttl: Option<Duration>) -> Result<bool> {
        let ttl = ttl_ms(ttl)?;
        Ok(self
            .inner
            .read(id, true, |e, now| e.mark_used(now, ttl))?
            .is_some())
    }

    /// [`touch`](Store::touch), skipped when the session was used less than `min_idle` ago
    /// (connect-mongo's `touchAfter`: fewer writes for sessions read on every request).
    /// Returns whether the session is live, touched or not.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::InvalidArgument`] for a zero `ttl`.
    pub fn touch_if_idle(
        &self,
        id: &str,
        ttl: Option<Duration>,
        min_idle: Duration,
    ) -> Result<bool> {
        let ttl = ttl_ms(ttl)?;
        let min_idle = duration_to_ms(min_idle);
        let touched = self.inner.read(id, false, |e, now| {
            if now.saturating_sub(e.last_access.load(Relaxed)) >= min_idle {
                e.mark_used(now, ttl);
            }
        })?;
        Ok(touched.is_some())
    }

    /// Removes a session. Returns whether a live session was removed.
    ///
    /// # Errors
    /// [`Error::InvalidId`].
    pub fn destroy(&self, id: &str) -> Result<bool> {
        self.inner.destroy(id)
    }

    /// Moves a live session to a new id in one step: when this returns, the old id no longer
    /// exists and the new one holds the same data, owner and absolute deadline. Use it at login
    /// against session fixation. `None` if the session does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidId`].
    pub fn regenerate(&self, id: &str) -> Result<Option<String>> {
        self.inner.regenerate(id)
    }

    /// Files a live session under an owner key (e.g. a user id), or removes it from its owner
    /// with `None`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidId`], [`Error::InvalidArgument`] for an empty owner
    /// or one longer than [`MAX_OWNER_LEN`].
    pub fn set_owner(&self, id: &str, owner: Option<&str>) -> Result<()> {
        self.inner.set_owner(id, owner)
    }

    /// Ids of the live sessions of `owner`, found through the owner index (no table scan).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed owner.
    pub fn sessions_of(&self, owner: &str) -> Result<Vec<String>> {
        validate_owner(owner)?;
        let mut ids = self.inner.owners.ids_of(owner);
        ids.retain(|id| matches!(self.inner.read(id, false, |_, _| ()), Ok(Some(()))));
        ids.sort_unstable();
        Ok(ids)
    }

    /// How many live sessions `owner` has.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed owner.
    pub fn count_of(&self, owner: &str) -> Result<usize> {
        Ok(self.sessions_of(owner)?.len())
    }

    /// Destroys every session of `owner` except `keep` ("log out everywhere else"). Returns how
    /// many were destroyed. Sessions filed under the owner while this runs may survive.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed owner, [`Error::InvalidId`] for a malformed
    /// `keep`.
    pub fn destroy_owner(&self, owner: &str, keep: Option<&str>) -> Result<usize> {
        validate_owner(owner)?;
        if let Some(keep) = keep {
            validate_id(keep)?;
        }
        let mut destroyed = 0;
        for id in self.inner.owners.ids_of(owner) {
            if Some(id.as_str()) != keep && self.inner.destroy(&id)? {
                destroyed += 1;
            }
        }
        Ok(destroyed)
    }

    /// Sessions in the table, in O(1). Expired sessions count until the sweeper reclaims
    /// them (within one `sweep_interval`); [`ids`](Store::ids) lists only live ones.
    pub fn len(&self) -> usize {
        self.inner.sessions.load(Relaxed)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of all live sessions, one stripe at a time (a snapshot, not atomic across stripes).
    pub fn ids(&self) -> Vec<String> {
        let now = self.inner.now();
        let mut ids = Vec::with_capacity(self.len());
        for shard in self.inner.shards.iter() {
            let state = shard.state.read();
            ids.extend(
                state
                    .table
                    .iter()
                    .filter(|e| !e.is_expired(now))
                    .map(|e| e.id().to_string()),
            );
        }
        ids
    }

    /// Removes every session, one stripe at a time.
    pub fn clear(&self) {
        self.inner.clear();
    }

    /// Current size and counters.
    pub fn stats(&self) -> Stats {
        let s = &*self.inner;
        let mut stats = Stats {
            sessions: s.sessions.load(Relaxed),
            bytes: s.bytes.load(Relaxed),
            signature_failures: s.signature_failures.load(Relaxed),
            ..Stats::default()
        };
        for shard in s.shards.iter() {
            let c = &shard.counters;
            stats.hits += c.hits.load(Relaxed);
            stats.misses += c.misses.load(Relaxed);
            stats.inserts += c.inserts.load(Relaxed);
            stats.updates += c.updates.load(Relaxed);
            stats.destroys += c.destroys.load(Relaxed);
            stats.expirations += c.expirations.load(Relaxed);
            stats.evicted_unread += c.evicted_unread.load(Relaxed);
            stats.evicted_lru += c.evicted_lru.load(Relaxed);
            stats.conflicts += c.conflicts.load(Relaxed);
        }
        stats
    }

    /// Runs one sweep pass now, as the background sweeper does every `sweep_interval`.
    /// Returns how many expired sessions were reclaimed.
    pub fn sweep(&self) -> usize {
        self.inner.sweep_all()
    }

    /// A token for `id`: `<id>.<signature>`, signed with the first secret.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the store has no secrets, [`Error::InvalidId`].
    pub fn sign(&self, id: &str) -> Result<String> {
        validate_id(id)?;
        Ok(self.inner.signer()?.sign(id))
    }

    /// The id inside a token, if its signature verifies under any secret. Failures are
    /// counted in [`Stats::signature_failures`].
    ///
    /// # Errors
    /// [`Error::BadSignature`], [`Error::InvalidConfig`] if the store has no secrets.
    pub fn unsign<'t>(&self, token: &'t str) -> Result<&'t str> {
        let signer = self.inner.signer()?;
        match signer.unsign(token) {
            Ok(id) if validate_id(id).is_ok() => Ok(id),
            _ => {
                self.inner.signature_failures.fetch_add(1, Relaxed);
                Err(Error::BadSignature)
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("shards", &self.inner.shards.len())
            .field("sessions", &self.len())
            .finish_non_exhaustive()
    }
}

fn view(e: &Entry, now: u64) -> SessionView<'_> {
    SessionView {
        value: e.value(),
        version: e.version,
        expires_in: Duration::from_millis(e.deadline().saturating_sub(now)),
        owner: e.owner.as_deref(),
    }
}

fn ttl_ms(ttl: Option<Duration>) -> Result<Option<u64>> {
    match ttl {
        Some(t) if t.as_millis() == 0 => Err(Error::InvalidArgument("ttl must be at least 1 ms")),
        Some(t) => Ok(Some(duration_to_ms(t))),
        None => Ok(None),
    }
}

fn validate_owner(owner: &str) -> Result<()> {
    if owner.is_empty() {
        return Err(Error::InvalidArgument("owner must not be empty"));
    }
    if owner.len() > MAX_OWNER_LEN {
        return Err(Error::InvalidArgument("owner is longer than 1024 bytes"));
    }
    Ok(())
}

/// When to hand freed memory back to the OS.
#[derive(Default)]
struct TrimState {
    /// Bytes the sweeper freed since the last trim.
    freed: usize,
    /// Most bytes the store held since the last trim (sampled at each sweep).
    peak: usize,
}

/// What must hold for a write to go ahead.
#[derive(Clone, Copy)]
enum Precondition {
    /// Nothing: insert or overwrite.
    None,
    /// The session exists and is live.
    Live,
    /// The session is live at this version.
    Version(u64),
}

/// What a lookup found before a write.
enum Found {
    Absent,
    Expired,
    Live { version: u64, cost: usize },
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn locate(&self, id: &str) -> (u64, &Shard) {
        let hash = self.hasher.hash_one(id.as_bytes());
        (hash, &self.shards[self.shard_index(hash)])
    }

    fn shard_index(&self, hash: u64) -> usize {
        // hashbrown keys its in-table tag on the top 7 bits; the stripe is chosen from the
        // bits just below them so the two stay independent (as dashmap does).
        if self.shard_bits == 0 {
            0
        } else {
            ((hash << 7) >> (64 - self.shard_bits)) as usize
        }
    }

    fn bucket_of(&self, deadline: u64) -> u64 {
        deadline.div_ceil(self.bucket_ms)
    }

    fn absolute_deadline(&self, now: u64) -> u64 {
        self.absolute_ttl_ms
            .map_or(u64::MAX, |ttl| now.saturating_add(ttl))
    }

    fn signer(&self) -> Result<&Signer> {
        self.signer
            .as_ref()
            .ok_or_else(|| Error::InvalidConfig("the store has no secrets to sign with".into()))
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_session_bytes {
            return Err(Error::TooLarge {
                size: value.len(),
                limit: self.max_session_bytes,
            });
        }
        Ok(())
    }

    fn has_budget(&self) -> bool {
        self.max_sessions != usize::MAX || self.max_bytes != usize::MAX
    }

    /// `cost` if a session that size could ever fit in `max_bytes`.
    fn fit(&self, cost: usize) -> Result<usize> {
        if cost > self.max_bytes {
            Err(Error::StoreFull)
        } else {
            Ok(cost)
        }
    }

    fn read<R>(
        &self,
        id: &str,
        refresh: bool,
        f: impl FnOnce(&Entry, u64) -> R,
    ) -> Result<Option<R>> {
        validate_id(id)?;
        let (hash, shard) = self.locate(id);
        let now = self.now();
        let state = shard.state.read();
        match state.find(hash, id) {
            Some(entry) if !entry.is_expired(now) => {
                if refresh {
                    entry.mark_used(now, None);
                }
                Counters::bump(&shard.counters.hits);
                Ok(Some(f(entry, now)))
            }
            _ => {
                Counters::bump(&shard.counters.misses);
                Ok(None)
            }
        }
    }

    fn write(
        &self,
        id: &str,
        value: &[u8],
        ttl: Option<Duration>,
        precondition: Precondition,
    ) -> Result<u64> {
        validate_id(id)?;
        self.check_value(value)?;
        let ttl = ttl_ms(ttl)?;
        let (hash, shard) = self.locate(id);
        if self.has_budget() {
            let now = self.now();
            let (extra_sessions, old_cost, owner_len) = match shard.state.read().find(hash, id) {
                Some(e) if !e.is_expired(now) => {
                    (0, e.cost(), e.owner.as_ref().map_or(0, |o| o.len()))
                }
                _ => (1, 0, 0),
            };
            let new_cost = self.fit(cost_of(id.len() + value.len(), owner_len))?;
            self.make_room(extra_sessions, new_cost.saturating_sub(old_cost), hash)?;
        }
        let now = self.now();
        let mut freed_value = None;
        let mut freed_entry = None;
        let version = {
            let mut guard = shard.state.write();
            let state = &mut *guard;
            let found = match state.find(hash, id) {
                None => Found::Absent,
                Some(e) if e.is_expired(now) => Found::Expired,
                Some(e) => Found::Live {
                    version: e.version,
                    cost: e.cost(),
                },
            };
            match (found, precondition) {
                (Found::Live { version, .. }, Precondition::Version(expected))
                    if version != expected =>
                {
                    Counters::bump(&shard.counters.conflicts);
                    return Err(Error::Conflict {
                        expected,
                        actual: version,
                    });
                }
                (Found::Live { cost: old_cost, .. }, _) => {
                    let Some(entry) = state.table.find_mut(hash, |e| e.is(hash, id)) else {
                        return Err(Error::NotFound);
                    };
                    freed_value = Some(entry.replace_value(value));
                    entry.version += 1;
                    entry.mark_used(now, ttl);
                    let new_cost = entry.cost();
                    self.bytes.fetch_add(new_cost, Relaxed);
                    self.bytes.fetch_sub(old_cost, Relaxed);
                    let version = entry.version;
                    // A shorter TTL moves the deadline earlier than where the wheel has it.
                    let bucket = self.bucket_of(entry.deadline());
                    if bucket < entry.filed_bucket {
                        entry.filed_bucket = bucket;
                        state.file(bucket, hash);
                        shard
                            .next_due
                            .fetch_min(bucket.saturating_mul(self.bucket_ms), Relaxed);
                    }
                    Counters::bump(&shard.counters.updates);
                    version
                }
                (_, Precondition::Live | Precondition::Version(_)) => {
                    return Err(Error::NotFound);
                }
                (found, Precondition::None) => {
                    if matches!(found, Found::Expired) {
                        if let Ok(slot) = state.table.find_entry(hash, |e| e.is(hash, id)) {
                            let (old, _) = slot.remove();
                            self.retire(shard, &old, Removal::Expired);
                            freed_entry = Some(old);
                        }
                    }
                    let entry = Entry::new(
                        id,
                        hash,
                        value,
                        now,
                        ttl.unwrap_or(self.idle_ttl_ms),
                        self.absolute_deadline(now),
                    );
                    self.insert(shard, state, hash, entry);
                    Counters::bump(&shard.counters.inserts);
                    1
                }
            }
        };
        drop((freed_value, freed_entry));
        self.settle_budget(hash);
        Ok(version)
    }

    fn destroy(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        let (hash, shard) = self.locate(id);
        let now = self.now();
        let removed = {
            let mut state = shard.state.write();
            match state.table.find_entry(hash, |e| e.is(hash, id)) {
                Ok(slot) => {
                    let (entry, _) = slot.remove();
                    let live = !entry.is_expired(now);
                    self.retire(
                        shard,
                        &entry,
                        if live {
                            Removal::Destroyed
                        } else {
                            Removal::Expired
                        },
                    );
                    Some((entry, live))
                }
                Err(_) => None,
            }
        };
        Ok(removed.is_some_and(|(_, live)| live))
    }

    fn regenerate(&self, id: &str) -> Result<Option<String>> {
        validate_id(id)?;
        let (old_hash, _) = self.locate(id);
        let old_index = self.shard_index(old_hash);
        loop {
            let new_id = generate_id();
            let (new_hash, _) = self.locate(&new_id);
            let new_index = self.shard_index(new_hash);
            let now = self.now();
            let outcome = if old_index == new_index {
                let mut state = self.shards[old_index].state.write();
                self.move_session(
                    old_index,
                    &mut state,
                    None,
                    (id, old_hash),
                    (&new_id, new_hash),
                    now,
                )
            } else {
                // Two stripes: always lock the lower index first, so regenerates cannot deadlock.
                let (low, high) = (old_index.min(new_index), old_index.max(new_index));
                let mut low_state = self.shards[low].state.write();
                let mut high_state = self.shards[high].state.write();
                let (src, dst) = if old_index == low {
                    (&mut *low_state, &mut *high_state)
                } else {
                    (&mut *high_state, &mut *low_state)
                };
                self.move_session(
                    old_index,
                    src,
                    Some((new_index, dst)),
                    (id, old_hash),
                    (&new_id, new_hash),
                    now,
                )
            };
            match outcome {
                Moved::Retry => continue,
                Moved::Missing(freed) => {
                    drop(freed);
                    return Ok(None);
                }
                Moved::Done(freed) => {
                    drop(freed);
                    return Ok(Some(new_id));
                }
            }
        }
    }

    fn move_session(
        &self,
        src_index: usize,
        src: &mut ShardState,
        dst: Option<(usize, &mut ShardState)>,
        (old_id, old_hash): (&str, u64),
        (new_id, new_hash): (&str, u64),
        now: u64,
    ) -> Moved {
        let src_shard = &self.shards[src_index];
        let collides = match &dst {
            Some((_, d)) => d.find(new_hash, new_id).is_some(),
            None => src.find(new_hash, new_id).is_some(),
        };
        if collides {
            return Moved::Retry;
        }
        let Ok(slot) = src.table.find_entry(old_hash, |e| e.is(old_hash, old_id)) else {
            Counters::bump(&src_shard.counters.misses);
            return Moved::Missing(None);
        };
        let (old, _) = slot.remove();
        if old.is_expired(now) {
            self.retire(src_shard, &old, Removal::Expired);
            Counters::bump(&src_shard.counters.misses);
            return Moved::Missing(Some(old));
        }
        let moved = old.moved_to(new_id, new_hash, now);
        self.retire(src_shard, &old, Removal::Uncounted);
        let (dst_shard, dst_state) = match dst {
            Some((index, state)) => (&self.shards[index], state),
            None => (src_shard, src),
        };
        self.insert(dst_shard, dst_state, new_hash, moved);
        Moved::Done(old)
    }

    fn set_owner(&self, id: &str, owner: Option<&str>) -> Result<()> {
        validate_id(id)?;
        if let Some(owner) = owner {
            validate_owner(owner)?;
        }
        let (hash, shard) = self.locate(id);
        let now = self.now();
        let mut state = shard.state.write();
        let entry = state
            .table
            .find_mut(hash, |e| e.is(hash, id))
            .filter(|e| !e.is_expired(now))
            .ok_or(Error::NotFound)?;
        let old_cost = entry.cost();
        if let Some(previous) = entry.owner.take() {
            self.owners.remove(&previous, id);
        }
        if let Some(owner) = owner {
            self.owners.add(owner, id);
            entry.owner = Some(owner.into());
        }
        self.bytes.fetch_add(entry.cost(), Relaxed);
        self.bytes.fetch_sub(old_cost, Relaxed);
        Ok(())
    }

    fn clear(&self) {
        for shard in self.shards.iter() {
            let table = {
                let mut state = shard.state.write();
                let state = &mut *state;
                state.wheel.clear();
                state.probation = Default::default();
                state.protected = Default::default();
                shard.next_due.store(u64::MAX, Relaxed);
                let table = std::mem::take(&mut state.table);
                for entry in table.iter() {
                    self.retire(shard, entry, Removal::Uncounted);
                }
                table
            };
            drop(table);
        }
    }

    /// Adds a session to a stripe: table, eviction queue, expiry wheel, owner index, totals.
    fn insert(&self, shard: &Shard, state: &mut ShardState, hash: u64, mut entry: Entry) {
        let bucket = self.bucket_of(entry.deadline());
        entry.filed_bucket = bucket;
        if entry.protected {
            state.protected.push_back(hash);
        } else {
            state.probation.push_back(hash);
        }
        self.sessions.fetch_add(1, Relaxed);
        self.bytes.fetch_add(entry.cost(), Relaxed);
        if let Some(owner) = &entry.owner {
            self.owners.add(owner, entry.id());
        }
        state.table.insert_unique(hash, Box::new(entry), |e| e.hash);
        state.file(bucket, hash);
        shard
            .next_due
            .fetch_min(bucket.saturating_mul(self.bucket_ms), Relaxed);
    }

    /// Books a session's removal from a stripe. Called under that stripe's lock; the caller
    /// drops the entry after unlocking.
    fn retire(&self, shard: &Shard, entry: &Entry, why: Removal) {
        self.sessions.fetch_sub(1, Relaxed);
        self.bytes.fetch_sub(entry.cost(), Relaxed);
        if let Some(owner) = &entry.owner {
            self.owners.remove(owner, entry.id());
        }
        let counter = match why {
            Removal::Destroyed => &shard.counters.destroys,
            Removal::Expired => &shard.counters.expirations,
            Removal::EvictedUnread => &shard.counters.evicted_unread,
            Removal::EvictedLru => &shard.counters.evicted_lru,
            Removal::Uncounted => return,
        };
        Counters::bump(counter);
    }

    /// Evicts until `extra_sessions` more sessions and `extra_bytes` more bytes fit.
    fn make_room(&self, extra_sessions: usize, extra_bytes: usize, exclude: u64) -> Result<()> {
        while self.sessions.load(Relaxed).saturating_add(extra_sessions) > self.max_sessions
            || self.bytes.load(Relaxed).saturating_add(extra_bytes) > self.max_bytes
        {
            if !self.evict_one(exclude) {
                return Err(Error::StoreFull);
            }
        }
        Ok(())
    }

    /// After a write: concurrent writers may each have made room for one session and together
    /// overshot; trim back to the budget without failing the write that already happened.
    fn settle_budget(&self, exclude: u64) {
        if self.has_budget() {
            let _ = self.make_room(0, 0, exclude);
        }
    }

    /// Removes one session to make room: an expired one if any stripe has one due, else one
    /// never read since creation, else the least recently used. Never the session `exclude`.
    fn evict_one(&self, exclude: u64) -> bool {
        let now = self.now();
        let n = self.shards.len();
        let start = self.evict_cursor.fetch_add(1, Relaxed);
        let mut freed = Vec::new();
        for i in 0..n {
            let shard = &self.shards[(start + i) & (n - 1)];
            if shard.next_due.load(Relaxed) <= now {
                self.sweep_step(shard, now, EVICT_BATCH, &mut freed);
                if !freed.is_empty() {
                    return true;
                }
            }
        }
        if self.eviction == Eviction::Refuse {
            return false;
        }
        for unread_tier in [true, false] {
            for i in 0..n {
                let shard = &self.shards[(start + i) & (n - 1)];
                loop {
                    let step = {
                        let mut state = shard.state.write();
                        let step = if unread_tier {
                            state.evict_unread(exclude, EVICT_BATCH)
                        } else {
                            state.evict_least_recent(exclude, EVICT_BATCH)
                        };
                        if let QueueStep::Evicted(entry) = &step {
                            let why = if entry.is_expired(now) {
                                Removal::Expired
                            } else if unread_tier {
                                Removal::EvictedUnread
                            } else {
                                Removal::EvictedLru
                            };
                            self.retire(shard, entry, why);
                        }
                        step
                    };
                    match step {
                        QueueStep::Evicted(_) => return true,
                        QueueStep::Continue => continue,
                        QueueStep::Exhausted => break,
                    }
                }
            }
        }
        false
    }

    /// Reclaims up to `budget` due wheel references of one stripe under one lock hold, pushing
    /// the removed sessions to `freed` so they are dropped after the lock is released. Returns
    /// whether more are due.
    #[expect(
        clippy::vec_box,
        reason = "entries leave the table boxed; unboxing would copy them"
    )]
    fn sweep_step(
        &self,
        shard: &Shard,
        now: u64,
        budget: usize,
        freed: &mut Vec<Box<Entry>>,
    ) -> bool {
        let mut guard = shard.state.write();
        let state = &mut *guard;
        let mut work = 0;
        while work < budget {
            let Some(bucket) = state.next_due_bucket() else {
                break;
            };
            if bucket.saturating_mul(self.bucket_ms) > now {
                break;
            }
            let Some((_, mut hashes)) = state.wheel.pop_first() else {
                break;
            };
            if hashes.len() > budget - work {
                let rest = hashes.split_off(budget - work);
                state.wheel.insert(bucket, rest);
            }
            work += hashes.len();
            for hash in hashes {
                while let Ok(slot) = state
                    .table
                    .find_entry(hash, |e| e.hash == hash && e.is_expired(now))
                {
                    let (entry, _) = slot.remove();
                    self.retire(shard, &entry, Removal::Expired);
                    freed.push(entry);
                }
                // Still live (a read slid its deadline): file it again where it now falls due.
                // References left behind by a shortened deadline are simply dropped.
                while let Some(entry) = state
                    .table
                    .find_mut(hash, |e| e.hash == hash && e.filed_bucket == bucket)
                {
                    let next = self.bucket_of(entry.deadline());
                    entry.filed_bucket = next;
                    state.wheel.entry(next).or_default().push(hash);
                }
            }
        }
        let next_due = state
            .next_due_bucket()
            .map_or(u64::MAX, |b| b.saturating_mul(self.bucket_ms));
        shard.next_due.store(next_due, Relaxed);
        next_due <= now
    }

    /// One pass of the sweeper over every stripe, each lock hold bounded.
    fn sweep_all(&self) -> usize {
        let now = self.now();
        let mut reclaimed = 0;
        let mut freed_bytes = 0;
        let mut freed = Vec::new();
        for shard in self.shards.iter() {
            let mut reclaimed_here = 0;
            if shard.next_due.load(Relaxed) <= now {
                loop {
                    let more = self.sweep_step(shard, now, SWEEP_BATCH, &mut freed);
                    reclaimed_here += freed.len();
                    freed_bytes += freed.iter().map(|e| e.cost()).sum::<usize>();
                    freed.clear(); // values are freed here, outside the lock
                    if !more {
                        break;
                    }
                }
            }
            while shard.state.write().compact_queues(COMPACT_BATCH) {}
            if reclaimed_here > 0 {
                shard.state.write().shrink_if_sparse();
            }
            reclaimed += reclaimed_here;
        }
        self.maybe_trim(freed_bytes);
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
        let mut trim = self.trim.lock();
        trim.freed += freed_now;
        trim.peak = trim.peak.max(live + freed_now);
        if trim.freed >= threshold && live <= trim.peak / 2 {
            trim.freed = 0;
            trim.peak = live;
            drop(trim);
            trim::release_free_memory();
        }
    }
}

enum Moved {
    Retry,
    Missing(Option<Box<Entry>>),
    Done(Box<Entry>),
}
