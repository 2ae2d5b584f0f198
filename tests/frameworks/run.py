#!/usr/bin/env python3
"""The session tests Django, Starlette and Flask ship, run against coatcheck (issue 9, item 11).

For each framework this takes the version installed in the running Python (the venv that
bindings/python/requirements-test.txt pins), downloads that version's source distribution
with pip (once: it is kept in build/frameworks/sdist), extracts the few test files it needs
and runs them with pytest, coatcheck standing where the framework's own session backend was:

* Django: the ``SessionTestsMixin`` of tests/sessions_tests, applied to
  ``coatcheck.django.SessionStore`` (test_django_sessions.py, settings_django.py).
* Starlette: tests/middleware/test_session.py, with ``SessionMiddleware`` replaced by a shim
  that builds ``coatcheck.asgi.SessionMiddleware`` from Starlette's arguments
  (plugin_starlette.py).
* Flask: ``tests/test_basic.py -k session``, with ``CoatcheckSession`` installed on the
  ``app`` fixture of Flask's tests/conftest.py (plugin_flask.py).

Every test that ran records whether coatcheck was in place (plugin_report.py); one that ran
without it is an error of this harness. Tests that cannot be about coatcheck are deselected
in DESELECTED below, each with its reason. The exit status is 1 if any other test failed.

Usage: run.py [django|starlette|flask ...]   (all three by default)
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORK = REPO / "build" / "frameworks"  # /build is gitignored
SDISTS = WORK / "sdist"
SOURCES = WORK / "src"
RESULTS = WORK / "results"
TIMEOUT = 600  # seconds, per framework


@dataclass
class Framework:
    name: str  # the distribution's name, as pip and importlib.metadata know it
    label: str
    #: Files and directories (ending in "/") of the sdist that the run needs, relative to
    #: the sdist's top directory.
    members: list[str]
    #: pytest arguments; "{src}" is the extracted sdist, "{here}" this directory.
    args: list[str]
    #: The working directory (same placeholders).
    cwd: str
    #: Directories put on PYTHONPATH besides this one (same placeholders).
    path: list[str] = field(default_factory=list)


FRAMEWORKS = {
    "django": Framework(
        name="django",
        label="Django",
        members=["tests/sessions_tests/", "tests/test_sqlite.py"],
        args=[
            "{here}/test_django_sessions.py",
            "-c", "{here}/django-pytest.ini",
            "--rootdir", "{here}",
            "-p", "plugin_django",
        ],
        cwd="{src}/tests",
        path=["{src}/tests"],
    ),
    "starlette": Framework(
        name="starlette",
        label="Starlette",
        members=[
            "pyproject.toml",
            "tests/__init__.py",
            "tests/conftest.py",
            "tests/types.py",
            "tests/middleware/__init__.py",
            "tests/middleware/test_session.py",
        ],
        args=["tests/middleware/test_session.py", "-p", "plugin_starlette"],
        cwd="{src}",
    ),
    "flask": Framework(
        name="flask",
        label="Flask",
        members=["pyproject.toml", "tests/conftest.py", "tests/test_basic.py"],
        args=["tests/test_basic.py", "-k", "session", "-p", "plugin_flask"],
        cwd="{src}",
    ),
}

# Tests that are not about sessions behaving as the framework expects, and so cannot say
# anything about coatcheck: pytest node id -> why. Everything else runs, and must pass.
DESELECTED: dict[str, dict[str, str]] = {
    "django": {},
    "starlette": {
        "tests/middleware/test_session.py::test_session_tracks_modification": (
            "a unit test of the class starlette.middleware.sessions.Session on its own (no"
            " middleware, no request): it builds Starlette's Session directly and checks its"
            " accessed/modified flags, so it tests Starlette whatever the middleware is"
        ),
    },
    "flask": {
        "tests/test_basic.py::test_missing_session": (
            "sets app.secret_key = None after the app fixture and expects Flask's cookie"
            " session to refuse to work ('session is unavailable because no secret key was"
            " set'); that is the signing requirement of SecureCookieSessionInterface. coatcheck"
            " signs with the secret of its Store, which CoatcheckSession built when it was"
            " installed on the app"
        ),
        "tests/test_basic.py::test_session_secret_key_fallbacks": (
            "changes app.secret_key and SECRET_KEY_FALLBACKS between two requests of one"
            " process and expects the old cookie to stop verifying. coatcheck's Store takes"
            " its secrets when it is built (CoatcheckSession builds it from app.secret_key and"
            " the fallbacks) and keeps the sessions in that process's memory, so a key"
            " rotation is a restart with a new Store; rotating keys in a running process is"
            " not supported"
        ),
    },
}


def log(msg: str) -> None:
    print(f"[frameworks] {msg}", flush=True)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def sdist_for(fw: Framework, version: str) -> Path:
    """The sdist of ``fw`` at ``version``, downloaded with pip unless it is already here."""
    SDISTS.mkdir(parents=True, exist_ok=True)
    wanted = f"{normalize(fw.name)}-{version}"

    def find() -> Optional[Path]:
        for p in SDISTS.glob("*.tar.gz"):
            name, _, ver = p.name[: -len(".tar.gz")].rpartition("-")
            if f"{normalize(name)}-{ver}" == wanted:
                return p
        return None

    found = find()
    if found is not None:
        return found
    log(f"downloading the sdist of {fw.name}=={version}")
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        # pip prepares the sdist's metadata, so it also fetches the build backend (isolated).
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        pip += ["--no-binary", ":all:", "--no-deps", "--dest", tmp, f"{fw.name}=={version}"]
        if subprocess.run(pip).returncode != 0:
            raise SystemExit(f"could not download the sdist of {fw.name}=={version} with pip")
        files = list(Path(tmp).iterdir())
        if len(files) != 1:
            raise SystemExit(f"pip download of {fw.name}=={version} gave {files}")
        files[0].rename(SDISTS / files[0].name)
    found = find()
    if found is None:
        raise SystemExit(f"no sdist named {wanted}.tar.gz after pip download in {SDISTS}")
    return found


def extract(fw: Framework, version: str, sdist: Path) -> Path:
    """Extracts the members ``fw`` needs into build/frameworks/src/<name>-<version>."""
    dest = SOURCES / f"{fw.name}-{version}"
    stamp = dest / ".coatcheck-extracted"
    if stamp.exists() and stamp.read_text() == json.dumps(fw.members):
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    if not sdist.name.endswith(".tar.gz"):
        raise SystemExit(f"{sdist}: only .tar.gz sdists are handled")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        top = names[0].split("/", 1)[0]
        chosen = []
        for want in fw.members:
            full = f"{top}/{want}"
            hits = [m for m in tar.getmembers() if m.isfile() and (
                m.name == full or (want.endswith("/") and m.name.startswith(full)))]
            if not hits:
                raise SystemExit(f"{sdist.name} has no {want}")
            chosen += hits
        dest.mkdir(parents=True)
        for m in chosen:
            m.name = m.name[len(top) + 1 :]
            if hasattr(tarfile, "data_filter"):
                tar.extract(m, dest, filter="data")
            else:  # Pythons from before the 2023 tarfile security releases
                tar.extract(m, dest)
    stamp.write_text(json.dumps(fw.members))
    return dest


@dataclass
class Outcome:
    passed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # node id -> what failed
    skipped: dict[str, str] = field(default_factory=dict)  # node id -> why
    deselected: dict[str, str] = field(default_factory=dict)  # node id -> why
    errors: list[str] = field(default_factory=list)  # problems of the harness itself
    seconds: float = 0.0


def run(key: str) -> tuple[str, Outcome]:
    fw = FRAMEWORKS[key]
    out = Outcome()
    try:
        version = importlib.metadata.version(fw.name)
    except importlib.metadata.PackageNotFoundError:
        out.errors.append(f"{fw.name} is not installed in {sys.executable}")
        return f"{fw.label} (not installed)", out
    title = f"{fw.label} {version}"
    src = extract(fw, version, sdist_for(fw, version))

    def fill(s: str) -> str:
        return s.format(src=src, here=HERE)

    RESULTS.mkdir(parents=True, exist_ok=True)
    results = RESULTS / f"{key}.jsonl"
    results.unlink(missing_ok=True)
    deselect = DESELECTED[key]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), *(fill(p) for p in fw.path), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["COATCHECK_FRAMEWORKS_RESULTS"] = str(results)
    env["COATCHECK_FRAMEWORKS_DESELECT"] = json.dumps(sorted(deselect))
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep the extracted sources and this directory clean
    cmd = [
        # plugin_report first: the framework plugins import it.
        sys.executable, "-m", "pytest", "-p", "plugin_report", *(fill(a) for a in fw.args),
        "-p", "no:cacheprovider", "-q", "--tb=short", "-rfE", "--color=no",
    ]
    log(f"{title}: {' '.join(cmd[1:])}  (in {fill(fw.cwd)})")
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=fill(fw.cwd), env=env, timeout=TIMEOUT)
        code: Optional[int] = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
        out.errors.append(f"pytest did not finish in {TIMEOUT} s")
    out.seconds = time.monotonic() - start
    if code not in (0, 1, None):  # 2: interrupted, 3: internal error, 4: usage, 5: no tests
        out.errors.append(f"pytest exited with status {code}")

    lines = results.read_text().splitlines() if results.exists() else []
    records = [json.loads(line) for line in lines]
    by_test: dict[str, dict[str, Any]] = {}
    matched: set[str] = set()
    for r in records:
        if r["kind"] == "deselected":
            matched.add(r["nodeid"])
            continue
        t = by_test.setdefault(
            r["nodeid"], {"failed": [], "skipped": None, "coatcheck": False, "passed": False}
        )
        t["coatcheck"] |= r.get("coatcheck", False)
        if r["outcome"] == "failed":
            t["failed"].append(f"{r['when']}: {r['message']}")
        elif r["outcome"] == "skipped":
            t["skipped"] = r["message"]
        elif r["when"] == "call":
            t["passed"] = True
    for nodeid in sorted(set(deselect) - matched):
        out.errors.append(f"DESELECTED names a test this version does not have: {nodeid}")
    for nodeid in sorted(matched):
        out.deselected[nodeid] = deselect[nodeid]
    for nodeid, t in by_test.items():
        if t["failed"]:
            out.failed[nodeid] = "; ".join(t["failed"])
        elif t["skipped"] is not None:
            out.skipped[nodeid] = t["skipped"]
        elif t["passed"]:
            out.passed.append(nodeid)
        if (t["failed"] or t["passed"]) and not t["coatcheck"]:
            out.errors.append(f"{nodeid} ran without coatcheck in place of {fw.label}'s sessions")
    if not by_test:
        out.errors.append("no test ran")
    elif code == 1 and not out.failed:
        out.errors.append("pytest failed (status 1) though no test did: see its output above")
    return title, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("frameworks", nargs="*", metavar="FRAMEWORK",
                        help=f"one of {', '.join(FRAMEWORKS)} (default: all)")
    wanted = parser.parse_args().frameworks or list(FRAMEWORKS)
    for key in wanted:
        if key not in FRAMEWORKS:
            parser.error(f"unknown framework {key!r}: choose from {', '.join(FRAMEWORKS)}")
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    outcomes = [run(key) for key in wanted]

    print(f"\n{'=' * 20} coatcheck {importlib.metadata.version('coatcheck')} under the frameworks'"
          f" own session tests ({time.strftime('%Y-%m-%d %H:%M:%S %Z')}) {'=' * 20}")
    ok = True
    for title, o in outcomes:
        ran = len(o.passed) + len(o.failed)
        line = f"{title}: {len(o.passed)}/{ran} passed, {len(o.failed)} failed,"
        line += f" {len(o.deselected)} deselected"
        if o.skipped:
            line += f", {len(o.skipped)} skipped"
        print(f"\n{line}  ({o.seconds:.1f} s)")
        for nodeid, what in sorted(o.failed.items()):
            print(f"  FAILED      {nodeid}\n              {what}")
        for nodeid, why in sorted(o.skipped.items()):
            print(f"  SKIPPED     {nodeid}\n              {why}")
        for nodeid, why in sorted(o.deselected.items()):
            print(f"  DESELECTED  {nodeid}\n              {why}")
        for e in o.errors:
            print(f"  ERROR       {e}")
        ok = ok and not o.failed and not o.errors
    print(f"\n{'passed' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
