//! Throughput of the coatcheck table against a single-`RwLock` `HashMap`, `dashmap` and
//! `moka::sync::Cache`, in one run, at 1M live sessions of 200 B and of 2 KB, on 1 and 2
//! threads: get (with idle refresh), set, touch, create, a 95/5 read/write mix, and
//! create-and-abandon churn (short-lived sessions never read again, reclaimed by each store's
//! own mechanism: coatcheck's sweeper, a `retain` every second for the maps, moka's
//! maintenance).
//!
//! Run: `cargo bench -p coatcheck-benches --bench core` (or `make bench-core`).
//! Quick pass: `COATCHECK_BENCH_SESSIONS=100000 cargo bench -p coatcheck-benches --bench core`.

mod common;

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, Coatcheck, Dash, IDLE, Moka, Pick, RwLockMap, prefill};
use criterion::{Criterion, criterion_group, criterion_main};

const SIZES: [usize; 2] = [200, 2048];
const THREADS: [usize; 2] = [1, 2];

fn sessions() -> usize {
    std::env::var("COATCHECK_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Runs `op` `iters` times split across `threads` threads and returns the wall time.
fn timed<B: Backend>(
    backend: &B,
    threads: usize,
    iters: u64,
    op: &(dyn Fn(&B, &mut Pick) + Sync),
) -> Duration {
    if threads == 1 {
        let mut pick = Pick::new(iters);
        let start = Instant::now();
        for _ in 0..iters {
            op(backend, &mut pick);
        }
        return start.elapsed();
    }
    let per_thread = (iters / threads as u64).max(1);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                let mut pick = Pick::new(iters + t as u64);
                barrier.wait();
                for _ in 0..per_thread {
                    op(backend, &mut pick);
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed()
}

fn bench_backend<B: Backend>(c: &mut Criterion, size: usize) {
    let backend = B::build();
    let ids = prefill(&backend, sessions(), size);
    let value = vec![b'y'; size];
    let n = sessions() / 1000;
    for threads in THREADS {
        let label = |workload: &str| format!("{workload}/{n}k/{size}B/{threads}t");
        c.benchmark_group(label("get"))
            .bench_function(B::NAME, |b| {
                b.iter_custom(|iters| {
                    timed(&backend, threads, iters, &|s, p| {
                        std::hint::black_box(s.get(&ids[p.index(ids.len())]));
                    })
                })
            });
        c.benchmark_group(label("set"))
            .bench_function(B::NAME, |b| {
                b.iter_custom(|iters| {
                    timed(&backend, threads, iters, &|s, p| {
                        s.set(&ids[p.index(ids.len())], &value)
                    })
                })
            });
        c.benchmark_group(label("touch"))
            .bench_function(B::NAME, |b| {
                b.iter_custom(|iters| {
                    timed(&backend, threads, iters, &|s, p| {
                        std::hint::black_box(s.touch(&ids[p.index(ids.len())]));
                    })
                })
            });
        c.benchmark_group(label("mix95-5"))
            .bench_function(B::NAME, |b| {
                b.iter_custom(|iters| {
                    timed(&backend, threads, iters, &|s, p| {
                        let i = p.index(ids.len());
                        if i % 20 == 0 {
                            s.set(&ids[i], &value);
                        } else {
                            std::hint::black_box(s.get(&ids[i]));
                        }
                    })
                })
            });
        c.benchmark_group(label("create"))
            .bench_function(B::NAME, |b| {
                b.iter_custom(|iters| {
                    let created = std::sync::Mutex::new(Vec::new());
                    let elapsed = timed(&backend, threads, iters, &|s, _| {
                        let id = s.create(&value, IDLE);
                        created.lock().unwrap().push(id);
                    });
                    // Untimed: keep the table at its prefilled size between samples.
                    for id in created.into_inner().unwrap() {
                        backend.remove(&id);
                    }
                    elapsed
                })
            });
        // Churn: each store reclaims with what it has, running beside the measurement.
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    backend.sweep_if_due();
                }
            });
            c.benchmark_group(label("churn"))
                .bench_function(B::NAME, |b| {
                    b.iter_custom(|iters| {
                        timed(&backend, threads, iters, &|s, _| {
                            std::hint::black_box(s.create(&value, Duration::from_millis(500)));
                        })
                    })
                });
            stop.store(true, Ordering::Relaxed);
        });
    }
}

fn all(c: &mut Criterion) {
    for size in SIZES {
        bench_backend::<Coatcheck>(c, size);
        bench_backend::<Dash>(c, size);
        bench_backend::<RwLockMap>(c, size);
        bench_backend::<Moka>(c, size);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots();
    targets = all
}
criterion_main!(benches);
