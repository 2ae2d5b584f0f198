//! Memory per session at 1M sessions of 200 B, for coatcheck and the three baselines, each in
//! its own child process so one cannot inherit another's heap. Prints a table; the overhead
//! column is RSS per session minus the 200 value bytes.
//!
//! Run: `cargo bench -p coatcheck-benches --bench memory`

mod common;

use common::{Backend, Coatcheck, Dash, Moka, RwLockMap, rss_bytes, trim};

const VALUE: usize = 200;

fn sessions() -> usize {
    std::env::var("COATCHECK_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn measure<B: Backend>() {
    // The ids are generated first, in one run of allocations, and kept alive to the end: ids
    // handed back by `create` and dropped afterwards would leave a 48-byte hole beside every
    // session that RSS keeps counting, an artefact of the benchmark rather than of the store.
    trim();
    let start = rss_bytes();
    let ids: Vec<String> = (0..sessions()).map(|_| coatcheck::generate_id()).collect();
    trim();
    let before = rss_bytes();
    let backend = B::build();
    let value = vec![b'x'; VALUE];
    for id in &ids {
        backend.set(id, &value);
    }
    trim();
    let after = rss_bytes();
    let per_session = (after.saturating_sub(before)) as f64 / sessions() as f64;
    println!(
        "{:<16} {:>10.1} {:>12.1} {:>12.1}   (rss {} MiB with the id list, {} MiB filled)",
        B::NAME,
        per_session,
        per_session - VALUE as f64,
        per_session - VALUE as f64 - 32.0,
        (before - start.min(before)) >> 20,
        after >> 20,
    );
    std::hint::black_box((backend.len(), ids.len()));
}

/// 10M creates of never-read sessions against `max_sessions = 10_000`: RSS must stay flat
/// once the budget is full (nothing left behind per create).
fn flood() {
    let mut config = coatcheck::Config::default();
    config.max_sessions = Some(10_000);
    let store = coatcheck::Store::new(config).expect("config");
    let value = vec![b'x'; VALUE];
    trim();
    let start = rss_bytes();
    print!(
        "flood at max_sessions=10000: rss before {:.1} MiB",
        start as f64 / 1048576.0
    );
    let mut done = 0u64;
    for checkpoint in [100_000u64, 1_000_000, 5_000_000, 10_000_000] {
        while done < checkpoint {
            store.create(&value, None).expect("create");
            done += 1;
        }
        print!(
            ", after {}M creates {:.1} MiB",
            done as f64 / 1e6,
            rss_bytes() as f64 / 1048576.0
        );
    }
    println!(
        " (live {}, evicted {})",
        store.len(),
        store.stats().evicted_unread
    );
}

fn main() {
    let all = common::measurements(
        measure::<Coatcheck>,
        measure::<RwLockMap>,
        measure::<Dash>,
        measure::<Moka>,
    );
    if common::run_as_child(&all) {
        return;
    }
    println!(
        "memory per session, {} sessions x {VALUE} B values",
        sessions()
    );
    println!(
        "{:<16} {:>10} {:>12} {:>12}",
        "store", "B/session", "over value", "over v+id"
    );
    common::run_children(&all);
    flood();
}
