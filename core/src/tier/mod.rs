//! The shared tier: every write goes through to Redis before the call returns, and the local
//! table is a near cache that Redis client tracking keeps honest.
//!
//! One background thread per process runs a single-threaded tokio runtime that owns the one
//! RESP3 connection (data and invalidation pushes, `CLIENT TRACKING ON BCAST PREFIX <p>s:
//! NOLOOP`), a heartbeat, and the flusher of batched touches. Callers stay synchronous: a call
//! hands its request to that thread and waits for the reply at most `redis_timeout`; with the
//! link down it does not wait at all. This module owns the link and its state; what a reply
//! means for the local table is `store::near`'s business.
//!
//! The link's state is one generation number, bumped on every loss (a disconnect, a heartbeat
//! that went unanswered, three timeouts in a row, a flush-all). Local copies are verified per
//! stripe: a stripe's copies are trusted only while its verified generation is the current one,
//! so marking the whole near cache unverified is one increment. After a reconnect, a resync walk
//! checks each stripe's copies against Redis (writing back those a restarted Redis lost) and
//! then marks the stripe verified again.

mod keys;
mod pending;
mod scripts;
mod tls;
mod watched;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::SeqCst,
};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Script, Value,
};
use watched::Counted;

pub(crate) use keys::{KeyHash, Keys};
pub(crate) use watched::Since;

use crate::config::{Config, WhenRedisDown};
use crate::error::{Error, Result};
use crate::fork;

/// The longest a connection attempt may take; also the longest `Store::build`, and the calls a
/// forked child makes while its first connection is under way, wait for it. Either wait ends
/// as soon as the attempt fails: a refused connection or a refused password does not hold up a
/// start. (A child's calls are not cut to the operation timeout: a connection slower than that
/// but working would then leave them to the down policy, where a session this process holds
/// no copy of reads as missing, its user logged out.)
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A PING this often on an idle link...
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// ...and the link counts as lost when one goes unanswered this long: a dead link is noticed
/// within about 2.5 s even when no request comes.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// Consecutive request timeouts that count as a lost link.
const TIMEOUTS_FOR_LOSS: u32 = 3;
/// Batched touches are sent this often.
const TOUCH_FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between resync passes that calls overtook (see `PassOutcome`).
const MAX_CHANGED_PAUSE: Duration = Duration::from_millis(16);
/// How many times a read yields to the link thread (or, waiting on the link thread, looks
/// again) before it asks Redis instead.
const SETTLE_SPINS: u32 = 64;
/// Copies checked per round trip by the resync walk.
pub(crate) const RESYNC_BATCH: usize = 256;
/// Keys one SCAN step looks at (listing and clearing the sessions in Redis).
const SCAN_BATCH: usize = 128;
/// How long after Redis lost its data the processes may write back the sessions they hold
/// (see `scripts`): time for every process to reconnect (backoff at most `MAX_BACKOFF`) and
/// walk its copies. A process away longer drops its copies rather than risk bringing back a
/// session logged out meanwhile.
const RECOVERY_WINDOW: Duration = Duration::from_secs(60);

/// What the tier was configured with.
pub(crate) struct Settings {
    connection: redis::ConnectionInfo,
    /// For `rediss://`.
    tls: Option<tls::Tls>,
    timeout: Duration,
    pub(crate) when_down: WhenRedisDown,
    pub(crate) strict: bool,
    /// The store's absolute timeout (ms), which touches and regenerates give a session that
    /// has none yet (as writes do: see `WriteRequest::absolute_ttl_ms`).
    absolute_ttl_ms: Option<u64>,
}

/// The touch step of a session with this idle timeout (ms): a read tells Redis of the deadline
/// it slid only when that deadline crosses one of the session's touch points, one per step
/// (`TouchPoints`), so a session's Redis TTL moves at most once per step, and its key lives one
/// step past the deadline Redis was told (`key_ttl` in the scripts, whose `step` computes the
/// same).
///
/// A power of two, the largest at most a quarter of the timeout, and at most 65,536 ms: the
/// steps of two timeouts are then multiples of each other, so every touch point of the longer
/// one is a touch point of the shorter one. A touch that changes the timeout relies on that (see
/// `Inner::touch`), and a timeout restated a few ms shorter on each request (as
/// express-session does) keeps its step.
pub(crate) fn touch_step_ms(idle_ms: u64) -> u64 {
    let quarter = (idle_ms / 4).max(1);
    (1u64 << quarter.ilog2()).min(MAX_TOUCH_STEP_MS)
}

/// The longest touch step (ms).
const MAX_TOUCH_STEP_MS: u64 = 1 << 16;

/// A session's touch points: the deadlines (on this process's clock) whose crossing tells
/// Redis, one per `step`, shifted by an offset from the session's `hash` (the table's: on the
/// shared tier, bits of the id's `KeyHash`). Unshifted, every session of a process with one idle timeout would cross at
/// the same moment, once a step, and every process would then reload all of them at once (a
/// TTL move invalidates every copy). The offset is the hash modulo the step, so the points of a
/// step include those of every longer step, as `touch_step_ms` requires.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TouchPoints {
    step: u64,
    offset: u64,
}

impl TouchPoints {
    pub(crate) fn new(idle_ms: u64, hash: u32) -> Self {
        let step = touch_step_ms(idle_ms);
        Self {
            step,
            offset: u64::from(hash) & (step - 1),
        }
    }

    /// Which touch point `deadline` is in (the points before it).
    fn count(self, deadline: u64) -> u64 {
        deadline.saturating_add(self.offset) / self.step
    }

    /// Whether a deadline moved from `before` to `after` crossed a touch point.
    pub(crate) fn crossed(self, before: u64, after: u64) -> bool {
        self.count(after) > self.count(before)
    }

    /// The first touch point after `deadline`.
    pub(crate) fn next_after(self, deadline: u64) -> u64 {
        ((self.count(deadline) + 1) * self.step).saturating_sub(self.offset)
    }

    pub(crate) fn step(self) -> u64 {
        self.step
    }
}

/// Whether a touch that changes a session's idle timeout from `old_idle` to `new_idle` (ms)
/// moves its key in Redis now, its deadline having moved from `before` to `after` (store
/// clock); `hash` places its touch points. `Inner::touch` says why each case does, and why a
/// timeout restated a few ms apart does not.
pub(crate) fn timeout_change_moves_key(
    old_idle: u64,
    new_idle: u64,
    hash: u32,
    before: u64,
    after: u64,
) -> bool {
    let (old_points, new_points) = (
        TouchPoints::new(old_idle, hash),
        TouchPoints::new(new_idle, hash),
    );
    new_points.step() > old_points.step()
        || new_idle > old_idle.saturating_add(new_points.step() / 16)
        || new_points.crossed(before, after)
        || after.saturating_add(new_points.step()) < before
}

impl Settings {
    pub(crate) fn from_config(config: &Config) -> Result<Option<(Self, Keys)>> {
        let Some(url) = &config.redis_url else {
            return Ok(None);
        };
        let bad = |why: String| Error::InvalidConfig(why);
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(|e| bad(format!("redis_url is not a Redis URL ({e})")))?;
        let tls = match info.addr() {
            redis::ConnectionAddr::TcpTls { host, insecure, .. } => {
                Some(tls::Tls::new(host, *insecure)?)
            }
            _ => None,
        };
        let redis_settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let connection = info.set_redis_settings(redis_settings);
        Ok(Some((
            Self {
                connection,
                tls,
                timeout: config.redis_timeout,
                when_down: config.redis_when_down,
                strict: config.redis_strict,
                absolute_ttl_ms: config.absolute_timeout.map(crate::clock::lifetime_ms),
            },
            Keys::new(&config.redis_key_prefix, &config.secrets),
        )))
    }
}

/// What the near cache does with the link: implemented by the store.
pub(crate) trait Sink: Send + Sync {
    /// A write changed or removed this session (another process's, or this one's: Redis 7.0
    /// reports script writes even under NOLOOP): mark the local copy suspect. Returns the
    /// copy to revalidate, if there is one.
    fn invalidate(&self, hash: &KeyHash) -> Option<Suspect>;
    /// A touch found the session gone from Redis (expired there first): mark the local copy
    /// suspect, but only in a stripe already checked under link `generation`. A copy not yet
    /// checked is the resync's to judge: after Redis lost its data, its key is missing
    /// because it was not written back yet, and a suspect copy would be dropped instead.
    fn gone_from_redis(&self, hash: &KeyHash, generation: u64);
    /// Removes every copy in the stripes not verified under link `generation` (all of them
    /// with `None`): in a forked child, those may hold the parent's changes made while Redis
    /// was down, which are not this process's to vouch for.
    fn forget_unverified(&self, generation: Option<u64>);
    /// Redis still holds the suspect copy's version: trust it again, unless another
    /// invalidation came since.
    fn confirm(&self, suspect: &Suspect);
    /// The link is up at `generation`: check the local copies against Redis, then trust them.
    /// `redis_lost_data`: Redis no longer holds what it held before (restarted empty, or
    /// flushed), so copies missing there are written back rather than taken as revoked. Runs on
    /// a thread of its own and may call the tier. What was not replayed stays noted for the
    /// next pass.
    fn resync(&self, generation: u64, redis_lost_data: bool) -> PassOutcome;
}

/// How a resync pass ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PassOutcome {
    /// Every copy checked and every change made while down replayed.
    Done,
    /// Calls changed sessions here as the pass went (on pending sessions, or as the link came
    /// back): another pass soon (within `MAX_CHANGED_PAUSE`). Waiting longer would keep those
    /// sessions served here, and a logout among them visible elsewhere, for the length of the
    /// wait.
    ChangedMeanwhile,
    /// Redis did not answer, or answered with an error: another pass after a backoff.
    Failed,
}

/// A copy marked suspect by an invalidation, to be revalidated in the background.
#[derive(Clone, Debug)]
pub(crate) struct Suspect {
    pub(crate) hash: KeyHash,
    pub(crate) id: String,
    pub(crate) version: u64,
    /// The owner the copy names: a change of owner keeps the version.
    pub(crate) owner: Option<Box<str>>,
    /// The copy's invalidation count right after the mark.
    pub(crate) marks: u64,
}

/// A session as Redis holds it, with times relative to now.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) value: Vec<u8>,
    pub(crate) version: u64,
    /// Until its deadline, at the earliest (0: passed, unless a read elsewhere slid it): exact
    /// in the reply to a write, and up to a touch step early in a read's, since reads in other
    /// processes slide the deadline without telling Redis until it crosses a step.
    pub(crate) ttl_ms: u64,
    /// Until Redis expires its key.
    pub(crate) key_ttl_ms: u64,
    /// Its idle timeout.
    pub(crate) idle_ms: u64,
    /// Until its absolute deadline, if it has one.
    pub(crate) absolute_in_ms: Option<u64>,
    pub(crate) owner: Option<String>,
}

/// A write for the WRITE script.
pub(crate) struct WriteRequest<'a> {
    pub(crate) hash: &'a KeyHash,
    pub(crate) id: &'a str,
    pub(crate) value: &'a [u8],
    pub(crate) precondition: Precondition,
    /// This session's idle timeout (`None`: keep its own, or the default for a new one).
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) default_idle_ms: u64,
    pub(crate) absolute_ttl_ms: Option<u64>,
}

/// A write ready to send: the WRITE script's call, and the version it expects (0: none).
pub(crate) struct PreparedWrite {
    job: Box<dyn FnOnce(Counted) -> Job<Value> + Send>,
    expected: u64,
}

/// What a read found in Redis.
pub(crate) enum Found {
    Session(Loaded),
    /// The caller's copy is current; Redis holds this idle timeout for it (ms), which a
    /// touch elsewhere may have changed without a new version.
    Same {
        idle_ms: Option<u64>,
        /// Until Redis expires its key.
        key_ttl_ms: u64,
    },
    Gone,
}

/// The precondition of a write, as the WRITE script spells it.
#[derive(Clone, Copy)]
pub(crate) enum Precondition {
    None,
    Live,
    Version(u64),
    Absent,
}

/// A queued move of a session's Redis TTL.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Touch {
    /// The new TTL, in ms from when it was queued (see `queued_ms`).
    pub(crate) ttl_ms: u64,
    /// A new idle timeout, if the touch set one: Redis then takes the TTL even if it is shorter,
    /// and the session's idle timeout for the processes that load it later...
    pub(crate) idle_ms: Option<u64>,
    /// ...if it still holds this version: a write since then set its own timeout.
    pub(crate) version: u64,
    /// When it was queued (the link's clock): time it waits to be sent beyond the batching
    /// interval (a whole outage, at worst) comes off its TTL.
    queued_ms: u64,
}

