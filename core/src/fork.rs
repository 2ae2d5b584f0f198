//! Fork safety: a store keeps working in a child made by `fork()`.
//!
//! A child has only the thread that called `fork()`. If another thread was inside a store at
//! that moment, a stripe lock it held stays held forever in the child. Taking every lock in a
//! `prepare` handler does not cure this: threads parked on those locks in the parent stay queued
//! in parking_lot's wait table, and a lock released in the child can be handed to a thread that
//! does not exist there.
//!
//! So the store keeps a gate instead. Every public call and every sweep holds a [`Pass`] while it
//! runs. The `prepare` handler closes the gate and waits until no pass is held; calls that arrive
//! meanwhile step back and wait outside, so at the fork no thread is inside a store and none is
//! parked on a store lock. The handlers open the gate again in the parent and in the child. The
//! child also counts a new fork generation, which makes each store start its own sweeper thread
//! on its next call and each thread reseed its id generator.
//!
//! The count of passes is spread over cache-line-sized slots chosen per thread, so entering the
//! gate writes a line that usually only the calling thread uses.
//!
//! A listener that never returns would keep a fork waiting, as it keeps its stripe waiting.
//!
//! A lock on a file (a restart log's directory) belongs to the process that took it: see
//! [`ProcessLock`].

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

const SLOTS: usize = 32;

#[repr(align(128))]
struct Slot(AtomicUsize);

static INSIDE: [Slot; SLOTS] = [const { Slot(AtomicUsize::new(0)) }; SLOTS];
static FORKING: AtomicBool = AtomicBool::new(false);
static GENERATION: AtomicU64 = AtomicU64::new(0);
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

/// The descriptors of the live [`ProcessLock`]s, -1 in a free slot.
#[cfg(unix)]
static PROCESS_LOCKS: [std::sync::atomic::AtomicI32; 64] =
    [const { std::sync::atomic::AtomicI32::new(-1) }; 64];

thread_local! {
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Passes this thread holds inside the gate: a pass taken while holding one counts here
    /// only (the gate cannot close while the first is held).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// How many forks separate this process from the one that loaded the library.
pub(crate) fn generation() -> u64 {
    INSTALL.call_once(install);
    GENERATION.load(SeqCst)
}

/// Proof that the calling thread is inside a store; no fork happens while one is alive. A pass
/// taken while the thread holds one only counts the depth: stepping in again would wait forever
/// for a fork that waits for the first pass. (A completion that runs on the Redis link thread
/// inside a pass may end up dropping a task whose own completion takes a pass.)
pub(crate) struct Pass {
    slot: usize,
    nested: bool,
}

/// Waits while a fork is in progress, then enters the gate.
pub(crate) fn enter() -> Pass {
    INSTALL.call_once(install);
    let slot = MY_SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_SLOT.fetch_add(1, SeqCst) % SLOTS);
        }
        s.get()
    });
    let nested = DEPTH.with(|d| {
        d.set(d.get() + 1);
        d.get() > 1
    });
    if !nested {
        step_in(slot);
    }
    Pass { slot, nested }
}

/// Runs `f`, which waits (for another thread, or for the disk) and takes no store lock, outside
/// the gate, though the calling thread holds a pass: a fork may happen meanwhile. A call waiting
/// on Redis must not hold the gate shut, or a fork would wait for the call, the call for the
/// Redis link thread, and the link thread (which enters the gate to apply what Redis sends) for
/// the fork. Nor may the restart log's syncs and file writes: every `fork()` of the process
/// (a child process spawned by Node or Python) would wait for the disk.
pub(crate) fn outside<R>(f: impl FnOnce() -> R) -> R {
    let slot = MY_SLOT.with(Cell::get);
    if slot == usize::MAX || DEPTH.with(Cell::get) == 0 {
        return f();
    }
    INSIDE[slot].0.fetch_sub(1, SeqCst);
    // Outside the gate, a pass taken by `f` must step in for itself.
    let depth = DEPTH.with(|d| d.replace(0));
    let result = f();
    DEPTH.with(|d| d.set(depth));
    step_in(slot);
    result
}

