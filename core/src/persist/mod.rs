//! The restart log: every change from the change stream appended to a file before the call that
//! made it returns, compacted now and then into a snapshot, and read back when a store is built
//! on the same directory.
//!
//! The directory holds `lock` (held with `flock` for the life of the store), `snapshot.<gen>`
//! and the log files `log.<gen>.<segment>` (16 and 2 hex digits). A compaction switches appends
//! to generation `gen+1`, writes the table into `snapshot.<gen+1>.tmp` one stripe at a time,
//! renames it into place and only then deletes everything of a lower generation. So at any
//! moment the newest whole snapshot plus the logs of its generation and above hold every
//! acknowledged change, and loading is: that snapshot, then those generations in order (see
//! [`image`] for why the overlap is harmless).
//!
//! A generation is written to one file per segment, and each writing thread appends to its own
//! segment. A segment's file is made by its thread's first append to the generation, so a
//! process that writes from one thread, as Node and Python do, has one file (two once the
//! sweeper expires sessions). Writers on several cores then share no lock and no cache line,
//! where one file's mutex and end offset moved between cores on every append. Each record carries its stripe's delivery sequence number (see
//! `Change`), so a generation's files replay merged by it: the changes of one session (one
//! stripe) in the order they were made, whichever files they landed in. A switch of generation
//! takes every segment's lock at once, so a session's later change never lands in an earlier
//! generation. Older versions wrote one file per generation, `log.<gen>`, read in order.
//!
//! Damage never stops a store from starting: a file is read up to its first frame that does not
//! decode, the rest is copied aside next to it (`<name>.damaged-<ms>`) with one line on stderr,
//! and the store starts from the good prefix. A file whose header is wrong is set aside whole.

mod appender;
mod format;
mod image;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard};

use crate::config::Fsync;
use crate::error::{Error, Result};
use crate::store::{Change, ChangeKind, Previous};

pub(crate) use format::Record;
pub(crate) use image::{Image, Restored};

/// A log this much larger than the last snapshot (and at least [`COMPACT_MIN_BYTES`]) is
/// compacted: like Redis's `auto-aof-rewrite-percentage 100`.
const COMPACT_GROWTH: u64 = 1;
const COMPACT_MIN_BYTES: u64 = 64 << 20;
/// A snapshot being written is synced every this many bytes.
const WRITEBACK_STEP: u64 = 8 << 20;
/// How often the background thread syncs under [`Fsync::Interval`] and checks for compaction.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// Counters of the restart log.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records appended since the store was built.
    pub records: u64,
    /// Bytes in the current generation's log files.
    pub log_bytes: u64,
    /// Bytes in the last snapshot.
    pub snapshot_bytes: u64,
    /// Snapshots written (one when the store was built, then one per compaction).
    pub compactions: u64,
    /// Sessions restored when the store was built.
    pub restored: u64,
    /// Appends or syncs that failed; while the last one has not been cleared by a compaction,
    /// writes fail with [`Error::Unavailable`].
    pub failures: u64,
}

/// One segment's log file being appended to. Its fields that every append touches come first,
/// and with the mutex they fit in one cache line ([`Tail`]): when threads share a segment (more
/// of them than segments), the line moves to the appending core, and each further line would be
/// one more miss under the lock.
#[repr(C)]
struct Writer {
    /// Records appended to this file.
    appended: u64,
    appender: appender::Appender,
    /// Bytes of the file the last [`Fsync::Interval`] tick synced.
    synced_len: u64,
}

/// One segment's end and its threads' writes in progress, starting a cache line of their own.
/// `end` first (`repr(C)`): the mutex and the writer's hot fields keep their one line.
#[repr(C, align(64))]
struct Tail {
    end: Mutex<Option<Writer>>,
    /// Calls changing sessions (and touches that set a timeout) in progress on this segment's
    /// threads ([`Log::begin_write`], [`Log::begin_timeout_change`]), which
    /// [`Log::stop_writes`] waits for. Counted per segment, as the appends are: a count for
    /// the whole log was written by every writer twice per write, so its line moved between
    /// cores; now only threads that share a segment (more of them than segments) share one.
    writing: std::sync::atomic::AtomicUsize,
}

/// At most this many segments (threads beyond it share them).
const MAX_SEGMENTS: usize = 8;

/// One segment per core, up to [`MAX_SEGMENTS`].
fn segment_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_SEGMENTS))
}