impl Touch {
    /// A move of the TTL to `ttl_ms` from now; with `idle_ms`, a new idle timeout over
    /// `version` (see the fields). Queued with [`Tier::queue_touch`].
    pub(crate) fn new(ttl_ms: u64, idle_ms: Option<u64>, version: u64) -> Self {
        Self {
            ttl_ms,
            idle_ms,
            version,
            queued_ms: 0,
        }
    }
}

/// A local change made while Redis could not be reached, to be replayed on reconnect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dirty {
    /// Written here over Redis version `base` (0: created here).
    Written {
        base: u64,
        /// Whether the owner was set here too: if not, the replay keeps the owner Redis
        /// holds, which another process may have set meanwhile without a new version.
        owner_set: bool,
    },
    /// Destroyed here: replayed whatever Redis holds, so a revocation stays final.
    Destroyed,
}

impl Dirty {
    /// What a session needs replayed after `earlier` and then `later` were made to it here.
    fn then(earlier: Dirty, later: Dirty) -> Dirty {
        match (earlier, later) {
            // A second write keeps the base the first one started from.
            (
                Dirty::Written { base, owner_set },
                Dirty::Written {
                    owner_set: later, ..
                },
            ) => Dirty::Written {
                base,
                owner_set: owner_set || later,
            },
            // A write after a destroy here (a caller-chosen id used again) starts from
            // nothing: Redis's copy is to be removed either way.
            (Dirty::Destroyed, Dirty::Written { .. }) => Dirty::Written {
                base: u64::MAX,
                owner_set: true,
            },
            (_, Dirty::Destroyed) => Dirty::Destroyed,
        }
    }
}

/// A regenerate made while Redis was down: the session at `from` moved to `to`. On reconnect
/// the move stands only if the session at `from` was not revoked meanwhile (a logout in
/// another process): see `Inner::replay_journal`.
#[derive(Clone, Debug)]
pub(crate) struct Move {
    pub(crate) from: String,
    /// `from` was written here while Redis was down with no version of Redis's to check
    /// against (a creation or an upsert of an id this process held no copy of, a re-creation
    /// after a destroy, an earlier move's target): the move follows that write's own replay.
    pub(crate) from_made_here: bool,
    /// `from` was destroyed here and then made again (a save at an id logged out here):
    /// a session of its own, after whatever the resync learns of the one before.
    pub(crate) from_remade: bool,
    /// `from` held such a session made again, whose write a resync had in flight (see
    /// `PendingChanges::resent`): possibly as the copy of a move to `from`, the session that
    /// move moved. If Redis refuses that move, this one moved the session made again, not the
    /// refused one, and is not judged with it (`Tier::refused`). A chain still follows it: if
    /// no answer comes, the next try sends the session where this move took it, and Redis
    /// finds the earlier try's mark at `from` if it landed (see `scripts::RESYNC`).
    pub(crate) from_resent: bool,
    pub(crate) owner: Option<String>,
    pub(crate) to: String,
}

/// One resync pass's hold (see `Shared::resync_pass`).
pub(crate) struct ResyncPass<'a>(&'a AtomicU64);

impl Drop for ResyncPass<'_> {
    fn drop(&mut self) {
        self.0.store(0, SeqCst);
    }
}

/// A change made while Redis was down that is replayed before any copy is written back, in
/// the order made: a log-out everywhere spares the logins made after it (a regenerate at
/// login included), and reaches those made before it.
#[derive(Clone, Debug)]
pub(crate) enum Replay {
    Moved(Move),
    /// `destroy_owner`: the owner, and the sessions it spares (the one it kept; and, when a
    /// pass that wrote back moves before it failed, those).
    OwnerRevoked {
        owner: String,
        keep: Vec<KeyHash>,
    },
}

/// One local copy for the resync walk.
pub(crate) struct CopyState {
    pub(crate) hash: KeyHash,
    pub(crate) id: String,
    /// The copy, with its times relative to now.
    pub(crate) session: Loaded,
    pub(crate) dirty: Option<Dirty>,
    /// An invalidation named it: never written back, only compared.
    pub(crate) suspect: bool,
    /// The copy is where a regenerate made while Redis was down moved the session at this
    /// id: it is written only if that session was not revoked meanwhile, and in the same
    /// step (see `scripts::RESYNC`'s `move`).
    pub(crate) moved_from: Option<MovedFrom>,
}

/// The session a [`Move`] came from, as the write of its new id checks it.
pub(crate) struct MovedFrom {
    pub(crate) hash: KeyHash,
    /// Its owner when it moved, for the recovery window's tombstones.
    pub(crate) owner: Option<String>,
    /// The ids the session moved through between this one and the copy's: an earlier try
    /// whose reply was lost may have written it at one of them, before it moved on here.
    pub(crate) via: Vec<KeyHash>,
}

/// What the resync walk learned about one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resynced {
    /// Redis holds this version: keep it. Its key expires in `key_ttl_ms`.
    Same { key_ttl_ms: u64 },
    /// Redis holds another version, or no session at all: drop the copy. For a moved copy:
    /// the session it moved from was revoked.
    Stale,
    /// Redis holds this copy, written back, at this version.
    Restored(u64),
    /// Redis holds this copy's value, written back at this version, under the owner it held
    /// (set elsewhere meanwhile): the copy must give way.
    Rewritten(u64),
    /// For a moved copy: an earlier try of the move wrote it, at this version; the copy may
    /// have changed since.
    MovedBefore(u64),
    /// For a moved copy: Redis holds a session under its id already, not written by this
    /// move (ids of 192 random bits: in practice never): the copy gives way to it.
    Taken,
    /// Could not be checked (the link went down again, or Redis refused the batch): leave it
    /// unverified.
    Unknown,
}

/// The tier's counters and state, as [`crate::Stats::tier`] reports them.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Whether the link to Redis is up.
    pub connected: bool,
    /// Reads answered from a verified local copy.
    pub near_hits: u64,
    /// Reads that went to Redis (no local copy, or an unverified one, or strict mode).
    pub near_misses: u64,
    /// Reads answered from an unverified local copy while Redis was down.
    pub served_unverified: u64,
    /// Invalidations received from Redis.
    pub invalidations: u64,
    /// Requests sent to Redis.
    pub round_trips: u64,
    /// Requests that failed or timed out.
    pub failures: u64,
    /// Times the link was lost.
    pub disconnects: u64,
    /// Total time the link has been down, in ms.
    pub down_ms: u64,
    /// Local copies written back after a reconnect because Redis had lost them.
    pub restored: u64,
    /// Writes made while Redis was down that lost to a newer write on reconnect.
    pub replay_conflicts: u64,
    /// Session TTL extensions sent in batches.
    pub touches_sent: u64,
    /// Read replies an invalidation or a lost link overtook: cached as unconfirmed, checked
    /// with Redis again before a read trusts them. (A process's own writes, which Redis
    /// reports back to it, are confirmed in the background and not counted.)
    pub fills_refused: u64,
    /// Changes made here while Redis was down that Redis has not answered yet: sessions to
    /// write back, destroys, regenerates and log-outs everywhere to replay. Those sessions are
    /// served here until then. 0 once the resync after a reconnect has replayed everything
    /// (it may check unchanged copies a moment longer).
    pub to_replay: u64,
}

#[derive(Default)]
struct Counters {
    near_hits: AtomicU64,
    near_misses: AtomicU64,
    served_unverified: AtomicU64,
    invalidations: AtomicU64,
    round_trips: AtomicU64,
    failures: AtomicU64,
    disconnects: AtomicU64,
    down_ms: AtomicU64,
    restored: AtomicU64,
    replay_conflicts: AtomicU64,
    touches_sent: AtomicU64,
    fills_refused: AtomicU64,
}

/// The tier of one store. Dropped with the store: its thread stops and is joined.
pub(crate) struct Tier {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Settings,
    keys: Keys,
    /// Bumped on every loss of the link.
    generation: AtomicU64,
    up: AtomicBool,
    /// Set while this process's first connection attempt (at the build, or in a forked child)
    /// is under way; cleared by the link thread when it ends, connected or not. Calls wait for
    /// it (`wait_for_first_connection`) rather than take a link still connecting for a lost one.
    first_connect_pending: AtomicBool,
    timeouts_in_a_row: AtomicU32,
    /// When the link went down (ms since `epoch`), or `u64::MAX` while up.
    down_since: AtomicU64,
    epoch: Instant,
    counters: Counters,
    /// The runtime of this process; replaced (the parent's forgotten) in a forked child.
    runtime: Mutex<Option<Arc<Runtime>>>,
    fork_generation: AtomicU64,
    /// Sessions whose Redis TTL should move.
    touches: Mutex<HashMap<KeyHash, Touch>>,
    /// New idle timeouts in a batch of touches sent and not yet answered, with the version
    /// each was set over: a write sent meanwhile still carries them (see `queued_idle`).
    touches_in_flight: Mutex<HashMap<KeyHash, (u64, u64)>>,
    /// Changes made locally while Redis was down, by id.
    pending: pending::PendingChanges,
    /// Regenerates and log-outs everywhere made while Redis was down, in the order made.
    replays: Mutex<Vec<Replay>>,
    /// How many of those a resync pass has taken and not yet replayed or put back (for
    /// `TierStats::to_replay`).
    replays_in_flight: AtomicU64,
    /// The link generation whose resync has replayed everything (0: none): from then on no
    /// session is pending (see `pending`).
    resynced: AtomicU64,
    /// Held by a resync pass (1 + the fork generation it runs in; 0: free): a pass of an
    /// earlier link still running (stuck in a batch) must not take changes from under the
    /// next one. A hold inherited through `fork()` names a thread the child does not have,
    /// and is not waited for.
    resync_pass: AtomicU64,
    /// The link generation a resync was last started for, with its data epoch and whether
    /// Redis had lost its data: what [`Tier::resync_again`] starts another with.
    last_resync: Mutex<(u64, u64, bool)>,
    sink: Mutex<Option<Weak<dyn Sink>>>,
    /// Whether the link has received input not yet handled.
    input: Arc<watched::Input>,
    /// The value of `<prefix>epoch` when the link last came up (0: never). Set once by the
    /// first store to reach an empty Redis, so a changed value means Redis lost its data.
    data_epoch: AtomicU64,
    /// The data epoch whose loss no resync has finished writing back yet (0: none). Until one
    /// has, every link's resync takes a session missing from Redis as lost, not as revoked.
    unrepaired_epoch: AtomicU64,
    /// Connections made so far: the newest is the link's (or the one being set up).
    connections: AtomicU64,
    /// Copies marked suspect by invalidations, to revalidate off the request path.
    suspects: Mutex<Vec<Suspect>>,
    /// Whether this store has warned of a Redis that may evict keys without a TTL.
    warned_of_eviction: AtomicBool,
    /// Set once the store closes: its threads stop.
    closed: AtomicBool,
}

struct Runtime {
    handle: tokio::runtime::Handle,
    /// The connection while the link is up.
    connection: Mutex<Option<Counted>>,
    wake: tokio::sync::Notify,
    closing: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: Mutex<Option<ThreadId>>,
    /// The resync threads, started by links that came up and by changes noted after a
    /// resync ended (finished ones are pruned), joined when the store closes.
    resyncs: Mutex<Vec<JoinHandle<()>>>,
}

type Job<T> = Pin<Box<dyn Future<Output = redis::RedisResult<T>> + Send>>;

