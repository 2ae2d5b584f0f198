//! Closing a store on the shared tier. Once its last handle is dropped, or it is closed, no
//! thread of the library may still run: a C program may unload the library next, and a thread
//! left behind would run unmapped code. Its own test binary, so that no other test's threads
//! are counted, and its tests one at a time for the same reason.

mod support;

use std::time::{Duration, Instant};

use coatcheck::{Config, Store};
use support::redis::RedisServer;

/// Held by each test: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The names of this process's threads that the library started.
fn library_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let comm = task.expect("a task").path().join("comm");
        // A thread that ended between the listing and the read is not running.
        if let Ok(name) = std::fs::read_to_string(comm) {
            if name.starts_with("coatcheck") {
                names.push(name.trim().to_string());
            }
        }
    }
    names
}

/// A store on `redis` that waits 300 ms for an answer.
fn store_on(redis: &RedisServer) -> Store {
    let mut config = Config::default();
    config.secrets = vec![b"tier test secret".to_vec()];
    config.redis_url = Some(redis.url());
    config.redis_timeout = Duration::from_millis(300);
    Store::new(config).expect("store on redis")
}

#[test]
fn the_last_handle_dropped_while_a_resync_waits_on_redis_leaves_no_thread_running() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let redis = RedisServer::start();
    let store = store_on(&redis);
    for _ in 0..2_000 {
        store.create(b"{\"user\":1}", None).unwrap();
    }
    let tier = || store.stats().tier.expect("tier stats");
    let disconnects = tier().disconnects;
    // The link comes back at once (it only reads), and its resync then checks the 2,000
    // copies with scripts that Redis holds until the pause ends.
    redis.cli(&["CLIENT", "PAUSE", "5000", "WRITE"]);
    redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
    let start = Instant::now();
    while !(tier().disconnects > disconnects && tier().connected) {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the link never came back"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    // Thread names are cut to 15 bytes in /proc.
    assert!(
        library_threads()
            .iter()
            .any(|name| name == "coatcheck-resyn")
    );

    drop(store);
    assert_eq!(library_threads(), Vec::<String>::new());
    redis.cli(&["CLIENT", "UNPAUSE"]);
}

#[test]
fn close_stops_every_thread_while_handles_remain_and_calls_that_need_redis_fail() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let redis = RedisServer::start();
    let store = store_on(&redis);
    let id = store.create(b"{\"user\":1}", None).unwrap();
    let handle = store.clone(); // a binding's handle that the garbage collector has not freed
    assert!(!library_threads().is_empty());
    store.close().unwrap();
    assert_eq!(library_threads(), Vec::<String>::new());
    assert!(matches!(
        handle.create(b"new", None),
        Err(coatcheck::Error::Unavailable(_))
    ));
    assert!(matches!(
        handle.destroy(&id),
        Err(coatcheck::Error::Unavailable(_))
    ));
    // Nothing would invalidate its copy any more: it is not served, whatever the down policy.
    assert!(matches!(
        handle.get(&id),
        Err(coatcheck::Error::Unavailable(_))
    ));
}
