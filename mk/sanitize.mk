# Sanitizers (issue 8): the core's tests under AddressSanitizer, and the C tests and the C
# example server under AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer included)
# against a library built with AddressSanitizer.
# The stable toolchain ships the sanitizer runtimes; RUSTC_BOOTSTRAP=1 unlocks -Zsanitizer.
# An explicit --target keeps build scripts and proc macros uninstrumented. Without the release
# profile's thin LTO: every function is instrumented with or without it (LTO changes what is
# inlined across crates, not what is checked), and the libraries below build in 211 s, not 289 s.

.PHONY: sanitize sanitize-core sanitize-libs sanitize-c sanitize-c-example sanitize-node sanitize-python

SAN_TARGET := x86_64-unknown-linux-gnu
SAN_TARGET_DIR := $(CARGO_TARGET_DIR)/sanitize
SAN_RUST := RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes" \
            CARGO_PROFILE_RELEASE_LTO=false CARGO_TARGET_DIR=$(SAN_TARGET_DIR)
SAN_CFLAGS := -std=c99 -Wall -Wextra -Werror -pedantic -g -O1 \
              -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_LIB := $(SAN_TARGET_DIR)/$(SAN_TARGET)/release
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

## sanitize: core tests under ASAN; C tests and the C example server under ASAN + UBSAN + LSan;
## the Node and Python suites against an ASAN-built addon and extension
sanitize: sanitize-core sanitize-c sanitize-c-example sanitize-node sanitize-python

# The RSS test is skipped: AddressSanitizer's allocator quarantines freed memory, so RSS says
# nothing about the store there (it runs in test-core).
sanitize-core: redis-deps
	$(SAN_RUST) $(SAN_ENV) $(CARGO) test -p coatcheck --target $(SAN_TARGET) --lib --tests \
	    -- --skip rss_returns_near_baseline

# The C library, the Node addon and the Python extension with AddressSanitizer, in one cargo
# run: built one by one, each unified its dependencies' features differently and compiled them
# all again (about 9 minutes in CI, against 5 and a half together). PYO3_BUILD_EXTENSION_MODULE
# concerns pyo3 alone, which only the extension depends on.
sanitize-libs:
	$(SAN_RUST) PYO3_BUILD_EXTENSION_MODULE=1 $(CARGO) build --release --target $(SAN_TARGET) \
	    -p coatcheck-ffi -p coatcheck-node -p coatcheck-python

sanitize-c: sanitize-libs
	@mkdir -p $(C_BUILD)/sanitize
	@set -e; for t in $(C_TESTS); do \
	  $(C_CC) $(SAN_CFLAGS) -Iinclude tests/c/$$t.c $(SAN_LIB)/libcoatcheck_ffi.a $(C_STATIC_LIBS) \
	      -pthread -o $(C_BUILD)/sanitize/$$t-static; \
	  cp -f $(SAN_LIB)/libcoatcheck_ffi.so $(C_BUILD)/sanitize/libcoatcheck.so; \
	  $(C_CC) $(SAN_CFLAGS) -Iinclude tests/c/$$t.c -L$(C_BUILD)/sanitize -lcoatcheck \
	      -Wl,-rpath,'$$ORIGIN' -pthread -o $(C_BUILD)/sanitize/$$t-shared; \
	  for v in static shared; do \
	    echo "== ASAN+UBSAN $$t-$$v"; \
	    $(SAN_ENV) timeout 300 $(C_BUILD)/sanitize/$$t-$$v || { echo "FAILED: $$t-$$v"; exit 1; }; \
	  done; \
	done

# The login server of examples/c driven over HTTP as test-c-example does; it frees its store on
# SIGTERM and must exit 0, so a leak (LeakSanitizer) or any ASAN/UBSAN report fails the run.
sanitize-c-example: sanitize-c
	$(call c_apt_install,libmicrohttpd-dev pkg-config curl)
	$(C_CC) $(SAN_CFLAGS) -Iinclude examples/c/login_server.c $$(pkg-config --cflags libmicrohttpd) \
	    $(SAN_LIB)/libcoatcheck_ffi.a $$(pkg-config --libs libmicrohttpd) $(C_STATIC_LIBS) -pthread \
	    -o $(C_BUILD)/sanitize/login-server
	$(SAN_ENV) timeout 120 examples/c/test_login_server.sh $(C_BUILD)/sanitize/login-server

