//! Fork safety, and the sweeper thread that makes it possible.
//!
//! A forked child has only the thread that called `fork()`. Any lock another thread held at
//! that moment stays locked forever in the child, and a core sweeper thread would simply be
//! gone. So the binding builds its core stores without their own sweeper and runs one sweeper
//! thread per process here, and every use of a store's locks (each `Store` method and each
//! sweep) happens inside a [`Pass`] through one process-wide gate:
//!
//! * `before_fork` (an `os.register_at_fork` hook, installed by `coatcheck/__init__.py`)
//!   closes the gate and waits until no thread is inside it. At that moment no thread holds a
//!   shard lock or the registry lock, so the child's copy of every store is consistent.
//! * `after_fork_in_parent` opens the gate again.
//! * `after_fork_in_child` opens the gate and starts a new sweeper thread for the child's
//!   copies of the stores: the child keeps working with its own copy and keeps expiring.
//!
//! A thread that finds the gate closed waits with the GIL released, so a `before` hook of
//! another library that releases the GIL cannot turn the wait into a deadlock.
//!
//! `before_fork` waits at most 5 s. A thread still inside the gate by then is stuck
//! in the core (a livelocked sweep, say), and the fork goes ahead without waiting forever. The
//! child then cannot trust any lock it inherited. Every use of a store there raises a clear
//! `RuntimeError` instead of risking a deadlock.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Longest `before_fork` waits for the threads inside the gate to leave it, in µs.
static FORK_WAIT_US: AtomicU64 = AtomicU64::new(5_000_000);
/// Set by `before_fork` when the gate did not empty in time; read in the child.
static UNSAFE_FORK: AtomicBool = AtomicBool::new(false);
/// In a child forked while a thread was inside the gate: no store may be used here.
static POISONED: AtomicBool = AtomicBool::new(false);

/// The error every store operation raises in a child forked while the gate was not empty.
pub fn poisoned() -> PyErr {
    PyRuntimeError::new_err(
        "coatcheck: this process was forked while another thread was still inside a \
         coatcheck store (it did not leave within 5 s), so the stores copied from the parent \
         cannot be used safely here; create stores after the fork",
    )
}

/// High bit of [`GATE`]: a fork is in progress. The other bits count threads inside the gate.
const FORKING: usize = 1 << (usize::BITS - 1);
static GATE: AtomicUsize = AtomicUsize::new(0);

/// Longest the sweeper sleeps before it looks at the registry again.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Permission to touch store locks; no fork happens while any `Pass` is alive. Never nest two.
pub struct Pass(());

impl Pass {
    /// Enters the gate from a thread that may hold the GIL.
    ///
    /// # Errors
    /// [`poisoned`] in a child forked while the gate was not empty.
    pub fn enter(py: Python<'_>) -> PyResult<Self> {
        loop {
            if POISONED.load(Ordering::Acquire) {
                return Err(poisoned());
            }
            if let Some(pass) = Self::try_enter() {
                return Ok(pass);
            }
            py.detach(wait_while_forking);
        }
    }

    /// Enters the gate from a thread that does not hold the GIL; `None` where [`enter`]
    /// would fail.
    ///
    /// [`enter`]: Pass::enter
    pub fn enter_detached() -> Option<Self> {
        loop {
            if POISONED.load(Ordering::Acquire) {
                return None;
            }
            if let Some(pass) = Self::try_enter() {
                return Some(pass);
            }
            wait_while_forking();
        }
    }