/// Counts the thread in at `slot`, once no fork is in progress.
fn step_in(slot: usize) {
    loop {
        // Increment, then look: `prepare` sets the flag, then looks at the counts. Under SeqCst
        // at least one of the two sees the other.
        INSIDE[slot].0.fetch_add(1, SeqCst);
        if !FORKING.load(SeqCst) {
            return;
        }
        INSIDE[slot].0.fetch_sub(1, SeqCst);
        while FORKING.load(SeqCst) {
            std::thread::yield_now();
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        if !self.nested {
            INSIDE[self.slot].0.fetch_sub(1, SeqCst);
        }
    }
}

/// A file holding an `flock` that belongs to the process that opened it, not to its forked
/// children. A child shares the parent's open file, and an `flock` lasts until the last
/// descriptor of that open file closes, so a worker forked from the parent would keep the lock
/// for as long as it lives: after the parent exits, a new process could not take it. In a child,
/// the fork handler points its copy of the descriptor at /dev/null, which gives up the child's
/// share and leaves the parent's lock as it was. Beyond 64 live locks in one process, a lock is
/// shared with children as before.
#[cfg(unix)]
pub(crate) struct ProcessLock {
    /// `None` only inside `drop`.
    file: Option<std::fs::File>,
    slot: Option<usize>,
}

#[cfg(unix)]
impl ProcessLock {
    /// Opens the file with `open` and registers it before a fork can copy the descriptor: both
    /// inside the gate, so no child is made between the two. The caller then takes the lock.
    pub(crate) fn open(
        open: impl FnOnce() -> std::io::Result<std::fs::File>,
    ) -> std::io::Result<ProcessLock> {
        use std::os::fd::AsRawFd;
        let _pass = enter();
        let file = open()?;
        let fd = file.as_raw_fd();
        let slot = PROCESS_LOCKS
            .iter()
            .position(|s| s.compare_exchange(-1, fd, SeqCst, SeqCst).is_ok());
        Ok(ProcessLock {
            file: Some(file),
            slot,
        })
    }

    pub(crate) fn file(&self) -> &std::fs::File {
        self.file.as_ref().expect("present until dropped")
    }
}

#[cfg(unix)]
impl Drop for ProcessLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // Inside the gate, so no child is made between freeing the slot and closing the
        // descriptor (it would keep a copy nothing closes). The slot is freed first, so it never
        // names a descriptor that is closed or reused. In a child the handler has freed it.
        let _pass = enter();
        if let (Some(slot), Some(file)) = (self.slot, &self.file) {
            let _ = PROCESS_LOCKS[slot].compare_exchange(file.as_raw_fd(), -1, SeqCst, SeqCst);
        }
        drop(self.file.take());
    }
}

/// In a new child: each [`ProcessLock`]'s descriptor now refers to /dev/null, the slots are
/// free. Only system calls that are safe after a fork: the child has one thread.
#[cfg(unix)]
fn release_process_locks_in_child() {
    let mut null = -1;
    for slot in &PROCESS_LOCKS {
        let fd = slot.swap(-1, SeqCst);
        if fd < 0 {
            continue;
        }
        if null < 0 {
            // SAFETY: open with a NUL-terminated path literal; no memory is written.
            null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if null < 0 {
                // No /dev/null (a bare chroot): the child keeps its share, as without this.
                return;
            }
        }
        // SAFETY: replaces the child's descriptor `fd`, which its ProcessLock still owns and will
        // close, with a copy of `null`; no memory is touched.
        unsafe { libc::dup3(null, fd, libc::O_CLOEXEC) };
    }
    if null >= 0 {
        // SAFETY: closes the descriptor opened above, which nothing else refers to.
        unsafe { libc::close(null) };
    }
}

#[cfg(unix)]
fn install() {
    // SAFETY: the handlers are `extern "C"` functions with the signature pthread_atfork expects,
    // live for the whole program, and cannot unwind (see `no_unwind`). Registration fails only
    // for lack of memory, in which case forks stay unguarded as they were before.
    unsafe {
        libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child));
    }
}

#[cfg(not(unix))]
fn install() {}

/// Runs a handler body, aborting instead of unwinding into the C library's `fork`.
fn no_unwind(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        std::process::abort();
    }
}

extern "C" fn prepare() {
    no_unwind(|| {
        // Another thread forking at the same time waits here for our fork to finish.
        while FORKING.swap(true, SeqCst) {
            std::thread::yield_now();
        }
        while INSIDE.iter().any(|s| s.0.load(SeqCst) != 0) {
            std::thread::yield_now();
        }
    });
}

extern "C" fn in_parent() {
    no_unwind(|| FORKING.store(false, SeqCst));
}

extern "C" fn in_child() {
    no_unwind(|| {
        // Threads that were stepping back from the gate do not exist here.
        for slot in &INSIDE {
            slot.0.store(0, SeqCst);
        }
        GENERATION.fetch_add(1, SeqCst);
        #[cfg(unix)]
        release_process_locks_in_child();
        FORKING.store(false, SeqCst);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth() -> usize {
        DEPTH.with(Cell::get)
    }

    // Counts in INSIDE are shared with other test threads (slots are per thread modulo 32),
    // so this checks which passes step in rather than the counts.
    #[test]
    fn a_pass_taken_inside_a_pass_does_not_step_in_again() {
        let outer = enter();
        assert!(!outer.nested);
        let inner = enter();
        assert!(
            inner.nested,
            "the gate cannot close while the outer pass is held"
        );
        assert_eq!(depth(), 2);
        drop(inner);
        assert_eq!(depth(), 1);
        outside(|| {
            assert_eq!(depth(), 0, "outside the gate");
            let pass = enter();
            assert!(!pass.nested, "outside the gate a pass steps in for itself");
        });
        assert_eq!(depth(), 1);
        drop(outer);
        assert_eq!(depth(), 0);
    }
}
