//! The public session store: [`Store`], its builder, and the types its methods return.
//!
//! How it is built, one invariant per module:
//! - `block`: a session's id and value in one allocation behind a thin pointer (the only
//!   `unsafe` of the store);
//! - `record`: a session's fixed-size bookkeeping, deadline and eviction bits in one atomic word;
//! - `stripe`: one lock stripe's slab, index, owners and versions, kept in step;
//! - `wheel`: the expiry structure linked through the records;
//! - `stripe::eviction`: who makes room, from bits in the records and hands over the slab;
//! - `ops`: every operation, and the one path each kind of change goes through;
//! - `budget`: the store-wide session and byte totals and making room under them;
//! - `changes`: the change stream and its delivery;
//! - `sweeper`: the background thread; `invariants`: the checker the tests run.

mod block;
mod budget;
mod changes;
mod invariants;
mod local_changes;
mod near;
mod ops;
mod owners;
mod persisted;
mod record;
mod stripe;
mod sweeper;
mod tickets;
mod wheel;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use hashbrown::DefaultHashBuilder;
use parking_lot::{Mutex, RwLock};

use crate::clock::{Clock, MonotonicClock, duration_to_ms, lifetime_ms};
use crate::config::{Config, Eviction};
use crate::error::{Error, Result};
use crate::id::validate_id;
use crate::signing::Signer;

use changes::Listener;
pub(crate) use changes::Previous;
pub use changes::{Cause, Change, ChangeKind};
pub use owners::MAX_OWNER_LEN;
use owners::OwnerIndex;
pub use stripe::ENTRY_OVERHEAD_BYTES;
use stripe::Stripe;

/// A handle to a session store. Cloning is cheap and every clone shares the same table; the
/// background threads (the sweeper, the restart log's, the Redis link's) stop when the last
/// clone is dropped, and it waits for them.
///
/// # Concurrency
/// Every method may be called from any number of threads at once. Reads take a shared stripe
/// lock; writes take one stripe's exclusive lock (two for [`regenerate`](Store::regenerate),
/// in a fixed order). Each lock hold does a bounded amount of work; values are copied in and
/// freed outside the locks. No method returns while holding a lock.
///
/// # Fork
/// A store keeps working in a child made by `fork()`: the fork waits until no thread is inside
/// any store, and the child starts its own sweeper thread on its first call. (A listener that
/// never returns keeps a fork waiting.)
#[derive(Clone)]
pub struct Store {
    // Declared first so it is dropped first: the last handle joins the sweeper thread, then
    // frees the table on the caller's thread.
    sweeper: Option<Arc<sweeper::Sweeper>>,
    /// The restart log's thread, which the last handle (or `close`) stops and joins...
    log_thread: Option<Arc<persisted::LogThread>>,
    /// ...and the shared tier's threads (held, not read: `close` goes through the tier).
    _tier_closer: Option<Arc<crate::tier::Closer>>,
    inner: Arc<Inner>,
}

/// A copy of a session and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// Grows with every write and never repeats for an id within the store's lifetime, even
    /// across a destroy and a new session under the same id; see [`Store::set_if_version`].
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
    /// Sessions added (create, insert, or set of a new id).
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
    /// `set_if_version` and `insert` calls that lost to another writer.
    pub conflicts: u64,
    /// The shared tier's state and counters, if the store has one.
    pub tier: Option<crate::tier::TierStats>,
    /// The restart log's counters, if the store has `persist_path`.
    pub log: Option<crate::persist::LogStats>,
}

/// Per-stripe counters, kept beside each stripe so readers of different stripes never write
/// one cache line. `hits` and `misses` move under the shared lock; the others only under the
/// exclusive one (see [`bump_locked`]).
#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    updates: AtomicU64,
    destroys: AtomicU64,
    expirations: AtomicU64,
    evicted_unread: AtomicU64,
    evicted_lru: AtomicU64,
    conflicts: AtomicU64,
}

/// Counts one, for counters that readers move under a shared lock (hits, misses).
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Counts one without a locked read-modify-write, for counters moved only under their
/// stripe's exclusive lock: that lock makes this thread their only writer.
fn bump_locked(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed) + 1, Relaxed);
}

// Aligned to two cache lines so neighbouring stripes' locks and counters never share one.
#[repr(align(128))]
struct Shard {
    state: RwLock<Stripe>,
    /// A time (ms) no later than the earliest deadline in the stripe; `u64::MAX` when empty.
    /// Writes lower it to the deadline they file; a sweep sets it to when the wheel's next
    /// slot falls due. Never later than the truth, so the sweeper and eviction may skip a
    /// stripe with nothing expired without locking it.
    next_due: AtomicU64,
    /// Held from just before the stripe lock is released until its changes are delivered, so
    /// the listener sees one stripe's changes in the order they were made. It guards the
    /// sequence number of the last change delivered (see [`Change`]'s `sequence`).
    delivery: Mutex<u64>,
    counters: Counters,
    /// On the shared tier: the link generation under which this stripe's copies were last
    /// checked against Redis; they are trusted only while it is the current one.
    verified: AtomicU64,
    /// On the shared tier: the invalidations of this stripe's copies, for fill tickets.
    invalidations: tickets::Invalidations,
    /// On the shared tier: changes made here while Redis was down, for the resync.
    local_changes: local_changes::LocalChanges,
}

