# coatcheck: one entry point for humans and CI. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test fmt-check clippy test-core bench bench-core doc

## test: everything CI checks
test: fmt-check clippy test-core

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Core unit, integration, model (proptest) and stress tests. Release mode keeps the stress
# and memory tests quick; debug assertions stay on through the test profile below.
test-core:
	$(CARGO) test -p coatcheck
	$(CARGO) test -p coatcheck --release --test concurrency --test memory_return

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -p coatcheck --no-deps

## bench: the Rust benchmarks (criterion + memory/expiry programs); see BENCHMARKS.md
bench: bench-core

bench-core:
	$(CARGO) bench -p coatcheck-benches