/// Numbers the threads that write (that count a write in progress, or append), in the order
/// they first do: a thread's segment is its number modulo the segment count.
static WRITING_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Tail {
    fn new() -> Tail {
        Tail {
            end: Mutex::new(None),
            writing: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl std::ops::Deref for Tail {
    type Target = Mutex<Option<Writer>>;

    fn deref(&self) -> &Self::Target {
        &self.end
    }
}

thread_local! {
    /// Where this thread encodes a record before copying it into the log.
    static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// This thread's number among the threads that append: its segment, modulo their count.
    static WRITING_THREAD: usize = WRITING_THREADS.fetch_add(1, Relaxed);
    /// Appends that failed on this thread, ever: a call that changes sessions compares it
    /// before and after, and reports a change it made that the log could not record.
    static FAILED_APPENDS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many appends failed on this thread so far (see [`Log::unrecorded`]).
pub(crate) fn failed_appends_on_this_thread() -> u64 {
    FAILED_APPENDS.with(std::cell::Cell::get)
}

/// An open restart log. Built by [`Log::open`] with the files it found.
pub(crate) struct Log {
    dir: PathBuf,
    /// Held until the store closes: the `flock` is released then (and is never held by a
    /// forked child). `None` once released.
    lock: Mutex<Option<crate::fork::ProcessLock>>,
    /// Set by [`Log::stop_writes`]: writes are refused from then on.
    writes_stopped: AtomicBool,
    /// Set by [`Log::release`]: nothing is written to the directory any more.
    released: AtomicBool,
    fsync: Fsync,
    /// Wall-clock ms minus store-clock ms: measured when the store was built, and again every
    /// tick and before every snapshot, so that a wall clock set right while the store runs
    /// (NTP stepping a VM's clock after boot) does not leave every deadline written since off
    /// by the step.
    offset_ms: AtomicI64,
    /// The fork generation that opened the log: a forked child never writes to it.
    fork_generation: u64,
    /// Slides smaller than this are not logged (see [`slide_slack`]).
    pub(crate) slide_slack: Duration,
    /// The highest generation found when the log was opened; appends start above it.
    last_generation: u64,
    /// The generation appends go to: 0 until the first snapshot (made as the store is built)
    /// starts one. Changed under every segment's lock, so read under any one it is the
    /// generation that segment's writer belongs to.
    generation: AtomicU64,
    /// One per segment; `None` until a thread of that segment appends to the generation.
    segments: Box<[Tail]>,
    /// Why the last append failed, while the log is failed.
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    /// Appends and syncs that failed: a snapshot clears `failed` only if none failed after it
    /// began (a change whose append failed then may be in neither the snapshot nor the log).
    append_failures: AtomicU64,
    compaction_failing: AtomicBool,
    /// One compaction at a time.
    compaction: Mutex<()>,
    /// When the last [`Fsync::Interval`] sync began.
    last_sync: Mutex<std::time::Instant>,
    /// Under [`Fsync::Interval`]: a log file was made since the directory was last synced. The
    /// next tick syncs it, where the writer that made the file would have, on the caller's
    /// thread (an event loop's, or under the GIL) and under its segment's lock.
    directory_unsynced: AtomicBool,
    /// Records appended to the log files of the generations before the current one.
    records_before: AtomicU64,
    snapshot_bytes: AtomicU64,
    compactions: AtomicU64,
    restored: AtomicU64,
    failures: AtomicU64,
}

/// How far a slide must move a deadline before it is logged: 1/64 of the idle timeout, between
/// 1 s and 1 min. After a restart a session that was only read expires at most this much
/// earlier than it would have.
pub(crate) fn slide_slack(idle_timeout: Duration) -> Duration {
    (idle_timeout / 64).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Sessions a load makes room for ahead; beyond, its table grows as it fills.
const RESERVE_AT_MOST: usize = 4 << 20;

fn wall_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> Error {
    Error::InvalidConfig(format!("persist_path: {what} {}: {e}", path.display()))
}

/// A file of the log directory, by generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Named {
    Snapshot(u64),
    /// A generation's log file of one segment; `None` for the one file of a generation that
    /// an older version wrote (`log.<gen>`).
    Log(u64, Option<u8>),
}

impl Named {
    fn generation(self) -> u64 {
        match self {
            Named::Snapshot(g) | Named::Log(g, _) => g,
        }
    }

    fn name(self) -> String {
        match self {
            Named::Snapshot(g) => format!("snapshot.{g:016x}"),
            Named::Log(g, None) => format!("log.{g:016x}"),
            Named::Log(g, Some(segment)) => format!("log.{g:016x}.{segment:02x}"),
        }
    }
}

fn parse_name(name: &str) -> Option<Named> {
    let (kind, rest) = name.split_once('.')?;
    let (generation, segment) = match rest.split_once('.') {
        Some((generation, segment)) if kind == "log" && segment.len() == 2 => {
            (generation, Some(u8::from_str_radix(segment, 16).ok()?))
        }
        Some(_) => return None,
        None => (rest, None),
    };
    if generation.len() != 16 {
        return None;
    }
    let generation = u64::from_str_radix(generation, 16).ok()?;
    let named = match kind {
        "snapshot" if segment.is_none() => Named::Snapshot(generation),
        "log" => Named::Log(generation, segment),
        _ => return None,
    };
    // Only names as this version writes them (lowercase hex, no sign): another spelling of
    // the same name would be read twice.
    (named.name() == name).then_some(named)
}

fn snapshot_name(generation: u64) -> String {
    Named::Snapshot(generation).name()
}

/// Creates a file only its owner may read (session data is private), open for reading too: a
/// writable shared mapping needs both.
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Log {
    /// Opens (creating it if needed) the log directory at `dir`, locks it, and reads what it
    /// holds. `clock_now_ms` is the store clock now.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the parent directory does not exist, the directory cannot be
    /// created or read, or another process holds it.
    pub(crate) fn open(
        dir: &Path,
        fsync: Fsync,
        idle_timeout: Duration,
        clock_now_ms: u64,
    ) -> Result<(Log, Found)> {
        // Measured at once, next to the store's clock: reading the files below can take a
        // second, which would otherwise shorten every restored lifetime by as much.
        let offset_ms = wall_now_ms() - clock_now_ms as i64;
        match fs::create_dir(dir) {
            Ok(()) => {
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::InvalidConfig(format!(
                    "persist_path {}: its parent directory does not exist",
                    dir.display()
                )));
            }
            Err(e) => return Err(io_error("cannot create", dir, &e)),
        }
        let lock_path = dir.join("lock");
        let lock = crate::fork::ProcessLock::open(|| {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
        })
        .map_err(|e| io_error("cannot open", &lock_path, &e))?;
        lock_exclusively(lock.file(), dir)?;
        let found = find(dir)?;
        let log = Log {
            last_generation: found.next_generation - 1,
            generation: AtomicU64::new(0),
            dir: dir.to_path_buf(),
            lock: Mutex::new(Some(lock)),
            writes_stopped: AtomicBool::new(false),
            released: AtomicBool::new(false),
            fsync,
            offset_ms: AtomicI64::new(offset_ms),
            fork_generation: crate::fork::generation(),
            slide_slack: slide_slack(idle_timeout),
            segments: (0..segment_count()).map(|_| Tail::new()).collect(),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            append_failures: AtomicU64::new(0),
            compaction_failing: AtomicBool::new(false),
            compaction: Mutex::new(()),
            last_sync: Mutex::new(std::time::Instant::now()),
            directory_unsynced: AtomicBool::new(false),
            records_before: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            restored: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        };
        Ok((log, found))
    }

    /// Store-clock ms as wall-clock ms.
    pub(crate) fn to_wall(&self, clock_ms: u64) -> u64 {
        (clock_ms as i64)
            .saturating_add(self.offset_ms.load(Relaxed))
            .max(0) as u64
    }

    /// Wall-clock ms as store-clock ms (0 for a time before the store's clock began).
    pub(crate) fn to_clock(&self, wall_ms: u64) -> u64 {
        (wall_ms as i64)
            .saturating_sub(self.offset_ms.load(Relaxed))
            .max(0) as u64
    }

    /// Measures the wall clock against the store's again (`clock_now_ms`: the store's now).
    /// Deadlines written before a step keep the old measure until the next snapshot rewrites
    /// them; a restore never trusts one beyond a full timeout from its own now.
    pub(crate) fn follow_wall_clock(&self, clock_now_ms: u64) {
        self.offset_ms
            .store(wall_now_ms() - clock_now_ms as i64, Relaxed);
    }

    pub(crate) fn count_restored(&self, n: u64) {
        self.restored.store(n, Relaxed);
    }

    /// Says on stderr how many sessions a load could not rebuild (see [`Image::unrebuilt`]).
    pub(crate) fn report_unrebuilt(&self, n: u64) {
        if n > 0 {
            eprintln!(
                "coatcheck: restart log in {}: {n} session(s) not restored: a write to each was \
                 logged against a version the log does not hold (an append that failed?)",
                self.dir.display()
            );
        }
    }

    /// A call changing sessions begins: counted until the guard is dropped, so that
    /// [`Log::stop_writes`] can wait for it to be logged.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if it may not go ahead (see [`Log::writable`]).
    pub(crate) fn begin_write(&self) -> Result<Writing<'_>> {
        let writing = self.begin_timeout_change()?;
        self.writable()?;
        Ok(writing)
    }

    /// A touch that sets a new idle timeout begins: counted as a write, and refused once
    /// writes are stopped (its record would land after the final snapshot), but not where
    /// writes are refused for other reasons (a forked child, a failing disk), where touches
    /// have always been made in memory.
    ///
    /// # Errors
    /// [`Error::Unavailable`] once the store is closed.
    pub(crate) fn begin_timeout_change(&self) -> Result<Writing<'_>> {
        // Counted, then checked (SeqCst, as `stop_writes` sets, then reads each segment's
        // count): a write that finds writes going on is waited for.
        let segment = &self.segments[WRITING_THREAD.with(|n| *n) % self.segments.len()];
        segment.writing.fetch_add(1, SeqCst);
        let writing = Writing(&segment.writing);
        if self.writes_stopped.load(SeqCst) {
            return Err(Error::Unavailable(
                "the store was closed: its restart log takes no more changes".into(),
            ));
        }
        Ok(writing)
    }

    /// Refuses writes from now on ([`Error::Unavailable`]), and waits for those in progress to
    /// end: the table then changes no more but for deadlines, and a snapshot holds it all. A
    /// listener must not call it (its write would wait for itself).
    pub(crate) fn stop_writes(&self) {
        self.writes_stopped.store(true, SeqCst);
        // A count read as 0 after the flag was set means that every write counted there before
        // that read has ended; any counted after it finds the flag set.
        while self
            .segments
            .iter()
            .any(|segment| segment.writing.load(SeqCst) != 0)
        {
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Closes the log files and unlocks the directory, which another store may then open:
    /// nothing is appended after this (deadlines that reads move are no longer logged).
    pub(crate) fn release(&self) {
        // After any compaction in progress, and before any that waits: one that began before
        // this would otherwise write into a directory another store may have opened. Not in a
        // forked child: it runs no compaction, and a fork may have caught the lock held.
        let _one_at_a_time = (crate::fork::generation() == self.fork_generation)
            .then(|| crate::fork::outside(|| self.compaction.lock()));
        self.released.store(true, SeqCst);
        if crate::fork::generation() == self.fork_generation {
            // Under every segment's lock, as a rotation switches them: no append is between
            // its check and its copy. Dropping the appenders cuts their files to what they hold.
            let mut guards: Vec<_> = self.segments.iter().map(|s| s.lock()).collect();
            for guard in &mut guards {
                **guard = None;
            }
        }
        *self.lock.lock() = None;
    }

    /// Whether a write may go ahead: not in a forked child, not after the store closed, and not
    /// while appends fail.
    ///
    /// # Errors
    /// [`Error::Unavailable`] saying why.
    pub(crate) fn writable(&self) -> Result<()> {
        if self.writes_stopped.load(SeqCst) {
            return Err(Error::Unavailable(
                "the store was closed: its restart log takes no more changes".into(),
            ));
        }
        if crate::fork::generation() != self.fork_generation {
            return Err(Error::Unavailable(
                "the restart log belongs to the process that opened persist_path; a forked \
                 child cannot write sessions (use redis_url to share sessions between processes)"
                    .into(),
            ));
        }
        if self.failed.load(Relaxed) {
            let why = self.failure.lock().clone().unwrap_or_default();
            return Err(Error::Unavailable(format!(
                "the restart log cannot be written: {why}"
            )));
        }
        Ok(())
    }

    /// What a call that changes sessions returns when an append to this log failed during it
    /// (`failed_before`: [`failed_appends_on_this_thread`] before the call): the change is
    /// made in memory, and kept there (a snapshot written later holds it), but a crash before
    /// then loses it. `None` if no append failed, or the one that did was another store's (a
    /// listener that writes elsewhere).
    pub(crate) fn unrecorded(&self, failed_before: u64) -> Option<Error> {
        if failed_appends_on_this_thread() == failed_before || !self.failed.load(Relaxed) {
            return None;
        }
        let why = self.failure.lock().clone().unwrap_or_default();
        Some(Error::Unavailable(format!(
            "the restart log could not record this change, which was made in memory only: {why}"
        )))
    }

    /// A failed append on this thread: the log fails, and the call that made the change
    /// learns of it (see [`failed_appends_on_this_thread`]).
    fn fail_append(&self, e: &io::Error) {
        FAILED_APPENDS.with(|n| n.set(n.get() + 1));
        self.fail(e);
    }

    /// Appends one change from the change stream (the store's listener).
    pub(crate) fn append(&self, change: &Change<'_>) {
        if crate::fork::generation() != self.fork_generation {
            return;
        }
        let id = change.id;
        let version = change.version;
        let record = match change.kind {
            ChangeKind::Written { value } => match change.previous {
                Some(previous) => self.patch_or_put(change, value, previous),
                None => self.put(change, value),
            },
            ChangeKind::Created { value } => self.put(change, value),
            ChangeKind::Slid => Record::Slid {
                id,
                version,
                deadline: self.to_wall(change.deadline_ms),
                ttl_ms: change.idle_timeout.as_millis() as u64,
            },
            ChangeKind::OwnerChanged => Record::Owner {
                id,
                version,
                owner: change.owner,
            },
            ChangeKind::Removed { .. } => Record::Removed { id, version },
        };
        let segment = WRITING_THREAD.with(|n| *n) % self.segments.len();
        ENCODED.with_borrow_mut(|buf| {
            buf.clear();
            // Encoded (and checksummed) before the lock: under it, only the copy.
            format::encode_sequenced(change.sequence, &record, buf);
            let mut guard = self.segments[segment].lock();
            if guard.is_none() {
                let generation = self.generation.load(Relaxed);
                if generation == 0 || self.released.load(SeqCst) {
                    return;
                }
                // Made durable in the directory before the first change in it is acknowledged
                // as synced (`rotate` does the same for the files it makes): at once under
                // `Always`, with the next tick's sync under `Interval`.
                let opened = self.open_segment(generation, segment).and_then(|writer| {
                    match self.fsync {
                        Fsync::Always => sync_dir(&self.dir)?,
                        Fsync::Interval => self.directory_unsynced.store(true, SeqCst),
                        Fsync::Never => {}
                    }
                    Ok(writer)
                });
                match opened {
                    Ok(writer) => *guard = Some(writer),
                    Err(e) => {
                        drop(guard);
                        self.fail_append(&e);
                        return;
                    }
                }
            }
            let Some(writer) = guard.as_mut() else { return };
            // Once copied into the file's mapping the change survives a kill -9 of this
            // process; fsync is for power loss.
            let mut result = writer.appender.append(buf);
            let to_sync = match result {
                Ok(()) => {
                    writer.appended += 1;
                    (self.fsync == Fsync::Always).then(|| writer.appender.file().clone())
                }
                Err(_) => None,
            };
            drop(guard);
            if let Some(file) = to_sync {
                // Outside the lock: writers that sync at the same time share the disk's flush.
                result = file.sync_data();
            }
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            if let Err(e) = result {
                self.fail_append(&e);
            }
        });
    }

    /// A patch of the bytes that differ from the value the write replaced, unless it would
    /// keep too little of it to be smaller than the whole value.
    fn patch_or_put<'a>(
        &self,
        change: &Change<'a>,
        value: &'a [u8],
        previous: Previous<'a>,
    ) -> Record<'a> {
        let (prefix, suffix) = format::unchanged_ends(previous.value, value);
        if prefix + suffix < format::PATCH_MIN_KEPT {
            return self.put(change, value);
        }
        let (deadline, ttl_ms, absolute) = self.lifetimes(change);
        Record::Patch {
            id: change.id,
            version: change.version,
            deadline,
            ttl_ms,
            absolute,
            owner: change.owner,
            base: previous.version,
            // Values are at most 1 GiB (`max_session_bytes`).
            base_len: previous.value.len() as u32,
            prefix: prefix as u32,
            suffix: suffix as u32,
            middle: &value[prefix..value.len() - suffix],
        }
    }

    fn put<'a>(&self, change: &Change<'a>, value: &'a [u8]) -> Record<'a> {
        let (deadline, ttl_ms, absolute) = self.lifetimes(change);
        Record::Put {
            id: change.id,
            version: change.version,
            deadline,
            ttl_ms,
            absolute,
            owner: change.owner,
            value,
        }
    }

    /// A change's deadline, idle timeout and absolute deadline as the files keep them.
    fn lifetimes(&self, change: &Change<'_>) -> (u64, u64, Option<u64>) {
        (
            self.to_wall(change.deadline_ms),
            change.idle_timeout.as_millis() as u64,
            change.absolute_deadline_ms.map(|a| self.to_wall(a)),
        )
    }

    fn fail(&self, e: &io::Error) {
        self.failures.fetch_add(1, Relaxed);
        let why = format!("{}: {e}", self.dir.display());
        // Counted and flagged under the lock a finishing snapshot clears them under, so that
        // it never clears a failure it did not see (see `Snapshot::finish`).
        let mut failure = self.failure.lock();
        self.append_failures.fetch_add(1, Relaxed);
        let first = !self.failed.swap(true, Relaxed);
        *failure = Some(why.clone());
        // Said after the lock is released: writers check the state under it, and must not
        // wait for stderr.
        drop(failure);
        if first {
            eprintln!(
                "coatcheck: the restart log in {why}; writes fail with `unavailable` until a \
                 snapshot can be written"
            );
        }
    }

    /// Under [`Fsync::Interval`], syncs what was appended since the last tick.
    pub(crate) fn sync_if_dirty(&self) {
        if self.fsync != Fsync::Interval {
            return;
        }
        *self.last_sync.lock() = std::time::Instant::now();
        for segment in self.segments.iter() {
            let file = {
                let mut guard = segment.lock();
                match guard.as_mut() {
                    Some(w) if w.synced_len != w.appender.len() => {
                        w.synced_len = w.appender.len();
                        w.appender.file().clone()
                    }
                    _ => continue,
                }
            };
            // Outside the segment's lock: appends go on while the disk syncs (and forks too).
            if let Err(e) = crate::fork::outside(|| file.sync_data()) {
                self.fail(&e);
            }
        }
        // After the files, so that a file made before them has data and name synced in this
        // tick (one made while they synced: its name in this tick, its data in the next).
        if self.directory_unsynced.swap(false, SeqCst)
            && let Err(e) = crate::fork::outside(|| sync_dir(&self.dir))
        {
            self.directory_unsynced.store(true, SeqCst);
            self.fail(&e);
        }
    }

    /// [`sync_if_dirty`](Log::sync_if_dirty) if a tick has passed since the last sync: a
    /// compaction calls it as it writes, since it holds up the log thread's ticks for as long
    /// as it runs (seconds for a large table), and changes acknowledged meanwhile must not wait
    /// that long to reach the disk.
    fn sync_if_due(&self) {
        if self.fsync == Fsync::Interval && self.last_sync.lock().elapsed() >= TICK {
            self.sync_if_dirty();
        }
    }

    /// Bytes in the current generation's log files.
    fn log_bytes(&self) -> u64 {
        self.segments
            .iter()
            .map(|segment| segment.lock().as_ref().map_or(0, |w| w.appender.len()))
            .sum()
    }

    /// Reports a background compaction's failure once per run of failures.
    pub(crate) fn note_compaction(&self, result: &io::Result<()>) {
        match result {
            Ok(()) => self.compaction_failing.store(false, Relaxed),
            Err(e) => {
                self.failures.fetch_add(1, Relaxed);
                if !self.compaction_failing.swap(true, Relaxed) {
                    eprintln!(
                        "coatcheck: cannot compact the restart log in {}: {e}; the log keeps \
                         growing until a snapshot can be written",
                        self.dir.display()
                    );
                }
            }
        }
    }

    /// Whether the log has grown enough to compact, or a compaction must clear a failure.
    pub(crate) fn wants_compaction(&self) -> bool {
        if crate::fork::generation() != self.fork_generation {
            return false;
        }
        let len = self.log_bytes();
        let snapshot = self.snapshot_bytes.load(Relaxed);
        self.failed.load(Relaxed)
            || (len >= COMPACT_MIN_BYTES && len > snapshot.saturating_mul(COMPACT_GROWTH))
    }

    /// Starts a compaction: appends switch to a new log generation, and the snapshot of that
    /// generation is opened for the caller to fill. `None` in a forked child.
    ///
    /// # Errors
    /// The I/O error if the new files cannot be created (appends then go on to the old log).
    pub(crate) fn begin_snapshot(&self) -> io::Result<Option<Snapshot<'_>>> {
        if crate::fork::generation() != self.fork_generation || self.released.load(SeqCst) {
            return Ok(None);
        }
        // Waited for outside the fork gate: its holder steps outside to write and sync, and a
        // fork must not wait for a thread that waits for it. (A forked child never takes it.)
        let one_at_a_time = crate::fork::outside(|| self.compaction.lock());
        if self.released.load(SeqCst) {
            return Ok(None);
        }
        let generation = self.rotate()?;
        // Changes appended before the switch are in the table the snapshot reads; one whose
        // append fails from here on may be missing from both.
        let append_failures = self.append_failures.load(Relaxed);
        let tmp = self.dir.join(format!("{}.tmp", snapshot_name(generation)));
        let mut file = create_private(&tmp)?;
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(&format::header(format::FileKind::Snapshot));
        file.write_all(&buf)?;
        buf.clear();
        Ok(Some(Snapshot {
            log: self,
            _one_at_a_time: one_at_a_time,
            generation,
            append_failures,
            tmp,
            file,
            buf,
            sessions: 0,
            bytes: format::HEADER_LEN as u64,
            synced: 0,
        }))
    }

    /// Switches appends to new, empty log files of the next generation; that generation.
    ///
    /// # Errors
    /// The I/O error if the files cannot be created; appends then go on to the old ones.
    ///
    /// Called one at a time: by the store as it starts (before its log thread exists), and by
    /// [`Log::begin_snapshot`] under `compaction`.
    pub(crate) fn rotate(&self) -> io::Result<u64> {
        // One rotation at a time, so the generation read here is still the latest when the new
        // files replace the old. The files of the segments in use are made outside the
        // segments' locks (a failure leaves appends on the old ones), and the old ones closed
        // outside them too.
        let generation = self.generation.load(Relaxed).max(self.last_generation) + 1;
        // With none in use (as the store starts), this thread's: a directory where no log file
        // can be made is then found out here, as the store is built, not at the first write.
        let this_thread = WRITING_THREAD.with(|n| *n) % self.segments.len();
        let none_in_use = self.segments.iter().all(|tail| tail.lock().is_none());
        let mut new = Vec::with_capacity(self.segments.len());
        for (segment, tail) in self.segments.iter().enumerate() {
            let in_use = tail.lock().is_some() || (none_in_use && segment == this_thread);
            new.push(match in_use {
                true => Some(self.open_segment(generation, segment)?),
                false => None,
            });
        }
        // The new files' names reach the disk before any change in them can be acknowledged
        // as synced (as a file `append` makes does by the next tick).
        if self.fsync != Fsync::Never {
            crate::fork::outside(|| sync_dir(&self.dir))?;
        }
        // Every segment switches under all their locks at once: a change appended after the
        // switch, wherever, lands in the new generation, and so does every later change of its
        // session (see the module's comment). A segment that began its file meanwhile makes
        // its new one at its next append.
        let mut guards: Vec<_> = self.segments.iter().map(|s| s.lock()).collect();
        self.generation.store(generation, Relaxed);
        let mut old = Vec::with_capacity(guards.len());
        for (guard, writer) in guards.iter_mut().zip(new) {
            let replaced = std::mem::replace(&mut **guard, writer);
            if let Some(replaced) = replaced {
                // Under the locks, so that `stats` never counts the old files' records twice.
                self.records_before.fetch_add(replaced.appended, Relaxed);
                old.push(replaced);
            }
        }
        drop(guards);
        for old in &old {
            if self.fsync == Fsync::Interval && old.synced_len != old.appender.len() {
                // What the old files took since the last tick reaches the disk before the new
                // files do: the new files' patches build on it.
                if let Err(e) = crate::fork::outside(|| old.appender.file().sync_data()) {
                    self.fail(&e);
                    return Err(e);
                }
            }
        }
        // Dropping the old appenders cuts their files to what they hold.
        crate::fork::outside(|| {
            drop(old);
            sync_dir(&self.dir)
        })?;
        Ok(generation)
    }

    /// A new, empty log file of `generation` for `segment`.
    fn open_segment(&self, generation: u64, segment: usize) -> io::Result<Writer> {
        // At most MAX_SEGMENTS, far below u8::MAX.
        let named = Named::Log(generation, Some(segment as u8));
        let file = create_private(&self.dir.join(named.name()))?;
        Ok(Writer {
            appended: 0,
            appender: appender::Appender::new(file, &format::header(format::FileKind::Log))?,
            synced_len: 0,
        })
    }

    pub(crate) fn stats(&self) -> LogStats {
        let (records, log_bytes) = {
            // All the segments' locks at once, as a rotation takes them.
            let guards: Vec<_> = self.segments.iter().map(|s| s.lock()).collect();
            let before = self.records_before.load(Relaxed);
            guards
                .iter()
                .filter_map(|guard| guard.as_ref())
                .fold((before, 0), |(records, bytes), w| {
                    (records + w.appended, bytes + w.appender.len())
                })
        };
        LogStats {
            records,
            log_bytes,
            snapshot_bytes: self.snapshot_bytes.load(Relaxed),
            compactions: self.compactions.load(Relaxed),
            restored: self.restored.load(Relaxed),
            failures: self.failures.load(Relaxed),
        }
    }
}

