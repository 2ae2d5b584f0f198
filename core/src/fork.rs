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

thread_local! {
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// How many forks separate this process from the one that loaded the library.
pub(crate) fn generation() -> u64 {
    INSTALL.call_once(install);
    GENERATION.load(SeqCst)
}

/// Proof that the calling thread is inside a store; no fork happens while one is alive. Never
/// take a second one while holding one (a fork waiting for the first would wait forever).
pub(crate) struct Pass {
    slot: usize,
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
    step_in(slot);
    Pass { slot }
}

/// Runs `f`, which waits for another thread and takes no store lock, outside the gate, though
/// the calling thread holds a pass: a fork may happen meanwhile. A call waiting on Redis must not
/// hold the gate shut, or a fork would wait for the call, the call for the Redis link thread, and
/// the link thread (which enters the gate to apply what Redis sends) for the fork.
pub(crate) fn outside<R>(f: impl FnOnce() -> R) -> R {
    let slot = MY_SLOT.with(Cell::get);
    if slot == usize::MAX {
        return f();
    }
    INSIDE[slot].0.fetch_sub(1, SeqCst);
    let result = f();
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
        INSIDE[self.slot].0.fetch_sub(1, SeqCst);
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
        FORKING.store(false, SeqCst);
    });
}
