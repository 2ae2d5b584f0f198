//! One log file being appended to, through a shared memory mapping of it.
//!
//! A record copied into a `MAP_SHARED` mapping is in the kernel's page cache the moment the
//! copy ends: it survives the process being killed (not the machine losing power: that is what
//! `fdatasync` is for), at the cost of a `memcpy` instead of a `write(2)` per change. The
//! file's blocks are reserved with `posix_fallocate` before they are mapped, so a full disk is
//! an error at growth time, never a `SIGBUS` on a later copy. The unused, zero-filled end of
//! the file reads as the end of the log (see `format::Frames`) and is cut off when the appender
//! is dropped.
//!
//! Only the chunk being filled (and the next one, prepared as below) is mapped, so moving on
//! costs the same however long the log is: a record that does not fit in the rest of the chunk
//! is written with `pwrite` (the same page cache) and the mapping moves to the chunk where the
//! log now ends.
//!
//! The first write to each page of a shared file mapping faults (the kernel allocates the page
//! and starts tracking it as dirty). Taken one page at a time by the copy, under the log's
//! mutex, those faults made every other writer wait: writes ran at half the speed they run
//! with the chunk's pages faulted in ahead. So a thread of the appender's own prepares the
//! next chunk while the current one fills: allocated, mapped, and populated writable
//! ([`Mapping::populate`]). The appender takes it when it moves on, or maps the chunk itself
//! if it is not ready. Populated pages are dirty: a sync writes the next chunk's zeros back
//! once, and pages it cleans fault again on their first write, as they did before.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

/// Bytes of the file mapped at a time, and allocated ahead of the log's end.
const CHUNK: u64 = 4 << 20;

