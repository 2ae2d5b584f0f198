//! The background sweeper thread. It holds only a weak reference to the store, so it never
//! keeps a dropped store alive. The last store handle stops it and waits for it to finish, so
//! no thread of the library outlives the store (a C program may unload the library next).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::Inner;

/// Name of the sweeper thread, as seen in `/proc/<pid>/task/*/comm` and debuggers.
pub(crate) const THREAD_NAME: &str = "coatcheck-sweep";

/// Owned by the store handles; dropping the last one stops the thread and joins it.
pub(crate) struct Sweeper {
    stop: Mutex<Option<Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sweeper {
    pub(super) fn spawn(inner: &Arc<Inner>, interval: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let store = Arc::downgrade(inner);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || run(&store, &stopped, interval))?;
        Ok(Self {
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }
}

fn run(store: &Weak<Inner>, stopped: &Receiver<()>, interval: Duration) {
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            // The last handle is gone (its sender with it).
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(inner) = store.upgrade() else { return };
        inner.sweep_all();
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.lock().take());
        if let Some(thread) = self.thread.lock().take() {
            // A pass in progress finishes first: the wait is one bounded sweep at most.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}
