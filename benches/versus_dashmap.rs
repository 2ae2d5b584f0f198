//! Core v2's speed target, measured the way issue 8 states it: `get`, `set`, `touch` and
//! `create` of coatcheck against the dashmap baseline (`DashMap<String, {value, AtomicU64
//! deadline}>`, a read copies the value out and slides the deadline), at 10k and 1M sessions,
//! 200 B and 2 KB values, 1 and 2 threads. coatcheck runs as a user would run it in production:
//! expiry on, a `max_sessions` budget (4× the sessions, so it is checked on every write but never
//! evicts), versions, and the change stream on with a listener registered that does nothing.
//!
//! Both tables live in the same process and are measured in alternating rounds; each cell keeps
//! the best round of each, which is what survives noise from other load on a shared machine.
//! Prints one line per cell with ops/s and the ratio coatcheck / dashmap.
//!
//! Run: `cargo bench -p coatcheck-benches --bench versus_dashmap` (or `make bench-core`).
//! Quick pass: `COATCHECK_BENCH_ROUNDS=1 COATCHECK_BENCH_SIZES=10000 cargo bench ...`.

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use coatcheck::{Config, Store};
use common::{Backend, Coatcheck, Dash, IDLE, Pick, prefill};

/// Creates per measured round; undone (destroyed) after the round so tables keep their size.
const CREATES: usize = 200_000;

/// coatcheck configured with everything issue 8 asks to keep on during the comparison.
fn production(sessions: usize) -> Coatcheck {
    let mut config = Config::default();
    config.idle_timeout = IDLE;
    // COATCHECK_BENCH_BARE=1: no budget and no listener, to show what those two cost.
    if std::env::var("COATCHECK_BENCH_BARE").is_ok_and(|v| v == "1") {
        return Coatcheck(Store::new(config).expect("config"));
    }
    // Checked on every write, never reached: creates are undone after each round.
    config.max_sessions = Some(sessions * 4 + CREATES);
    let store = Store::builder(config)
        .listener(Duration::from_secs(60), |change| {
            std::hint::black_box(change);
        })
        .build()
        .expect("config");
    Coatcheck(store)
}

/// The four operations measured, on any backend.
trait Table: Sync {
    fn get(&self, id: &str) -> Option<Vec<u8>>;
    fn set(&self, id: &str, value: &[u8]);
    fn touch(&self, id: &str) -> bool;
    fn create(&self, value: &[u8]) -> String;
    fn remove(&self, id: &str);
}

impl<B: Backend> Table for B {
    fn get(&self, id: &str) -> Option<Vec<u8>> {
        Backend::get(self, id)
    }
    fn set(&self, id: &str, value: &[u8]) {
        Backend::set(self, id, value);
    }
    fn touch(&self, id: &str) -> bool {
        Backend::touch(self, id)
    }
    fn create(&self, value: &[u8]) -> String {
        Backend::create(self, value, IDLE)
    }
    fn remove(&self, id: &str) {
        Backend::remove(self, id);
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Set,
    Touch,
    Create,
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

/// Runs `ops` operations split over `threads` threads; returns ops per second.
fn run(table: &dyn Table, ids: &[String], op: Op, threads: usize, ops: usize, size: usize) -> f64 {
    let value = vec![b'v'; size];
    let ops = if matches!(op, Op::Create) {
        CREATES
    } else {
        ops
    };
    let per_thread = ops / threads;
    let barrier = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    let mut created: Vec<Vec<String>> = Vec::new();
    let elapsed = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, done, value) = (&barrier, &done, &value);
                s.spawn(move || {
                    let mut pick = Pick::new(7 + t as u64);
                    let mut mine = Vec::new();
                    if matches!(op, Op::Create) {
                        mine.reserve(per_thread);
                    }
                    barrier.wait();
                    for _ in 0..per_thread {
                        let id = &ids[pick.index(ids.len())];
                        match op {
                            Op::Get => {
                                std::hint::black_box(table.get(id));
                            }
                            Op::Set => table.set(id, value),
                            Op::Touch => {
                                std::hint::black_box(table.touch(id));
                            }
                            Op::Create => mine.push(table.create(value)),
                        }
                    }
                    done.wait();
                    mine
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        done.wait();
        let elapsed = start.elapsed();
        created = workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect();
        elapsed
    });
    for id in created.iter().flatten() {
        table.remove(id);
    }
    (per_thread * threads) as f64 / elapsed.as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds = env_list("COATCHECK_BENCH_ROUNDS", &[3])[0].max(1);
    println!(
        "{:<7} {:>9} {:>6} {:>3}  {:>14} {:>14}  {:>6}",
        "op", "sessions", "value", "thr", "coatcheck/s", "dashmap/s", "ratio"
    );
    for sessions in env_list("COATCHECK_BENCH_SIZES", &[10_000, 1_000_000]) {
        for size in env_list("COATCHECK_BENCH_VALUES", &[200, 2048]) {
            let coat = production(sessions);
            let coat_ids = prefill_table(&coat, sessions, size);
            let dash = <Dash as Backend>::build();
            let dash_ids = prefill(&dash, sessions, size);
            // Enough operations for a cell to take ~0.2-1 s on this machine.
            let default_ops = if sessions <= 100_000 {
                2_000_000
            } else {
                1_000_000
            };
            let ops = env_list("COATCHECK_BENCH_OPS", &[default_ops])[0];
            let only = std::env::var("COATCHECK_BENCH_ONLY").unwrap_or_default();
            for threads in env_list("COATCHECK_BENCH_THREADS", &[1, 2]) {
                for op in [Op::Get, Op::Set, Op::Touch, Op::Create] {
                    let name = format!("{op:?}").to_lowercase();
                    if !only.is_empty() && !only.split(',').any(|o| o == name) {
                        continue;
                    }
                    let (mut best_coat, mut best_dash) = (0f64, 0f64);
                    for _ in 0..rounds {
                        best_coat = best_coat.max(run(&coat, &coat_ids, op, threads, ops, size));
                        best_dash = best_dash.max(run(&dash, &dash_ids, op, threads, ops, size));
                    }
                    println!(
                        "{:<7} {:>9} {:>6} {:>3}  {:>14.0} {:>14.0}  {:>6.2}",
                        name,
                        sessions,
                        size,
                        threads,
                        best_coat,
                        best_dash,
                        best_coat / best_dash
                    );
                }
            }
        }
    }
}

fn prefill_table(table: &dyn Table, n: usize, size: usize) -> Vec<String> {
    let value = vec![b'x'; size];
    (0..n).map(|_| table.create(&value)).collect()
}