impl Tier {
    pub(crate) fn new(settings: Settings, keys: Keys) -> Self {
        Tier {
            shared: Arc::new(Shared {
                settings,
                keys,
                generation: AtomicU64::new(1),
                up: AtomicBool::new(false),
                first_connect_pending: AtomicBool::new(false),
                timeouts_in_a_row: AtomicU32::new(0),
                down_since: AtomicU64::new(0),
                epoch: Instant::now(),
                counters: Counters::default(),
                runtime: Mutex::new(None),
                fork_generation: AtomicU64::new(fork::generation()),
                touches: Mutex::new(HashMap::new()),
                touches_in_flight: Mutex::new(HashMap::new()),
                pending: pending::PendingChanges::default(),
                replays: Mutex::new(Vec::new()),
                replays_in_flight: AtomicU64::new(0),
                resynced: AtomicU64::new(0),
                resync_pass: AtomicU64::new(0),
                last_resync: Mutex::new((0, 0, false)),
                sink: Mutex::new(None),
                input: Arc::new(watched::Input::new()),
                data_epoch: AtomicU64::new(0),
                unrepaired_epoch: AtomicU64::new(0),
                connections: AtomicU64::new(0),
                suspects: Mutex::new(Vec::new()),
                warned_of_eviction: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Stops the link and resync threads and waits for them; no copy is trusted from then on,
    /// and every call that needs Redis fails with [`Error::Unavailable`], whatever
    /// `redis_when_down` says. Idempotent.
    pub(crate) fn close(&self) {
        self.shared.close();
    }

    /// Whether [`Tier::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closing()
    }

    /// What closes this tier when the last store handle holding it is dropped.
    pub(crate) fn closer(&self) -> Closer {
        Closer(self.shared.clone())
    }

    /// Starts the link thread and waits for the first connection: at most a second, and no
    /// longer than the first attempt when it fails. A store whose Redis is down still starts:
    /// it follows `redis_when_down` until Redis is back.
    pub(crate) fn start(&self, sink: Weak<dyn Sink>) -> Result<()> {
        *self.shared.sink.lock() = Some(sink);
        self.shared.first_connect_pending.store(true, SeqCst);
        let runtime = spawn_runtime(&self.shared)?;
        *self.shared.runtime.lock() = Some(runtime);
        self.shared.wait_for_first_connection();
        Ok(())
    }

    /// In a forked child, starts this process's own link (once), and waits for its first
    /// connection as `start` does; so does every call that comes while that is under way, from
    /// any thread (a gthread worker's concurrent first requests). Called at the start of every
    /// store call, before any lock is taken.
    #[inline]
    pub(crate) fn adopt_after_fork(&self) {
        let now = fork::generation();
        if self.shared.fork_generation.load(SeqCst) != now {
            let _ = self.shared.restart_after_fork(now);
        } else if self.shared.first_connect_pending.load(Acquire) {
            self.shared.wait_for_first_connection();
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// The current link generation: copies verified under it are trusted.
    pub(crate) fn generation(&self) -> u64 {
        self.shared.generation.load(SeqCst)
    }

    /// Whether the link is up, in this process: a forked child has none until its first
    /// call to Redis starts its own.
    pub(crate) fn is_up(&self) -> bool {
        self.shared.up.load(SeqCst)
            && self.shared.fork_generation.load(SeqCst) == fork::generation()
            // A link that came up while the store closed is not one.
            && !self.shared.closing()
    }

    /// The generation to stamp a copy with, if the link is up (a fill ticket).
    pub(crate) fn up_generation(&self) -> Option<u64> {
        let generation = self.generation();
        self.is_up().then_some(generation)
    }

    /// Waits, briefly, until the link has handled everything it received: an invalidation
    /// already on its way in then applies before a local copy is served. False if it did not
    /// settle in time (the caller asks Redis instead).
    pub(crate) fn settle(&self) -> bool {
        let input = &self.shared.input;
        let mark = input.mark();
        for _ in 0..SETTLE_SPINS {
            if input.handled(mark) {
                return true;
            }
            std::thread::yield_now();
        }
        input.handled(mark)
    }

    /// [`settle`](Tier::settle) without waiting: whether the link has handled everything it
    /// received and answered every command sent so far.
    pub(crate) fn settled(&self) -> bool {
        let input = &self.shared.input;
        input.handled(input.mark())
    }

    /// Where a read begins, for [`after_handled`](Tier::after_handled).
    pub(crate) fn since(&self) -> Since {
        self.shared.input.since()
    }

    /// Whether the link has handled everything it received so far, and answered every
    /// command sent before `since` (see `watched::Input::handled`).
    pub(crate) fn handled_since(&self, since: Since) -> bool {
        self.shared.input.handled_since(since)
    }

    /// Runs `then` on the link thread once [`handled_since`](Tier::handled_since) holds, or
    /// the link is lost, or after `SETTLE_SPINS` checks or the operation timeout without
    /// either (`then` checks again, and asks Redis), or here and now with the link down. For a caller that must neither wait nor spin (Node's main
    /// thread): the wait holds no thread. `then` runs inside the fork gate and must not wait
    /// on Redis.
    pub(crate) fn after_handled(&self, since: Since, then: impl FnOnce() + Send + 'static) {
        let then = RunsOnce(Some(then));
        let Ok(runtime) = self.shared.runtime() else {
            return then.run();
        };
        if runtime.connection.lock().is_none() {
            return then.run();
        }
        let (shared, timeout) = (Arc::clone(&self.shared), self.shared.settings.timeout);
        runtime.handle.spawn(async move {
            let waiting = shared.input.until_handled(since, SETTLE_SPINS);
            let _ = tokio::time::timeout(timeout, waiting).await;
            let _pass = fork::enter();
            then.run();
        });
    }

    pub(crate) fn count_near_hit(&self) {
        self.shared.counters.near_hits.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_served_unverified(&self) {
        self.shared.counters.served_unverified.fetch_add(1, Relaxed);
    }

    /// A fill refused because an invalidation or a lost link overtook its reply.
    pub(crate) fn count_invalidation_race(&self) {
        self.shared.counters.fills_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_restored(&self) {
        self.shared.counters.restored.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_replay_conflict(&self) {
        self.shared.counters.replay_conflicts.fetch_add(1, Relaxed);
    }

    /// The error a call gets when Redis cannot answer.
    pub(crate) fn unavailable(&self) -> Error {
        if self.is_closed() {
            return Error::Unavailable("the store was closed".into());
        }
        Error::Unavailable("Redis is not reachable".into())
    }

    pub(crate) fn stats(&self) -> TierStats {
        let c = &self.shared.counters;
        let down_now = match self.shared.down_since.load(SeqCst) {
            u64::MAX => 0,
            since => self.shared.now_ms().saturating_sub(since),
        };
        TierStats {
            connected: self.is_up(),
            near_hits: c.near_hits.load(Relaxed),
            near_misses: c.near_misses.load(Relaxed),
            served_unverified: c.served_unverified.load(Relaxed),
            invalidations: c.invalidations.load(Relaxed),
            round_trips: c.round_trips.load(Relaxed),
            failures: c.failures.load(Relaxed),
            disconnects: c.disconnects.load(Relaxed),
            down_ms: c.down_ms.load(Relaxed) + down_now,
            restored: c.restored.load(Relaxed),
            replay_conflicts: c.replay_conflicts.load(Relaxed),
            touches_sent: c.touches_sent.load(Relaxed),
            fills_refused: c.fills_refused.load(Relaxed),
            to_replay: self.shared.pending.len() as u64
                + self.shared.replays.lock().len() as u64
                + self.shared.replays_in_flight.load(SeqCst),
        }
    }

    /// A new idle timeout that a touch here set and that Redis has not answered yet, and the
    /// version it was set over: a write or regenerate made after that touch carries it, or
    /// the timeout Redis still holds would undo it. The scripts take it only if the session
    /// still holds that version, as the touch itself would (a write since set its own).
    fn queued_idle(&self, hash: &KeyHash) -> Option<(u64, u64)> {
        let queued = self
            .shared
            .touches
            .lock()
            .get(hash)
            .and_then(|touch| Some((touch.idle_ms?, touch.version)));
        // Taken for a batch and not yet answered: the write may reach Redis first.
        queued.or_else(|| self.shared.touches_in_flight.lock().get(hash).copied())
    }

    /// Queues a move of the session's Redis TTL. Sent in a batch, off the request path; a new
    /// idle timeout queued earlier stays with the key until it is sent.
    pub(crate) fn queue_touch(&self, hash: KeyHash, mut touch: Touch) {
        touch.queued_ms = self.shared.now_ms();
        let mut touches = self.shared.touches.lock();
        let queued = touches.entry(hash).or_insert(touch);
        if touch.idle_ms.is_some() || touch.version != queued.version {
            // The newest timeout wins; one set over an older version no longer applies.
            *queued = touch;
        } else {
            // A slide over a new timeout not sent yet moves the deadline by that timeout at
            // most (the TOUCH script caps a plain touch at the session's own timeout, which
            // would be the old one here).
            queued.ttl_ms = queued
                .idle_ms
                .map_or(touch.ttl_ms, |idle| touch.ttl_ms.min(idle));
            queued.queued_ms = touch.queued_ms;
        }
    }

    /// Asks Redis, in the background, whether a suspect copy is current (see `revalidate`).
    pub(crate) fn revalidate(&self, suspect: Suspect) {
        self.shared.suspects.lock().push(suspect);
        if let Some(runtime) = self.shared.runtime.lock().as_ref() {
            runtime.wake.notify_one();
        }
    }

    /// Remembers a change made locally while Redis was down, keeping the first base version.
    pub(crate) fn note_dirty(&self, id: &str, dirty: Dirty) {
        self.shared.pending.note(id, dirty);
        // A call that found its session pending just before the resync ended makes its change
        // now: the session is pending again, and another resync writes it back (one, for
        // racing notes: the first takes the mark back).
        let generation = self.shared.generation.load(SeqCst);
        if self
            .shared
            .resynced
            .compare_exchange(generation, 0, SeqCst, SeqCst)
            .is_ok()
        {
            self.resync_again(generation);
        }
    }

    /// Starts another resync of link `generation`, if it is still the current one.
    fn resync_again(&self, generation: u64) {
        let (last, epoch, lost_data) = *self.shared.last_resync.lock();
        if last != generation || !self.is_up() {
            return;
        }
        let Some(runtime) = self.shared.runtime.lock().clone() else {
            return;
        };
        start_resync(
            &runtime,
            Arc::downgrade(&self.shared),
            generation,
            epoch,
            lost_data,
        );
    }

    /// Puts back a change a resync took and could not get answered: it came before anything
    /// noted for the session since.
    pub(crate) fn restore_dirty(&self, id: &str, dirty: Dirty) {
        self.shared.pending.restore(id, dirty);
    }

    /// Takes the change noted for `id`, for a resync to send: the session stays pending (see
    /// [`is_pending`](Tier::is_pending)) until [`landed`](Tier::landed) or
    /// [`restore_dirty`](Tier::restore_dirty).
    pub(crate) fn take_dirty(&self, id: &str) -> Option<Dirty> {
        self.shared.pending.take(id)
    }

    /// The answer to the resync that sent `id`'s change has been applied.
    pub(crate) fn landed(&self, id: &str) {
        self.shared.pending.landed(id);
    }

    /// Whether `id` has changes made while Redis was down that Redis does not hold yet: its
    /// calls are then made locally (see `pending`).
    pub(crate) fn is_pending(&self, id: &str) -> bool {
        self.shared.pending.is_pending(id)
            && self.shared.resynced.load(SeqCst) != self.shared.generation.load(SeqCst)
    }

    /// Every id with a change noted or in flight whose owner was set here while Redis was
    /// down (or which was created here again after a destroy).
    pub(crate) fn pending_ids_given_an_owner(&self) -> Vec<String> {
        self.shared.pending.ids_given_an_owner()
    }

    /// Waits until no other resync pass of this process runs, and holds that until dropped.
    pub(crate) fn resync_pass(&self) -> ResyncPass<'_> {
        let mine = fork::generation().wrapping_add(1).max(1);
        let slot = &self.shared.resync_pass;
        loop {
            let held = slot.load(SeqCst);
            if (held == 0 || held != mine)
                && slot.compare_exchange(held, mine, SeqCst, SeqCst).is_ok()
            {
                return ResyncPass(slot);
            }
            fork::outside(|| std::thread::sleep(Duration::from_millis(1)));
        }
    }

    /// The resync of link `generation` has replayed everything: calls on sessions that were
    /// pending go to Redis from now on. `false` (and nothing marked) if the link moved on.
    pub(crate) fn mark_resynced(&self, generation: u64) -> bool {
        self.shared.resynced.store(generation, SeqCst);
        if self.shared.generation.load(SeqCst) != generation {
            self.shared.resynced.store(0, SeqCst);
            return false;
        }
        true
    }

    /// Takes back [`mark_resynced`](Tier::mark_resynced): a change was noted as it was made.
    pub(crate) fn unmark_resynced(&self) {
        self.shared.resynced.store(0, SeqCst);
    }

    /// A write noted for `id` over the copy at local version `local`, which a resync just wrote
    /// back at `version`, now writes over `version`.
    pub(crate) fn rebase_dirty(&self, id: &str, local: u64, version: u64) {
        self.shared.pending.rebase(id, local, version);
    }

    /// Whether anything made while Redis was down is left to replay after a resync pass: a
    /// change noted by a call that found the link down as it came back and ended before the
    /// pass looked at its stripe, or made locally on a pending session (see `pending`) after
    /// the walk had passed it. Then another pass replays it.
    pub(crate) fn has_unreplayed(&self) -> bool {
        !self.shared.replays.lock().is_empty() || self.shared.pending.has_noted()
    }

    /// See [`PendingChanges::remade`](pending::PendingChanges::remade).
    pub(crate) fn remade(&self, id: &str) -> bool {
        self.shared.pending.remade(id)
    }

    /// See [`PendingChanges::resent`](pending::PendingChanges::resent).
    pub(crate) fn resent(&self, id: &str) -> bool {
        self.shared.pending.resent(id)
    }

    /// See [`PendingChanges::made_here`](pending::PendingChanges::made_here).
    pub(crate) fn made_here(&self, id: &str) -> bool {
        self.shared.pending.made_here(id)
    }

    /// See [`PendingChanges::forget_writes_without_copies`](pending::PendingChanges::forget_writes_without_copies).
    pub(crate) fn forget_writes_without_copies(&self, has_copy: impl Fn(&str) -> bool) {
        self.shared.pending.forget_writes_without_copies(has_copy);
    }

    /// What is noted for `id` to replay and not yet sent, left in place.
    pub(crate) fn dirty_of(&self, id: &str) -> Option<Dirty> {
        self.shared.pending.noted(id)
    }

    /// Remembers a regenerate made while Redis was down (before the changes it notes).
    pub(crate) fn note_moved(&self, moved: Move) {
        self.shared.replays.lock().push(Replay::Moved(moved));
    }

    /// Remembers a log-out everywhere made while Redis was down. Replayed on reconnect before
    /// anything is written back, so it reaches every process's sessions of `owner`, and in
    /// its place among the regenerates, so it spares the logins this process made after it.
    pub(crate) fn note_owner_revoked(&self, owner: &str, keep: Option<KeyHash>) {
        self.shared.replays.lock().push(Replay::OwnerRevoked {
            owner: owner.to_string(),
            keep: keep.into_iter().collect(),
        });
    }

    /// Whether a regenerate not yet replayed moved the session at `id` (not one made there
    /// again since).
    pub(crate) fn has_move_from(&self, id: &str) -> bool {
        self.shared
            .replays
            .lock()
            .iter()
            .any(|r| matches!(r, Replay::Moved(m) if m.from == id && !m.from_remade))
    }

    /// Redis is the judge of `id` now (a resync wrote its copy back, or found it revoked), so
    /// a regenerate made here from it while that was in flight, noted as moving a session
    /// Redis did not hold, is replayed with the check that Redis still holds it. A log-out
    /// made elsewhere since must reach the id it moved to.
    pub(crate) fn written_back(&self, id: &str) {
        for replay in self.shared.replays.lock().iter_mut() {
            if let Replay::Moved(moved) = replay {
                if moved.from == id && !moved.from_remade {
                    moved.from_made_here = false;
                }
            }
        }
    }

    /// [`written_back`](Tier::written_back) for an `id` whose move Redis refused as revoked:
    /// a move made from a session made again there while that was in flight (`from_resent`)
    /// moved that session, and stays as it was.
    pub(crate) fn refused(&self, id: &str) {
        for replay in self.shared.replays.lock().iter_mut() {
            if let Replay::Moved(moved) = replay {
                if moved.from == id && !moved.from_remade && !moved.from_resent {
                    moved.from_made_here = false;
                }
            }
        }
    }

    /// The ids regenerates not yet replayed moved sessions from and to.
    pub(crate) fn ids_in_moves(&self) -> std::collections::HashSet<String> {
        let mut ids = std::collections::HashSet::new();
        for replay in self.shared.replays.lock().iter() {
            if let Replay::Moved(m) = replay {
                ids.insert(m.from.clone());
                ids.insert(m.to.clone());
            }
        }
        ids
    }

    /// The regenerates and log-outs everywhere to replay, oldest first.
    pub(crate) fn take_replays(&self) -> Vec<Replay> {
        let mut replays = self.shared.replays.lock();
        self.shared
            .replays_in_flight
            .store(replays.len() as u64, SeqCst);
        std::mem::take(&mut *replays)
    }

    /// What [`take_replays`](Tier::take_replays) took has been replayed.
    pub(crate) fn replays_done(&self) {
        self.shared.replays_in_flight.store(0, SeqCst);
    }

    /// Puts back what could not all be replayed (the link went down again), before anything
    /// noted since.
    pub(crate) fn restore_replays(&self, mut pending: Vec<Replay>) {
        let mut replays = self.shared.replays.lock();
        pending.append(&mut replays);
        *replays = pending;
        self.shared.replays_in_flight.store(0, SeqCst);
    }

    /// Destroys made while Redis was down whose sessions are no longer in the local table,
    /// but for ids a move not yet replayed came from: replayed after that move (which asks
    /// whether Redis still holds them), in the resync's next pass (see
    /// [`has_unreplayed`](Tier::has_unreplayed)).
    /// They stay pending until [`landed`](Tier::landed).
    pub(crate) fn take_destroyed(&self) -> Vec<String> {
        let moved_from: std::collections::HashSet<String> = self
            .shared
            .replays
            .lock()
            .iter()
            .filter_map(|r| match r {
                Replay::Moved(m) => Some(m.from.clone()),
                Replay::OwnerRevoked { .. } => None,
            })
            .collect();
        self.shared.pending.take_destroyed(&moved_from)
    }

    /// The session in Redis; with `known` (the version and owner of a local copy, version 0:
    /// none) only its TTL if that copy is still current.
    pub(crate) fn load(&self, hash: &KeyHash, known: (u64, Option<&str>)) -> Result<Found> {
        let reply = self.run(self.load_job(hash, known))?;
        parse_found(reply)
    }

    /// [`load`](Tier::load) without waiting: `done` gets its outcome as
    /// [`submit`](Tier::submit) says.
    pub(crate) fn load_then(
        &self,
        hash: &KeyHash,
        known: (u64, Option<&str>),
        done: impl FnOnce(Result<Found>) + Send + 'static,
    ) {
        let job = self.load_job(hash, known);
        self.submit(job, move |reply| done(reply.and_then(parse_found)));
    }

    /// The LOAD script's call, counted as a near-cache miss.
    fn load_job(
        &self,
        hash: &KeyHash,
        known: (u64, Option<&str>),
    ) -> impl FnOnce(Counted) -> Job<Value> + Send + 'static {
        self.shared.counters.near_misses.fetch_add(1, Relaxed);
        let key = self.shared.keys.session(hash);
        let (version, owner) = (known.0, known.1.unwrap_or("").to_string());
        move |mut c| {
            Box::pin(async move {
                let mut call = scripts::LOAD.prepare_invoke();
                call.key(key).arg(version).arg(owner);
                call.invoke_async::<Value>(&mut c).await
            })
        }
    }

    /// Writes a session through; `Err(Conflict | NotFound)` is the precondition failing in
    /// Redis.
    pub(crate) fn write(&self, request: WriteRequest<'_>) -> Result<Loaded> {
        let prepared = self.prepare_write(request);
        let reply = self.run(prepared.job)?;
        written(&reply, prepared.expected)
    }

    /// [`write`](Tier::write) without waiting: `done` gets its outcome as
    /// [`submit`](Tier::submit) says.
    pub(crate) fn write_then(
        &self,
        prepared: PreparedWrite,
        done: impl FnOnce(Result<Loaded>) + Send + 'static,
    ) {
        let expected = prepared.expected;
        self.submit(prepared.job, move |reply| {
            done(reply.and_then(|reply| written(&reply, expected)));
        });
    }

    /// The WRITE script's call for `request`, owning all it needs.
    pub(crate) fn prepare_write(&self, request: WriteRequest<'_>) -> PreparedWrite {
        let keys = &self.shared.keys;
        let (key, counter, prefix, listed) = (
            keys.session(request.hash),
            keys.version_counter(),
            keys.prefix().to_string(),
            keys.seal_for_listing(request.hash, request.id)
                .unwrap_or_default(),
        );
        let value = request.value.to_vec();
        let (mode, expected) = match request.precondition {
            Precondition::None => ("none", 0),
            Precondition::Live => ("live", 0),
            Precondition::Version(v) => ("version", v),
            Precondition::Absent => ("absent", 0),
        };
        let (ttl_ms, default_idle_ms, absolute_ttl_ms) = (
            request.ttl_ms.unwrap_or(0),
            request.default_idle_ms,
            request.absolute_ttl_ms.unwrap_or(0),
        );
        let (queued_idle_ms, queued_over) = self.queued_idle(request.hash).unwrap_or((0, 0));
        let job = move |mut c: Counted| -> Job<Value> {
            Box::pin(async move {
                let mut call = scripts::WRITE.prepare_invoke();
                call.key(key)
                    .key(counter)
                    .arg(mode)
                    .arg(expected)
                    .arg(value);
                call.arg(ttl_ms).arg(default_idle_ms);
                call.arg(absolute_ttl_ms).arg(prefix).arg(listed);
                call.arg(queued_idle_ms).arg(queued_over);
                call.invoke_async::<Value>(&mut c).await
            })
        };
        PreparedWrite {
            job: Box::new(job),
            expected,
        }
    }

    /// Removes a session from Redis and its owner's index. Whether it existed.
    pub(crate) fn destroy(&self, hash: &KeyHash) -> Result<bool> {
        let reply = self.run(self.destroy_job(hash))?;
        Ok(number(&reply) > 0)
    }

    /// [`destroy`](Tier::destroy) without waiting: `done` gets its outcome as
    /// [`submit`](Tier::submit) says.
    pub(crate) fn destroy_then(
        &self,
        hash: &KeyHash,
        done: impl FnOnce(Result<bool>) + Send + 'static,
    ) {
        let job = self.destroy_job(hash);
        self.submit(job, move |reply| done(reply.map(|r| number(&r) > 0)));
    }

    /// The DESTROY script's call.
    fn destroy_job(&self, hash: &KeyHash) -> impl FnOnce(Counted) -> Job<Value> + Send + 'static {
        let keys = &self.shared.keys;
        let (key, prefix, field) = (
            keys.session(hash),
            keys.prefix().to_string(),
            hash.encoded(),
        );
        move |mut c| {
            Box::pin(async move {
                let mut call = scripts::DESTROY.prepare_invoke();
                call.key(key).arg(prefix).arg(field);
                call.invoke_async::<Value>(&mut c).await
            })
        }
    }

    /// Moves a session to `new_id` in Redis. `Ok(None)`: the old session is gone.
    /// `Err(Conflict)`: the new key exists (the caller draws another id).
    pub(crate) fn regenerate(
        &self,
        old: &KeyHash,
        new_id: &str,
        new: &KeyHash,
    ) -> Result<Option<Loaded>> {
        let keys = &self.shared.keys;
        let args = (
            keys.session(old),
            keys.session(new),
            keys.version_counter(),
            keys.prefix().to_string(),
            old.encoded(),
            new.encoded(),
            keys.seal(new, new_id),
            keys.seal_for_listing(new, new_id).unwrap_or_default(),
            self.queued_idle(old).unwrap_or((0, 0)),
            self.shared.settings.absolute_ttl_ms.unwrap_or(0),
        );
        let reply = self.run(move |mut c| {
            Box::pin(async move {
                let (
                    old_key,
                    new_key,
                    counter,
                    prefix,
                    old_field,
                    new_field,
                    sealed,
                    listed,
                    idle,
                    absolute,
                ) = args;
                let mut call = scripts::REGENERATE.prepare_invoke();
                call.key(old_key).key(new_key).key(counter);
                call.arg(prefix).arg(old_field).arg(new_field).arg(sealed);
                call.arg(listed).arg(idle.0).arg(absolute).arg(idle.1);
                call.invoke_async::<Value>(&mut c).await
            })
        })?;
        if matches!(reply, Value::Nil) {
            return Ok(None);
        }
        let (tag, _) = tagged(&reply)?;
        if tag == b"collision" {
            return Err(Error::Conflict {
                expected: 0,
                actual: 0,
            });
        }
        parse_session(&reply).map(Some)
    }

    /// Files a session under `owner` (or none) in Redis. Whether the session exists.
    pub(crate) fn set_owner(&self, hash: &KeyHash, id: &str, owner: Option<&str>) -> Result<bool> {
        let keys = &self.shared.keys;
        let args = (
            keys.session(hash),
            keys.prefix().to_string(),
            hash.encoded(),
            owner.unwrap_or("").to_string(),
            keys.seal(hash, id),
        );
        let reply = self.run(move |mut c| {
            Box::pin(async move {
                let (key, prefix, field, owner, sealed) = args;
                let mut call = scripts::SET_OWNER.prepare_invoke();
                call.key(key).arg(prefix).arg(field).arg(owner).arg(sealed);
                call.invoke_async::<Value>(&mut c).await
            })
        })?;
        Ok(number(&reply) == 1)
    }

    /// The ids of `owner`'s live sessions, from the owner index in Redis.
    pub(crate) fn owner_sessions(&self, owner: &str) -> Result<Vec<String>> {
        let keys = &self.shared.keys;
        let (index, prefix) = (keys.owner(owner), keys.prefix().to_string());
        let reply = self.run(move |mut c| {
            Box::pin(async move {
                let mut call = scripts::OWNER_SESSIONS.prepare_invoke();
                call.key(index).arg(prefix);
                call.invoke_async::<Value>(&mut c).await
            })
        })?;
        let Value::Array(items) = reply else {
            return Ok(Vec::new());
        };
        Ok(items
            .chunks_exact(2)
            .filter_map(|pair| {
                let hash = KeyHash::decode(bytes(&pair[0])?)?;
                keys.unseal(&hash, bytes(&pair[1])?)
            })
            .collect())
    }

    /// Destroys `owner`'s sessions in Redis but those in `keep`; the hashes of those removed.
    pub(crate) fn destroy_owner(&self, owner: &str, keep: &[KeyHash]) -> Result<Vec<KeyHash>> {
        let keys = &self.shared.keys;
        let kept: Vec<String> = keep.iter().map(KeyHash::encoded).collect();
        let args = (keys.owner(owner), keys.prefix().to_string(), kept.join(" "));
        let reply = self.run(move |mut c| {
            Box::pin(async move {
                let (index, prefix, keep) = args;
                let mut call = scripts::DESTROY_OWNER.prepare_invoke();
                call.key(index).arg(prefix).arg(keep);
                call.invoke_async::<Value>(&mut c).await
            })
        })?;
        let Value::Array(items) = reply else {
            return Ok(Vec::new());
        };
        Ok(items
            .iter()
            .filter_map(|v| KeyHash::decode(bytes(v)?))
            .collect())
    }

    /// Every session in Redis under this store's prefix, a SCAN step per round trip (each
    /// within the timeout): its id, if this store can unseal it, and its value if `values`.
    /// A session written while this runs may be missed; expired ones are not listed.
    pub(crate) fn scan_sessions(&self, values: bool) -> Result<Vec<(Option<String>, Vec<u8>)>> {
        let keys = &self.shared.keys;
        let (pattern, _) = keys.patterns();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        self.walk(&scripts::SCAN_SESSIONS, pattern, values, |found| {
            for entry in found.chunks_exact(3) {
                // SCAN may name a key twice; a key that is not a session hash is not ours.
                let Some(hash) = bytes(&entry[0]).and_then(|key| keys.hash_in(key)) else {
                    continue;
                };
                if seen.insert(hash) {
                    let id = bytes(&entry[1]).and_then(|sealed| keys.unseal(&hash, sealed));
                    out.push((id, bytes(&entry[2]).unwrap_or_default().to_vec()));
                }
            }
        })?;
        Ok(out)
    }

    /// Removes every session and owner index under this store's prefix from Redis, a SCAN
    /// step per round trip. The version counter stays: a version is never issued twice.
    pub(crate) fn clear(&self) -> Result<()> {
        // Nothing cleared may be written back by a process that reconnects later.
        let window = self.shared.keys.recovery_window();
        self.run(move |mut c| {
            Box::pin(async move {
                redis::cmd("DEL")
                    .arg(window)
                    .query_async::<Value>(&mut c)
                    .await
            })
        })?;
        let (sessions, owners) = self.shared.keys.patterns();
        // Owner indexes first: a session filed under an owner while this runs keeps its entry
        // (an entry whose session is gone is dropped when the index is next read).
        for pattern in [owners, sessions] {
            self.walk(&scripts::CLEAR_STEP, pattern, false, |_| {})?;
        }
        Ok(())
    }

    /// Runs a SCAN-step `script` (ARGV: cursor, pattern, batch size, `flag`; reply: the next
    /// cursor, then what the step found) until the cursor comes back to 0, one round trip per
    /// step, handing each step's findings to `each`.
    fn walk(
        &self,
        script: &'static Script,
        pattern: String,
        flag: bool,
        mut each: impl FnMut(&[Value]),
    ) -> Result<()> {
        let mut cursor = "0".to_string();
        loop {
            let (at, pattern) = (cursor, pattern.clone());
            let reply = self.run(move |mut c| {
                Box::pin(async move {
                    let mut call = script.prepare_invoke();
                    call.arg(at)
                        .arg(pattern)
                        .arg(SCAN_BATCH)
                        .arg(u8::from(flag));
                    call.invoke_async::<Value>(&mut c).await
                })
            })?;
            let Value::Array(items) = &reply else {
                return Err(unexpected(&reply));
            };
            let Some((next, found)) = items.split_first() else {
                return Err(unexpected(&reply));
            };
            each(found);
            cursor = String::from_utf8_lossy(bytes(next).unwrap_or(b"0")).into_owned();
            if cursor == "0" {
                return Ok(());
            }
        }
    }

    /// Whether the sessions in Redis can be listed with their ids (the store has a secret).
    pub(crate) fn can_list(&self) -> bool {
        self.shared.keys.can_list()
    }

    /// Checks a batch of local copies against Redis after a reconnect (see `scripts::RESYNC`).
    pub(crate) fn resync(&self, copies: &[CopyState], redis_lost_data: bool) -> Vec<Resynced> {
        let keys = &self.shared.keys;
        let calls: Vec<_> = copies
            .iter()
            .map(|copy| {
                let (mode, base, owner_set) = match copy.dirty {
                    None if copy.suspect => ("check", 0, false),
                    None => ("keep", 0, false),
                    Some(Dirty::Written { base: u64::MAX, .. }) => ("force", 0, true),
                    Some(Dirty::Written { base, owner_set }) => ("replay", base, owner_set),
                    Some(Dirty::Destroyed) => ("destroy", 0, false),
                };
                let mode = if copy.moved_from.is_some() {
                    "move"
                } else {
                    mode
                };
                let mut call = scripts::RESYNC.prepare_invoke();
                call.key(keys.session(&copy.hash))
                    .key(keys.version_counter());
                if let Some(from) = &copy.moved_from {
                    call.key(keys.session(&from.hash));
                    for via in &from.via {
                        call.key(keys.session(via));
                    }
                }
                let session = &copy.session;
                call.arg(mode).arg(session.version).arg(base);
                call.arg(session.value.as_slice());
                call.arg(session.ttl_ms).arg(session.idle_ms);
                call.arg(session.absolute_in_ms.map_or(-1, |ms| ms as i64));
                call.arg(session.owner.as_deref().unwrap_or(""));
                call.arg(u8::from(redis_lost_data));
                call.arg(keys.prefix())
                    .arg(copy.hash.encoded())
                    .arg(keys.seal(&copy.hash, &copy.id))
                    .arg(
                        keys.seal_for_listing(&copy.hash, &copy.id)
                            .unwrap_or_default(),
                    );
                call.arg(u8::from(owner_set));
                if let Some(from) = &copy.moved_from {
                    call.arg(from.hash.encoded())
                        .arg(from.owner.as_deref().unwrap_or(""));
                    for via in &from.via {
                        call.arg(via.encoded());
                    }
                }
                call
            })
            .collect();
        let count = calls.len();
        // A batch is allowed the timeout per copy, within reason: it runs off the request path.
        let replies = self.run_for(
            self.shared.settings.timeout * 4 + Duration::from_millis(count as u64),
            move |c| {
                Box::pin(async move {
                    let mut set = tokio::task::JoinSet::new();
                    for (n, call) in calls.into_iter().enumerate() {
                        let mut c = c.clone();
                        set.spawn(async move { (n, call.invoke_async::<Value>(&mut c).await) });
                    }
                    let mut out = vec![Some(Value::Nil); count];
                    while let Some(done) = set.join_next().await {
                        if let Ok((n, reply)) = done {
                            out[n] = match reply {
                                Ok(value) => Some(value),
                                // The key holds something other than a session: there is no
                                // copy to check against there, ever, so it fails this copy
                                // alone. Retrying would keep its stripe unchecked for good.
                                Err(e) if e.code() == Some("WRONGTYPE") => None,
                                // Anything else (refused, busy, out of memory) may pass: the
                                // whole batch is tried again.
                                Err(e) => return Err(e),
                            };
                        }
                    }
                    Ok(out)
                })
            },
        );
        let Ok(replies) = replies else {
            return vec![Resynced::Unknown; count];
        };
        let not_sessions = replies.iter().filter(|reply| reply.is_none()).count();
        if not_sessions > 0 {
            eprintln!(
                "coatcheck: {not_sessions} session key(s) under the prefix {:?} hold something \
                 other than a session (written there by something else); their local copies \
                 were dropped",
                keys.prefix()
            );
        }
        replies
            .iter()
            .map(|reply| match reply.as_ref().map(tagged) {
                // Its key is not a session: for this process the session is gone.
                None => Resynced::Stale,
                Some(Ok((b"same", items))) => Resynced::Same {
                    key_ttl_ms: items.get(1).map_or(1, unsigned).max(1),
                },
                Some(Ok((b"stale", _))) => Resynced::Stale,
                Some(Ok((b"restored", items))) => {
                    let version = items.get(1).map_or(0, unsigned);
                    if items.get(2).and_then(bytes) == Some(&b"o"[..]) {
                        Resynced::Rewritten(version)
                    } else {
                        Resynced::Restored(version)
                    }
                }
                Some(Ok((b"moved", items))) => {
                    Resynced::MovedBefore(items.get(1).map_or(0, unsigned))
                }
                Some(Ok((b"done", _))) => Resynced::Stale,
                Some(Ok((b"taken", _))) => Resynced::Taken,
                Some(_) => Resynced::Unknown,
            })
            .collect()
    }

    /// Runs `job` on the link thread and waits for it at most `redis_timeout`.
    fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(Counted) -> Job<T> + Send + 'static,
    ) -> Result<T> {
        self.run_for(self.shared.settings.timeout, job)
    }

    fn run_for<T: Send + 'static>(
        &self,
        timeout: Duration,
        job: impl FnOnce(Counted) -> Job<T> + Send + 'static,
    ) -> Result<T> {
        let shared = &self.shared;
        let runtime = shared.runtime()?;
        let Some(connection) = runtime.connection.lock().clone() else {
            return Err(self.unavailable());
        };
        let (reply_to, reply) = sync_channel(1);
        shared.counters.round_trips.fetch_add(1, Relaxed);
        runtime.handle.spawn(async move {
            let result = tokio::time::timeout(timeout, job(connection)).await;
            let _ = reply_to.send(result);
        });
        // A little longer than the job's own timeout, so the job's answer wins a tie.
        let answer = fork::outside(|| reply.recv_timeout(timeout + Duration::from_millis(5)));
        let answer = match answer {
            Ok(answer) => answer.map_err(|_| Stalled::Timeout),
            Err(RecvTimeoutError::Timeout) => Err(Stalled::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(Stalled::Stopped),
        };
        shared.outcome(&runtime, timeout, answer)
    }

    /// [`run`](Tier::run) for a caller that must not wait (Node's main thread): `done` gets
    /// the outcome on the link thread when the reply comes or the timeout passes, or here and
    /// now if the link is down. `done` runs inside the fork gate and must not wait on Redis.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce(Counted) -> Job<T> + Send + 'static,
        done: impl FnOnce(Result<T>) + Send + 'static,
    ) {
        let shared = &self.shared;
        let runtime = match shared.runtime() {
            Ok(runtime) => runtime,
            Err(e) => return done(Err(e)),
        };
        let Some(connection) = runtime.connection.lock().clone() else {
            return done(Err(self.unavailable()));
        };
        shared.counters.round_trips.fetch_add(1, Relaxed);
        let timeout = shared.settings.timeout;
        let (tier, on_thread) = (Arc::clone(shared), Arc::clone(&runtime));
        let done = CalledOnce::new(done);
        runtime.handle.spawn(async move {
            let answer = tokio::time::timeout(timeout, job(connection))
                .await
                .map_err(|_| Stalled::Timeout);
            let _pass = fork::enter();
            done.call(tier.outcome(&on_thread, timeout, answer));
        });
    }
}

/// A completion that runs exactly once: with the outcome, or, if the task carrying it is
/// dropped unrun (the link thread stopped, or its runtime is shutting down), with
/// `unavailable`, so a caller's promise always settles.
struct CalledOnce<T, F: FnOnce(Result<T>)>(Option<F>, std::marker::PhantomData<fn(T)>);

impl<T, F: FnOnce(Result<T>)> CalledOnce<T, F> {
    fn new(done: F) -> Self {
        Self(Some(done), std::marker::PhantomData)
    }

    fn call(mut self, outcome: Result<T>) {
        if let Some(done) = self.0.take() {
            done(outcome);
        }
    }
}

impl<T, F: FnOnce(Result<T>)> Drop for CalledOnce<T, F> {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            let _pass = fork::enter();
            done(Err(Error::Unavailable(
                "the Redis link thread stopped before Redis answered".into(),
            )));
        }
    }
}

/// A step that runs exactly once: when called, or when dropped uncalled (the task carrying
/// it dropped unrun as the link thread stops), so that a caller's promise always settles.
struct RunsOnce<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> RunsOnce<F> {
    fn run(mut self) {
        if let Some(then) = self.0.take() {
            then();
        }
    }
}

impl<F: FnOnce()> Drop for RunsOnce<F> {
    fn drop(&mut self) {
        if let Some(then) = self.0.take() {
            let _pass = fork::enter();
            then();
        }
    }
}

/// Why a request to Redis has no answer.
enum Stalled {
    Timeout,
    /// The link thread is gone (the store is closing).
    Stopped,
}

impl Drop for Tier {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Owned by the store handles: dropping the last one closes the tier on that thread, so no
/// thread of the tier outlives the store (a C program may unload the library next). The
/// tier's own threads may hold the store for a moment, and the store's last reference may
/// then go on one of them, after the caller's handle is gone.
pub(crate) struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl Shared {
    /// Stops the link thread and the resync threads, and waits for them: each is at most one
    /// operation timeout from noticing. Idempotent.
    fn close(&self) {
        self.closed.store(true, SeqCst);
        // As a lost link: no copy is trusted any more (nothing would invalidate it).
        self.up.store(false, SeqCst);
        self.generation.fetch_add(1, SeqCst);
        let Some(runtime) = self.runtime.lock().take() else {
            return;
        };
        if self.fork_generation.load(SeqCst) != fork::generation() {
            // The parent's threads do not exist here; its state may hold locks forever.
            std::mem::forget(runtime);
            return;
        }
        runtime.closing.store(true, SeqCst);
        runtime.wake.notify_one();
        let here = std::thread::current().id();
        let on_link_thread = *runtime.thread_id.lock() == Some(here);
        let link = runtime.thread.lock().take().filter(|_| !on_link_thread);
        // Joined outside the fork gate: the last handle may go inside a pass (a completion on
        // the link thread), and a thread joined may be waiting to enter the gate while a fork
        // waits for that pass.
        fork::outside(|| {
            if let Some(link) = link {
                let _ = link.join();
            }
            // Taken once the link thread is gone, and `closing` set: no more are started.
            let resyncs = std::mem::take(&mut *runtime.resyncs.lock());
            for resync in resyncs {
                if resync.thread().id() != here {
                    let _ = resync.join();
                }
            }
        });
    }

    /// Whether the store is closing (or closed). An atomic, not the runtime's lock: it is
    /// read outside the fork gate.
    fn closing(&self) -> bool {
        self.closed.load(SeqCst)
    }
}

impl Shared {
    /// What a request's answer means for the caller and for the link: errors count, a broken
    /// connection is a lost link at once, and so are three timeouts in a row.
    fn outcome<T>(
        &self,
        runtime: &Runtime,
        timeout: Duration,
        answer: std::result::Result<redis::RedisResult<T>, Stalled>,
    ) -> Result<T> {
        let why = match answer {
            Ok(Ok(value)) => {
                self.timeouts_in_a_row.store(0, Relaxed);
                return Ok(value);
            }
            Ok(Err(e)) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                self.counters.failures.fetch_add(1, Relaxed);
                return Err(Error::Unavailable(format!(
                    "Redis refused the request: {e}"
                )));
            }
            Ok(Err(e)) => {
                // A broken connection is a lost link now, not after three timeouts.
                if e.is_io_error() || e.is_connection_dropped() {
                    self.link_lost(runtime);
                }
                format!("the connection to Redis failed: {e}")
            }
            Err(Stalled::Timeout) => {
                format!("Redis did not answer within {} ms", timeout.as_millis())
            }
            Err(Stalled::Stopped) => "the Redis link thread stopped".to_string(),
        };
        self.counters.failures.fetch_add(1, Relaxed);
        if self.timeouts_in_a_row.fetch_add(1, Relaxed) + 1 >= TIMEOUTS_FOR_LOSS {
            self.link_lost(runtime);
        }
        Err(Error::Unavailable(why))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Waits while the first connection attempt is under way: until the link is up, the attempt
    /// has failed, or `CONNECT_TIMEOUT` has passed (the attempt's own limit). Outside the fork
    /// gate: a fork meanwhile must not wait for this wait, nor the link thread, which enters the
    /// gate to bring the link up, for that fork.
    #[cold]
    fn wait_for_first_connection(&self) {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        fork::outside(|| {
            while self.first_connect_pending.load(SeqCst)
                && !self.up.load(SeqCst)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    }

    fn sink(&self) -> Option<Arc<dyn Sink>> {
        self.sink.lock().as_ref()?.upgrade()
    }

    /// This process's runtime; in a forked child, a new one (the parent's is forgotten).
    fn runtime(self: &Arc<Self>) -> Result<Arc<Runtime>> {
        let now = fork::generation();
        if self.fork_generation.load(SeqCst) != now {
            self.restart_after_fork(now)?;
        }
        self.runtime
            .lock()
            .clone()
            .ok_or_else(|| Error::Unavailable("the store is closing".into()))
    }

    #[cold]
    fn restart_after_fork(self: &Arc<Self>, now: u64) -> Result<()> {
        let mut slot = self.runtime.lock();
        if self.fork_generation.load(SeqCst) == now {
            // Another thread restarted the link while this one waited for the lock: it waits
            // for the first connection too.
            drop(slot);
            self.wait_for_first_connection();
            return Ok(());
        }
        if self.closing() {
            return Err(Error::Unavailable("the store was closed".into()));
        }
        if let Some(parents) = slot.take() {
            std::mem::forget(parents);
            let parents_link = self.up.load(SeqCst).then(|| self.generation.load(SeqCst));
            self.forget_parents_changes(parents_link);
        }
        // The parent's tracking connection is not ours: every copy is unverified until the
        // child's own link has checked it.
        self.up.store(false, SeqCst);
        self.generation.fetch_add(1, SeqCst);
        // After the copies are unverified, as in `link_lost`.
        self.input.detach();
        self.input.forget_in_flight();
        self.down_since.store(self.now_ms(), SeqCst);
        *self.touches.lock() = HashMap::new();
        *self.touches_in_flight.lock() = HashMap::new();
        // Before the generation is stored: a call that sees it sees this too.
        self.first_connect_pending.store(true, SeqCst);
        *slot = Some(spawn_runtime(self)?);
        self.fork_generation.store(now, SeqCst);
        drop(slot);
        self.wait_for_first_connection();
        Ok(())
    }

    /// In a forked child, once: changes the parent made while Redis was down are the parent's
    /// to replay. Replayed again from here, later, they would undo what happened since (a log-out
    /// everywhere replayed from here would log out the user's next login). The copies they left
    /// go too: their versions were issued by the parent alone, and one may equal a version
    /// Redis issued for other data meanwhile, which a check would take for it. Such a copy is
    /// in a stripe the parent's link (`parents_link`, if up) had not verified, whether or not
    /// the parent's resync had taken its change in hand when the fork came.
    fn forget_parents_changes(&self, parents_link: Option<u64>) {
        self.pending.clear();
        self.replays.lock().clear();
        self.replays_in_flight.store(0, SeqCst);
        if let Some(sink) = self.sink() {
            sink.forget_unverified(parents_link);
        }
    }

    /// Marks the link lost: every copy unverified, no request waits on it until reconnected.
    fn link_lost(&self, runtime: &Runtime) {
        if self.up.swap(false, SeqCst) {
            self.generation.fetch_add(1, SeqCst);
            self.down_since.store(self.now_ms(), SeqCst);
            self.counters.disconnects.fetch_add(1, Relaxed);
        }
        // After the copies are unverified: the detach wakes reads waiting for the link, which
        // must find their copies untrusted.
        self.input.detach();
        *runtime.connection.lock() = None;
        runtime.wake.notify_one();
    }

    fn link_up(&self, runtime: &Runtime, connection: Counted) -> u64 {
        *runtime.connection.lock() = Some(connection);
        self.timeouts_in_a_row.store(0, SeqCst);
        let since = self.down_since.swap(u64::MAX, SeqCst);
        if since != u64::MAX {
            self.counters
                .down_ms
                .fetch_add(self.now_ms().saturating_sub(since), Relaxed);
        }
        let generation = self.generation.load(SeqCst);
        self.up.store(true, SeqCst);
        generation
    }
}

fn spawn_runtime(shared: &Arc<Shared>) -> Result<Arc<Runtime>> {
    let cannot = |e: std::io::Error| {
        Error::InvalidConfig(format!("could not start the Redis link thread: {e}"))
    };
    let tokio_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(cannot)?;
    let runtime = Arc::new(Runtime {
        handle: tokio_runtime.handle().clone(),
        connection: Mutex::new(None),
        wake: tokio::sync::Notify::new(),
        closing: AtomicBool::new(false),
        thread: Mutex::new(None),
        thread_id: Mutex::new(None),
        resyncs: Mutex::new(Vec::new()),
    });
    let weak = Arc::downgrade(shared);
    let for_thread = runtime.clone();
    let thread = std::thread::Builder::new()
        .name("coatcheck-redis".into())
        .spawn(move || {
            // However the thread ends (a panic included), no call waits for a first attempt
            // it will not make.
            let _first_attempt_over = FirstAttemptOver(weak.clone());
            *for_thread.thread_id.lock() = Some(std::thread::current().id());
            give_way_to_callers();
            tokio_runtime.block_on(supervise(weak, for_thread));
        })
        .map_err(cannot)?;
    *runtime.thread.lock() = Some(thread);
    Ok(runtime)
}

/// Clears `first_connect_pending` when dropped.
struct FirstAttemptOver(Weak<Shared>);

impl Drop for FirstAttemptOver {
    fn drop(&mut self) {
        if let Some(tier) = self.0.upgrade() {
            tier.first_connect_pending.store(false, SeqCst);
        }
    }
}

/// Puts the calling thread (the link thread) under Linux's `SCHED_BATCH` if it inherited the
/// ordinary policy: woken by a call or an answer, it then does not preempt the thread running on
/// the core, but runs when a core comes free or that thread's time slice ends, and handles
/// whatever has queued up by then in one turn. Where the callers' threads fill the cores (an
/// Express cluster writing through Redis), each wake-up preempting them cost more than the wait:
/// the Express write benchmark ran 16–19% more requests a second under it, with a lower p99 (see
/// BENCHMARKS.md). A thread that inherited another policy (real-time, or `SCHED_IDLE`) keeps it:
/// the application chose it. A failure to change it changes nothing else.
fn give_way_to_callers() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls act on the calling thread only (pid 0) and read `param` during the call.
    unsafe {
        if let Some(policy) = link_policy(libc::sched_getscheduler(0)) {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, policy, &param);
        }
    }
}

/// The policy the link thread takes, given the one it inherited: `None` keeps it. (A new
/// thread never inherits `SCHED_RESET_ON_FORK`, so the policy comes without that flag.)
#[cfg(target_os = "linux")]
fn link_policy(inherited: libc::c_int) -> Option<libc::c_int> {
    (inherited == libc::SCHED_OTHER).then_some(libc::SCHED_BATCH)
}

/// The link thread's loop: connect, serve until the link is lost, reconnect with backoff.
async fn supervise(shared: Weak<Shared>, runtime: Arc<Runtime>) {
    let mut backoff = Duration::from_millis(25);
    while !runtime.closing.load(SeqCst) {
        let Some(tier) = shared.upgrade() else { return };
        // Set before `runtime.closing`: a link that served until the close does not come up
        // again in between.
        if tier.closing() {
            break;
        }
        match connect(&tier, &shared).await {
            Ok(connection) => {
                backoff = Duration::from_millis(25);
                let (connection, epoch) = connection;
                let before = tier.data_epoch.swap(epoch, SeqCst);
                if before != 0 && before != epoch {
                    tier.unrepaired_epoch.store(epoch, SeqCst);
                }
                let lost_data = tier.unrepaired_epoch.load(SeqCst) == epoch;
                let generation = {
                    let _pass = fork::enter();
                    let generation = tier.link_up(&runtime, connection.clone());
                    *tier.last_resync.lock() = (generation, epoch, lost_data);
                    generation
                };
                tier.first_connect_pending.store(false, SeqCst);
                start_resync(&runtime, shared.clone(), generation, epoch, lost_data);
                drop(tier);
                serve(&shared, &runtime, connection).await;
            }
            Err(_) => {
                tier.first_connect_pending.store(false, SeqCst);
                drop(tier);
                let _ = tokio::time::timeout(backoff, runtime.wake.notified()).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    let _pass = fork::enter();
    *runtime.connection.lock() = None;
}

/// Starts [`resync_until_done`] on a thread of its own, which the store's close joins; none
/// once the close has begun (checked under the lock the close takes the threads under).
fn start_resync(
    runtime: &Runtime,
    shared: Weak<Shared>,
    generation: u64,
    epoch: u64,
    lost_data: bool,
) {
    let mut resyncs = runtime.resyncs.lock();
    if runtime.closing.load(SeqCst) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("coatcheck-resync".into())
        .spawn(move || resync_until_done(&shared, generation, epoch, lost_data));
    if let Ok(thread) = spawned {
        resyncs.retain(|resync| !resync.is_finished());
        resyncs.push(thread);
    }
}

/// Checks the local copies after the link came up at `generation`, and tries again, with
/// backoff, until every copy has been checked or the link is gone (the next link's resync
/// takes over). A batch can fail with the link still up (a reply past the timeout, an error
/// reply), and giving up then would leave the near cache off and the changes made while down
/// unreplayed until the next disconnect. Holds the store only while it checks.
fn resync_until_done(shared: &Weak<Shared>, generation: u64, epoch: u64, lost_data: bool) {
    let mut backoff = Duration::from_millis(25);
    let mut changed_pause = Duration::from_millis(1);
    loop {
        let sink = {
            let Some(tier) = shared.upgrade() else { return };
            if tier.generation.load(SeqCst) != generation || !tier.up.load(SeqCst) || tier.closing()
            {
                return;
            }
            let _pass = fork::enter();
            let Some(sink) = tier.sink() else { return };
            sink
        };
        let outcome = sink.resync(generation, lost_data);
        drop(sink);
        match outcome {
            PassOutcome::Done => {
                if let Some(tier) = shared.upgrade() {
                    // Written back: a later link need not take missing sessions for lost.
                    let _ = tier
                        .unrepaired_epoch
                        .compare_exchange(epoch, 0, SeqCst, SeqCst);
                }
                return;
            }
            PassOutcome::ChangedMeanwhile => {
                // Soon, not after the backoff for a Redis that did not answer: a pause of a
                // few ms at most, so that calls on a session changed on every request do not
                // make passes back to back, each sending the stripe's copies again.
                std::thread::sleep(changed_pause);
                changed_pause = (changed_pause * 2).min(MAX_CHANGED_PAUSE);
                continue;
            }
            PassOutcome::Failed => {}
        }
        // In steps, so that a store that closes waits for one step at most.
        let until = Instant::now() + backoff;
        while !shared.upgrade().is_none_or(|tier| tier.closing()) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(10)));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects, sets up the connection and enables tracking, all within `CONNECT_TIMEOUT`: a
/// server that accepts and then says nothing must not stall the link thread.
async fn connect(tier: &Shared, weak: &Weak<Shared>) -> redis::RedisResult<(Counted, u64)> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_untimed(tier, weak)).await {
        Ok(connected) => connected,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Redis did not complete the connection setup in time",
        )
        .into()),
    }
}

async fn connect_untimed(tier: &Shared, weak: &Weak<Shared>) -> redis::RedisResult<(Counted, u64)> {
    let pushes = weak.clone();
    let connection = tier.connections.fetch_add(1, SeqCst) + 1;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None)
        .set_push_sender(move |push: PushInfo| {
            if let Some(tier) = pushes.upgrade() {
                tier.on_push(push, connection);
            }
            Ok::<(), ()>(())
        });
    // Our own socket, so request threads can see its unread input (see `watched`).
    let mut connection = match tier.settings.connection.addr() {
        redis::ConnectionAddr::Tcp(host, port) => {
            let stream =
                within_connect_timeout(tokio::net::TcpStream::connect((host.as_str(), *port)))
                    .await?;
            stream.set_nodelay(true)?;
            let fd = socket_fd(&stream);
            over_watched(tier, stream, fd, config).await?
        }
        redis::ConnectionAddr::TcpTls { host, port, .. } => {
            let tcp =
                within_connect_timeout(tokio::net::TcpStream::connect((host.as_str(), *port)))
                    .await?;
            tcp.set_nodelay(true)?;
            // Unread bytes on the socket are still encrypted: counted all the same.
            let fd = socket_fd(&tcp);
            let tls =
                tier.settings.tls.as_ref().ok_or_else(|| {
                    std::io::Error::other("rediss:// without a TLS configuration")
                })?;
            let stream = tls.connect(tcp).await?;
            over_watched(tier, stream, fd, config).await?
        }
        #[cfg(unix)]
        redis::ConnectionAddr::Unix(path) => {
            let stream = within_connect_timeout(tokio::net::UnixStream::connect(path)).await?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
            over_watched(tier, stream, fd, config).await?
        }
        _ => {
            let client = redis::Client::open(tier.settings.connection.clone())?;
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await?
        }
    };
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(tier.keys.tracked_prefix())
        .arg("NOLOOP")
        .exec_async(&mut connection)
        .await?;
    warn_if_redis_may_evict(tier, &mut connection).await;
    // Which incarnation of Redis's data this is: the first store to find none sets it.
    let fresh: u64 = {
        use rand::{RngCore, SeedableRng};
        rand::rngs::StdRng::from_os_rng().next_u64() | 1
    };
    // A new epoch opens the recovery window (see `scripts`), in one transaction with it: a
    // process that finds the epoch goes on to write its copies back, so the window must be open
    // whenever the epoch can be seen. Plain commands, not a script: a link must come up even
    // while Redis refuses scripts.
    let epoch_key = tier.keys.epoch();
    let found: Option<u64> = redis::cmd("GET")
        .arg(&epoch_key)
        .query_async(&mut connection)
        .await?;
    let epoch = match found {
        Some(epoch) => epoch,
        None => {
            let window = tier.keys.recovery_window();
            let (other,): (Option<u64>,) = redis::pipe()
                .atomic()
                .hset(&window, "open", 1)
                .ignore()
                .pexpire(&window, RECOVERY_WINDOW.as_millis() as i64)
                .ignore()
                .cmd("SET")
                .arg(&epoch_key)
                .arg(fresh)
                .arg("NX")
                .arg("GET")
                .query_async(&mut connection)
                .await?;
            // Another process began it first: its window was opened with it (this one only
            // restarted the window's clock).
            other.unwrap_or(fresh)
        }
    };
    Ok((Counted::new(connection, tier.input.clone()), epoch))
}

