# coatcheck: one entry point for humans and CI. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: test fmt-check clippy test-core redis-deps bench bench-core bench-persist-instructions doc

# Each part of the project adds its own checks to TEST_TARGETS and BENCH_TARGETS from mk/*.mk.
TEST_TARGETS := fmt-check clippy test-core
BENCH_TARGETS := bench-core
-include mk/*.mk
.DEFAULT_GOAL := test

## test: everything CI checks
test: $(TEST_TARGETS)

fmt-check:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Core unit, integration, model (proptest) and stress tests, unoptimized with debug assertions
# on; the stress tests again in release mode, where an optimizer may reorder what an
# unoptimized build does not. The RSS test runs in release mode only: it measures the allocator
# users get, in 5 s (45 s unoptimized). That build skips the release profile's thin LTO, which
# only changes what is inlined across crates, and builds in 177 s instead of 226 s. The shared
# tier's tests (core/tests/tier.rs) start their own redis-server on a free 127.0.0.1 port.
# --show-output: the figures tests print (the invalidation delay between two stores, how long a
# silent Redis goes unnoticed) appear in the log, as do the lines a damaged restart log prints.
test-core: redis-deps
	$(CARGO) test -p coatcheck -- --skip rss_returns_near_baseline --show-output
	CARGO_PROFILE_RELEASE_LTO=false $(CARGO) test -p coatcheck --release --test concurrency --test memory_return

## redis-deps: Debian's redis-server and redis-cli, which the shared-tier tests start and drive,
## iproute2 for the test that makes hosts out of network namespaces, and ca-certificates (a
## system CA store, which the rediss:// test checks an untrusted server against)
redis-deps:
	$(call c_apt_install,redis-server iproute2 ca-certificates)

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -p coatcheck --no-deps

## bench: every benchmark; see BENCHMARKS.md
bench: $(BENCH_TARGETS)

bench-core:
	$(CARGO) bench -p coatcheck-benches --bench versus_dashmap --bench memory --bench expiry --bench core --bench persist

## bench-persist-instructions: the restart log's cost per write in instructions, under callgrind
bench-persist-instructions:
	@set -eo pipefail; bin=$$($(CARGO) bench -p coatcheck-benches --bench persist --no-run --message-format=json 2>/dev/null \
	  | sed -n 's/.*"executable":"\([^"]*persist[^"]*\)".*/\1/p' | tail -1); \
	benches/persist-instructions.sh "$$bin"
