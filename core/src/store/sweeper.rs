//! The background sweeper thread. It holds only a weak reference to the store, so it never
//! keeps a dropped store alive, and it exits as soon as the store's stop channel closes.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Inner;

/// Name of the sweeper thread, as seen in `/proc/<pid>/task/*/comm` and debuggers.
pub(crate) const THREAD_NAME: &str = "coatcheck-sweep";

pub(super) fn spawn(
    inner: &Arc<Inner>,
    stop: Receiver<()>,
    interval: Duration,
) -> std::io::Result<()> {
    let store: Weak<Inner> = Arc::downgrade(inner);
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            loop {
                match stop.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    // The store was dropped (its sender with it).
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let Some(inner) = store.upgrade() else { return };
                inner.sweep_all();
            }
        })?;
    Ok(())
}
