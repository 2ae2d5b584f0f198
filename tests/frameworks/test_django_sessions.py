"""Django's ``SessionTestsMixin`` (tests/sessions_tests/tests.py of Django's sdist) applied to
``coatcheck.django.SessionStore``, as Django applies it to each of its own engines. Run by
run.py (plugin_django sets Django up)."""

from django.test import SimpleTestCase
from sessions_tests.tests import SessionTestsMixin

import coatcheck.django


# A SimpleTestCase, as Django's cache and file engines are tested: no database.
class CoatcheckSessionTests(SessionTestsMixin, SimpleTestCase):
    backend = coatcheck.django.SessionStore