/// A writable shared mapping of `len` bytes of a file.
#[repr(C)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value, with no tie to the thread that made
// it. It has one owner at a time: the preparing thread, then `AheadState` (under its mutex),
// then the appender, which is only ever used under its owner's mutex.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps the chunk at `offset` (a multiple of [`CHUNK`]), which the file must hold.
    fn chunk(file: &File, offset: u64) -> io::Result<Self> {
        let len = CHUNK as usize;
        let offset =
            libc::off_t::try_from(offset).map_err(|_| io::Error::other("log file too large"))?;
        // SAFETY: a fresh mapping chosen by the kernel (NULL hint) of a file descriptor that
        // stays open for the call; no existing memory is affected. `offset` is page-aligned and
        // the caller allocated the file up to `offset + len`, so every mapped page is backed.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Faults every page of the mapping in, writable, without writing to it, a step at a time
    /// while `go_on()` says so. Where the kernel cannot (before Linux 5.14) nothing happens:
    /// the pages fault on their first write.
    fn populate(&self, go_on: impl Fn() -> bool) {
        // A step takes about half a millisecond here: what closing the appender may wait for.
        const STEP: usize = 64 << 10;
        let mut done = 0;
        while done < self.len && go_on() {
            let step = STEP.min(self.len - done);
            // SAFETY: a range within the one this value mapped (`done + step <= len`).
            // MADV_POPULATE_WRITE fills in page table entries as a write would, but changes no
            // byte of the mapping.
            let rc = unsafe {
                libc::madvise(self.ptr.add(done).cast(), step, libc::MADV_POPULATE_WRITE)
            };
            if rc != 0 {
                return;
            }
            done += step;
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what mmap returned and was asked for, and no
        // reference into the mapping outlives this value (copies go through `write_at`).
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// `from..to` of a file as the offset and length that `fallocate` takes.
fn file_range(from: u64, to: u64) -> io::Result<(libc::off_t, libc::off_t)> {
    match (
        libc::off_t::try_from(from),
        libc::off_t::try_from(to - from),
    ) {
        (Ok(offset), Ok(len)) => Ok((offset, len)),
        _ => Err(io::Error::other("log file too large")),
    }
}

/// Reserves the file's blocks from `from` up to `to` bytes (and extends it to `to`) with the
/// `fallocate` system call only. Unlike `posix_fallocate`, which on a filesystem without it
/// writes a zero into every block, this never writes to the file: the preparing thread uses
/// it, and a write of its own could land on a record the appender is copying in.
fn reserve(file: &File, from: u64, to: u64) -> io::Result<()> {
    let (offset, len) = file_range(from, to)?;
    // SAFETY: fallocate on a file descriptor that stays open for the call; it touches no
    // memory of this process.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reserves the file's blocks from `from` up to `to` bytes (and extends it to `to`).
fn allocate(file: &File, from: u64, to: u64) -> io::Result<()> {
    let (offset, len) = file_range(from, to)?;
    // SAFETY: posix_fallocate on a file descriptor that stays open for the call; it touches no
    // memory of this process.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), offset, len) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// What the appender and its preparing thread share.
#[derive(Default)]
struct AheadState {
    /// The chunk to prepare next (its offset in the file).
    wanted: Option<u64>,
    /// A prepared chunk and its offset.
    ready: Option<(u64, Mapping)>,
    /// The appender is gone: the thread stops.
    closed: bool,
}

#[derive(Default)]
struct Ahead {
    state: Mutex<AheadState>,
    wake: Condvar,
}

impl Ahead {
    /// The preparing thread: one chunk at a time, as the appender asks.
    fn run(&self, file: &File) {
        let mut state = self.state.lock();
        loop {
            if state.closed {
                return;
            }
            let Some(offset) = state.wanted.take() else {
                self.wake.wait(&mut state);
                continue;
            };
            drop(state);
            // A failure (a full disk, a filesystem without fallocate) is left for the appender
            // to meet and report when it allocates the chunk itself.
            let prepared = reserve(file, offset, offset + CHUNK)
                .and_then(|()| Mapping::chunk(file, offset))
                .ok();
            if let Some(map) = &prepared {
                map.populate(|| !self.state.lock().closed);
            }
            state = self.state.lock();
            state.ready = prepared.map(|map| (offset, map));
        }
    }

    fn want(&self, offset: u64) {
        let mut state = self.state.lock();
        state.ready = None;
        state.wanted = Some(offset);
        self.wake.notify_one();
    }

    /// The chunk at `offset` if it is prepared.
    fn take(&self, offset: u64) -> Option<Mapping> {
        let mut state = self.state.lock();
        match state.ready.take() {
            Some((at, map)) if at == offset => Some(map),
            _ => None,
        }
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_one();
    }
}

/// Appends records to one log file.
/// The fields an append reads come first (see the log's `Writer`).
#[repr(C)]
pub(super) struct Appender {
    /// Bytes of the file in use: the header and every whole record.
    len: u64,
    /// Where `map` starts in the file.
    map_start: u64,
    /// The chunk that holds the end of the log.
    map: Mapping,
    file: Arc<File>,
    /// Bytes of the file allocated.
    allocated: u64,
    /// The fork generation that created it: a forked child never cuts the parent's file.
    fork_generation: u64,
    /// The thread preparing the next chunk; `None` if it could not be started.
    ahead: Option<(Arc<Ahead>, JoinHandle<()>)>,
}

impl Appender {
    /// Starts a new, empty log file `file` with `header` as its first bytes.
    pub(super) fn new(file: File, header: &[u8]) -> io::Result<Self> {
        allocate(&file, 0, CHUNK)?;
        let map = Mapping::chunk(&file, 0)?;
        let mut appender = Self {
            file: Arc::new(file),
            map,
            map_start: 0,
            len: 0,
            allocated: CHUNK,
            fork_generation: crate::fork::generation(),
            ahead: None,
        };
        appender.append(header)?;
        let ahead = Arc::new(Ahead::default());
        let (shared, file) = (ahead.clone(), appender.file.clone());
        appender.ahead = std::thread::Builder::new()
            .name("coatcheck-log-ahead".into())
            .spawn(move || shared.run(&file))
            .ok()
            .map(|thread| (ahead, thread));
        appender.prepare(CHUNK);
        Ok(appender)
    }

    /// The file, for syncing outside the owner's lock.
    pub(super) fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Bytes in use.
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Adds `bytes` at the end of the log.
    ///
    /// # Errors
    /// The I/O error of growing the file (a full disk); the log is then as it was.
    pub(super) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.len + bytes.len() as u64;
        if end > self.map_start + CHUNK {
            return self.append_across(bytes, end);
        }
        // SAFETY: `map_start <= len` and `end <= map_start + CHUNK == map_start + map.len`, so
        // the destination lies inside the mapping, which is writable; `bytes` is a distinct
        // buffer of this process, so the ranges cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.ptr.add((self.len - self.map_start) as usize),
                bytes.len(),
            );
        }
        self.len = end;
        Ok(())
    }

    /// A record that runs past the mapped chunk: the file is allocated up to the chunk after
    /// it, the record written with `pwrite`, and the mapping moved to where the log now ends.
    #[cold]
    fn append_across(&mut self, bytes: &[u8], end: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let map_start = end / CHUNK * CHUNK;
        let needed = map_start + CHUNK;
        let map = match self.ahead.as_ref().and_then(|(a, _)| a.take(map_start)) {
            // Prepared: allocated up to `needed` too.
            Some(map) => map,
            None => {
                if needed > self.allocated {
                    allocate(&self.file, self.allocated, needed)?;
                }
                Mapping::chunk(&self.file, map_start)?
            }
        };
        self.allocated = self.allocated.max(needed);
        self.file.write_all_at(bytes, self.len)?;
        // The old chunk is unmapped here; everything it held is in the file.
        self.map = map;
        self.map_start = map_start;
        self.len = end;
        self.prepare(needed);
        Ok(())
    }

    /// Asks for the chunk at `offset` to be prepared.
    fn prepare(&self, offset: u64) {
        if let Some((ahead, _)) = &self.ahead {
            ahead.want(offset);
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        if self.fork_generation != crate::fork::generation() {
            // A forked child has no preparing thread to stop (and its lock may have been held
            // when the parent forked); the file is the parent's.
            if let Some(ahead) = self.ahead.take() {
                std::mem::forget(ahead);
            }
            return;
        }
        if let Some((ahead, thread)) = self.ahead.take() {
            ahead.close();
            // Joined before the file is cut, so that no allocation ahead lands after it.
            let _ = thread.join();
        }
        // The zero-filled end is not part of the log.
        let _ = self.file.set_len(self.len);
    }
}
