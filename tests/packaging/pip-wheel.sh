#!/usr/bin/env bash
# The Python package as users get it: `pip wheel` of bindings/python, installed with its
# `flask` extra into a fresh venv outside the repository, serving a Flask app through Flask's
# test client; the wheel must carry both license files and the type stubs.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PY_SYSTEM:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$python" -m venv "$work/build-env"
"$work/build-env/bin/pip" install --quiet --disable-pip-version-check wheel
"$work/build-env/bin/pip" wheel --quiet --disable-pip-version-check --no-deps -w "$work/dist" "$repo/bindings/python"
wheel="$(ls "$work"/dist/coatcheck-*.whl)"
"$work/build-env/bin/python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for wanted in ("LICENSE-MIT", "LICENSE-APACHE", "coatcheck/_native.pyi", "coatcheck/py.typed"):
    if not any(n.endswith(wanted) for n in names):
        sys.exit(f"pip-wheel: {wanted} missing from the wheel")
PY

"$python" -m venv "$work/app-env"
"$work/app-env/bin/pip" install --quiet --disable-pip-version-check "$wheel[flask]"
cd "$work"
"$work/app-env/bin/python" - <<'PY'
from flask import Flask, session

from coatcheck import Store
from coatcheck.flask import CoatcheckSession

app = Flask(__name__)
CoatcheckSession(app, Store("a secret for a fresh app", idle_timeout=1800))

@app.get("/count")
def count():
    session["views"] = session.get("views", 0) + 1
    return {"views": session["views"]}

client = app.test_client()
views = [client.get("/count").json["views"] for _ in range(2)]
assert views == [1, 2], views
print("pip-wheel: the wheel serves a fresh Flask app from a fresh venv")
PY