/// A call changing sessions in progress (see [`Log::begin_write`]): the count of the segment
/// it was counted in, wherever it is dropped.
pub(crate) struct Writing<'l>(&'l std::sync::atomic::AtomicUsize);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// A snapshot being written: [`Snapshot::put`] the sessions of one stripe (under its lock),
/// [`Snapshot::flush`] (after releasing it), then [`Snapshot::finish`].
pub(crate) struct Snapshot<'l> {
    log: &'l Log,
    _one_at_a_time: MutexGuard<'l, ()>,
    generation: u64,
    /// The log's `append_failures` when appends switched to this generation.
    append_failures: u64,
    tmp: PathBuf,
    file: File,
    buf: Vec<u8>,
    sessions: u64,
    bytes: u64,
    /// `bytes` at the last sync.
    synced: u64,
}

impl Snapshot<'_> {
    /// Adds one session (a [`Record::Put`]) to the buffer.
    pub(crate) fn put(&mut self, record: &Record<'_>) {
        format::encode(record, &mut self.buf);
        self.sessions += 1;
    }

    /// Writes out what was put since the last flush.
    ///
    /// # Errors
    /// The I/O error; the caller abandons the snapshot.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        // The snapshot's own file: no lock a forked child could need is held.
        crate::fork::outside(|| self.file.write_all(&self.buf))?;
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        if self.bytes - self.synced >= WRITEBACK_STEP {
            // Writes back as it goes (Redis's `rdb-save-incremental-fsync`), so the final sync
            // does not flush hundreds of MB at once and stall the other writers of the disk.
            crate::fork::outside(|| self.file.sync_data())?;
            self.synced = self.bytes;
        }
        self.log.sync_if_due();
        Ok(())
    }

    /// Ends the snapshot, syncs it, renames it into place and removes every older file.
    ///
    /// # Errors
    /// The I/O error; the older files are then kept, and with the new log they still hold
    /// everything.
    pub(crate) fn finish(mut self, issued: u64) -> io::Result<()> {
        format::encode(&Record::Versions { issued }, &mut self.buf);
        format::encode(
            &Record::End {
                sessions: self.sessions,
            },
            &mut self.buf,
        );
        self.flush()?;
        let log = self.log;
        crate::fork::outside(|| -> io::Result<()> {
            self.file.sync_all()?;
            let path = log.dir.join(snapshot_name(self.generation));
            fs::rename(&self.tmp, &path)?;
            sync_dir(&log.dir)?;
            for entry in fs::read_dir(&log.dir)?.flatten() {
                let name = entry.file_name();
                let older = name
                    .to_str()
                    .and_then(parse_name)
                    .is_some_and(|named| named.generation() < self.generation);
                if older {
                    let _ = fs::remove_file(entry.path());
                }
            }
            Ok(())
        })?;
        log.snapshot_bytes.store(self.bytes, Relaxed);
        log.compactions.fetch_add(1, Relaxed);
        // A failed append of this generation leaves a gap that this snapshot may not cover:
        // writes stay refused until a snapshot begun after the failure is written.
        // Compared and cleared under the lock `fail` counts under: a failure counted after the
        // comparison keeps its flag.
        let mut failure = log.failure.lock();
        let gap = log.append_failures.load(Relaxed) != self.append_failures;
        if !gap && log.failed.swap(false, Relaxed) {
            *failure = None;
            drop(failure);
            eprintln!(
                "coatcheck: the restart log in {} is written again",
                log.dir.display()
            );
        }
        Ok(())
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        // Finished snapshots were renamed away; an abandoned one leaves nothing behind.
        let _ = fs::remove_file(&self.tmp);
    }
}