impl Shard {
    /// On the shared tier: a change made here without Redis (the link down, or a session
    /// Redis does not hold yet) begins. The stripe is no longer verified, so the resync
    /// checks it (again) and writes the change back.
    fn begin_local_change(&self) -> local_changes::LocalChange<'_> {
        let change = self.local_changes.begin();
        self.unverify();
        change
    }

    /// Marks the stripe unverified. Under its lock: a resync marks it verified under the
    /// exclusive lock after checking that no local change began, so this comes either before
    /// that check (which then fails) or after the mark (which this undoes).
    fn unverify(&self) {
        let _stripe = self.state.read();
        self.verified.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// After filing a session with `deadline` (under the stripe's exclusive lock).
    fn note_deadline(&self, deadline: u64) {
        if deadline < self.next_due.load(Relaxed) {
            self.next_due.fetch_min(deadline, Relaxed);
        }
    }
}

/// Builds a [`Store`] with a clock or a change listener; [`Store::new`] is the short form.
///
/// ```
/// use coatcheck::{ChangeKind, Config, Store};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let store = Store::builder(Config::default())
///     .listener(Duration::from_secs(60), move |change| {
///         log.lock().unwrap().push((change.id.to_string(), change.version));
///     })
///     .build()?;
/// let id = store.create(b"{}", None)?;
/// assert_eq!(seen.lock().unwrap()[0].0, id);
/// # Ok::<(), coatcheck::Error>(())
/// ```
pub struct StoreBuilder {
    config: Config,
    clock: Box<dyn Clock>,
    listener: Option<Listener>,
}

impl StoreBuilder {
    /// Reads time from `clock` (e.g. a [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Calls `listener` with every change to the table: see [`Change`]. Reads and touches that
    /// move a deadline are reported when it crosses a multiple of `slide_slack` (at least 1 ms).
    ///
    /// # Concurrency
    /// The listener runs on the thread that made the change, after the stripe lock is released
    /// and while that stripe's delivery lock is held: changes to one session arrive in order.
    /// With `redis_url` that thread may be the Redis link thread (an invalidation, or a
    /// [`set_then`](Store::set_then) answer), which a slow listener holds up for every call.
    /// It must be quick and must not call the store (that could deadlock).
    pub fn listener(
        mut self,
        slide_slack: Duration,
        listener: impl Fn(&Change<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Listener {
            callback: Arc::new(listener),
            slide_slack_ms: duration_to_ms(slide_slack).max(1),
        });
        self
    }

