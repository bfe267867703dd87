"""`billionsongs serve` for real: migrations, granian (WSGI), the worker child, static files, clean shutdown."""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from http_helpers import fetch, free_port

from billionsongs.model.generate import Generator


def children(pid: int) -> list[int]:
    file = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in file.read_text().split()] if file.exists() else []


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model_dir):
    home = tmp_path_factory.mktemp("serve-home")
    port = free_port()
    env = {**os.environ, "BILLIONSONGS_HOME": str(home), "BILLIONSONGS_MODEL": str(tiny_model_dir),
           "BILLIONSONGS_POLL_SECONDS": "0.2", "OMP_NUM_THREADS": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the production settings, not the test suite's
    log = open(home / "serve.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([sys.executable, "-m", "billionsongs", "serve", "--port", str(port), "--threads", "4"],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            fetch(base + "/top/")
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if process.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail(f"billionsongs serve did not start:\n{(home / 'serve.log').read_text()}")
            time.sleep(0.3)
    yield base, process, home
    if process.poll() is None:
        process.kill()
        process.wait()
    log.close()


def test_serve_uses_granian_and_serves_static_files(site):
    base, _, home = site
    status, headers, body = fetch(base + "/static/billionsongs/site.css")
    assert status == 200
    assert "prefers-color-scheme" in body
    assert headers.get("server", headers.get("Server")) == "granian"
    # granian's own static handler answered (WhiteNoise would say max-age=60), from the collected folder.
    assert "max-age=3600" in {k.lower(): v for k, v in headers.items()}.get("cache-control", "")
    assert (home / "static" / "billionsongs" / "site.css").exists()
    assert (home / "db.sqlite3").exists()  # migrations ran into BILLIONSONGS_HOME


def test_serve_writes_requested_songs_in_the_worker(site, tiny_model_dir):
    base, _, _ = site
    ids = [0, 4, 6]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model only slows down with threads on a busy machine
    try:
        expected = {s.id: s for s in Generator(str(tiny_model_dir)).generate(ids)}
    finally:
        torch.set_num_threads(threads)
    for song_id in ids:
        status, headers, body = fetch(f"{base}/song/{song_id}/")
        assert status == 200 and "being written" in body
        assert "no-store" in headers["cache-control"]
    results, deadline = {}, time.monotonic() + 60
    while len(results) < len(ids) and time.monotonic() < deadline:
        for song_id in ids:
            status, headers, body = fetch(f"{base}/song/{song_id}/")
            if "being written" not in body:
                results[song_id] = (status, headers, body)
        time.sleep(0.3)
    assert sorted(results) == ids, "the worker did not write the songs in time"
    for song_id, (status, headers, _) in results.items():
        if expected[song_id].error:
            assert status == 404
        else:
            assert status == 200
            assert "public" in headers["cache-control"] and headers.get("etag")
    assert any(status == 200 for status, _, _ in results.values())


def test_serve_random_redirects(site):
    status, headers, _ = fetch(site[0] + "/")
    assert status == 302 and headers["location"].startswith("/song/")


def test_sigterm_stops_server_and_worker(site):
    _, process, home = site
    worker_pids = [pid for pid in children(process.pid)
                   if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(worker_pids) == 1, (home / "serve.log").read_text()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert not Path(f"/proc/{worker_pids[0]}").exists() or \
        Path(f"/proc/{worker_pids[0]}/stat").read_text().split()[2] == "Z"


def test_a_server_process_starts_light_and_ready(tmp_path):
    """What a server process holds before its first request: no torch (building the CLI's parser used to
    import it: 400k objects that each forked server process inherited), the karaoke markup's syllable
    dictionary (0.2-0.5 s otherwise paid by the first visitor of each process), and its start-up objects
    frozen out of the garbage collector (each full collection walked them while a request waited)."""
    code = ("import gc, sys, pronouncing\n"
            "from billionsongs.cli import build_parser\n"
            "build_parser()\n"
            "import billionsongs.web.wsgi\n"
            "print('torch' in sys.modules, pronouncing.pronunciations is not None, gc.get_freeze_count())")
    env = {**os.environ, "BILLIONSONGS_HOME": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    torch_loaded, dictionary_loaded, frozen = done.stdout.split()
    assert (torch_loaded, dictionary_loaded) == ("False", "True")
    assert int(frozen) > 100_000  # Django, the apps and the dictionary
