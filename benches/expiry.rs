//! What a mass expiry costs the requests running beside it, and whether memory comes back.
//!
//! Each store gets 1M sessions of 200 B that all expire 2 s later, plus 1,000 long-lived
//! sessions that a reader thread keeps reading the whole time. Reported: the slowest and the
//! 99.9th-percentile `get` during the expiry window, and RSS before the fill, when full, and
//! one and two sweep intervals (1 s each) after everything expired — with no call from the
//! user for coatcheck; the map baselines get a sweeper thread running `retain` every second,
//! moka gets `run_pending_tasks` every second. Each store runs in its own child process.
//!
//! Run: `cargo bench -p coatcheck-benches --bench expiry`

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Coatcheck, Dash, IDLE, Moka, Pick, RwLockMap, rss_bytes, trim};

const VALUE: usize = 200;
const TTL: Duration = Duration::from_secs(2);
const INTERVAL: Duration = Duration::from_secs(1);

fn sessions() -> usize {
    std::env::var("COATCHECK_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Latencies in 100 ns buckets up to 10 ms, so recording costs no allocation and no RSS.
struct Histogram {
    buckets: Vec<u64>,
    worst: u64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; 100_001],
            worst: 0,
            count: 0,
        }
    }
}

impl Histogram {
    fn record(&mut self, ns: u64) {
        let i = ((ns / 100) as usize).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.worst = self.worst.max(ns);
        self.count += 1;
    }
    fn quantile(&self, q: f64) -> u64 {
        let target = (self.count as f64 * q) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen > target {
                return i as u64 * 100;
            }
        }
        self.worst
    }
}

fn mib(b: usize) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn run<B: Backend>() {
    trim();
    let baseline = rss_bytes();
    let backend = B::build();
    let value = vec![b'x'; VALUE];
    let live: Vec<String> = (0..1000).map(|_| backend.create(&value, IDLE)).collect();
    let fill_start = Instant::now();
    for _ in 0..sessions() {
        backend.create(&value, TTL);
    }
    let filled = rss_bytes();
    let expires_at = fill_start + TTL;
    let all_expired_at = Instant::now() + TTL;
    let stop = AtomicBool::new(false);
    let mut rss_after = [0usize; 2];
    // The reader is this thread, the one that filled the store: its mallocs share an allocator
    // arena with the expiring sessions, the worst case for a trim that holds the arena lock.
    let mut histogram = Histogram::default();
    std::thread::scope(|s| {
        // The baselines need someone to reclaim for them; coatcheck's sweep() is a no-op.
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(INTERVAL);
                backend.sweep();
            }
        });
        s.spawn(|| {
            for (i, slot) in rss_after.iter_mut().enumerate() {
                let at = all_expired_at + INTERVAL * (i as u32 + 1);
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                *slot = rss_bytes();
            }
            stop.store(true, Ordering::Relaxed);
        });
        // The reader runs at nice -10 where allowed (as root), so that what it measures is
        // the store making it wait, not the scheduler handing its core to another thread on a
        // small machine. COATCHECK_BENCH_READER_NICE=0 measures at normal priority.
        let nice = std::env::var("COATCHECK_BENCH_READER_NICE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(-10);
        common::set_this_threads_nice(nice);
        // COATCHECK_BENCH_READER=lend reads without allocating (coatcheck's get_with), to
        // tell stalls in the store from stalls in the allocator.
        let lend = std::env::var("COATCHECK_BENCH_READER").is_ok_and(|v| v == "lend");
        let mut pick = Pick::new(7);
        while !stop.load(Ordering::Relaxed) {
            let id = &live[pick.index(live.len())];
            let start = Instant::now();
            if lend {
                std::hint::black_box(backend.get_len(id));
            } else {
                std::hint::black_box(backend.get(id));
            }
            let ns = start.elapsed().as_nanos() as u64;
            if start >= expires_at {
                histogram.record(ns);
            }
        }
    });
    let (worst, p999) = (histogram.worst, histogram.quantile(0.999));
    println!(
        "{:<16} {:>10.3} {:>10.1} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>8}",
        B::NAME,
        worst as f64 / 1e6,
        p999 as f64 / 1e3,
        mib(baseline),
        mib(filled),
        mib(rss_after[0]),
        mib(rss_after[1]),
        backend.len(),
    );
}

fn main() {
    let all = common::measurements(run::<Coatcheck>, run::<RwLockMap>, run::<Dash>, run::<Moka>);
    if common::run_as_child(&all) {
        return;
    }
    println!(
        "mass expiry: {} sessions x {VALUE} B expiring together, 1,000 live ones read throughout",
        sessions()
    );
    println!(
        "{:<16} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "store", "worst ms", "p99.9 us", "rss0 MiB", "full MiB", "+1 int MiB", "+2 int MiB", "left"
    );
    common::run_children(&all);
}