/// Says so, once per store, when Redis runs an `allkeys-*` maxmemory policy: under memory
/// pressure it may then evict `<prefix>epoch`, which has no TTL and is read only when a link
/// comes up, so it goes first; every store would take that for lost data and write its copies
/// back, bringing back sessions logged out meanwhile by a process it cannot hear from. Job
/// queues on Redis warn the same way. A server that refuses `CONFIG` (a managed service, an
/// ACL) is not asked again and not warned about.
async fn warn_if_redis_may_evict(tier: &Shared, connection: &mut MultiplexedConnection) {
    if tier.warned_of_eviction.load(Relaxed) {
        return;
    }
    let reply: redis::RedisResult<HashMap<String, String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(connection)
        .await;
    let policy = match reply {
        Ok(mut settings) => settings.remove("maxmemory-policy").unwrap_or_default(),
        // Refused (an error reply): not asked again. A connection that failed is, next time.
        Err(e) if e.code().is_some() => String::new(),
        Err(_) => return,
    };
    if policy.is_empty() || policy.starts_with("allkeys-") {
        tier.warned_of_eviction.store(true, Relaxed);
    }
    if policy.starts_with("allkeys-") {
        eprintln!(
            "coatcheck: Redis runs maxmemory-policy {policy}: under memory pressure it may evict \
             the key {:?}, which the stores under this prefix take for lost data, and sessions \
             with it. Set maxmemory-policy to noeviction (Redis's default) or a volatile-* \
             policy.",
            tier.keys.epoch()
        );
    }
}

