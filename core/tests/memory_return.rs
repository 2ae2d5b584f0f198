//! After a mass expiry the process gives its memory back to the OS on its own, with no call
//! from the user (glibc keeps freed memory unless trimmed). Linux-only: reads /proc/self/statm.

use std::time::{Duration, Instant};

use coatcheck::{Config, ManualClock, Store};

fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Waits up to ten seconds for the store to empty and RSS to come within `slack` of `baseline`.
fn settles(store: &Store, baseline: usize) -> usize {
    let slack = baseline / 10 + (8 << 20);
    let start = Instant::now();
    let mut now_rss = rss_bytes().unwrap_or(0);
    while start.elapsed() < Duration::from_secs(10) {
        now_rss = rss_bytes().unwrap_or(0);
        if store.is_empty() && now_rss < baseline + slack {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    now_rss
}

// One test, two phases: RSS is process-wide, so parallel tests would blur each other.
#[test]
fn rss_returns_near_baseline_after_everything_expires() {
    let Some(baseline) = rss_bytes() else {
        eprintln!("no /proc/self/statm: skipped");
        return;
    };
    let clock = ManualClock::new();
    let mut config = Config::default();
    config.idle_timeout = Duration::from_secs(60);
    config.sweep_interval = Duration::from_millis(20);
    let store = Store::with_clock(config, clock.clone()).unwrap();
    let value = vec![7u8; 2048];
    for _ in 0..100_000 {
        store.create(&value, None).unwrap();
    }
    let filled = rss_bytes().unwrap();
    assert!(
        filled > baseline + (150 << 20),
        "fill should cost >150 MiB (baseline {baseline}, filled {filled})"
    );

    clock.advance(Duration::from_secs(61));
    let start = Instant::now();
    let mut now_rss = filled;
    while start.elapsed() < Duration::from_secs(10) {
        now_rss = rss_bytes().unwrap();
        if store.is_empty() && now_rss < baseline + baseline / 10 + (8 << 20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(store.is_empty());
    assert!(
        now_rss < baseline + baseline / 10 + (8 << 20),
        "RSS stayed high: baseline {} MiB, filled {} MiB, after expiry {} MiB",
        baseline >> 20,
        filled >> 20,
        now_rss >> 20
    );

    // Churn: sessions created steadily and never read, each sweep freeing only a little. When
    // the churn stops, memory must still come back.
    let mut peak = 0;
    // 2,000 x 2 KB per 100 ms step with a 1 s TTL: ~45 MB live, and each sweep (one per step)
    // frees one step's worth, below the 8 MiB trim threshold.
    for _ in 0..60 {
        for _ in 0..2_000 {
            store.create(&value, Some(Duration::from_secs(1))).unwrap();
        }
        clock.advance(Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(25));
        peak = peak.max(rss_bytes().unwrap());
    }
    clock.advance(Duration::from_secs(2));
    let after_churn = settles(&store, baseline);
    assert!(store.is_empty());
    assert!(
        after_churn < baseline + baseline / 10 + (8 << 20),
        "RSS stayed high after churn: baseline {} MiB, peak {} MiB, after {} MiB",
        baseline >> 20,
        peak >> 20,
        after_churn >> 20
    );
    drop(store);

    // A bot flood against a budget: sessions created and never read, the store full, every
    // create evicting one. Memory must be bounded by the live sessions, with nothing left
    // behind per create (v1's expiry wheel kept a reference per create for a whole day).
    let mut config = Config::default();
    config.max_sessions = Some(10_000);
    let store = Store::new(config).unwrap();
    let value = [1u8; 200];
    for _ in 0..200_000 {
        store.create(&value, None).unwrap();
    }
    let warm = rss_bytes().unwrap();
    for _ in 0..2_000_000 {
        store.create(&value, None).unwrap();
    }
    let after_flood = rss_bytes().unwrap();
    assert_eq!(store.len(), 10_000);
    assert_eq!(store.stats().evicted_unread, 2_190_000);
    assert!(
        after_flood < warm + (4 << 20),
        "RSS grew with creates at a full budget: {} MiB after 200k creates, {} MiB after 2.2M",
        warm >> 20,
        after_flood >> 20
    );
}
