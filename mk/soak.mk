# The soak (issue 12): the Express demo and a Flask app under gunicorn, sessions in coatcheck
# with a restart log, under a fixed rate of mixed traffic (benches/soak/soak.js says which).
# `make soak` runs it for 10 minutes and draws benches/soak/soak.svg; it passes when RSS stays
# within ±10% after warm-up with 0 unexpected answers and 0 5xx. `make soak-tier` runs the same
# with the sessions on the shared tier (a redis-server of its own, two Express processes, gunicorn
# -w 2). Neither is in CI: `soak-smoke` (30 s, then 20 s on the tier, every answer checked, RSS
# reported but not judged) is.
SOAK := SOAK_GUNICORN=$(abspath $(PY_VENV))/bin/gunicorn node benches/soak/soak.js
SOAK_SECONDS ?= 600

.PHONY: soak soak-smoke soak-tier

## soak: 10 minutes of mixed traffic on the Express demo and a Flask app; RSS, errors, p99, chart
soak: demo-deps build-python
	SOAK_SECONDS=$(SOAK_SECONDS) $(SOAK) benches/soak/soak.svg

## soak-smoke: the soak's traffic for 30 s, and on the shared tier for 20 s, every answer
## checked (CI)
soak-smoke: demo-deps build-python redis-deps
	@chart=$$(mktemp --suffix=.svg); SOAK_SECONDS=30 SOAK_JUDGE_RSS=0 $(SOAK) $$chart; status=$$?; \
	  rm -f $$chart; exit $$status
	@chart=$$(mktemp --suffix=.svg); SOAK_TIER=1 SOAK_SECONDS=20 SOAK_JUDGE_RSS=0 $(SOAK) $$chart; status=$$?; \
	  rm -f $$chart; exit $$status

## soak-tier: the same 10 minutes with the sessions on the shared tier: a redis-server of its own,
## two Express demo processes taking turns, gunicorn -w 2; every process's RSS and Redis's memory
soak-tier: demo-deps build-python redis-deps
	SOAK_TIER=1 SOAK_SECONDS=$(SOAK_SECONDS) $(SOAK) benches/soak/soak-tier.svg

TEST_TARGETS += soak-smoke