async fn within_connect_timeout<T>(
    connecting: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// The Redis connection over `stream`, whose reads report to the link's input state.
async fn over_watched<S>(
    tier: &Shared,
    stream: S,
    fd: i32,
    config: AsyncConnectionConfig,
) -> redis::RedisResult<MultiplexedConnection>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (stream, number) = watched::Watched::new(stream, tier.input.clone());
    let (connection, driver) = MultiplexedConnection::new_with_config(
        tier.settings.connection.redis_settings(),
        stream,
        config,
    )
    .await?;
    tokio::spawn(driver);
    tier.input.attach(&number, fd);
    Ok(connection)
}

#[cfg(unix)]
fn socket_fd(stream: &tokio::net::TcpStream) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(stream)
}

#[cfg(not(unix))]
fn socket_fd(_stream: &tokio::net::TcpStream) -> i32 {
    -1
}

impl Shared {
    /// Runs on the link thread, inside the connection's reader: must not wait on Redis.
    /// A push from the `connection`-th connection made.
    fn on_push(&self, push: PushInfo, connection: u64) {
        // An older connection's end, reported late, is not this link's: it was replaced only
        // after it was lost. Taken for the link being set up, it would detach its socket
        // from the unread-input check (see `watched`) for the life of that link.
        let from_an_older_connection = connection != self.connections.load(SeqCst);
        match push.kind {
            PushKind::Invalidate => {
                let _pass = fork::enter();
                let Some(sink) = self.sink() else { return };
                let mut any = false;
                for item in &push.data {
                    match item {
                        Value::Array(keys) => {
                            for key in keys {
                                if let Some(hash) = bytes(key).and_then(|k| self.keys.hash_in(k)) {
                                    self.counters.invalidations.fetch_add(1, Relaxed);
                                    if let Some(suspect) = sink.invalidate(&hash) {
                                        self.suspects.lock().push(suspect);
                                    }
                                }
                            }
                            any = true;
                        }
                        // A flush of the whole database: nothing local can be trusted.
                        Value::Nil => {}
                        _ => any = true,
                    }
                }
                let runtime = self.runtime.lock().clone();
                if let Some(runtime) = runtime {
                    if any {
                        // The serve loop revalidates the suspects now, not at its next tick.
                        runtime.wake.notify_one();
                    } else {
                        self.link_lost(&runtime);
                    }
                }
            }
            PushKind::Disconnection if from_an_older_connection => {}
            PushKind::Disconnection => {
                let _pass = fork::enter();
                if let Some(runtime) = self.runtime.lock().clone() {
                    self.link_lost(&runtime);
                }
            }
            _ => {}
        }
    }
}

