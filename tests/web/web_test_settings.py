"""Settings for the test suite: the real settings module, with data in a throwaway BILLIONSONGS_HOME.

The environment must be set before the settings are imported (pytest-django imports them before any
conftest runs), hence this module rather than a fixture.
"""

import atexit
import os
import shutil
import tempfile

_home = tempfile.mkdtemp(prefix="billionsongs-test-home-")
os.environ["BILLIONSONGS_HOME"] = _home
atexit.register(shutil.rmtree, _home, ignore_errors=True)

from billionsongs.web.settings import *  # noqa: E402,F403
from billionsongs.web.settings import DATABASES  # noqa: E402

# Fast hashing: tests create many users; production keeps Django's default (PBKDF2).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not Django's shared in-memory test database, so threads in the concurrency tests and the
    # live server get real connections with real locking.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(_home, "test.sqlite3")}
