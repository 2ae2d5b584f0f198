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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// High bit of [`GATE`]: a fork is in progress. The other bits count threads inside the gate.
const FORKING: usize = 1 << (usize::BITS - 1);
static GATE: AtomicUsize = AtomicUsize::new(0);

/// Longest the sweeper sleeps before it looks at the registry again.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Permission to touch store locks; no fork happens while any `Pass` is alive. Never nest two.
pub struct Pass(());

impl Pass {
    /// Enters the gate from a thread that may hold the GIL.
    pub fn enter(py: Python<'_>) -> Self {
        loop {
            if let Some(pass) = Self::try_enter() {
                return pass;
            }
            py.detach(wait_while_forking);
        }
    }

    /// Enters the gate from a thread that does not hold the GIL.
    pub fn enter_detached() -> Self {
        loop {
            if let Some(pass) = Self::try_enter() {
                return pass;
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

/// Closes the gate and waits until every thread has left it.
#[pyfunction]
pub fn _before_fork(py: Python<'_>) {
    GATE.fetch_or(FORKING, Ordering::AcqRel);
    py.detach(|| {
        while GATE.load(Ordering::Acquire) & !FORKING != 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    });
}

#[pyfunction]
pub fn _after_fork_in_parent() {
    GATE.fetch_and(!FORKING, Ordering::AcqRel);
}

/// In the child: nobody is inside the gate (the parent waited for that), and the sweeper
/// thread is gone, so start a new one if any store survived the fork.
#[pyfunction]
pub fn _after_fork_in_child() -> PyResult<()> {
    GATE.store(0, Ordering::Release);
    let _pass = Pass::enter_detached();
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
            let _pass = Pass::enter_detached();
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
