#![allow(dead_code)]

use std::time::Duration;

use coatcheck::{Config, ManualClock, Store};

pub const SECOND: Duration = Duration::from_secs(1);

/// A store on a manual clock with no background thread: tests move time and sweep themselves.
pub fn manual_store(configure: impl FnOnce(&mut Config)) -> (Store, ManualClock) {
    let clock = ManualClock::new();
    let mut config = Config::default();
    config.idle_timeout = Duration::from_secs(60);
    config.background_sweeper = false;
    config.shards = Some(16);
    configure(&mut config);
    let store = Store::with_clock(config, clock.clone()).expect("valid config");
    (store, clock)
}

/// Runs `body` on another thread and fails the test if it has not finished within `limit`,
/// so a deadlock or livelock fails instead of hanging the suite.
pub fn with_watchdog(limit: Duration, body: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        body();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(limit) {
        Ok(()) => worker.join().expect("worker panicked"),
        Err(_) if worker.is_finished() => worker.join().expect("worker panicked"),
        Err(_) => panic!("did not finish within {limit:?}: deadlock or livelock suspected"),
    }
}
