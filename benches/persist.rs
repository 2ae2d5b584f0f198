//! The restart log (issue 11), against the same store without one, in the same run:
//! - write ops/s with `persist_fsync` never / interval / always vs no log (2 threads, or THREADS, `set` of
//!   200-byte values over 100k ids), each write changing a counter in a session-shaped value
//!   or every byte of it, and a session-like mix (90% reads, 10% writes);
//! - the slowest write while a compaction runs, against the slowest write without one;
//! - time to load 1M sessions of 200 B from a snapshot (after a clean close) and from a log
//!   alone (as a crash leaves it), disk bytes per session after compaction, and the RSS a
//!   compaction adds.
//!
//! Files go under `COATCHECK_BENCH_DIR` (default: the system temp dir); say which disk in
//! BENCHMARKS.md. Run: `cargo bench -p coatcheck-benches --bench persist`

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coatcheck::{Config, Fsync, Store};
use common::{rss_bytes, trim};

const VALUE: usize = 200;
/// Sessions the write benchmarks spread their ops over (`COATCHECK_BENCH_SESSIONS` changes it).
const IDS: usize = 100_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench_dir(name: &str) -> PathBuf {
    let base =
        std::env::var_os("COATCHECK_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = base.join(format!("coatcheck-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    NoLog,
    Log(Fsync),
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::NoLog => "no log",
            Mode::Log(Fsync::Never) => "log, fsync never",
            Mode::Log(Fsync::Interval) => "log, fsync interval",
            Mode::Log(Fsync::Always) => "log, fsync always",
            Mode::Log(_) => "log",
        }
    }

    fn store(self, dir: &Path) -> Store {
        let mut config = Config::default();
        if let Mode::Log(fsync) = self {
            config.persist_path = Some(dir.join("sessions"));
            config.persist_fsync = fsync;
        }
        Store::new(config).expect("store")
    }
}

/// What each write stores. The log records a write as the bytes between the ends it shares
/// with the value it replaces, so the two give its cheapest and its dearest case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writes {
    /// A session as frameworks write it: the same bytes but for a counter in the middle.
    CounterChanges,
    /// Every byte differs from the value before (one of 251 random values, in turn).
    WholeValueNew,
}

/// A 200-byte session of the shape express-session writes, with `n` in its middle.
fn session_value(n: usize) -> Vec<u8> {
    let mut v = format!(
        "{{\"cookie\":{{\"originalMaxAge\":86400000,\"expires\":null,\"httpOnly\":true,\
         \"path\":\"/\"}},\"views\":{n:010},\"user\":\"user-42\",\"cart\":[\"a\",\"b\"]}}"
    )
    .into_bytes();
    v.resize(VALUE, b' ');
    v
}

