"""Settings come from the environment; each case runs in a fresh interpreter, as a deployment would."""

import json
import os
import subprocess
import sys

PRINT_SETTINGS = """
import json
from billionsongs.web import settings as s
db = s.DATABASES["default"]
print(json.dumps({"debug": s.DEBUG, "hosts": s.ALLOWED_HOSTS, "key": s.SECRET_KEY, "engine": db["ENGINE"],
                  "name": db["NAME"], "host": db.get("HOST"), "email": s.EMAIL_BACKEND,
                  "secure": getattr(s, "SESSION_COOKIE_SECURE", False)}))
"""


def load_settings(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DATABASE_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "BILLIONSONGS_HTTPS")}
    result = subprocess.run([sys.executable, "-c", PRINT_SETTINGS], env={**clean, **env}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_defaults_are_production_safe_and_keep_data_in_home(tmp_path):
    settings = load_settings(BILLIONSONGS_HOME=str(tmp_path))
    assert settings["debug"] is False
    assert settings["hosts"] == ["localhost", "127.0.0.1", "[::1]"]
    assert settings["engine"] == "django.db.backends.sqlite3"
    assert settings["name"] == str(tmp_path / "db.sqlite3")
    assert settings["email"] == "django.core.mail.backends.console.EmailBackend"
    # The generated secret key is stored (private to the owner) and reused by the next start.
    assert len(settings["key"]) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert load_settings(BILLIONSONGS_HOME=str(tmp_path))["key"] == settings["key"]


def test_environment_overrides(tmp_path):
    settings = load_settings(BILLIONSONGS_HOME=str(tmp_path), DATABASE_URL="postgres://bs:pw@db.example:5432/songs",
                             SECRET_KEY="from-env", DEBUG="true", ALLOWED_HOSTS="songs.example, www.songs.example",
                             BILLIONSONGS_HTTPS="1")
    assert settings["engine"] == "django.db.backends.postgresql"
    assert (settings["name"], settings["host"]) == ("songs", "db.example")
    assert settings["key"] == "from-env"
    assert settings["debug"] is True
    assert settings["hosts"] == ["songs.example", "www.songs.example"]
    assert settings["secure"] is True
    assert not (tmp_path / "secret_key").exists()