fn lock_exclusively(lock: &File, dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this function borrows for the call; it touches no
    // memory.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Err(Error::InvalidConfig(format!(
            "persist_path {} is in use by another store (its lock file is held); one process \
             owns a restart log (use redis_url to share sessions between processes)",
            dir.display()
        )));
    }
    Err(io_error("cannot lock", dir, &e))
}

/// One file of a log directory with a readable header, read into memory.
struct FoundFile {
    path: PathBuf,
    kind: format::FileKind,
    generation: u64,
    layout: format::Layout,
    bytes: Vec<u8>,
}

impl FoundFile {
    fn body(&self) -> &[u8] {
        &self.bytes[format::HEADER_LEN..]
    }
}

/// The files of a log directory with a readable header, in the order they replay: the newest
/// such snapshot, then the logs from its generation on, by generation.
pub(crate) struct Found {
    files: Vec<FoundFile>,
    next_generation: u64,
}

impl Found {
    /// Replays every file. A file damaged after its header is restored up to the damage; the
    /// rest is copied aside and cut off the file, so it is reported once.
    pub(crate) fn image(&self) -> Image<'_> {
        let mut image = Image::default();
        let records: usize = self
            .files
            .iter()
            .map(|f| format::count_frames(f.body()))
            .sum();
        // Every frame, patches and slides too, is at most one session: room for all of them
        // saves regrowing the table, up to a bound (a long log of patches to a few sessions
        // must not reserve memory for millions).
        image.sessions.reserve(records.min(RESERVE_AT_MOST));
        // A generation's files merge only with files of their own layout: a file without
        // sequence numbers in a generation that has numbered ones (an older version run on the
        // directory in between) replays on its own.
        for group in self.files.chunk_by(|a, b| {
            a.kind == b.kind && a.generation == b.generation && a.layout == b.layout
        }) {
            let with_records: Vec<&FoundFile> = group
                .iter()
                .filter(|f| f.bytes.len() > format::HEADER_LEN)
                .collect();
            match with_records[..] {
                [] => {}
                // One file replays in its own order, frame by frame.
                [file] => read_file(file, |frame| image.apply(&frame.record)),
                _ => apply_merged(&with_records, &mut image),
            }
        }
        image
    }

    /// Whether anything was found: the directory then deserves a compaction soon.
    pub(crate) fn any(&self) -> bool {
        self.files
            .iter()
            .any(|f| f.bytes.len() > format::HEADER_LEN)
    }
}

