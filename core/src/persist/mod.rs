//! The restart log: every change from the change stream appended to a file before the call that
//! made it returns, compacted now and then into a snapshot, and read back when a store is built
//! on the same directory.
//!
//! The directory holds `lock` (held with `flock` for the life of the store), `snapshot.<gen>`
//! and `log.<gen>` (16 hex digits). A compaction switches appends to `log.<gen+1>`, writes the
//! table into `snapshot.<gen+1>.tmp` one stripe at a time, renames it into place and only then
//! deletes everything of a lower generation. So at any moment the newest whole snapshot plus the
//! logs of its generation and above hold every acknowledged change, and loading is: that
//! snapshot, then those logs in order (see [`image`] for why the overlap is harmless).
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
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
    /// Bytes in the current log file.
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

/// The log file being appended to. Its fields that every append touches come first, and the
/// whole of them with the mutex fit in one cache line ([`Tail`]): with writers on several cores
/// the line moves to the appending core every time, and each further line is one more miss
/// under the lock (measured: three lines cost a flood of writes a third of its speed).
#[repr(C)]
struct Writer {
    /// Records appended to this file.
    appended: u64,
    appender: appender::Appender,
    generation: u64,
    /// Bytes of the file the last [`Fsync::Interval`] tick synced.
    synced_len: u64,
}

/// The mutex of the log's end, starting a cache line of its own.
#[repr(align(64))]
struct Tail(Mutex<Option<Writer>>);

