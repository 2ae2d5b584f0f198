//! The background sweeper thread. It holds only a weak reference to the store, so it never
//! keeps a dropped store alive. The last store handle stops it and waits for it to finish, so
//! no thread of the library outlives the store (a C program may unload the library next).
//! In a child made by `fork()` the thread does not exist: the first call into the store there
//! starts a new one. The parent's thread handle and its stop channel are forgotten, never
//! dropped: the channel's lock may have been held by that thread at the moment of the fork
//! (it takes it to wait), and in the child nothing would ever release it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::Inner;
use crate::fork;

/// Name of the sweeper thread, as seen in `/proc/<pid>/task/*/comm` and debuggers.
pub(crate) const THREAD_NAME: &str = "coatcheck-sweep";

/// Owned by the store handles; dropping the last one stops the thread and joins it.
pub(crate) struct Sweeper {
    running: Mutex<Running>,
    interval: Duration,
    /// The fork generation the running thread was started in.
    generation: AtomicU64,
    /// Set by [`Sweeper::stop`]: a forked child of a closed store starts none.
    stopped: std::sync::atomic::AtomicBool,
}

struct Running {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    pub(super) fn spawn(inner: &Arc<Inner>, interval: Duration) -> std::io::Result<Self> {
        Ok(Self {
            generation: AtomicU64::new(fork::generation()),
            running: Mutex::new(start(inner, interval)?),
            interval,
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// In a child made by `fork()`, starts this process's own sweeper thread (once).
    #[inline]
    pub(super) fn restart_after_fork(&self, inner: &Arc<Inner>) {
        if self.generation.load(Ordering::Relaxed) != fork::generation()
            && !self.stopped.load(Ordering::Relaxed)
        {
            self.restart(inner);
        }
    }

    #[cold]
    fn restart(&self, inner: &Arc<Inner>) {
        let now = fork::generation();
        let mut running = self.running.lock();
        if self.generation.load(Ordering::Acquire) == now {
            return;
        }
        forget_parents(&mut running);
        // Stopped meanwhile (a close in this child): the parent's thread is forgotten all the
        // same, and none is started.
        if self.stopped.load(Ordering::Relaxed) {
            self.generation.store(now, Ordering::Release);
            return;
        }
        // If no thread can be started, expired sessions are still never returned, and
        // `Store::sweep` and eviction reclaim them.
        if let Ok(fresh) = start(inner, self.interval) {
            *running = fresh;
        }
        self.generation.store(now, Ordering::Release);
    }
}

fn start(inner: &Arc<Inner>, interval: Duration) -> std::io::Result<Running> {
    let (stop, stopped) = mpsc::channel();
    let store = Arc::downgrade(inner);
    let thread = std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || run(&store, &stopped, interval))?;
    Ok(Running {
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn run(store: &Weak<Inner>, stopped: &Receiver<()>, interval: Duration) {
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            // The last handle is gone (its sender with it).
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(inner) = store.upgrade() else { return };
        let pass = fork::enter();
        inner.sweep_all();
        drop(pass);
    }
}

/// In a forked child, leaves the parent's sweeper alone: its thread does not exist here, and
/// dropping its stop channel would take a lock that thread may have held at the fork. The
/// channel leaks once per fork of a process that had a store.
fn forget_parents(running: &mut Running) {
    std::mem::forget(std::mem::replace(
        running,
        Running {
            stop: None,
            thread: None,
        },
    ));
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Sweeper {
    /// Stops the thread and waits for it (a pass in progress finishes first). Idempotent.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let mut running = self.running.lock();
        if self.generation.load(Ordering::Acquire) != fork::generation() {
            // Started before a fork, in the parent, and never restarted here.
            forget_parents(&mut running);
            return;
        }
        drop(running.stop.take());
        if let Some(thread) = running.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                // A pass in progress finishes first: the wait is one bounded sweep at most.
                let _ = thread.join();
            }
        }
    }
}
