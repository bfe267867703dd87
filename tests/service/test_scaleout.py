"""Scale-out mode against the real PostgreSQL and Redis of this machine, with two worker processes.

`billionsongs serve --no-worker` (granian) and two `billionsongs worker` processes with
BILLIONSONGS_QUEUE=rq share a fresh PostgreSQL schema (in database `test`) and a fresh Redis key
prefix. The tests walk the whole flow (request → queue → worker → stored → page), live streaming,
one generation for concurrent requests, a worker SIGKILLed mid-batch, lost connections, and the dry
pool. On CI (CI=true) an unreachable PostgreSQL or Redis is a failure, not a skip.

Overrides: BILLIONSONGS_TEST_PG (a libpq URL of the `test` database), BILLIONSONGS_TEST_REDIS.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from http_helpers import fetch, free_port

from billionsongs.web.songs.queue import _clean

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HERE = Path(__file__).resolve().parent
STEP = 0.02  # seconds per decoding step in the workers (slowgen.py)
LEASE = 3


def _unavailable(reason: str):
    if ON_CI:
        pytest.fail(f"scale-out test needs it on CI: {reason}")
    pytest.skip(reason)


def _postgres_url() -> str:
    import psycopg

    candidates = [os.environ["BILLIONSONGS_TEST_PG"]] if os.environ.get("BILLIONSONGS_TEST_PG") else [
        "postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test"]
    errors = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error as exc:
            errors.append(f"{url}: {exc}".strip())
    _unavailable("PostgreSQL unreachable: " + "; ".join(errors))


def _redis_url() -> str:
    import redis

    url = os.environ.get("BILLIONSONGS_TEST_REDIS", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis unreachable at {url}: {exc}")
    return url


class Deployment:
    def __init__(self, tmp: Path, pg_url: str, redis_url: str, model: Path):
        import psycopg
        import redis

        self.tmp = tmp
        self.schema = f"bs_test_{uuid.uuid4().hex[:10]}"
        self.app = f"billionsongs-{self.schema}"
        self.pg = psycopg.connect(pg_url, autocommit=True)
        self.pg.execute(f"CREATE SCHEMA {self.schema}")
        self.prefix = f"bs-test-{uuid.uuid4().hex[:10]}"
        self.redis = redis.Redis.from_url(redis_url)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATABASE_URL": pg_url, "PGOPTIONS": f"-c search_path={self.schema}",
                    "PGAPPNAME": self.app, "REDIS_URL": redis_url, "BILLIONSONGS_QUEUE": "rq",
                    "BILLIONSONGS_REDIS_PREFIX": self.prefix, "BILLIONSONGS_HOME": str(tmp),
                    "BILLIONSONGS_MODEL": str(model), "BILLIONSONGS_GENERATOR": "slowgen:factory",
                    "SLOWGEN_STEP_SECONDS": str(STEP), "PYTHONPATH": os.pathsep.join(
                        [str(HERE), os.environ.get("PYTHONPATH", "")]),
                    "BILLIONSONGS_BATCH_SIZE": "4", "BILLIONSONGS_STALE_SECONDS": str(LEASE),
                    "BILLIONSONGS_TICK_SECONDS": "1", "BILLIONSONGS_POOL_TARGET": "4",
                    "BILLIONSONGS_QUALITY_MIN_LINES": "1", "BILLIONSONGS_QUALITY_MIN_CHARS": "1",
                    "BILLIONSONGS_QUALITY_MIN_DISTINCT_WORDS": "0", "BILLIONSONGS_PROGRESS_SECONDS": "0.1",
                    "BILLIONSONGS_STREAM_SECONDS": "8", "BILLIONSONGS_REFRESH_SECONDS": "1",
                    "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "BILLIONSONGS_LOG_LEVEL": "INFO"}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.web = self._start("web", "serve", "--no-worker", "--port", str(self.port), "--threads", "8")
        self._wait_for_web()
        self.workers: list[subprocess.Popen] = []

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
        return subprocess.Popen([sys.executable, "-m", "billionsongs", *args], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT)

    def _wait_for_web(self) -> None:
        deadline = time.monotonic() + 90
        while True:
            try:
                fetch(self.base + "/top/")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if self.web.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("serve did not start:\n" + self.logs())
                time.sleep(0.3)

    def start_worker(self) -> subprocess.Popen:
        worker = self._start(f"worker-{len(self.workers)}", "worker")
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[subprocess.Popen]:
        return [w for w in self.workers if w.poll() is None]

    def rows(self, ids) -> dict[int, tuple]:
        cur = self.pg.execute(f"SELECT id, status, title, lyrics, error, attempts, claim, quality "
                              f"FROM {self.schema}.songs_song WHERE id = ANY(%s)", [list(ids)])
        return {row[0]: row[1:] for row in cur.fetchall()}

    def wait_written(self, ids, timeout: float = 90) -> dict[int, tuple]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.rows(ids)
            if len(rows) == len(set(ids)) and all(r[0] in ("done", "failed") for r in rows.values()):
                return rows
            time.sleep(0.2)
        pytest.fail(f"songs not written in {timeout} s: {self.rows(ids)}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in self.tmp.glob("*.log"))

    def close(self) -> None:
        for process in [self.web, *self.workers]:
            if process.poll() is None:
                process.terminate()
        for process in [self.web, *self.workers]:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.pg.execute(f"DROP SCHEMA {self.schema} CASCADE")
        self.pg.close()
        keys = list(self.redis.scan_iter(f"{self.prefix}*"))
        keys += list(self.redis.scan_iter(f"rq:*{self.prefix}*"))
        if keys:
            self.redis.delete(*keys)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, tiny_model_dir):
    pg_url, redis_url = _postgres_url(), _redis_url()
    site = Deployment(tmp_path_factory.mktemp("scaleout"), pg_url, redis_url, tiny_model_dir)
    yield site
    site.close()


@pytest.fixture
def workers(deployment):
    """Two live workers behind `deployment`: started on first use, and again after a test stopped one, so a
    test needing them passes alone (`-k`) as in the whole module."""
    while len(deployment.live_workers()) < 2:
        deployment.start_worker()
    return deployment.live_workers()


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    import torch

    from billionsongs.model.generate import Generator

    torch.set_num_threads(1)
    generator = Generator(str(tiny_model_dir))
    return lambda ids: {song.id: song for song in generator.generate(list(ids), batch_size=8)}


def test_dry_pool_with_nothing_written_answers_at_once(deployment):
    """Before any worker runs: "/" still answers at once, with a new song whose page says it is being written."""
    started = time.monotonic()
    status, headers, _ = fetch(deployment.base + "/")
    assert status == 302 and headers["location"].endswith("?fallback=random")
    status, _, body = fetch(deployment.base + headers["location"])
    assert time.monotonic() - started < 5
    assert status == 200 and "being written" in body


def _check_stored(deployment, engine, ids):
    rows = deployment.wait_written(ids)
    expected = engine(ids)
    for song_id, (status, title, *_) in rows.items():
        want = expected[song_id]
        assert status == ("failed" if want.error else "done"), (song_id, rows[song_id])
        if not want.error:
            assert title == _clean(want.title)[:200].strip()
            code, headers, body = fetch(f"{deployment.base}/song/{song_id}/")
            assert code == 200 and "public" in headers["cache-control"]
        else:
            assert fetch(f"{deployment.base}/song/{song_id}/")[0] == 404
    return rows


@pytest.mark.usefixtures("workers")
def test_whole_flow_request_queue_two_workers_stored_page(deployment, engine):
    ids = list(range(100, 110))
    for song_id in ids:
        status, _, body = fetch(f"{deployment.base}/song/{song_id}/")
        assert status == 200 and "being written" in body
    rows = _check_stored(deployment, engine, ids)
    assert {r[4] for r in rows.values()} == {1}  # each written exactly once


@pytest.mark.usefixtures("workers")
def test_concurrent_requests_for_one_id_make_one_generation(deployment, engine):
    song_id = 4_000_000_007
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(fetch(f"{deployment.base}/song/{song_id}/")[0]))
               for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 12
    rows = _check_stored(deployment, engine, [song_id])
    assert rows[song_id][4] == 1


@pytest.mark.usefixtures("workers")
def test_song_page_streams_the_text_while_it_is_written(deployment, engine):
    expected = engine(range(200, 260))
    song_id = max((s for s in expected.values() if not s.error), key=lambda s: s.tokens).id
    fetch(f"{deployment.base}/song/{song_id}/")  # queue it
    events, texts, polled = [], [], []
    deadline = time.monotonic() + 60

    def poll():  # what a page that found no free stream slot asks for, alongside the stream
        while time.monotonic() < deadline and (not polled or polled[-1]["event"] == "progress"):
            polled.append(json.loads(fetch(f"{deployment.base}/song/{song_id}/progress/")[2]))
            time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    while time.monotonic() < deadline and not {"done", "failed"} & set(events):
        with urllib.request.urlopen(f"{deployment.base}/song/{song_id}/stream/", timeout=30) as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            name = None
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                    events.append(name)
                elif line.startswith("data: ") and name == "progress":
                    texts.append(json.loads(line[6:])["text"])
    assert events[-1] == "done", events
    assert "progress" in events, "text arrived while the song was being written"
    poller.join()
    assert any(state["event"] == "progress" and state["tokens"] > 0 for state in polled), polled
    assert json.loads(fetch(f"{deployment.base}/song/{song_id}/progress/")[2]) == {
        "event": "done", "url": f"/song/{song_id}/"}
    final = expected[song_id]
    assert all(len(text) <= len(final.title) + len(final.lyrics) + 8 for text in texts)


@pytest.mark.usefixtures("workers")
def test_worker_killed_mid_batch_loses_nothing(deployment, engine):
    ids = [5_000_000_000 + i for i in range(4)]
    for song_id in ids:
        fetch(f"{deployment.base}/song/{song_id}/")
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        for status, *_, claim, _ in deployment.rows(ids).values():
            if status == "generating" and claim:
                pid = int(claim.split(":")[1])
                victim = next((w for w in deployment.live_workers() if w.pid == pid), None)
        time.sleep(0.02)
    assert victim is not None, deployment.logs()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = time.monotonic()
    rows = _check_stored(deployment, engine, ids)
    assert time.monotonic() - killed_at < 60
    assert max(r[4] for r in rows.values()) == 2, "songs of the dead worker were retried by the other one"
    assert not [r for r in deployment.rows(ids).values() if r[0] == "generating"]


@pytest.mark.usefixtures("workers")
def test_workers_reconnect_after_losing_postgres_and_redis(deployment, engine):
    from rq import Queue, Worker

    time.sleep(1.5)  # let workers settle into their idle wait
    terminated = deployment.pg.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                       "WHERE application_name = %s", [deployment.app]).fetchone()[0]
    assert terminated >= 1
    names = {w.name for w in Worker.all(queue=Queue(deployment.prefix, connection=deployment.redis))}
    for client in deployment.redis.client_list():
        if client.get("name") in names:
            deployment.redis.client_kill_filter(_id=client["id"])
    ids = [6_000_000_000 + i for i in range(3)]
    for song_id in ids:
        assert fetch(f"{deployment.base}/song/{song_id}/")[0] == 200
    _check_stored(deployment, engine, ids)


def test_pool_refills_with_good_songs_and_a_dry_pool_serves_written_songs(deployment, workers):
    pool_key = f"{deployment.prefix}:pool"
    deadline = time.monotonic() + 90
    while deployment.redis.hlen(pool_key) < 4 and time.monotonic() < deadline:
        time.sleep(0.5)
    pooled = [int(i) for i in deployment.redis.hkeys(pool_key)]
    assert len(pooled) >= 4, deployment.logs()
    assert all(row[0] == "done" and row[6] == "" for row in deployment.rows(pooled).values())
    status, headers, _ = fetch(deployment.base + "/")
    assert status == 302 and "fallback" not in headers["location"]
    for worker in workers:
        worker.send_signal(signal.SIGSTOP)  # nobody refills for a moment
    try:
        deployment.redis.delete(pool_key)
        for _ in range(5):
            started = time.monotonic()
            status, headers, _ = fetch(deployment.base + "/")
            assert time.monotonic() - started < 2
            assert status == 302 and "fallback" not in headers["location"]  # an already written song
            assert fetch(deployment.base + headers["location"])[0] == 200
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGCONT)


def test_sigterm_stops_workers_cleanly(deployment, workers):
    deadline = time.monotonic() + 60
    logs = [deployment.tmp / f"worker-{deployment.workers.index(w)}.log" for w in workers]
    while not all("RQ worker" in log.read_text(errors="replace") for log in logs) and time.monotonic() < deadline:
        time.sleep(0.2)  # every worker is up (a SIGTERM during start-up would simply end it)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        assert worker.wait(30) == 0
    assert not [1 for row in deployment.pg.execute(
        f"SELECT 1 FROM {deployment.schema}.songs_song WHERE status = 'generating'").fetchall()]
