# The session tests Django, Starlette and Flask ship in their source distributions, run with
# coatcheck in place of each framework's own session backend (issue 9, item 11). The sdists
# of the versions installed in .venv (bindings/python/requirements-test.txt) are downloaded
# with pip once, into build/frameworks; see tests/frameworks/run.py. $(PY) is mk/python.mk's.

.PHONY: test-frameworks

## test-frameworks: Django's, Starlette's and Flask's own session tests against coatcheck
test-frameworks: build-python
	$(PY) tests/frameworks/run.py

TEST_TARGETS += test-frameworks
