# Fuzzing (issue 12) with cargo fuzz (libFuzzer). Targets live in fuzz/fuzz_targets; their
# corpora in fuzz/corpus/<target> are committed (minimized with `cargo fuzz cmin`). The stable
# toolchain builds them with RUSTC_BOOTSTRAP=1 (cargo fuzz needs -Zsanitizer), so no nightly is
# needed. A crash stops the run and leaves its reproducer in fuzz/artifacts/<target>/.
FUZZ_TARGETS := token store_ops c_abi log_loader
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
# Release code with debug assertions on.
FUZZ_BUILD := -O --debug-assertions
FUZZ_SMOKE_SECONDS ?= 30
FUZZ_RUNS ?= 10000000
# The time budget per target: the slower targets (a whole store, or two stores on real files, per
# run) do not reach 10M runs in a working session.
FUZZ_SECONDS ?= 1800

.PHONY: fuzz-deps fuzz-smoke fuzz fuzz-cmin

fuzz-deps:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

## fuzz-smoke: every fuzz target for about 30 s (CI); new inputs go to a scratch directory,
## so the committed corpus stays as it is
fuzz-smoke: fuzz-deps
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SMOKE_SECONDS) s"; \
	  scratch=$$(mktemp -d); \
	  $(FUZZ) run $(FUZZ_BUILD) $$t $$scratch fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SMOKE_SECONDS) 2>&1 | tail -n 3; \
	  status=$${PIPESTATUS[0]}; rm -rf $$scratch; test $$status -eq 0; \
	done

## fuzz: every fuzz target to its long budget (10M executions or FUZZ_SECONDS each, whichever
## comes first); new inputs are added to the committed corpus (minimize with fuzz-cmin)
fuzz: fuzz-deps
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_RUNS) runs or $(FUZZ_SECONDS) s"; \
	  $(FUZZ) run $(FUZZ_BUILD) $$t -- -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS) \
	    -print_final_stats=1 2>&1 | grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|panicked'; \
	  test $${PIPESTATUS[0]} -eq 0; \
	done

## fuzz-cmin: minimize every committed corpus (after a long run)
fuzz-cmin: fuzz-deps
	@set -e; for t in $(FUZZ_TARGETS); do $(FUZZ) cmin $(FUZZ_BUILD) $$t; done

TEST_TARGETS += fuzz-smoke