/// While the link is up: a heartbeat, and the touch flusher. Returns when the link is lost or
/// the store is closing.
async fn serve(shared: &Weak<Shared>, runtime: &Runtime, mut connection: Counted) {
    let mut last_ping = Instant::now();
    loop {
        let _ = tokio::time::timeout(TOUCH_FLUSH_INTERVAL, runtime.wake.notified()).await;
        let Some(tier) = shared.upgrade() else { return };
        // Read before `closed`, which a close sets before it clears `up`: a link found down
        // here by a close is then found closing too, and not taken for a lost link.
        let up = tier.up.load(SeqCst);
        if runtime.closing.load(SeqCst) || tier.closing() {
            // A clean close sends the touches still queued, as a store that sends each touch
            // at once (connect-redis) would have: else the keys of sessions read in the last
            // interval would end up to a touch step before their users' deadlines. Within one
            // operation timeout, as any call: the last handle may be dropped where waiting
            // hurts (a garbage collector's finalizer on Node's main thread).
            let _ =
                tokio::time::timeout(tier.settings.timeout, flush_touches(&tier, &mut connection))
                    .await;
            return;
        }
        if !up {
            return;
        }
        revalidate(&tier, &connection).await;
        if !flush_touches(&tier, &mut connection).await {
            let _pass = fork::enter();
            tier.link_lost(runtime);
            return;
        }
        if last_ping.elapsed() >= HEARTBEAT_INTERVAL {
            last_ping = Instant::now();
            let ping = redis::cmd("PING");
            let answered = tokio::time::timeout(
                HEARTBEAT_TIMEOUT,
                ping.query_async::<Value>(&mut connection),
            )
            .await;
            if !matches!(answered, Ok(Ok(_))) {
                let _pass = fork::enter();
                tier.link_lost(runtime);
                return;
            }
        }
    }
}

