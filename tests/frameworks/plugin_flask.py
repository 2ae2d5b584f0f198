"""pytest plugin of run.py for Flask's tests: coatcheck keeps the sessions of the ``app`` fixture.

Flask's tests/conftest.py builds the app each test uses (``app``, with ``SECRET_KEY="test
key"``); before the test runs, ``CoatcheckSession(app)`` makes coatcheck its session
interface, built as an application would: a store from ``app.secret_key`` with
``PERMANENT_SESSION_LIFETIME`` as its idle timeout.
"""

from __future__ import annotations

import _pytest.monkeypatch
import pytest

from coatcheck.flask import CoatcheckSession, CoatcheckSessionInterface
from plugin_report import mark_coatcheck


# Flask's tests/conftest.py (3.1.x) builds its os.environ reset list with
# `_pytest.monkeypatch.notset`, a name pytest 9 removed; MonkeyPatch.undo() now compares with
# `_pytest.compat.NOTSET`, the same sentinel under its new name.
if not hasattr(_pytest.monkeypatch, "notset"):
    from _pytest.compat import NOTSET

    _pytest.monkeypatch.notset = NOTSET  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _coatcheck_session(request: pytest.FixtureRequest) -> None:
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    CoatcheckSession(app)
    assert isinstance(app.session_interface, CoatcheckSessionInterface)
    mark_coatcheck(request.node)