/// Replays the log files of one generation merged by their records' sequence numbers: those of
/// one session then come in the order they were made, whatever file each is in.
fn apply_merged<'a>(files: &[&'a FoundFile], image: &mut Image<'a>) {
    // (sequence, file, offset): a place to read each record again from, not the records
    // themselves, which are five times larger.
    let mut order: Vec<(u64, u32, usize)> = Vec::new();
    for (index, file) in files.iter().enumerate() {
        read_file(file, |frame| {
            // At most MAX_SEGMENTS files per generation.
            order.push((frame.sequence, index as u32, frame.offset));
        });
    }
    order.sort_unstable();
    for (_, index, offset) in order {
        let file = files[index as usize];
        // Read whole a moment ago; `read_file` may have cut the file on disk, not these bytes.
        if let Some(frame) = format::Frames::at(file.body(), offset, file.layout).next_frame() {
            image.apply(&frame.record);
        }
    }
}

fn find(dir: &Path) -> Result<Found> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error("cannot read", dir, &e))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("snapshot.") && name.ends_with(".tmp") {
            // A compaction that did not finish; the files it would have replaced are here.
            let _ = fs::remove_file(entry.path());
        } else if let Some(named) = parse_name(name) {
            names.push(named);
        }
    }
    names.sort();
    let next_generation = names
        .iter()
        .map(|named| named.generation())
        .max()
        .map_or(1, |g| g + 1);
    let mut files = Vec::new();
    let mut base = 0;
    let snapshots = names.iter().rev().filter_map(|f| match *f {
        Named::Snapshot(g) => Some(g),
        Named::Log(..) => None,
    });
    for generation in snapshots {
        let path = dir.join(snapshot_name(generation));
        if let Some(file) = read_checked(path, format::FileKind::Snapshot, generation) {
            files.push(file);
            base = generation;
            break;
        }
    }
    for &named in &names {
        if let Named::Log(generation, _) = named {
            if generation >= base {
                let path = dir.join(named.name());
                if let Some(file) = read_checked(path, format::FileKind::Log, generation) {
                    files.push(file);
                }
            }
        }
    }
    Ok(Found {
        files,
        next_generation,
    })
}