    /// Builds the store and starts its sweeper.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an out-of-range setting, or if the sweeper thread cannot be
    /// started.
    pub fn build(self) -> Result<Store> {
        let config = self.config;
        config.validate()?;
        let shard_count = config.shard_count();
        let signer = if config.secrets.is_empty() {
            None
        } else {
            Some(Signer::new(&config.secrets)?)
        };
        let tier = crate::tier::Settings::from_config(&config)?
            .map(|(settings, keys)| crate::tier::Tier::new(settings, keys));
        let (log, found) = match &config.persist_path {
            Some(path) => {
                let (log, found) = crate::persist::Log::open(
                    path,
                    config.persist_fsync,
                    config.idle_timeout,
                    self.clock.now_ms(),
                )?;
                (Some(Arc::new(log)), Some(found))
            }
            None => (None, None),
        };
        let listener = changes::with_log(self.listener, log.clone());
        let inner = Arc::new(Inner {
            shards: (0..shard_count)
                .map(|_| Shard {
                    state: RwLock::new(Stripe::new()),
                    next_due: AtomicU64::new(u64::MAX),
                    delivery: Mutex::new(0),
                    counters: Counters::default(),
                    verified: AtomicU64::new(0),
                    invalidations: tickets::Invalidations::default(),
                    local_changes: local_changes::LocalChanges::default(),
                })
                .collect(),
            shard_mask: shard_count - 1,
            hasher: DefaultHashBuilder::default(),
            clock: self.clock,
            idle_ttl_ms: lifetime_ms(config.idle_timeout),
            absolute_ttl_ms: config.absolute_timeout.map(lifetime_ms),
            slide_on_read: config.slide_on_read,
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
            trim: Mutex::new(budget::TrimState::default()),
            listener,
            tier,
            log,
        });
        if let Some(tier) = &inner.tier {
            let sink: std::sync::Weak<dyn crate::tier::Sink> = Arc::downgrade(&inner) as _;
            tier.start(sink)?;
        }
        let log_thread = match (&inner.log, found) {
            (Some(log), Some(found)) => {
                // Appends go to a new log file; the files read become one snapshot in the
                // background, off the start-up path. The new file comes first: a budget lowered
                // since the files were written evicts while they load, and those evictions must
                // be logged, or a crash before that snapshot would bring the sessions back.
                log.rotate().map_err(|e| {
                    Error::InvalidConfig(format!(
                        "persist_path: cannot create a log file in {}: {e}",
                        config
                            .persist_path
                            .as_deref()
                            .unwrap_or(std::path::Path::new(""))
                            .display()
                    ))
                })?;
                inner.restore(log, found.image());
                let compact_first = found.any();
                drop(found);
                Some(Arc::new(
                    persisted::LogThread::spawn(&inner, compact_first).map_err(|e| {
                        Error::InvalidConfig(format!("could not start the log thread: {e}"))
                    })?,
                ))
            }
            _ => None,
        };
        let sweeper = if config.background_sweeper {
            Some(Arc::new(
                sweeper::Sweeper::spawn(&inner, config.sweep_interval).map_err(|e| {
                    Error::InvalidConfig(format!("could not start the sweeper thread: {e}"))
                })?,
            ))
        } else {
            None
        };
        Ok(Store {
            sweeper,
            log_thread,
            _tier_closer: inner.tier.as_ref().map(|tier| Arc::new(tier.closer())),
            inner,
        })
    }
}

struct Inner {
    shards: Box<[Shard]>,
    shard_mask: usize,
    hasher: DefaultHashBuilder,
    clock: Box<dyn Clock>,
    idle_ttl_ms: u64,
    absolute_ttl_ms: Option<u64>,
    slide_on_read: bool,
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
    trim: Mutex<budget::TrimState>,
    listener: Option<Listener>,
    /// The shared tier, if `redis_url` is set: the table is then its near cache.
    tier: Option<crate::tier::Tier>,
    /// The restart log, if `persist_path` is set; the listener appends every change to it.
    log: Option<Arc<crate::persist::Log>>,
}

impl Store {
    /// Builds a store on the real monotonic clock and starts its sweeper.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an out-of-range setting.
    pub fn new(config: Config) -> Result<Self> {
        Self::builder(config).build()
    }

    /// Builds a store that reads time from `clock`, e.g. a [`ManualClock`](crate::ManualClock)
    /// in tests.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an out-of-range setting, or if the sweeper thread cannot be
    /// started.
    pub fn with_clock(config: Config, clock: impl Clock) -> Result<Self> {
        Self::builder(config).clock(clock).build()
    }

    /// A builder, for a clock or a change listener.
    pub fn builder(config: Config) -> StoreBuilder {
        StoreBuilder {
            config,
            clock: Box::new(MonotonicClock::new()),
            listener: None,
        }
    }

