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

.PHONY: fuzz-deps fuzz-smoke fuzz

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

## fuzz: every fuzz target to its long budget (10M executions each)
fuzz: fuzz-deps
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_RUNS) runs"; \
	  $(FUZZ) run $(FUZZ_BUILD) $$t -- -runs=$(FUZZ_RUNS) 2>&1 | tail -n 3; \
	  test $${PIPESTATUS[0]} -eq 0; \
	done

TEST_TARGETS += fuzz-smoke
