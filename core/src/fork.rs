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
