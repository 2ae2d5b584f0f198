//! Benchmark-only crate: the shared backends live in `common/`, the benchmarks in `*.rs`.