/// A file if its header is one this version reads. Otherwise the file is renamed aside with a
/// line on stderr; an empty one, or one of zeros only, is removed instead: a log file's space is
/// reserved before its header is written, so a crash in between (or a power loss before either
/// reached the disk) leaves such a file, which never held a record.
fn read_checked(path: PathBuf, kind: format::FileKind, generation: u64) -> Option<FoundFile> {
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "coatcheck: restart log: cannot read {}: {e}",
                path.display()
            );
            return None;
        }
    };
    let why = match format::check_header(&bytes, kind) {
        Ok(version) => {
            return Some(FoundFile {
                layout: format::Layout::of(version, kind),
                path,
                kind,
                generation,
                bytes,
            });
        }
        Err(why) => why,
    };
    if bytes.iter().all(|&b| b == 0) {
        let why = if bytes.is_empty() {
            why
        } else {
            "the file holds zeros only (a crash while it was being created?)".into()
        };
        eprintln!(
            "coatcheck: restart log {}: {why}; nothing to restore from it",
            path.display()
        );
        let _ = fs::remove_file(&path);
    } else {
        let aside = aside_name(&path);
        let moved = fs::rename(&path, &aside).map_or_else(
            |e| format!("(could not move it: {e})"),
            |()| aside.display().to_string(),
        );
        eprintln!(
            "coatcheck: restart log {}: {why}; restored nothing from it and set its {} bytes \
             aside in {moved}",
            path.display(),
            bytes.len()
        );
    }
    None
}