    fn try_enter() -> Option<Self> {
        let before = GATE.fetch_add(1, Ordering::Acquire);
        if before & FORKING == 0 {
            Some(Self(()))
        } else {
            GATE.fetch_sub(1, Ordering::Release);
            None
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        GATE.fetch_sub(1, Ordering::Release);
    }
}

fn wait_while_forking() {
    while GATE.load(Ordering::Acquire) & FORKING != 0 {
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Sets how long `before_fork` waits (seconds); for tests of the give-up path.
#[pyfunction]
pub fn _set_fork_wait(seconds: f64) {
    FORK_WAIT_US.store((seconds.max(0.0) * 1e6) as u64, Ordering::Release);
}

/// Closes the gate and waits until every thread has left it, for at most 5 s by default.
#[pyfunction]
pub fn _before_fork(py: Python<'_>) {
    GATE.fetch_or(FORKING, Ordering::AcqRel);
    let drained = py.detach(|| {
        let deadline = Instant::now() + Duration::from_micros(FORK_WAIT_US.load(Ordering::Acquire));
        while GATE.load(Ordering::Acquire) & !FORKING != 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        true
    });
    UNSAFE_FORK.store(!drained, Ordering::Release);
}

#[pyfunction]
pub fn _after_fork_in_parent() {
    UNSAFE_FORK.store(false, Ordering::Release);
    GATE.fetch_and(!FORKING, Ordering::AcqRel);
}

/// In the child: nobody is inside the gate (the parent waited for that), and the sweeper
/// thread is gone, so start a new one if any store survived the fork. If the parent gave up
/// waiting, any lock may be held by a thread that does not exist here: nothing is touched, and
/// every store refuses to work.
#[pyfunction]
pub fn _after_fork_in_child() -> PyResult<()> {
    if UNSAFE_FORK.load(Ordering::Acquire) {
        POISONED.store(true, Ordering::Release);
        return Ok(());
    }
    GATE.store(0, Ordering::Release);
    let Some(_pass) = Pass::enter_detached() else {
        return Ok(());
    };
    let mut registry = lock_registry();
    registry.sweeper = None;
    registry.stores.retain(|s| s.store.strong_count() > 0);
    if !registry.stores.is_empty() {
        start_sweeper(&mut registry)?;
    }
    Ok(())
}

/// A store the sweeper looks after.
struct Swept {
    store: Weak<coatcheck::Store>,
    interval: Duration,
    next: Instant,
}

struct Registry {
    stores: Vec<Swept>,
    /// The running sweeper thread, if any.
    sweeper: Option<Thread>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    stores: Vec::new(),
    sweeper: None,
});

fn lock_registry() -> MutexGuard<'static, Registry> {
    // The registry is a list of weak references: a panic elsewhere cannot leave it in a state
    // worth refusing to read.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Has `store` swept every `interval` for as long as it lives. Call it holding a [`Pass`].
pub fn register(store: &Arc<coatcheck::Store>, interval: Duration) -> PyResult<()> {
    let mut registry = lock_registry();
    registry.stores.push(Swept {
        store: Arc::downgrade(store),
        interval,
        next: Instant::now() + interval,
    });
    match &registry.sweeper {
        Some(thread) => {
            thread.unpark();
            Ok(())
        }
        None => start_sweeper(&mut registry),
    }
}

fn start_sweeper(registry: &mut Registry) -> PyResult<()> {
    let handle = std::thread::Builder::new()
        .name("coatcheck-py-sweep".into())
        .spawn(sweep_forever)
        .map_err(|e| {
            crate::error::invalid_config(format!("could not start the sweeper thread: {e}"))
        })?;
    registry.sweeper = Some(handle.thread().clone());
    Ok(())
}

fn sweep_forever() {
    loop {
        let nap = {
            let Some(_pass) = Pass::enter_detached() else {
                return;
            };
            let mut registry = lock_registry();
            registry.stores.retain(|s| s.store.strong_count() > 0);
            if registry.stores.is_empty() {
                registry.sweeper = None;
                return;
            }
            let now = Instant::now();
            let mut nap = MAX_NAP;
            for swept in registry.stores.iter_mut() {
                if swept.next <= now {
                    if let Some(store) = swept.store.upgrade() {
                        store.sweep();
                    }
                    swept.next = Instant::now() + swept.interval;
                }
                nap = nap.min(swept.next.saturating_duration_since(now));
            }
            nap
        };
        std::thread::park_timeout(nap);
    }
}
