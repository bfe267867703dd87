"""Where the site keeps its data ($BILLIONSONGS_HOME) and the secret key fallback stored there."""

import os
import secrets
import time
from pathlib import Path


def billionsongs_home() -> Path:
    """$BILLIONSONGS_HOME, else the per-user data folder; created on first use."""
    configured = os.environ.get("BILLIONSONGS_HOME")
    if configured:
        home = Path(configured).expanduser()
    else:
        from platformdirs import user_data_path

        home = user_data_path("billionsongs", appauthor=False)
    home.mkdir(parents=True, exist_ok=True)
    return home


def stored_secret_key(home: Path) -> str:
    """A random key generated once and kept in `home/secret_key`.

    Sessions and password-reset links are signed with it, so it must survive restarts; generating it on
    first start means a fresh install needs no configuration, while deployments still pass SECRET_KEY.
    """
    file = home / "secret_key"
    try:
        key = file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        key = ""
    if key:
        return key
    key = secrets.token_urlsafe(50)
    # O_EXCL: if two processes start at once, exactly one writes and both read the same key.
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _wait_for_key(file)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key)
    return key


def _wait_for_key(file: Path, seconds: float = 5.0) -> str:
    """The key another process is writing right now."""
    deadline = time.monotonic() + seconds
    while not (key := file.read_text(encoding="ascii").strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not key:
        raise RuntimeError(f"{file} is empty: delete it or set SECRET_KEY")
    return key
