"""`billionsongs serve`: migrate, start the generation worker, and serve the site with granian (WSGI).

granian is a production server (Rust HTTP stack, several processes and threads), unlike Django's
runserver. The worker runs as a child process so a slow batch never holds up a request, and it
stops with the server (and on its own if this process dies, see `Worker.parent_pid`).
"""

import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("billionsongs.serve")

WSGI_TARGET = "billionsongs.web.wsgi:application"


def migrate() -> None:
    """Bring the database schema up to date (safe to run on every start)."""
    from django.core.management import call_command
    from django.db import connections

    from billionsongs.web import setup_django

    setup_django()
    call_command("migrate", interactive=False, verbosity=1)
    connections.close_all()  # granian starts its processes next; they must not share this connection


def collect_static() -> Path:
    """Copy every static file into STATIC_ROOT (default BILLIONSONGS_HOME/static) for granian to serve.

    granian serves that folder from its Rust HTTP stack, before any Python runs; WhiteNoise stays as the
    fallback for a server started some other way (e.g. `wsgi.py` under another WSGI server).
    """
    from django.conf import settings
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)
    return Path(settings.STATIC_ROOT)


def start_worker(batch_size: int | None = None, model: str | None = None) -> subprocess.Popen:
    """The embedded worker: the only one, so it re-queues every unfinished song it finds on start."""
    command = [sys.executable, "-m", "billionsongs", "worker", "--reset-all", "--parent-pid", str(os.getpid())]
    if batch_size:
        command += ["--batch-size", str(batch_size)]
    if model:
        command += ["--model", model]
    return subprocess.Popen(command)


def stop_worker(worker: subprocess.Popen, timeout: float = 60.0) -> None:
    """SIGTERM lets the worker finish its batch; after `timeout` it is killed (its rows re-queue on next start)."""
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def serve(host: str = "127.0.0.1", port: int = 8000, *, processes: int | None = None, threads: int | None = None,
          run_worker: bool = True, batch_size: int | None = None, model: str | None = None) -> int:
    from granian import Granian
    from granian.constants import Interfaces

    # One process per core: each runs Python one request at a time (the GIL), so on 2 vCPUs 2 processes
    # served 2.1x the requests/s of one with more threads (benchmarks/RESULTS.md, web serving).
    processes = processes or os.cpu_count() or 1
    threads = threads or min(16, 2 * (os.cpu_count() or 1))
    if host not in ("127.0.0.1", "localhost", "::1") and not os.environ.get("ALLOWED_HOSTS"):
        print(f"billionsongs serve: note: set ALLOWED_HOSTS to the name visitors use; on {host} only "
              "localhost names are accepted now", file=sys.stderr)
    # Live-writing streams may hold at most a quarter of the request threads (see songs/stream.py).
    os.environ.setdefault("BILLIONSONGS_STREAM_SLOTS", str(max(1, threads // 4)))
    migrate()
    static_root = collect_static()
    worker = start_worker(batch_size, model) if run_worker else None
    try:
        from django.conf import settings

        # Load the app here, before granian forks its processes: they find it imported (granian imports
        # WSGI_TARGET in each child), with the start-up work of wsgi.py done once and its pages shared.
        importlib.import_module(WSGI_TARGET.partition(":")[0])

        server = Granian(WSGI_TARGET, address=host, port=port, interface=Interfaces.WSGI, workers=processes,
                         blocking_threads=threads, websockets=False,
                         static_path_route=["/" + settings.STATIC_URL.strip("/")], static_path_mount=[static_root],
                         static_path_expires=settings.STATIC_CACHE_SECONDS)
        server.serve()
    finally:
        if worker is not None:
            stop_worker(worker)
    return 0
