"""HTTP helpers for tests that start real servers (`billionsongs serve`, the scale-out deployment)."""

import socket
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers to check (Location, ?fallback=random), not to follow."""

    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, timeout: float = 30) -> tuple[int, dict, str]:
    """Status, headers (lower-case names) and body; error statuses are returned, not raised."""
    try:
        with urllib.request.build_opener(NoRedirect).open(url, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode()
