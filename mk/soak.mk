# The soak (issue 12): the Express demo and a Flask app under gunicorn, sessions in coatcheck
# with a restart log, under a fixed rate of mixed traffic (benches/soak/soak.js says which).
# `make soak` runs it for 10 minutes and draws benches/soak/soak.svg; it passes when RSS stays
# within ±10% after warm-up with 0 unexpected answers and 0 5xx. Not in CI: `soak-smoke` (30 s,
# every answer checked, RSS reported but not judged) is.
SOAK := SOAK_GUNICORN=$(abspath $(PY_VENV))/bin/gunicorn node benches/soak/soak.js
SOAK_SECONDS ?= 600

.PHONY: soak soak-smoke

## soak: 10 minutes of mixed traffic on the Express demo and a Flask app; RSS, errors, p99, chart
soak: demo-deps build-python
	SOAK_SECONDS=$(SOAK_SECONDS) $(SOAK) benches/soak/soak.svg

## soak-smoke: the soak's traffic for 30 s, every answer checked (CI)
soak-smoke: demo-deps build-python
	@chart=$$(mktemp --suffix=.svg); SOAK_SECONDS=30 SOAK_JUDGE_RSS=0 $(SOAK) $$chart; status=$$?; \
	  rm -f $$chart; exit $$status

TEST_TARGETS += soak-smoke
