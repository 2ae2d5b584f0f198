//! The background sweeper: it reclaims on its own, and it stops with the last store handle.
//! One test per binary section here reads `/proc/self/task`, so this file holds only tests that
//! agree on how many sweeper threads exist.

use std::time::{Duration, Instant};

use coatcheck::{Config, ManualClock, Store};

fn sweeper_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "coatcheck-sweep")
        .count()
}

/// Polls `done` for up to five seconds (not a timing assertion: a bound so a bug fails fast).
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn sweeper_reclaims_in_the_background_and_stops_with_the_last_handle() {
    let clock = ManualClock::new();
    let mut config = Config::default();
    config.idle_timeout = Duration::from_secs(10);
    config.sweep_interval = Duration::from_millis(10);
    let store = Store::with_clock(config, clock.clone()).unwrap();
    assert!(
        eventually(|| sweeper_threads() == 1),
        "one sweeper thread per store"
    );

    for _ in 0..1000 {
        store.create(b"v", None).unwrap();
    }
    clock.advance(Duration::from_secs(11));
    // The sweeper counts a session gone before it counts it expired: wait for both.
    assert!(
        eventually(|| store.is_empty() && store.stats().expirations == 1000),
        "expired sessions reclaimed without any call: {:?}",
        store.stats()
    );

    let clone = store.clone();
    drop(store);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sweeper_threads(), 1, "a remaining clone keeps the sweeper");
    drop(clone);
    assert_eq!(
        sweeper_threads(),
        0,
        "the last handle joins the sweeper thread"
    );

    let mut quiet = Config::default();
    quiet.background_sweeper = false;
    let _store = Store::new(quiet).unwrap();
    assert_eq!(
        sweeper_threads(),
        0,
        "no thread when the sweeper is disabled"
    );
}
