"""The Billion Songs website: a Django project whose apps live beside this file (songs, votes, accounts).

Everything is configured by environment variables (see `settings.py`), so the same package runs as the
embedded single-machine site (`billionsongs serve`, SQLite) and behind PostgreSQL (`DATABASE_URL`).
"""

SETTINGS_MODULE = "billionsongs.web.settings"


def setup_django() -> None:
    """Configure Django for code that runs outside a request (CLI commands, the worker)."""
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    django.setup()
