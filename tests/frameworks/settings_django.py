"""Settings for Django's session tests under run.py.

Django's own test settings (tests/test_sqlite.py of its sdist, what its tests/runtests.py uses
by default), the apps the tests need, and coatcheck as the session engine.
"""

from test_sqlite import *  # noqa: F401,F403

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "sessions_tests",  # its models.py holds a custom session model the tests module imports
]
SESSION_ENGINE = "coatcheck.django"