/// Hands each good frame of one file with a valid header to `each`, then reports damage.
fn read_file<'a>(file: &'a FoundFile, mut each: impl FnMut(format::Frame<'a>)) {
    let (path, bytes) = (&file.path, &file.bytes);
    let mut frames = format::Frames::at(file.body(), 0, file.layout);
    let mut records = 0u64;
    let mut ended = false;
    while let Some(frame) = frames.next_frame() {
        ended = matches!(frame.record, Record::End { .. });
        each(frame);
        records += 1;
    }
    let good = format::HEADER_LEN + frames.good_len();
    if let Some(why) = frames.damage() {
        let aside = set_aside(path, &bytes[good..]);
        // Cut off what was set aside, so the next load does not report it again.
        let cut = OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(good as u64));
        let cut = cut.map_or_else(
            |e| format!(" (could not cut it off: {e})"),
            |()| String::new(),
        );
        eprintln!(
            "coatcheck: restart log {}: {why} at byte {good}; restored the {records} records \
             before it and set the remaining {} bytes aside in {aside}{cut}",
            path.display(),
            bytes.len() - good
        );
    } else if file.kind == format::FileKind::Snapshot && !ended {
        eprintln!(
            "coatcheck: restart log {}: the snapshot stops before its end record (truncated?); \
             restored the {records} records it holds",
            path.display()
        );
    }
}

fn aside_name(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.damaged-{}", path.display(), wall_now_ms()))
}