impl std::ops::Deref for Tail {
    type Target = Mutex<Option<Writer>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

thread_local! {
    /// Where this thread encodes a record before copying it into the log.
    static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An open restart log. Built by [`Log::open`] with the files it found.
pub(crate) struct Log {
    dir: PathBuf,
    /// Held for the life of the store: the `flock` is released when it closes.
    _lock: File,
    fsync: Fsync,
    /// Wall-clock ms minus store-clock ms, fixed when the store was built.
    offset_ms: i64,
    /// The fork generation that opened the log: a forked child never writes to it.
    fork_generation: u64,
    /// Slides smaller than this are not logged (see [`slide_slack`]).
    pub(crate) slide_slack: Duration,
    /// The highest generation found when the log was opened; appends start above it.
    last_generation: u64,
    /// `None` until the first snapshot (made as the store is built) opens a log file.
    writer: Tail,
    /// Why the last append failed, while the log is failed.
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    compaction_failing: AtomicBool,
    /// One compaction at a time.
    compaction: Mutex<()>,
    /// Records appended to the log files before the current one.
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
    Log(u64),
}

fn parse_name(name: &str) -> Option<Named> {
    let (kind, generation) = name.split_once('.')?;
    if generation.len() != 16 {
        return None;
    }
    let generation = u64::from_str_radix(generation, 16).ok()?;
    match kind {
        "snapshot" => Some(Named::Snapshot(generation)),
        "log" => Some(Named::Log(generation)),
        _ => None,
    }
}

fn snapshot_name(generation: u64) -> String {
    format!("snapshot.{generation:016x}")
}

fn log_name(generation: u64) -> String {
    format!("log.{generation:016x}")
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
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_error("cannot open", &lock_path, &e))?;
        lock_exclusively(&lock, dir)?;
        let found = find(dir)?;
        let log = Log {
            last_generation: found.next_generation - 1,
            dir: dir.to_path_buf(),
            _lock: lock,
            fsync,
            offset_ms: wall_now_ms() - clock_now_ms as i64,
            fork_generation: crate::fork::generation(),
            slide_slack: slide_slack(idle_timeout),
            writer: Tail(Mutex::new(None)),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            compaction_failing: AtomicBool::new(false),
            compaction: Mutex::new(()),
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
        (clock_ms as i64).saturating_add(self.offset_ms).max(0) as u64
    }

    /// Wall-clock ms as store-clock ms (0 for a time before the store's clock began).
    pub(crate) fn to_clock(&self, wall_ms: u64) -> u64 {
        (wall_ms as i64).saturating_sub(self.offset_ms).max(0) as u64
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

    /// Whether a write may go ahead: not in a forked child, and not while appends fail.
    ///
    /// # Errors
    /// [`Error::Unavailable`] saying why.
    pub(crate) fn writable(&self) -> Result<()> {
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
        ENCODED.with_borrow_mut(|buf| {
            buf.clear();
            // Encoded (and checksummed) before the lock: under it, only the copy.
            format::encode(&record, buf);
            let mut guard = self.writer.lock();
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
                self.fail(&e);
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
        if !self.failed.swap(true, Relaxed) {
            eprintln!(
                "coatcheck: the restart log in {why}; writes fail with `unavailable` until a \
                 snapshot can be written"
            );
        }
        *self.failure.lock() = Some(why);
    }

    /// Under [`Fsync::Interval`], syncs what was appended since the last tick.
    pub(crate) fn sync_if_dirty(&self) {
        if self.fsync != Fsync::Interval {
            return;
        }
        let file = {
            let mut guard = self.writer.lock();
            match guard.as_mut() {
                Some(w) if w.synced_len != w.appender.len() => {
                    w.synced_len = w.appender.len();
                    w.appender.file().clone()
                }
                _ => return,
            }
        };
        // Outside the writer lock: appends go on while the disk syncs.
        if let Err(e) = file.sync_data() {
            self.fail(&e);
        }
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
        let len = self.writer.lock().as_ref().map_or(0, |w| w.appender.len());
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
        if crate::fork::generation() != self.fork_generation {
            return Ok(None);
        }
        let one_at_a_time = self.compaction.lock();
        let generation = self.rotate()?;
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
            tmp,
            file,
            buf,
            sessions: 0,
            bytes: format::HEADER_LEN as u64,
            synced: 0,
        }))
    }

    /// Switches appends to a new, empty log file of the next generation; that generation.
    ///
    /// # Errors
    /// The I/O error if the file cannot be created; appends then go on to the old one.
    ///
    /// Called one at a time: by the store as it starts (before its log thread exists), and by
    /// [`Log::begin_snapshot`] under `compaction`.
    pub(crate) fn rotate(&self) -> io::Result<u64> {
        // One rotation at a time, so the generation read here is still the latest when the new
        // file replaces the old; the file is made, and the old one closed, outside the writers'
        // lock.
        let generation = self
            .writer
            .lock()
            .as_ref()
            .map_or(self.last_generation, |w| w.generation)
            + 1;
        let file = create_private(&self.dir.join(log_name(generation)))?;
        let appender = appender::Appender::new(file, &format::header(format::FileKind::Log))?;
        let mut guard = self.writer.lock();
        let old = guard.replace(Writer {
            appended: 0,
            appender,
            generation,
            synced_len: 0,
        });
        if let Some(old) = &old {
            // Under the lock, so that `stats` never counts the old file's records twice.
            self.records_before.fetch_add(old.appended, Relaxed);
        }
        drop(guard);
        let unsynced = old
            .as_ref()
            .filter(|old| self.fsync == Fsync::Interval && old.synced_len != old.appender.len());
        if let Some(old) = unsynced {
            // What the old file took since the last tick reaches the disk before the new file
            // does: the new file's patches build on it.
            old.appender.file().sync_data()?;
        }
        // Dropping the old appender cuts its file to what it holds.
        drop(old);
        sync_dir(&self.dir)?;
        Ok(generation)
    }

    pub(crate) fn stats(&self) -> LogStats {
        let (records, log_bytes) = {
            let writer = self.writer.lock();
            let before = self.records_before.load(Relaxed);
            writer
                .as_ref()
                .map_or((before, 0), |w| (before + w.appended, w.appender.len()))
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

/// A snapshot being written: [`Snapshot::put`] the sessions of one stripe (under its lock),
/// [`Snapshot::flush`] (after releasing it), then [`Snapshot::finish`].
pub(crate) struct Snapshot<'l> {
    log: &'l Log,
    _one_at_a_time: MutexGuard<'l, ()>,
    generation: u64,
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
        self.file.write_all(&self.buf)?;
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        if self.bytes - self.synced >= WRITEBACK_STEP {
            // Writes back as it goes (Redis's `rdb-save-incremental-fsync`), so the final sync
            // does not flush hundreds of MB at once and stall the other writers of the disk.
            self.file.sync_data()?;
            self.synced = self.bytes;
        }
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
        self.file.sync_all()?;
        let log = self.log;
        let path = log.dir.join(snapshot_name(self.generation));
        fs::rename(&self.tmp, &path)?;
        sync_dir(&log.dir)?;
        for entry in fs::read_dir(&log.dir)?.flatten() {
            let name = entry.file_name();
            let older = match name.to_str().and_then(parse_name) {
                Some(Named::Snapshot(g) | Named::Log(g)) => g < self.generation,
                None => false,
            };
            if older {
                let _ = fs::remove_file(entry.path());
            }
        }
        log.snapshot_bytes.store(self.bytes, Relaxed);
        log.compactions.fetch_add(1, Relaxed);
        if log.failed.swap(false, Relaxed) {
            *log.failure.lock() = None;
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

/// The files of a log directory with a readable header, read into memory in the order they
/// replay: the newest such snapshot, then the logs from its generation on.
pub(crate) struct Found {
    files: Vec<(PathBuf, format::FileKind, Vec<u8>)>,
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
            .map(|(_, _, b)| format::count_frames(&b[format::HEADER_LEN..]))
            .sum();
        image.sessions.reserve(records);
        for (path, kind, bytes) in &self.files {
            apply_file(path, *kind, bytes, &mut image);
        }
        image
    }

    /// Whether anything was found: the directory then deserves a compaction soon.
    pub(crate) fn any(&self) -> bool {
        self.files
            .iter()
            .any(|(_, _, b)| b.len() > format::HEADER_LEN)
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
        .map(|&(Named::Snapshot(g) | Named::Log(g))| g)
        .max()
        .map_or(1, |g| g + 1);
    let mut files = Vec::new();
    let mut base = 0;
    let snapshots = names.iter().rev().filter_map(|f| match *f {
        Named::Snapshot(g) => Some(g),
        Named::Log(_) => None,
    });
    for generation in snapshots {
        let path = dir.join(snapshot_name(generation));
        if let Some(bytes) = read_checked(&path, format::FileKind::Snapshot) {
            files.push((path, format::FileKind::Snapshot, bytes));
            base = generation;
            break;
        }
    }
    for &name in &names {
        if let Named::Log(generation) = name {
            let path = dir.join(log_name(generation));
            if generation >= base {
                if let Some(bytes) = read_checked(&path, format::FileKind::Log) {
                    files.push((path, format::FileKind::Log, bytes));
                }
            }
        }
    }
    Ok(Found {
        files,
        next_generation,
    })
}

/// A file's bytes if its header is one this version reads. Otherwise the file is renamed
/// aside (an empty one removed) with a line on stderr.
fn read_checked(path: &Path, kind: format::FileKind) -> Option<Vec<u8>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "coatcheck: restart log: cannot read {}: {e}",
                path.display()
            );
            return None;
        }
    };
    let Err(why) = format::check_header(&bytes, kind) else {
        return Some(bytes);
    };
    if bytes.is_empty() {
        eprintln!(
            "coatcheck: restart log {}: {why}; nothing to restore from it",
            path.display()
        );
        let _ = fs::remove_file(path);
    } else {
        let aside = aside_name(path);
        let moved = fs::rename(path, &aside).map_or_else(
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

/// Applies the records of one file with a valid header to `image`.
fn apply_file<'a>(path: &Path, kind: format::FileKind, bytes: &'a [u8], image: &mut Image<'a>) {
    let mut frames = format::Frames::new(&bytes[format::HEADER_LEN..]);
    let mut records = 0u64;
    let mut ended = false;
    for record in frames.by_ref() {
        ended = matches!(record, Record::End { .. });
        image.apply(&record);
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
    } else if kind == format::FileKind::Snapshot && !ended {
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