/// Asks Redis whether each suspect copy is still current (its version and owner, a CONFIRM
/// script per batch) and trusts again those that are. This is what keeps a process's own
/// writes cached: Redis 7.0 invalidates them too.
async fn revalidate(tier: &Shared, connection: &Counted) {
    let suspects = {
        let _pass = fork::enter();
        std::mem::take(&mut *tier.suspects.lock())
    };
    if suspects.is_empty() {
        return;
    }
    // A batch per round trip: a copy confirmed by a script of its own per key cost a Redis
    // command and a reply each, and own-write confirmations come with nearly every write.
    for batch in suspects.chunks(RESYNC_BATCH) {
        let mut call = scripts::CONFIRM.prepare_invoke();
        for suspect in batch {
            call.key(tier.keys.session(&suspect.hash))
                .arg(suspect.version)
                .arg(suspect.owner.as_deref().unwrap_or(""));
        }
        tier.counters.round_trips.fetch_add(1, Relaxed);
        let mut connection = connection.clone();
        let reply = tokio::time::timeout(
            HEARTBEAT_TIMEOUT,
            call.invoke_async::<Value>(&mut connection),
        )
        .await;
        // Unanswered, the copies stay in doubt (a read asks Redis about them), and so do the
        // later batches: a Redis that did not answer one would hold up the heartbeat for a
        // timeout per batch.
        let Ok(Ok(Value::Array(current))) = reply else {
            return;
        };
        let _pass = fork::enter();
        let Some(sink) = tier.sink() else { return };
        for (suspect, current) in batch.iter().zip(&current) {
            if unsigned(current) == 1 {
                sink.confirm(suspect);
            }
        }
    }
}