    /// Enters the fork gate for the length of one public call (see `crate::fork`), after
    /// making sure a forked child has its own sweeper.
    fn inner(&self) -> Entered<'_> {
        let pass = crate::fork::enter();
        if let Some(sweeper) = &self.sweeper {
            sweeper.restart_after_fork(&self.inner);
        }
        if let Some(tier) = &self.inner.tier {
            tier.adopt_after_fork();
        }
        Entered {
            inner: &self.inner,
            _pass: pass,
        }
    }

    /// [`inner`](Store::inner) for a call that changes sessions: refused while the restart log
    /// cannot record the change (a failing disk, or a child forked from the log's owner).
    fn writing(&self) -> Result<Entered<'_>> {
        let entered = self.inner();
        if let Some(log) = &entered.log {
            log.writable()?;
        }
        Ok(entered)
    }

    /// Runs `op`, a call that changes sessions, through [`writing`](Store::writing); then, with
    /// a restart log, [`Error::Unavailable`] if the log failed to record a change `op` made
    /// (made in memory all the same): a change is logged before its call returns, or the call
    /// says it was not.
    fn write<T>(&self, op: impl FnOnce(&Inner) -> Result<T>) -> Result<T> {
        let entered = self.inner();
        let Some(log) = &entered.log else {
            return op(&entered);
        };
        // Counted until logged: `close` waits for it before its final snapshot.
        let _writing = log.begin_write()?;
        let failed_before = crate::persist::failed_appends_on_this_thread();
        let result = op(&entered);
        match log.unrecorded(failed_before) {
            Some(unrecorded) => Err(unrecorded),
            None => result,
        }
    }

    /// The idle timeout of sessions stored without a TTL of their own.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.idle_ttl_ms)
    }

    /// The absolute timeout, if the store has one.
    pub fn absolute_timeout(&self) -> Option<Duration> {
        self.inner.absolute_ttl_ms.map(Duration::from_millis)
    }

    /// Stores `value` under a new id and returns the id: 24 CSPRNG bytes as 32 base64url
    /// characters. The id is always generated here and never collides with a live session.
    ///
    /// `ttl` replaces the idle timeout for this session.
    ///
    /// # Errors
    /// [`Error::TooLarge`], [`Error::StoreFull`], [`Error::InvalidArgument`] for a `ttl` below
    /// 1 ms.
    pub fn create(&self, value: &[u8], ttl: Option<Duration>) -> Result<String> {
        self.write(|inner| inner.create(value, ttl))
    }

    /// Stores `value` under `id` only if no live session has that id (an expired one is
    /// replaced). For callers that choose ids themselves and must never overwrite. Returns the
    /// new session's version.
    ///
    /// # Errors
    /// [`Error::Conflict`] if a live session has the id, and the errors of [`set`](Store::set).
    /// On error nothing changed, but for an [`Error::Unavailable`] that says the restart log
    /// could not record the change (made in memory only).
    pub fn insert(&self, id: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64> {
        self.write(|inner| inner.put(id, value, ttl, ops::Precondition::Absent))
    }

    /// The value of a live session, sliding its idle deadline (unless
    /// [`Config::slide_on_read`] is off). `None` if it does not exist or
    /// has expired.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for a malformed id.
    pub fn get(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.inner().lookup(id, true, |view| view.value.to_vec())
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
        self.inner().lookup(id, true, f)
    }

    /// [`get_with`](Store::get_with) for a caller that must not wait, such as an event loop:
    /// `done` gets what `read` made of the session. Without `redis_url`, from a trusted local
    /// copy, or while Redis is down, both run before this returns; otherwise the read is sent
    /// and both run on the Redis link thread when Redis answers or `redis_timeout` passes (a
    /// second round trip, rarely, if the copy Redis called current was dropped meanwhile).
    /// This never spins waiting for the link to apply what it received: while it has replies
    /// or invalidations pending, a local copy is read once the link thread has handled them
    /// (then `read` and `done` run there, with no round trip). `read` and `done` must be short
    /// and must not call the store.
    pub fn get_then<R: Send + 'static>(
        &self,
        id: String,
        read: impl FnOnce(SessionView<'_>) -> R + Send + 'static,
        done: impl FnOnce(Result<Option<R>>) + Send + 'static,
    ) {
        let entered = self.inner();
        if entered.tier.is_none() {
            let result = entered.read(&id, true, read);
            drop(entered);
            return done(result);
        }
        Inner::near_read_then(&self.inner, id, true, read, done);
        drop(entered);
    }

    /// [`get_with`](Store::get_with) if it can be answered without waiting on the network:
    /// always in a store of this process only; with `redis_url`, from a trusted local copy (or
    /// from the local table while Redis is down, under [`WhenRedisDown::ServeLocal`]). `None`:
    /// only Redis, or the link thread, can answer: the link has input or answers pending that
    /// may invalidate the copy (this does not wait for them); call
    /// [`get_then`](Store::get_then), or `get_with` where waiting is allowed.
    ///
    /// # Errors
    /// [`Error::InvalidId`] for a malformed id, [`Error::Unavailable`] while Redis is down
    /// under [`WhenRedisDown::Fail`].
    ///
    /// [`WhenRedisDown::ServeLocal`]: crate::WhenRedisDown::ServeLocal
    /// [`WhenRedisDown::Fail`]: crate::WhenRedisDown::Fail
    pub fn get_local_with<R>(
        &self,
        id: &str,
        f: impl FnOnce(SessionView<'_>) -> R,
    ) -> Result<Option<Option<R>>> {
        let inner = self.inner();
        if inner.tier.is_some() {
            inner.near_read_local_now(id, true, f)
        } else {
            inner.read(id, true, f).map(Some)
        }
    }

    /// A live session without sliding its deadline or marking it used: for adapters that
    /// manage expiry themselves.
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
        self.inner().lookup(id, false, f)
    }

    /// Writes `value` under `id`, creating the session if it does not exist (express-session
    /// calls this with ids it generated). Returns the new version. Resets the idle deadline;
    /// `ttl` replaces the idle timeout for this session.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::TooLarge`], [`Error::StoreFull`],
    /// [`Error::InvalidArgument`] for a `ttl` below 1 ms. On error nothing changed, but for an
    /// [`Error::Unavailable`] that says the restart log could not record the change (made in
    /// memory only).
    pub fn set(&self, id: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64> {
        self.write(|inner| inner.put(id, value, ttl, ops::Precondition::None))
    }

    /// [`set`](Store::set) only if the session exists and is live: never creates one. For
    /// writes through a token whose session may have expired or been destroyed meanwhile.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the session is gone, and the errors of [`set`](Store::set).
    /// On error nothing changed, but for an [`Error::Unavailable`] that says the restart log
    /// could not record the change (made in memory only).
    pub fn update(&self, id: &str, value: &[u8], ttl: Option<Duration>) -> Result<u64> {
        self.write(|inner| inner.put(id, value, ttl, ops::Precondition::Live))
    }

    /// [`set`](Store::set) only if the session still has version `expected`, so that two
    /// requests that read the same version cannot silently overwrite each other.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another write got there first, [`Error::NotFound`] if the
    /// session is gone, and the errors of [`set`](Store::set). On error nothing changed, but
    /// for an [`Error::Unavailable`] that says the restart log could not record the change
    /// (made in memory only).
    pub fn set_if_version(
        &self,
        id: &str,
        value: &[u8],
        expected: u64,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        self.write(|inner| inner.put(id, value, ttl, ops::Precondition::Version(expected)))
    }

    /// [`set`](Store::set) (`expected: None`) or [`set_if_version`](Store::set_if_version)
    /// for a caller that must not wait, such as an event loop: `done` gets the result. Without
    /// `redis_url`, or while Redis is down, the write is made here and `done` runs before this
    /// returns; otherwise the write is sent and `done` runs on the Redis link thread when Redis
    /// answers or `redis_timeout` passes. `done` must be short and must not call the store.
    pub fn set_then(
        &self,
        id: String,
        value: Vec<u8>,
        ttl: Option<Duration>,
        expected: Option<u64>,
        done: impl FnOnce(Result<u64>) + Send + 'static,
    ) {
        let precondition = expected.map_or(ops::Precondition::None, ops::Precondition::Version);
        if self.inner.tier.is_none() {
            return done(self.write(|inner| inner.put(&id, &value, ttl, precondition)));
        }
        let entered = match self.writing() {
            Ok(entered) => entered,
            Err(e) => return done(Err(e)),
        };
        Inner::near_write_then(&self.inner, id, value, ttl, precondition, done);
        drop(entered);
    }

    /// Slides a live session's idle deadline without touching its data (`ttl` replaces its idle
    /// timeout, which may move the deadline earlier). Returns whether the session was live.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::InvalidArgument`] for a `ttl` below 1 ms.
    pub fn touch(&self, id: &str, ttl: Option<Duration>) -> Result<bool> {
        let inner = self.inner();
        if inner.tier.is_some() {
            return inner.near_touch(id, ttl, None);
        }
        let _logged = self.timeout_change(ttl)?;
        inner.touch(id, ttl, None)
    }

    /// With a restart log, a touch that sets a timeout counts as a write for
    /// [`close`](Store::close): waited for, and refused after.
    fn timeout_change(&self, ttl: Option<Duration>) -> Result<Option<crate::persist::Writing<'_>>> {
        match (&self.inner.log, ttl) {
            (Some(log), Some(_)) => log.begin_timeout_change().map(Some),
            _ => Ok(None),
        }
    }

    /// [`touch`](Store::touch), skipped when the session was used less than `min_idle` ago
    /// (connect-mongo's `touchAfter`: fewer writes for sessions read on every request).
    /// Returns whether the session is live, touched or not.
    ///
    /// # Errors
    /// [`Error::InvalidId`], [`Error::InvalidArgument`] for a `ttl` below 1 ms.
    pub fn touch_if_idle(
        &self,
        id: &str,
        ttl: Option<Duration>,
        min_idle: Duration,
    ) -> Result<bool> {
        let inner = self.inner();
        let min_idle = Some(duration_to_ms(min_idle));
        if inner.tier.is_some() {
            return inner.near_touch(id, ttl, min_idle);
        }
        let _logged = self.timeout_change(ttl)?;
        inner.touch(id, ttl, min_idle)
    }

    /// [`touch_if_idle`](Store::touch_if_idle) (or [`touch`](Store::touch), without
    /// `min_idle`) if it can be done without waiting on the network, from a trusted local copy
    /// as [`get_local_with`](Store::get_local_with) reads one, except that this may yield the
    /// thread briefly (up to 64 times) for the link to apply what it has received. `None`:
    /// only Redis can tell whether the session is live; call `touch` where waiting is allowed.
    ///
    /// # Errors
    /// As [`touch`](Store::touch); [`Error::Unavailable`] while Redis is down under
    /// [`WhenRedisDown::Fail`](crate::WhenRedisDown::Fail).
    pub fn touch_local(
        &self,
        id: &str,
        ttl: Option<Duration>,
        min_idle: Option<Duration>,
    ) -> Result<Option<bool>> {
        let inner = self.inner();
        let min_idle = min_idle.map(duration_to_ms);
        if inner.tier.is_some() {
            return inner.near_touch_local(id, ttl, min_idle);
        }
        let _logged = self.timeout_change(ttl)?;
        inner.touch(id, ttl, min_idle).map(Some)
    }

    /// Removes a session. Returns whether a live session was removed.
    ///
    /// # Errors
    /// [`Error::InvalidId`].
    pub fn destroy(&self, id: &str) -> Result<bool> {
        self.write(|inner| {
            if inner.tier.is_some() {
                return inner.near_destroy(id);
            }
            inner.destroy(id)
        })
    }

    /// [`destroy`](Store::destroy) for a caller that must not wait, such as an event loop:
    /// `done` gets the result. Without `redis_url`, or while Redis is down, the destroy is made
    /// here and `done` runs before this returns; otherwise it is sent and `done` runs on the
    /// Redis link thread when Redis answers or `redis_timeout` passes. `done` must be short and
    /// must not call the store.
    pub fn destroy_then(&self, id: String, done: impl FnOnce(Result<bool>) + Send + 'static) {
        if self.inner.tier.is_none() {
            return done(self.write(|inner| inner.destroy(&id)));
        }
        let entered = match self.writing() {
            Ok(entered) => entered,
            Err(e) => return done(Err(e)),
        };
        Inner::near_destroy_then(&self.inner, id, done);
        drop(entered);
    }

    /// Moves a live session to a new id in one step: when this returns, the old id no longer
    /// exists and the new one holds the same data, owner and absolute deadline, at a higher
    /// version. Use it at login against session fixation. `None` if the session does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidId`].
    pub fn regenerate(&self, id: &str) -> Result<Option<String>> {
        self.write(|inner| {
            if inner.tier.is_some() {
                return inner.near_regenerate(id);
            }
            inner.regenerate(id)
        })
    }

    /// Files a live session under an owner key (e.g. a user id), or removes it from its owner
    /// with `None`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidId`], [`Error::InvalidArgument`] for an empty owner
    /// or one longer than [`MAX_OWNER_LEN`].
    pub fn set_owner(&self, id: &str, owner: Option<&str>) -> Result<()> {
        self.write(|inner| {
            if inner.tier.is_some() {
                return inner.near_set_owner(id, owner);
            }
            inner.set_owner(id, owner)
        })
    }

    /// Ids of the live sessions of `owner`, found through the owner index (no table scan).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed owner.
    pub fn sessions_of(&self, owner: &str) -> Result<Vec<String>> {
        validate_owner(owner)?;
        let inner = self.inner();
        if inner.tier.is_some() {
            if let Some(ids) = inner.near_sessions_of(owner)? {
                return Ok(ids);
            }
        }
        let mut ids = inner.owners.ids_of(owner);
        ids.retain(|id| matches!(inner.read(id, false, |_| ()), Ok(Some(()))));
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
        self.write(|inner| {
            if inner.tier.is_some() {
                if let Some(destroyed) = inner.near_destroy_owner(owner, keep)? {
                    return Ok(destroyed);
                }
            }
            let mut destroyed = 0;
            for id in inner.owners.ids_of(owner) {
                if Some(id.as_str()) == keep {
                    continue;
                }
                let gone = if inner.tier.is_some() {
                    inner.near_destroy(&id)?
                } else {
                    inner.destroy(&id)?
                };
                if gone {
                    destroyed += 1;
                }
            }
            Ok(destroyed)
        })
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
    ///
    /// With `redis_url`: every process's sessions, listed from Redis a SCAN step per round trip
    /// (sessions written meanwhile may be missed). Ids are kept there sealed with the first
    /// signing secret, so a store without secrets cannot list them; sessions sealed under a
    /// secret this store no longer has are left out (they still count in
    /// [`count`](Store::count)).
    ///
    /// # Errors
    /// With `redis_url`: [`Error::Unavailable`] if Redis cannot answer (whatever
    /// `redis_when_down` says: a list of this process's copies would pass for all of them), and
    /// [`Error::InvalidConfig`] in a store without secrets.
    pub fn ids(&self) -> Result<Vec<String>> {
        Ok(self
            .entries_with(false)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Every live session's id and value, read without sliding deadlines. With `redis_url`,
    /// as [`ids`](Store::ids) lists them.
    ///
    /// # Errors
    /// As [`ids`](Store::ids).
    pub fn entries(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.entries_with(true)
    }

    fn entries_with(&self, values: bool) -> Result<Vec<(String, Vec<u8>)>> {
        let inner = self.inner();
        if let Some(tier) = &inner.tier {
            if !tier.can_list() {
                return Err(Error::InvalidConfig(
                    "listing the sessions in Redis needs a secret: their ids are kept there \
                     sealed with it"
                        .into(),
                ));
            }
            let listed = tier.scan_sessions(values)?;
            return Ok(listed
                .into_iter()
                .filter_map(|(id, value)| Some((id?, value)))
                .collect());
        }
        let ids = inner.live_ids();
        if !values {
            return Ok(ids.into_iter().map(|id| (id, Vec::new())).collect());
        }
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let value = inner.read(&id, false, |s| s.value.to_vec()).ok()??;
                Some((id, value))
            })
            .collect())
    }

    /// How many live sessions there are. With `redis_url`: every process's, counted in Redis a
    /// SCAN step per round trip ([`len`](Store::len) is this process's table).
    ///
    /// # Errors
    /// With `redis_url`, [`Error::Unavailable`] if Redis cannot answer.
    pub fn count(&self) -> Result<usize> {
        let inner = self.inner();
        match &inner.tier {
            Some(tier) => Ok(tier.scan_sessions(false)?.len()),
            None => {
                let now = inner.now();
                Ok(inner
                    .shards
                    .iter()
                    .map(|shard| {
                        let stripe = shard.state.read();
                        stripe
                            .live_indices()
                            .filter(|&i| !stripe.record(i).is_expired(now))
                            .count()
                    })
                    .sum())
            }
        }
    }

    /// Removes every session, one stripe at a time. With `redis_url`: every process's, from
    /// Redis first (their copies elsewhere go with the invalidations), then this process's
    /// copies; sessions written meanwhile may survive.
    ///
    /// # Errors
    /// With `redis_url`, [`Error::Unavailable`] if Redis cannot answer (whatever
    /// `redis_when_down` says: a clear cannot be replayed later without removing sessions made
    /// after it). Sessions already removed from Redis stay removed. With `persist_path`,
    /// [`Error::Unavailable`] while the restart log cannot be written, as for every write: the
    /// removals could not be logged, and the sessions would come back after a restart.
    pub fn clear(&self) -> Result<()> {
        self.write(|inner| {
            if let Some(tier) = &inner.tier {
                if !tier.is_up() {
                    return Err(tier.unavailable());
                }
                tier.clear()?;
            }
            inner.clear();
            Ok(())
        })
    }

    /// Current size and counters.
    pub fn stats(&self) -> Stats {
        // Through the gate like every call: in a forked child this starts the child's own
        // Redis link, so `tier.connected` speaks of this process.
        let entered = self.inner();
        let s = &*entered;
        let mut stats = Stats {
            tier: s.tier.as_ref().map(crate::tier::Tier::stats),
            log: s.log.as_ref().map(|log| log.stats()),
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
        self.inner().sweep_all()
    }

    /// Compacts the restart log now, as the log thread does once the log has grown: the table
    /// is written into a new snapshot (one stripe lock at a time) and older files are removed.
    /// Does nothing without `persist_path`. For tests and for operators who want a small log
    /// before a backup.
    ///
    /// # Errors
    /// [`Error::Unavailable`] with the I/O error; the older files are then kept.
    pub fn compact_log(&self) -> Result<()> {
        let inner = self.inner();
        let result = inner.compact_log();
        if let Some(log) = &inner.log {
            log.note_compaction(&result);
        }
        result.map_err(|e| Error::Unavailable(format!("cannot compact the restart log: {e}")))
    }

    /// The store clock in ms, the scale of [`Change::deadline_ms`].
    pub fn clock_ms(&self) -> u64 {
        self.inner.now()
    }

    /// Checks every internal structure against the others and returns the first disagreement:
    /// each live session referenced exactly once by the index and the expiry wheel and by
    /// nothing else, nothing referenced that is not live, owner bits, the owner index and the
    /// counters equal to the sums over live sessions. Takes every stripe lock in turn; call it
    /// when no other thread is changing the store, the background sweeper included. For tests.
    ///
    /// # Errors
    /// A description of the first invariant that does not hold.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        self.inner().check_invariants()
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

impl Store {
    /// Stops the store's background work and gives back what it holds besides memory, for every
    /// clone at once: the sweeper thread, the Redis link (which first sends the touches it batched,
    /// if it is up, within `redis_timeout`), and the restart log, which takes no more changes, is
    /// compacted into one snapshot, and unlocks its directory, so that a new store may open it in
    /// this process (a test suite, a reload). The table stays readable. Dropping the last handle
    /// does the same; this is for when handles may outlive the store's use (a garbage-collected
    /// binding).
    ///
    /// After it, on a store with a restart log, calls that change sessions (and touches that set
    /// a timeout) fail with [`Error::Unavailable`]; deadlines that reads move are no longer
    /// logged. On Redis every call that needs Redis fails with it, reads included: no local
    /// copy is trusted once nothing invalidates it. Expired sessions are still never returned,
    /// and [`sweep`](Store::sweep) still reclaims them. Idempotent. Must not be called from a
    /// listener (it would wait for the write the listener is part of).
    ///
    /// # Errors
    /// [`Error::Unavailable`] if the final snapshot could not be written: the log files it would
    /// have replaced are kept, and a new store loads them all the same.
    pub fn close(&self) -> Result<()> {
        if let Some(tier) = &self.inner.tier {
            tier.close();
        }
        if let Some(sweeper) = &self.sweeper {
            sweeper.stop();
        }
        if let Some(log_thread) = &self.log_thread {
            log_thread.stop();
        }
        let Some(log) = &self.inner.log else {
            return Ok(());
        };
        log.stop_writes();
        // Inside the fork gate: release holds every segment's lock, which a child's stats
        // take.
        let _pass = crate::fork::enter();
        let compacted = self.inner.compact_log();
        log.note_compaction(&compacted);
        log.release();
        compacted.map_err(|e| {
            Error::Unavailable(format!("the final snapshot of the restart log failed: {e}"))
        })
    }

    /// Whether `self` and `other` are handles of the same store.
    pub fn same_store(&self, other: &Store) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The last handle of a store with a restart log (which has a log thread) closes it
        // cleanly: the log becomes one snapshot, so the next start reads it alone. (Not
        // closing costs only a longer load.) The last handle is told by the log thread's
        // count, which only handles hold: the table's own count includes the background
        // threads, which hold it a moment on each pass, so a drop in that moment skipped the
        // snapshot. A snapshot that fails is noted in the log's stats, as any compaction's.
        if self
            .log_thread
            .as_ref()
            .is_some_and(|log_thread| Arc::strong_count(log_thread) == 1)
        {
            let _ = self.close();
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

/// The store, borrowed for one public call with the fork gate held.
struct Entered<'a> {
    inner: &'a Inner,
    _pass: crate::fork::Pass,
}

impl std::ops::Deref for Entered<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        self.inner
    }
}

fn view(stripe: &Stripe, index: u32, now: u64) -> SessionView<'_> {
    let record = stripe.record(index);
    SessionView {
        value: stripe.block(index).value(),
        version: stripe.block(index).version(),
        expires_in: Duration::from_millis(record.deadline().saturating_sub(now)),
        owner: stripe.owner(index),
    }
}