/// Copies `bytes` to a new file next to `path`; its name, for the log line.
fn set_aside(path: &Path, bytes: &[u8]) -> String {
    // A log's unused end is zeros: what matters is the damaged bytes before them.
    let bytes = &bytes[..bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)];
    let aside = aside_name(path);
    let written = create_private(&aside).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written {
        Ok(()) => aside.display().to_string(),
        Err(e) => format!("(nowhere: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put<'a>(id: &'a str, version: u64, value: &'a [u8]) -> Record<'a> {
        Record::Put {
            id,
            version,
            deadline: u64::MAX / 2,
            ttl_ms: 60_000,
            absolute: None,
            owner: None,
            value,
        }
    }

    /// `old` with its bytes from `at` replaced by `middle`, as a patch of `base`.
    fn patch<'a>(id: &'a str, version: u64, old: &[u8], at: u32, middle: &'a [u8]) -> Record<'a> {
        Record::Patch {
            id,
            version,
            deadline: u64::MAX / 2,
            ttl_ms: 60_000,
            absolute: None,
            owner: None,
            base: version - 1,
            base_len: old.len() as u32,
            prefix: at,
            suffix: old.len() as u32 - at - middle.len() as u32,
            middle,
        }
    }

    fn file(
        dir: &Path,
        named: Named,
        version: u32,
        records: &[(u64, Record<'_>)],
    ) -> (PathBuf, Vec<u8>) {
        let mut bytes = format::header(format::FileKind::Log).to_vec();
        bytes[8..12].copy_from_slice(&version.to_le_bytes());
        for (sequence, record) in records {
            match version {
                2 => format::encode_version_2(record, &mut bytes),
                _ => format::encode_sequenced(*sequence, record, &mut bytes),
            }
        }
        (dir.join(named.name()), bytes)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "coatcheck-persist-unit-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// Makes `dir`, writes `files` into it and opens the log there.
    fn open_with(dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> (Log, Found) {
        fs::create_dir(dir).unwrap();
        for (path, bytes) in files {
            fs::write(path, bytes).unwrap();
        }
        Log::open(dir, Fsync::Never, Duration::from_secs(60), 0).unwrap()
    }

    const V0: &[u8] = b"{\"count\":0,\"user\":\"someone\"}";
    const V1: &[u8] = b"{\"count\":1,\"user\":\"someone\"}";
    const V2: &[u8] = b"{\"count\":2,\"user\":\"someone\"}";

    #[test]
    fn a_generations_files_replay_merged_by_their_sequence_numbers() {
        let dir = temp_dir("merged");
        // One session written by two threads in turn, so its chain of patches alternates
        // between their files; a session of another stripe numbered from 1 as well.
        let files = [
            file(
                &dir,
                Named::Log(1, Some(0)),
                3,
                &[
                    (1, put("shared", 1, V0)),
                    (3, patch("shared", 3, V1, 9, b"2")),
                ],
            ),
            file(
                &dir,
                Named::Log(1, Some(1)),
                3,
                &[
                    (1, put("other", 1, V1)),
                    (2, patch("shared", 2, V0, 9, b"1")),
                    (
                        2,
                        Record::Removed {
                            id: "other",
                            version: 1,
                        },
                    ),
                ],
            ),
        ];
        let (log, found) = open_with(&dir, &files);
        let image = found.image();
        assert_eq!(image.unrebuilt, 0);
        assert_eq!(image.sessions.len(), 1, "{:?}", image.sessions.keys());
        assert_eq!(&*image.sessions["shared"].value, V2);
        assert_eq!(image.sessions["shared"].version, 3);
        drop(image);
        drop((log, found));
        // Replayed one file after the other instead, the chain breaks: the order is the
        // sequence numbers' doing.
        let mut in_file_order = Image::default();
        for (_, bytes) in &files {
            let body = &bytes[format::HEADER_LEN..];
            for record in format::Frames::at(body, 0, format::Layout::LOG) {
                in_file_order.apply(&record);
            }
        }
        assert_eq!(in_file_order.unrebuilt, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_older_versions_one_file_generations_replay_in_file_order_before_newer_ones() {
        let dir = temp_dir("older");
        let files = [
            // Format version 2: one file per generation, no sequence numbers.
            file(
                &dir,
                Named::Log(1, None),
                2,
                &[(0, put("s", 1, V0)), (0, patch("s", 2, V0, 9, b"1"))],
            ),
            file(
                &dir,
                Named::Log(2, Some(0)),
                3,
                &[(1, patch("s", 3, V1, 9, b"2"))],
            ),
            file(&dir, Named::Log(2, Some(1)), 3, &[]),
        ];
        let (log, found) = open_with(&dir, &files);
        let image = found.image();
        assert_eq!((image.unrebuilt, image.issued), (0, 3));
        assert_eq!(&*image.sessions["s"].value, V2);
        // Appends go on in a generation above both.
        drop(image);
        drop(found);
        assert_eq!(log.rotate().unwrap(), 3);
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// An older version run on the directory between two runs of this one can write its one
    /// file into a generation that has numbered files: it replays whole, not merged by the
    /// places of its records as if they were sequence numbers.
    #[test]
    fn a_generations_file_without_sequence_numbers_replays_on_its_own() {
        let dir = temp_dir("mixed");
        let files = [
            file(&dir, Named::Log(1, None), 2, &[(0, put("s", 1, V0))]),
            file(
                &dir,
                Named::Log(2, None),
                2,
                &[
                    (0, patch("s", 2, V0, 9, b"1")),
                    (0, patch("s", 3, V0, 9, b"2")),
                    (0, patch("s", 4, V0, 9, b"3")),
                ],
            ),
            // Numbered 1, below the third record's place (2) in the file above.
            file(
                &dir,
                Named::Log(2, Some(0)),
                3,
                &[(1, patch("s", 5, V0, 9, b"4"))],
            ),
        ];
        let (log, found) = open_with(&dir, &files);
        let image = found.image();
        assert_eq!(image.unrebuilt, 0);
        assert_eq!(image.sessions["s"].version, 5);
        assert_eq!(&image.sessions["s"].value[..11], b"{\"count\":4,");
        drop(image);
        drop((log, found));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stop_writes_waits_for_a_write_counted_in_any_segment_and_refuses_later_ones() {
        let dir = temp_dir("stop-writes");
        let (mut log, found) = Log::open(&dir, Fsync::Never, Duration::from_secs(60), 0).unwrap();
        drop(found);
        // Three segments whatever the core count: a wait on the closing thread's segment alone,
        // or on the first, would show.
        log.segments = (0..3).map(|_| Tail::new()).collect();
        // Shared with a thread not joined: a stop_writes that never returned fails the test
        // instead of hanging it.
        let log = std::sync::Arc::new(log);
        for segment in 0..log.segments.len() {
            // A write in progress on that segment's threads.
            log.segments[segment].writing.fetch_add(1, SeqCst);
            let (stopped_tx, stopped) = std::sync::mpsc::channel();
            let stopping = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                stopping.stop_writes();
                let _ = stopped_tx.send(());
            });
            assert!(
                stopped.recv_timeout(Duration::from_millis(100)).is_err(),
                "stop_writes returned with a write in progress in segment {segment}"
            );
            log.segments[segment].writing.fetch_sub(1, SeqCst);
            stopped
                .recv_timeout(Duration::from_secs(10))
                .expect("stop_writes still waits once the write ended");
        }
        assert!(matches!(log.begin_write(), Err(Error::Unavailable(_))));
        assert!(matches!(
            log.begin_timeout_change(),
            Err(Error::Unavailable(_))
        ));
        assert!(log.segments.iter().all(|s| s.writing.load(SeqCst) == 0));
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_append_during_a_snapshot_keeps_writes_refused_until_the_next() {
        let dir = temp_dir("failed");
        let (log, found) = Log::open(&dir, Fsync::Never, Duration::from_secs(60), 0).unwrap();
        drop(found);
        log.rotate().unwrap();
        log.fail(&io::Error::other("before the snapshot"));
        assert!(log.writable().is_err());
        // A snapshot begun after a failure covers it: writes go on.
        log.begin_snapshot().unwrap().unwrap().finish(0).unwrap();
        assert!(log.writable().is_ok());
        let snapshot = log.begin_snapshot().unwrap().unwrap();
        log.fail(&io::Error::other("while the snapshot is written"));
        snapshot.finish(0).unwrap();
        assert!(log.writable().is_err(), "a change may be in neither file");
        log.begin_snapshot().unwrap().unwrap().finish(0).unwrap();
        assert!(log.writable().is_ok());
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_interval_sync_goes_on_while_a_snapshot_is_written() {
        let dir = temp_dir("interval");
        let (log, found) = Log::open(&dir, Fsync::Interval, Duration::from_secs(60), 0).unwrap();
        drop(found);
        log.rotate().unwrap();
        let mut snapshot = log.begin_snapshot().unwrap().unwrap();
        // A change acknowledged while the snapshot is written: in the new generation's file.
        let segment = &log.segments[WRITING_THREAD.with(|n| *n) % log.segments.len()];
        let unsynced = |segment: &Tail| {
            let guard = segment.lock();
            let writer = guard.as_ref().unwrap();
            writer.appender.len() - writer.synced_len
        };
        segment
            .lock()
            .as_mut()
            .unwrap()
            .appender
            .append(b"a change")
            .unwrap();
        snapshot.flush().unwrap();
        assert!(unsynced(segment) >= 8, "synced before a tick has passed");
        std::thread::sleep(TICK);
        // The log thread's tick waits for the compaction; the snapshot's writing syncs instead.
        snapshot.flush().unwrap();
        assert_eq!(unsynced(segment), 0);
        snapshot.finish(0).unwrap();
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn under_interval_a_log_file_a_write_makes_is_synced_in_its_directory_by_the_next_tick() {
        let dir = temp_dir("directory-sync");
        let (mut log, found) =
            Log::open(&dir, Fsync::Interval, Duration::from_secs(60), 0).unwrap();
        drop(found);
        log.segments = (0..64).map(|_| Tail::new()).collect();
        log.rotate().unwrap(); // makes (and syncs) this thread's file
        assert!(!log.directory_unsynced.load(SeqCst));
        let mine = WRITING_THREAD.with(|n| *n) % log.segments.len();
        let log = std::sync::Arc::new(log);
        // Another segment's first write makes its file: the write does not sync the directory
        // (on the caller's thread, under the segment's lock); the next tick does.
        loop {
            let log = std::sync::Arc::clone(&log);
            let wrote = std::thread::spawn(move || {
                if WRITING_THREAD.with(|n| *n) % log.segments.len() == mine {
                    return false; // the same segment: try another thread
                }
                log.append(&Change {
                    id: "s",
                    kind: ChangeKind::Removed {
                        cause: crate::Cause::Destroyed,
                        replaced_by: None,
                    },
                    version: 1,
                    deadline_ms: 0,
                    idle_timeout: Duration::from_secs(60),
                    absolute_deadline_ms: None,
                    owner: None,
                    previous: None,
                    sequence: 1,
                });
                true
            })
            .join()
            .unwrap();
            if wrote {
                break;
            }
        }
        assert_eq!(
            log.segments.iter().filter(|s| s.lock().is_some()).count(),
            2
        );
        assert!(log.directory_unsynced.load(SeqCst));
        log.sync_if_dirty();
        assert!(!log.directory_unsynced.load(SeqCst));
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_first_rotation_makes_this_threads_log_file_so_that_failing_to_is_found_at_once() {
        let dir = temp_dir("first");
        let (log, found) = Log::open(&dir, Fsync::Never, Duration::from_secs(60), 0).unwrap();
        drop(found);
        let segment = WRITING_THREAD.with(|n| *n) % log.segments.len();
        // Where generation 1's file of this thread's segment goes, a directory.
        let blocked = dir.join(Named::Log(1, Some(segment as u8)).name());
        fs::create_dir(&blocked).unwrap();
        assert!(log.rotate().is_err());
        fs::remove_dir(&blocked).unwrap();
        assert_eq!(log.rotate().unwrap(), 1);
        assert!(blocked.is_file());
        drop(log);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_names_read_back_as_written() {
        for named in [
            Named::Snapshot(7),
            Named::Log(7, None),
            Named::Log(u64::MAX, Some(0)),
            Named::Log(1, Some(7)),
        ] {
            assert_eq!(parse_name(&named.name()), Some(named));
        }
        for stray in [
            "log.0000000000000001.0",
            "log.0000000000000001.000",
            "log.0000000000000001.0A",
            "log.0000000000000001.+1",
            "log.+000000000000001",
            "snapshot.0000000000000001.00",
            "log.1",
            "lock",
        ] {
            assert_eq!(parse_name(stray), None, "{stray}");
        }
    }
}