/// Sends the queued touches; false if the link failed.
async fn flush_touches(tier: &Shared, connection: &mut Counted) -> bool {
    let batch: Vec<(KeyHash, Touch)> = {
        let _pass = fork::enter();
        let mut touches = tier.touches.lock();
        if touches.is_empty() {
            return true;
        }
        let batch: Vec<(KeyHash, Touch)> = std::mem::take(&mut *touches).into_iter().collect();
        let mut in_flight = tier.touches_in_flight.lock();
        for (hash, touch) in &batch {
            if let Some(idle) = touch.idle_ms {
                in_flight.insert(*hash, (idle, touch.version));
            }
        }
        batch
    };
    let sent = flush_batch(tier, connection, &batch).await;
    // Answered (or not at all): a write sent from now on comes after the batch.
    let _pass = fork::enter();
    let mut in_flight = tier.touches_in_flight.lock();
    for (hash, touch) in &batch {
        if let Some(idle) = touch.idle_ms {
            if in_flight.get(hash) == Some(&(idle, touch.version)) {
                in_flight.remove(hash);
            }
        }
    }
    sent
}

/// Sends one batch of touches taken from the queue; false if the link failed.
async fn flush_batch(tier: &Shared, connection: &mut Counted, batch: &[(KeyHash, Touch)]) -> bool {
    for chunk in batch.chunks(RESYNC_BATCH) {
        let mut call = scripts::TOUCH.prepare_invoke();
        call.arg(tier.keys.prefix())
            .arg(tier.settings.absolute_ttl_ms.unwrap_or(0));
        let now = tier.now_ms();
        for (hash, touch) in chunk {
            // A touch sent within its batching interval counts from the send, as the key's
            // step of slack allows; only a longer wait (an outage) comes off its TTL, which
            // would otherwise stretch the key past the session's deadline by that much.
            let waited = now.saturating_sub(touch.queued_ms);
            let overdue = waited.saturating_sub(TOUCH_FLUSH_INTERVAL.as_millis() as u64);
            call.key(tier.keys.session(hash))
                .arg(touch.ttl_ms.saturating_sub(overdue).max(1))
                .arg(touch.idle_ms.unwrap_or(0))
                .arg(touch.version);
        }
        tier.counters.round_trips.fetch_add(1, Relaxed);
        let sent =
            tokio::time::timeout(HEARTBEAT_TIMEOUT, call.invoke_async::<Value>(connection)).await;
        let Ok(Ok(Value::Array(gone))) = sent else {
            // Unanswered touches mean the link cannot be trusted with invalidations either.
            tier.counters.failures.fetch_add(1, Relaxed);
            return false;
        };
        tier.counters
            .touches_sent
            .fetch_add(chunk.len() as u64, Relaxed);
        if gone.is_empty() {
            continue;
        }
        // Sessions Redis no longer holds (expired there first): the copies in checked stripes
        // become suspect, and a suspect copy is never served while up (see
        // `Sink::gone_from_redis`).
        let _pass = fork::enter();
        if let Some(sink) = tier.sink() {
            let generation = tier.generation.load(SeqCst);
            for n in &gone {
                if let Some((hash, _)) = usize::try_from(number(n))
                    .ok()
                    .and_then(|n| chunk.get(n.wrapping_sub(1)))
                {
                    sink.gone_from_redis(hash, generation);
                }
            }
        }
    }
    true
}

fn tagged(reply: &Value) -> Result<(&[u8], &[Value])> {
    if let Value::Array(items) = reply {
        if let Some(tag) = items.first().and_then(bytes) {
            return Ok((tag, items));
        }
    }
    Err(unexpected(reply))
}

fn unexpected(reply: &Value) -> Error {
    Error::Unavailable(format!("unexpected reply from Redis: {reply:?}"))
}

/// The WRITE script's reply: the session as stored, or the precondition that failed.
fn written(reply: &Value, expected: u64) -> Result<Loaded> {
    let (tag, items) = tagged(reply)?;
    match tag {
        b"conflict" => Err(Error::Conflict {
            expected,
            actual: items.get(1).map_or(0, unsigned),
        }),
        b"missing" => Err(Error::NotFound),
        _ => parse_session(reply),
    }
}

fn parse_found(reply: Value) -> Result<Found> {
    if matches!(reply, Value::Nil) {
        return Ok(Found::Gone);
    }
    let (tag, items) = tagged(&reply)?;
    if tag == b"same" {
        let idle_ms = items.get(2).map(unsigned).filter(|&ms| ms > 0);
        let key_ttl_ms = items.get(1).map_or(1, unsigned).max(1);
        return Ok(Found::Same {
            idle_ms,
            key_ttl_ms,
        });
    }
    parse_session(&reply).map(Found::Session)
}

/// `{'s', value, version, deadline at the earliest (ms), idle, absolute remaining (-1: none),
/// owner ('' : none), key TTL}`.
fn parse_session(reply: &Value) -> Result<Loaded> {
    let (tag, items) = tagged(reply)?;
    if tag != b"s" || items.len() < 8 {
        return Err(Error::Unavailable(format!(
            "unexpected reply from Redis: {reply:?}"
        )));
    }
    let absolute = number(&items[5]);
    let owner = bytes(&items[6]).unwrap_or_default();
    Ok(Loaded {
        value: bytes(&items[1]).unwrap_or_default().to_vec(),
        version: number(&items[2]).max(0) as u64,
        ttl_ms: number(&items[3]).max(0) as u64,
        key_ttl_ms: number(&items[7]).max(1) as u64,
        idle_ms: number(&items[4]).max(1) as u64,
        absolute_in_ms: (absolute >= 0).then_some(absolute.max(1) as u64),
        owner: (!owner.is_empty()).then(|| String::from_utf8_lossy(owner).into_owned()),
    })
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

fn unsigned(value: &Value) -> u64 {
    number(value).max(0) as u64
}

/// An integer reply, or a number sent as a string (`HGET` of a version); 0 otherwise.
fn number(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::{TouchPoints, touch_step_ms};

    #[cfg(target_os = "linux")]
    #[test]
    fn only_a_link_thread_of_the_ordinary_policy_changes_it() {
        use super::link_policy;
        assert_eq!(link_policy(libc::SCHED_OTHER), Some(libc::SCHED_BATCH));
        for chosen in [
            libc::SCHED_BATCH,
            libc::SCHED_IDLE,
            libc::SCHED_FIFO,
            libc::SCHED_RR,
        ] {
            assert_eq!(link_policy(chosen), None, "{chosen}");
        }
    }

    #[test]
    fn touch_steps_are_powers_of_two_of_at_most_a_quarter_of_the_timeout_and_a_minute() {
        for idle_ms in [
            1,
            3,
            4,
            7,
            300,
            2_000,
            3_999,
            4_000,
            4_096,
            600_000,
            1_800_000,
            u64::MAX,
        ] {
            let step = touch_step_ms(idle_ms);
            assert!(step.is_power_of_two(), "{idle_ms}: {step}");
            assert!(
                step <= (idle_ms / 4).max(1) && step <= 65_536,
                "{idle_ms}: {step}"
            );
            // The largest such: twice the step would break one of the bounds.
            assert!(
                2 * step > (idle_ms / 4).max(1) || 2 * step > 65_536,
                "{idle_ms}: {step}"
            );
        }
        // A timeout restated a few ms shorter on each request keeps its step.
        assert_eq!(touch_step_ms(4_000), touch_step_ms(3_993));
    }

    #[test]
    fn sessions_of_one_timeout_cross_their_touch_points_at_different_moments() {
        let idle_ms = 3_600_000; // express-session's maxAge of an hour: a step of 65,536 ms
        let hashes = [0u32, 1, 20_000, 65_535, 65_536, 0x9e37_79b9, u32::MAX];
        // Every deadline now + an hour, for the next two minutes, one ms apart: each session
        // crosses one touch point per step, and not all in the same ms.
        let mut first_crossings = Vec::new();
        for hash in hashes {
            let points = TouchPoints::new(idle_ms, hash);
            let mut crossings = Vec::new();
            for now in 0..120_000u64 {
                if points.crossed(now + idle_ms - 1, now + idle_ms) {
                    crossings.push(now);
                }
            }
            assert_eq!(crossings.len(), 2, "hash {hash}: {crossings:?}");
            assert_eq!(crossings[1] - crossings[0], points.step());
            first_crossings.push(crossings[0]);
            // The next point after a deadline is after it, within a step, and a deadline that
            // reaches it has crossed.
            for deadline in [0, 1, 65_535, 3_604_479, 3_604_480, u32::MAX.into()] {
                let next = points.next_after(deadline);
                assert!(next > deadline && next <= deadline + points.step());
                assert!(points.crossed(deadline, next) && !points.crossed(deadline, next - 1));
            }
        }
        first_crossings.sort_unstable();
        first_crossings.dedup();
        assert!(first_crossings.len() >= 5, "{first_crossings:?}");
        // The points of a shorter step include those of a longer one, for the same session.
        for hash in hashes {
            let (long, short) = (
                TouchPoints::new(idle_ms, hash),
                TouchPoints::new(20_000, hash),
            );
            assert!(short.step() < long.step());
            for deadline in (0..300_000u64).step_by(97) {
                let point = long.next_after(deadline);
                assert!(
                    short.crossed(point - 1, point),
                    "hash {hash}, point {point}"
                );
            }
        }
    }
}