fn random_values() -> Vec<Vec<u8>> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..251)
        .map(|_| {
            (0..VALUE)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

/// Ops/s of `threads` threads for `seconds`; `read_percent` of the ops are reads.
fn throughput(
    store: &Store,
    ids: &Arc<Vec<String>>,
    threads: usize,
    read_percent: usize,
    writes: Writes,
    seconds: f64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..threads)
        .map(|t| {
            let (store, ids, stop, done) = (store.clone(), ids.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut counted = session_value(0);
                let counter = counter_offset(&counted);
                let random = random_values();
                let mut n = 0usize;
                let mut i = t * 7919;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        i = (i + 104_729) % ids.len();
                        if (n % 100) < read_percent {
                            std::hint::black_box(store.get(&ids[i]).expect("get"));
                        } else {
                            let value = match writes {
                                Writes::CounterChanges => {
                                    write_counter(&mut counted[counter..counter + 10], n);
                                    &counted
                                }
                                Writes::WholeValueNew => &random[n % random.len()],
                            };
                            store.set(&ids[i], value, None).expect("set");
                        }
                        n += 1;
                    }
                }
                done.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("thread");
    }
    done.load(Ordering::Relaxed) as f64 / seconds
}

/// Where [`session_value`] keeps its counter.
fn counter_offset(value: &[u8]) -> usize {
    const AT: &[u8] = b"\"views\":";
    value
        .windows(AT.len())
        .position(|w| w == AT)
        .expect("a counter")
        + AT.len()
}

/// Writes `n` into `digits` in decimal, without allocating.
fn write_counter(digits: &mut [u8], mut n: usize) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn writes() {
    let rounds = env_usize("ROUNDS", 3);
    let seconds = env_usize("SECONDS", 3) as f64;
    // THREADS=1 separates the log's own cost per change from two writers contending.
    let threads = env_usize("THREADS", 2);
    // MODES=never,interval picks some (for profiling one); the first is the baseline.
    let picked = std::env::var("MODES").unwrap_or_else(|_| "none,never,interval,always".into());
    let modes: Vec<Mode> = picked
        .split(',')
        .filter_map(|m| match m {
            "none" => Some(Mode::NoLog),
            "never" => Some(Mode::Log(Fsync::Never)),
            "interval" => Some(Mode::Log(Fsync::Interval)),
            "always" => Some(Mode::Log(Fsync::Always)),
            _ => None,
        })
        .collect();
    // Fewer sessions (10,000: a table that fits in the caches) separate the log's own work from
    // what its bytes cost the table's cache lines.
    let sessions = env_usize("COATCHECK_BENCH_SESSIONS", IDS);
    let ids: Arc<Vec<String>> = Arc::new((0..sessions).map(|_| coatcheck::generate_id()).collect());
    for (label, read_percent, writes) in [
        ("writes only, a counter changes", 0, Writes::CounterChanges),
        ("writes only, every byte new", 0, Writes::WholeValueNew),
        ("90% reads, 10% writes", 90, Writes::CounterChanges),
    ] {
        let mut results = vec![Vec::new(); modes.len()];
        // Alternating rounds: a slow minute of the machine hits every mode alike.
        for _ in 0..rounds {
            for (m, mode) in modes.iter().enumerate() {
                let dir = bench_dir("writes");
                let store = mode.store(&dir);
                let value = session_value(0);
                for id in ids.iter() {
                    store.set(id, &value, None).expect("fill");
                }
                results[m].push(throughput(
                    &store,
                    &ids,
                    threads,
                    read_percent,
                    writes,
                    seconds,
                ));
                drop(store);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let base = median(results[0].clone());
        println!(
            "{label} ({threads} threads, {sessions} sessions of {VALUE} B, median of {rounds} x {seconds} s):"
        );
        for (m, mode) in modes.iter().enumerate() {
            let ops = median(results[m].clone());
            println!(
                "  {:<22} {:>12.0} ops/s  {:>5.2}x no log",
                mode.name(),
                ops,
                ops / base
            );
        }
    }
}

/// The slowest write over 3 s at 1M sessions: without a log, with one, and with one while
/// compactions run back to back.
fn stalls() {
    let sessions = env_usize("COATCHECK_BENCH_SESSIONS", 1_000_000);
    let value = vec![b'x'; VALUE];
    let ids: Vec<String> = (0..sessions).map(|_| coatcheck::generate_id()).collect();
    let slowest = |store: &Store, compacting: bool| {
        let stop = Arc::new(AtomicBool::new(false));
        let compactor = compacting.then(|| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    store.compact_log().expect("compact");
                    n += 1;
                }
                n
            })
        });
        let mut worst = Duration::ZERO;
        let started = Instant::now();
        let mut i = 0;
        while started.elapsed() < Duration::from_secs(3) {
            i = (i + 7919) % ids.len();
            let t = Instant::now();
            store.set(&ids[i], &value, None).expect("set");
            worst = worst.max(t.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
        let compactions = compactor.map_or(0, |c| c.join().expect("compactor"));
        (worst.as_secs_f64() * 1e3, compactions)
    };
    let mut line = format!("slowest write over 3 s at {sessions} sessions:");
    for mode in [
        Mode::NoLog,
        Mode::Log(Fsync::Never),
        Mode::Log(Fsync::Interval),
    ] {
        let dir = bench_dir("stalls");
        let store = mode.store(&dir);
        for id in &ids {
            store.set(id, &value, None).expect("fill");
        }
        let (quiet, _) = slowest(&store, false);
        line += &format!(" {}: {quiet:.2} ms", mode.name());
        if let Mode::Log(_) = mode {
            let (busy, compactions) = slowest(&store, true);
            line += &format!(", {busy:.2} ms during {compactions} compactions");
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("{line}");
}

fn loading() {
    let sessions = env_usize("COATCHECK_BENCH_SESSIONS", 1_000_000);
    let dir = bench_dir("load");
    let path = dir.join("sessions");
    let crash = dir.join("crash");
    let value = vec![b'x'; VALUE];
    let ids: Vec<String> = (0..sessions).map(|_| coatcheck::generate_id()).collect();
    {
        let store = Mode::Log(Fsync::Never).store(&dir);
        for id in &ids {
            store.set(id, &value, None).expect("fill");
        }
        // What a crash leaves: every session in the log, the snapshot empty.
        std::fs::create_dir(&crash).expect("crash dir");
        for entry in std::fs::read_dir(&path).expect("dir").flatten() {
            let name = entry.file_name();
            if name != "lock" {
                std::fs::copy(entry.path(), crash.join(&name)).expect("copy");
            }
        }
        trim();
        let before = rss_bytes();
        let peak = Arc::new(AtomicUsize::new(before));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let t = Instant::now();
        store.compact_log().expect("compact");
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        sampler.join().expect("sampler");
        let snapshot = store.stats().log.expect("log").snapshot_bytes;
        println!(
            "compaction of {sessions} sessions: {:.2} s, RSS {:.0} MiB before, +{:.1} MiB at its \
             peak; snapshot {:.1} MiB = {:.0} B per session ({VALUE} B value, 32 B id)",
            took.as_secs_f64(),
            before as f64 / 1048576.0,
            (peak.load(Ordering::Relaxed) - before) as f64 / 1048576.0,
            snapshot as f64 / 1048576.0,
            snapshot as f64 / sessions as f64
        );
    } // clean close: one snapshot
    for (label, from) in [
        ("a snapshot (clean close)", &path),
        ("a log alone (crash)", &crash),
    ] {
        let mut config = Config::default();
        config.persist_path = Some(from.clone());
        config.persist_fsync = Fsync::Never;
        let t = Instant::now();
        let store = Store::new(config).expect("load");
        let took = t.elapsed();
        assert_eq!(store.len(), sessions, "sessions lost on load");
        println!(
            "load of {sessions} sessions from {label}: {:.2} s",
            took.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fixed amount of work for callgrind (`benches/persist-instructions.sh`): 200,000 writes
/// by one thread over 1,000 sessions, with the log (fsync `never`) or without, as `writes`
/// makes them. Instruction counts, unlike ops/s, do not move with the machine's other load.
fn instructions(mode: &str, writes: &str) {
    const WRITES: usize = 200_000;
    let mode = match mode {
        "none" => Mode::NoLog,
        "log" => Mode::Log(Fsync::Never),
        _ => panic!("mode: none or log"),
    };
    let writes = match writes {
        "counter" => Writes::CounterChanges,
        "new" => Writes::WholeValueNew,
        _ => panic!("writes: counter or new"),
    };
    let dir = bench_dir("instructions");
    let store = mode.store(&dir);
    let ids: Vec<String> = (0..1_000).map(|_| coatcheck::generate_id()).collect();
    let mut counted = session_value(0);
    for id in &ids {
        store.set(id, &counted, None).expect("fill");
    }
    let counter = counter_offset(&counted);
    let random = random_values();
    for n in 0..WRITES {
        let id = &ids[n * 7919 % ids.len()];
        let value = match writes {
            Writes::CounterChanges => {
                write_counter(&mut counted[counter..counter + 10], n);
                &counted
            }
            Writes::WholeValueNew => &random[n % random.len()],
        };
        store.set(id, value, None).expect("set");
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes --bench; a filter argument picks one part.
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let filter = args.next();
    // Only when asked for by name: it prints nothing, it is there to be counted.
    if filter.as_deref() == Some("instructions") {
        let (mode, writes) = (
            args.next().unwrap_or_default(),
            args.next().unwrap_or_default(),
        );
        instructions(&mode, &writes);
        return;
    }
    let run = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if run("writes") {
        writes();
    }
    if run("stalls") {
        stalls();
    }
    if run("load") {
        loading();
    }
}
