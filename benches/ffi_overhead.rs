//! The Rust side of the C API overhead comparison: get / set / touch / create with 200 B and
//! 2 KB values, on 1 and 2 threads, against a store prefilled with `COATCHECK_BENCH_SESSIONS`
//! sessions (default 1M), called directly on `coatcheck::Store`.
//!
//! `benches/c/bench.c` runs the same loops through `libcoatcheck` with the same store
//! configuration, id-picking sequence ([`common::Pick`]), repeat policy and output format;
//! `make bench-c` runs both and `benches/c/compare.sh` prints the C cost relative to Rust.
//! `get` copies the value into a caller buffer here too (`get_with`), as the C call does, so the
//! difference is the boundary, not an allocation.
//!
//! Run: `cargo bench -p coatcheck-benches --bench ffi_overhead` (or `make bench-c`).
//! Quick pass: `COATCHECK_BENCH_SESSIONS=100000 COATCHECK_BENCH_OPS=500000 cargo bench ...`.

mod common;

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Instant;

use coatcheck::{Config, Store};
use common::{IDLE, Pick};

#[derive(Clone, Copy)]
enum Op {
    Get,
    Set,
    Touch,
    Create,
}

const OPS: [(Op, &str); 4] = [
    (Op::Get, "get"),
    (Op::Set, "set"),
    (Op::Touch, "touch"),
    (Op::Create, "create"),
];

/// `COATCHECK_BENCH_ONLY="get/200/1"` (any part empty or `*`) runs one measurement, e.g. for
/// counting instructions per operation under callgrind.
fn selected(op: &str, size: usize, threads: usize) -> bool {
    let Ok(only) = std::env::var("COATCHECK_BENCH_ONLY") else {
        return true;
    };
    let have = [op.to_string(), size.to_string(), threads.to_string()];
    let mut want = only.split('/');
    have.iter().all(|h| match want.next() {
        None | Some("") | Some("*") => true,
        Some(w) => w == h,
    })
}

fn env_usize(name: &str, fallback: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(fallback)
}

/// One thread's share of a measurement; returns the ids it created.
fn work(store: &Store, ids: &[String], value: &[u8], op: Op, seed: u64, ops: usize) -> Vec<String> {
    let mut pick = Pick::new(seed);
    let mut buf = [0u8; 4096];
    let mut created = Vec::with_capacity(if matches!(op, Op::Create) { ops } else { 0 });
    let mut sink = 0usize;
    for _ in 0..ops {
        match op {
            Op::Get => {
                let id = &ids[pick.index(ids.len())];
                let len = store
                    .get_with(id, |v| {
                        buf[..v.value.len()].copy_from_slice(v.value);
                        v.value.len()
                    })
                    .expect("get")
                    .expect("prefilled session");
                sink += len;
            }
            Op::Set => {
                let id = &ids[pick.index(ids.len())];
                store.set(id, value, None).expect("set");
            }
            Op::Touch => {
                let id = &ids[pick.index(ids.len())];
                assert!(store.touch(id, None).expect("touch"));
            }
            Op::Create => created.push(store.create(value, None).expect("create")),
        }
    }
    black_box((sink, &buf));
    created
}

/// Runs `ops` operations split across `threads` threads; returns ns per operation.
fn measure(
    store: &Store,
    ids: &[String],
    value: &[u8],
    op: Op,
    threads: usize,
    ops: usize,
    seed: u64,
) -> f64 {
    let per_thread = ops / threads;
    let (elapsed, created) = if threads == 1 {
        let start = Instant::now();
        let created = work(store, ids, value, op, seed, per_thread);
        (start.elapsed(), created)
    } else {
        let barrier = Barrier::new(threads + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        work(store, ids, value, op, seed + t as u64, per_thread)
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let created: Vec<String> = handles
                .into_iter()
                .flat_map(|h| h.join().expect("bench thread"))
                .collect();
            (start.elapsed(), created)
        })
    };
    // Untimed: back to the prefilled size.
    for id in created {
        let _ = store.destroy(&id);
    }
    elapsed.as_nanos() as f64 / (per_thread * threads) as f64
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument or `--list` is not supported here.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sessions = env_usize("COATCHECK_BENCH_SESSIONS", 1_000_000);
    let ops = env_usize("COATCHECK_BENCH_OPS", 2_000_000);
    let repeats = env_usize("COATCHECK_BENCH_REPEATS", 3).max(1);
    println!("# Rust API, {sessions} sessions, {ops} ops per run, best of {repeats}");
    for size in [200usize, 2048] {
        let mut config = Config::default();
        config.idle_timeout = IDLE;
        let store = Store::new(config).expect("config");
        let prefill = vec![b'x'; size];
        let ids: Vec<String> = (0..sessions)
            .map(|_| store.create(&prefill, None).expect("prefill"))
            .collect();
        let value = vec![b'y'; size];
        for threads in [1usize, 2] {
            for (op, name) in OPS {
                if !selected(name, size, threads) {
                    continue;
                }
                let best = (0..repeats)
                    .map(|r| measure(&store, &ids, &value, op, threads, ops, 1000 * r as u64 + 1))
                    .fold(f64::INFINITY, f64::min);
                println!("RESULT op={name} size={size} threads={threads} ns_per_op={best:.1}");
            }
        }
    }
}