fn ttl_ms(ttl: Option<Duration>) -> Result<Option<u64>> {
    match ttl {
        Some(t) if t.as_millis() == 0 => Err(Error::InvalidArgument("ttl must be at least 1 ms")),
        Some(t) => Ok(Some(lifetime_ms(t))),
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

impl Inner {
    /// The ids of the live sessions in this process's table.
    fn live_ids(&self) -> Vec<String> {
        let now = self.now();
        let mut ids = Vec::with_capacity(self.sessions.load(Relaxed));
        for shard in self.shards.iter() {
            let stripe = shard.state.read();
            ids.extend(
                stripe
                    .live_indices()
                    .filter(|&i| !stripe.record(i).is_expired(now))
                    .map(|i| stripe.block(i).id_str().to_string()),
            );
        }
        ids
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The 32-bit hash a record keeps, and the shard of `id`. The shard comes from the upper
    /// half of the hash, independent of the bits the stripe's index uses.
    fn locate(&self, id: &str) -> (u32, usize) {
        if self.tier.is_some() {
            return Inner::tier_locate(id, self.shard_mask);
        }
        let hash = self.hasher.hash_one(id.as_bytes());
        (hash as u32, ((hash >> 32) as usize) & self.shard_mask)
    }

    /// A read, from the near cache or Redis on the shared tier.
    fn lookup<R>(
        &self,
        id: &str,
        slide: bool,
        f: impl FnOnce(SessionView<'_>) -> R,
    ) -> Result<Option<R>> {
        if self.tier.is_some() {
            self.near_read(id, slide, f)
        } else {
            self.read(id, slide, f)
        }
    }

    /// A write, through to Redis on the shared tier.
    fn put(
        &self,
        id: &str,
        value: &[u8],
        ttl: Option<Duration>,
        precondition: ops::Precondition,
    ) -> Result<u64> {
        if self.tier.is_some() {
            self.near_write(id, value, ttl, precondition, false)
        } else {
            self.write(id, value, ttl, precondition)
        }
    }

    fn absolute_deadline(&self, now: u64) -> Option<u64> {
        self.absolute_ttl_ms.map(|ttl| now.saturating_add(ttl))
    }

    fn signer(&self) -> Result<&Signer> {
        self.signer
            .as_ref()
            .ok_or_else(|| Error::InvalidConfig("the store has no secrets to sign with".into()))
    }
}