TEST_TARGETS += sanitize

# The Node and Python suites against an addon and an extension built with AddressSanitizer: node
# and python are not built with it, so the runtime (GCC's libasan, the one the C tests above
# link against our instrumented library) is preloaded. LeakSanitizer is off there: what the
# interpreters still hold at exit is theirs, not ours (the C tests and server cover leaks).
# Child processes the suites start (gunicorn, cluster workers, the demo) inherit all of it.
SAN_PRELOAD = $(shell $(C_CC) -print-file-name=libasan.so)
# Reports go to files as well (log_path), so that one from a child process (a gunicorn worker,
# a cluster worker, the demo) fails the run even if the suite did not notice the child die.
SAN_REPORTS = $(abspath $(C_BUILD)/sanitize/reports)
# The multi-worker tests run 200 login-to-logout cycles here, not 2,000: the same code paths
# (workers, fork, Redis) under the sanitizer; the plain suites run the full count.
SAN_INTERP_ENV = LD_PRELOAD=$(SAN_PRELOAD) \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:log_path=$(SAN_REPORTS)/asan \
    COATCHECK_MULTIWORKER_CYCLES=200
SAN_NODE_ADDON := $(C_BUILD)/sanitize/coatcheck.linux-x64-gnu.node
SAN_PY_DIR := $(C_BUILD)/sanitize/python
# Fails if any process of the run wrote an AddressSanitizer report.
san_no_reports = @if ls $(SAN_REPORTS)/asan.* >/dev/null 2>&1; then \
	  cat $(SAN_REPORTS)/asan.*; echo "AddressSanitizer reports above"; exit 1; fi

sanitize-node: build-node demo-deps redis-deps sanitize-libs
	@mkdir -p $(C_BUILD)/sanitize
	cp -f $(SAN_LIB)/libcoatcheck_node.so $(SAN_NODE_ADDON)
	rm -rf $(SAN_REPORTS) && mkdir -p $(SAN_REPORTS)
	cd $(NODE_DIR) && $(SAN_INTERP_ENV) NAPI_RS_NATIVE_LIBRARY_PATH=$(abspath $(SAN_NODE_ADDON)) \
	    node -e "const n = require('./native.js'); if (!require.cache[process.env.NAPI_RS_NATIVE_LIBRARY_PATH]) process.exit(1)"
	cd $(NODE_DIR) && $(SAN_INTERP_ENV) NAPI_RS_NATIVE_LIBRARY_PATH=$(abspath $(SAN_NODE_ADDON)) \
	    timeout 1800 node --test __test__/
	$(san_no_reports)

sanitize-python: build-python redis-deps sanitize-libs
	rm -rf $(SAN_PY_DIR) && mkdir -p $(SAN_PY_DIR)
	cp -r $(PY_DIR)/python/coatcheck $(SAN_PY_DIR)/
	rm -f $(SAN_PY_DIR)/coatcheck/_native.*.so
	cp -f $(SAN_LIB)/lib_native.so $(SAN_PY_DIR)/coatcheck/_native.abi3.so
	rm -rf $(SAN_REPORTS) && mkdir -p $(SAN_REPORTS)
	cd $(PY_DIR) && $(SAN_INTERP_ENV) PYTHONPATH=$(abspath $(SAN_PY_DIR)) $(PY) -c \
	    "import coatcheck._native as n, sys; sys.exit(n.__file__ != '$(abspath $(SAN_PY_DIR))/coatcheck/_native.abi3.so')"
	cd $(PY_DIR) && $(SAN_INTERP_ENV) PYTHONPATH=$(abspath $(SAN_PY_DIR)) \
	    timeout 1800 $(PY) -m pytest -W error -q -p no:cacheprovider
	$(san_no_reports)
