"""pytest plugin of run.py for Django's tests: Django set up with settings_django.

As Django's tests/runtests.py does before running tests: configure settings, ``django.setup()``
and ``setup_test_environment()``.
"""

from __future__ import annotations

import os

import pytest

from plugin_report import mark_coatcheck


def pytest_configure(config: pytest.Config) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "settings_django"
    import django
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()


def pytest_unconfigure(config: pytest.Config) -> None:
    from django.test.utils import teardown_test_environment

    teardown_test_environment()


def pytest_runtest_setup(item: pytest.Item) -> None:
    import coatcheck.django

    if getattr(getattr(item, "cls", None), "backend", None) is coatcheck.django.SessionStore:
        mark_coatcheck(item)
