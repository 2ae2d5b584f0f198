# Python: the package `coatcheck` (bindings/python, PyO3 + maturin) with its Flask, Django and
# ASGI backends. Everything runs from a venv this file creates, so a fresh clone needs only
# python3 (with venv) and cargo.
PY_DIR := bindings/python
PY_VENV := .venv
PY := $(abspath $(PY_VENV))/bin/python
PY_SYSTEM ?= python3
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: python-deps build-python test-python test-python-package bench-python-deps bench-python \
        bench-python-instructions \
        fuzz-python-smoke fuzz-python

$(PY_VENV)/.deps-test: $(PY_DIR)/requirements-test.txt
	test -x $(PY) || $(PY_SYSTEM) -m venv $(PY_VENV)
	$(PIP_INSTALL) -r $<
	touch $@

python-deps: $(PY_VENV)/.deps-test

## build-python: the extension, installed (editable) into .venv
build-python: python-deps
	cd $(PY_DIR) && VIRTUAL_ENV=$(abspath $(PY_VENV)) $(abspath $(PY_VENV))/bin/maturin develop --release --quiet

# The stubs (_native.pyi) are checked against the built module; the pure-Python backends are
# type-checked against the stubs; pytest turns every warning into an error (pyproject.toml).
# -rP: what passing tests print (the sessions the multi-worker runs lost with and without Redis)
# appears in the log.
test-python: build-python redis-deps
	cd $(PY_DIR) && $(PY) -m mypy.stubtest coatcheck._native --allowlist stubtest-allowlist.txt
	cd $(PY_DIR) && $(PY) -m mypy
	cd $(PY_DIR) && $(PY) -m pytest -W error -q -rP

# The package as users install it: pip wheel, installed with its flask extra into a fresh venv.
test-python-package:
	PY_SYSTEM=$(PY_SYSTEM) bash tests/packaging/pip-wheel.sh

TEST_TARGETS += test-python-package

$(PY_VENV)/.deps-bench: benches/python/requirements.txt $(PY_VENV)/.deps-test
	$(PIP_INSTALL) -r $<
	touch $@

# redis-server comes from Debian; the benchmark starts its own on a free 127.0.0.1 port.
bench-python-deps: $(PY_VENV)/.deps-bench
	command -v redis-server >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; }

# bench_http_shared.py loads its gunicorn servers with the Node benchmarks' autocannon.
## bench-python: Store against pickled dict, cachelib, redis-py, Flask-Session, and the shared
## tier's Redis scripts against SET and GET; see BENCHMARKS.md
bench-python: build-python bench-python-deps benches/node/node_modules/.package-lock.json
	$(PY) benches/python/bench.py $(BENCH_PYTHON_ARGS)
	$(PY) benches/python/bench_save_path.py
	$(PY) benches/python/bench_persist.py
	$(PY) benches/python/bench_http_shared.py
	$(PY) benches/python/bench_redis_scripts.py

## bench-python-instructions: instructions per Store call from Python against a dict of
## pickled values and cachelib, under callgrind (a figure other load cannot disturb)
bench-python-instructions: build-python bench-python-deps
	command -v valgrind >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind; }
	$(PY) benches/python/call_instructions.py

# Python (atheris): the token API and the Flask and Django cookie paths, fuzz/python. Atheris
# instruments the package's Python modules; the native extension runs uninstrumented, so
# inputs are found by the Python side's coverage and checked end to end.
FUZZ_PY_RUNS ?= 1000000
FUZZ_PY_SMOKE_SECONDS ?= 30

$(PY_VENV)/.deps-fuzz: fuzz/python/requirements.txt $(PY_VENV)/.deps-test
	$(PIP_INSTALL) -r $<
	touch $@

## fuzz-python-smoke: the atheris target for about 30 s (CI)
fuzz-python-smoke: build-python $(PY_VENV)/.deps-fuzz
	$(PY) fuzz/python/fuzz_cookies.py -max_total_time=$(FUZZ_PY_SMOKE_SECONDS) 2>&1 | tail -n 3; \
	  test $${PIPESTATUS[0]} -eq 0

## fuzz-python: the atheris target to its long budget (1M executions)
fuzz-python: build-python $(PY_VENV)/.deps-fuzz
	$(PY) fuzz/python/fuzz_cookies.py -runs=$(FUZZ_PY_RUNS) 2>&1 | tail -n 3; \
	  test $${PIPESTATUS[0]} -eq 0

TEST_TARGETS += test-python fuzz-python-smoke
BENCH_TARGETS += bench-python
