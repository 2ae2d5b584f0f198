"""pytest plugin of run.py: records each test's outcome, and whether coatcheck was in place.

Every report goes to the JSON-lines file named by $COATCHECK_FRAMEWORKS_RESULTS. The tests
named (by node id) in the JSON list $COATCHECK_FRAMEWORKS_DESELECT are deselected. The
framework plugins call `mark_coatcheck` on each test in which coatcheck stood in for the
framework's own sessions; run.py counts a test that ran without that mark as an error.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

_RESULTS = os.environ.get("COATCHECK_FRAMEWORKS_RESULTS")
_DESELECT = frozenset(json.loads(os.environ.get("COATCHECK_FRAMEWORKS_DESELECT", "[]")))


def mark_coatcheck(item: pytest.Item) -> None:
    """Notes that coatcheck kept the sessions of this test."""
    if ("coatcheck", True) not in item.user_properties:
        item.user_properties.append(("coatcheck", True))


def _write(record: dict[str, Any]) -> None:
    if _RESULTS:
        with open(_RESULTS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


@pytest.hookimpl(tryfirst=True)  # before -k, so that every name in DESELECTED is seen
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep = [item for item in items if item.nodeid not in _DESELECT]
    drop = [item for item in items if item.nodeid in _DESELECT]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    for item in drop:
        _write({"kind": "deselected", "nodeid": item.nodeid})


def _test_line(report: pytest.TestReport) -> str:
    """`` at file:line: source`` of the traceback's last line in the test's own file."""
    test_file = Path(report.location[0]).name
    entries = getattr(getattr(report.longrepr, "reprtraceback", None), "reprentries", [])
    for entry in reversed(entries):
        loc = getattr(entry, "reprfileloc", None)
        if loc is not None and Path(loc.path).name == test_file:
            source = [line for line in getattr(entry, "lines", []) if not line.startswith("E ")]
            code = source[0].lstrip("> ").strip() if source else ""
            return f" at {test_file}:{loc.lineno}: {code}"
    return ""


def _one_line(text: str, limit: int = 500) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    message = ""
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            message = f"{_one_line(crash.message)} ({os.path.basename(crash.path)}:{crash.lineno})"
            if Path(crash.path).name != Path(report.location[0]).name:
                message += _test_line(report)
        else:
            message = _one_line(str(report.longrepr).strip().splitlines()[-1])
    elif report.skipped:
        longrepr = report.longrepr
        message = longrepr[2] if isinstance(longrepr, tuple) else _one_line(str(longrepr))
    _write({
        "kind": "report",
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "message": message,
        "coatcheck": ("coatcheck", True) in report.user_properties,
    })
