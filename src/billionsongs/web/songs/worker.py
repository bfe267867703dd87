"""The generation worker: takes pending songs from the queue and writes them in batches.

Runs as its own process (`billionsongs worker`, or the child that `billionsongs serve` starts) so that
generation never blocks a web request. `Worker.run_once` — claim up to B songs, write them as one running
batch that takes newly requested songs into rows as they come free, store each song as it ends — is
the only way songs get written, in both deployments:

- database queue (BILLIONSONGS_QUEUE=db, the embedded default): `run` polls the Song table;
- RQ (BILLIONSONGS_QUEUE=rq): `run` starts an RQ worker whose jobs (`tasks.write_batch`, enqueued by
  the web when a song is requested) call `run_once`; between jobs it sweeps the table every
  WORKER_TICK_SECONDS, so a song whose Redis message was lost is still written.

Reliability: claimed rows carry a lease that `run_once` renews while it writes (a heartbeat); a worker
killed with SIGKILL stops renewing, and any other worker's `maintain` puts its songs back to pending
after WORKER_STALE_SECONDS. SIGTERM finishes the batch; a second SIGTERM abandons it and returns the
songs to the queue at once. Database and Redis errors are logged and retried with back-off on fresh
connections.
"""

import importlib
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections

from billionsongs.web.songs import queue
from billionsongs.web.songs.progress import Publisher

log = logging.getLogger("billionsongs.worker")


class Interrupted(BaseException):
    """Raised inside a batch when the worker is told to stop at once (second SIGTERM)."""


def _connection_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (DatabaseError,)
    try:
        import redis

        errors += (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    except ImportError:
        pass
    return errors


class Worker:
    """One generator and the loop that feeds it from the queue.

    `generator_factory(model)` must return an object with the engine's `run(take, batch_size=..., on_token=...,
    on_song=...)`, `decode(tokens)` and `model_name`; by default the engine's `Generator`, built on first use.
    """

    def __init__(self, model: str | None = None, *, batch_size: int | None = None, poll_seconds: float | None = None,
                 stale_after: timedelta | None = None, reset_all_on_start: bool = False,
                 parent_pid: int | None = None, generator_factory: Callable[[str | None], Any] | None = None,
                 refill_pool: bool = True):
        self.model = model
        self.batch_size = batch_size or settings.WORKER_BATCH_SIZE
        self.poll_seconds = settings.WORKER_POLL_SECONDS if poll_seconds is None else poll_seconds
        self.stale_after = stale_after or timedelta(seconds=settings.WORKER_STALE_SECONDS)
        self.reset_all_on_start = reset_all_on_start
        self.parent_pid = parent_pid
        self.generator_factory = generator_factory or _configured_factory()
        self.refill_pool = refill_pool
        self.generator: Any = None
        self.stopping = False
        self.abort = False
        self.written = 0
        self.last_maintenance = 0.0

    def load(self) -> None:
        """Load the model now (raises the engine's ModelLoadError with a readable message)."""
        if self.generator is None:
            started = time.perf_counter()
            self.generator = self.generator_factory(self.model)
            log.info("model %s loaded in %.1f s", self.generator.model_name, time.perf_counter() - started)
            max_tokens = self._max_tokens()
            if max_tokens:
                try:
                    from django.core.cache import cache

                    from billionsongs.web.songs.progress import MAX_TOKENS_KEY

                    cache.set(MAX_TOKENS_KEY, max_tokens, None)
                except Exception:  # noqa: BLE001 (only the progress bar needs it)
                    pass

    def _max_tokens(self) -> int | None:
        length = getattr(self.generator, "max_length", None)
        return length - 1 if isinstance(length, int) else None

    def run_once(self) -> int:
        """Claim songs and write them as one running batch; returns how many songs it took (0: queue empty).

        Continuous batching across requests: while the batch runs, every free row (a song ended, or the
        batch started short) takes a song requested since (`_Feed`), and songs are stored as they end,
        so a short song's page does not wait for the batch's longest song. Songs that end within one
        PROGRESS_SECONDS share a transaction: storing each alone cost a commit per song."""
        claim = queue.claim_batch(self.batch_size)
        if not claim.songs:
            return 0
        started, saved, ended, ready = time.perf_counter(), 0, [], []
        last_store = time.monotonic()

        def store() -> None:
            nonlocal saved, last_store
            last_store = time.monotonic()
            if ready:
                saved += self._complete(claim, ready)
                ended.extend(ready)
                ready.clear()

        def store_if_due() -> None:  # from the token callback too: no song waits for the next one to end
            if ready and time.monotonic() - last_store >= settings.PROGRESS_SECONDS:
                store()

        try:
            self.load()
            beat = _Heartbeat(claim, self.stale_after.total_seconds() / 4)
            decode = getattr(self.generator, "decode", lambda tokens: "")
            publisher = Publisher(claim.ids, decode, self._max_tokens(), on_flush=beat)

            def on_token(song_id: int, token_id: int) -> None:
                if self.abort:
                    raise Interrupted("worker stopped mid-batch")
                publisher.token(song_id, token_id)
                store_if_due()

            def on_song(song: Any) -> None:
                publisher.forget(song.id)
                ready.append(song)
                store_if_due()

            self.generator.run(_Feed(self, claim), batch_size=self.batch_size, on_token=on_token, on_song=on_song)
            store()
        except BaseException:
            try:
                store()  # songs that ended before the failure are kept
            except Exception as exc:  # noqa: BLE001 (they go back to the queue with the rest)
                log.warning("could not store finished songs %s: %s", [song.id for song in ready], exc)
            try:
                queue.release(claim, settings.WORKER_MAX_ATTEMPTS)
            except Exception as exc:  # noqa: BLE001 (database away: the lease expires and another worker retries)
                log.warning("could not return the batch's unfinished songs to the queue: %s", exc)
            raise
        finally:
            self.written += saved
        failed = [f"{r.id} {r.error}" for r in ended if r.error]
        log.info("wrote %d songs in %.1f s%s", saved, time.perf_counter() - started,
                 f"; no song for {', '.join(failed[:20])}{' …' if len(failed) > 20 else ''}" if failed else "")
        return len(claim.songs)

    def _complete(self, claim: queue.Claim, results: list, attempts: int = 4) -> int:
        """Store results, retrying on a broken connection: the batch is not thrown away for a blip."""
        for attempt in range(attempts):
            try:
                return queue.complete(claim, results)
            except DatabaseError as exc:
                if attempt == attempts - 1 or connection.in_atomic_block:
                    raise
                log.warning("storing songs failed (%s); reconnecting", exc)
                connections.close_all()
                time.sleep(2**attempt)
        return 0

    def maintain(self, *, force: bool = False) -> int:
        """Housekeeping between batches (at most every WORKER_TICK_SECONDS): re-queue songs whose lease
        expired, and queue fresh IDs when the pool is below target. Returns songs it queued."""
        if not force and time.monotonic() - self.last_maintenance < settings.WORKER_TICK_SECONDS:
            return 0
        self.last_maintenance = time.monotonic()
        queued = queue.reset_stale(self.stale_after)
        if queued:
            log.info("re-queued %d songs whose worker stopped renewing its lease", queued)
        if self.refill_pool and settings.POOL_TARGET > 0 and not queue.pending():
            from billionsongs.web.songs.pool import get_pool

            if get_pool().deficit() > 0:
                queued += queue.enqueue_fresh(self.batch_size)
        return queued

    def start(self) -> bool:
        """Load the model, re-queue orphans and warm the pool; False (logged) if the model cannot load."""
        try:
            self.load()
        except Exception as exc:  # a missing or corrupt model: say so once instead of failing every batch
            log.error("worker cannot start: %s", exc)
            return False
        reset = queue.reset_stale(None if self.reset_all_on_start else self.stale_after)
        if reset:
            log.info("re-queued %d songs left unfinished by a previous worker", reset)
        if self.refill_pool and settings.POOL_TARGET > 0:
            try:
                from billionsongs.web.songs.pool import warm

                warm()
            except Exception as exc:  # noqa: BLE001 (Redis away: the pool fills as songs are written)
                log.warning("could not load the pool: %s", exc)
        return True

    def run(self, *, until_empty: bool = False) -> int:
        """Work until stopped (SIGTERM/SIGINT finish the current batch first); returns an exit code."""
        if settings.QUEUE_BACKEND == "rq" and not until_empty:
            from billionsongs.web.songs.tasks import run_rq_worker

            return run_rq_worker(self)
        previous = self._install_signal_handlers()
        try:
            return self._loop(until_empty)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _loop(self, until_empty: bool) -> int:
        if not self._with_retries(self.start):
            return 1
        backoff = 1.0
        while not self.stopping:
            if self._parent_gone():
                log.info("parent process exited; worker stopping")
                break
            if not connection.in_atomic_block:  # (tests run the loop inside a transaction)
                close_old_connections()  # drop connections that are too old or broken, so the loop reconnects
            try:
                took = self.run_once()
                if not took and not until_empty:
                    took = self.maintain()
                backoff = 1.0
            except Interrupted:
                log.info("stopped mid-batch; its songs were returned to the queue")
                break
            except _connection_errors() as exc:
                log.warning("lost the database or Redis (%s); reconnecting in %.0f s", exc, backoff)
                self._disconnect()
                self._sleep(backoff)
                backoff = min(30.0, backoff * 2)
                continue
            except Exception:
                log.exception("batch failed; its songs were returned to the queue")
                took = 0
                self._sleep(min(30.0, max(1.0, self.poll_seconds * 10)))
            if took:
                continue
            if until_empty:
                break
            self._sleep(self.poll_seconds)
        return 0

    def _with_retries(self, step: Callable[[], bool]) -> bool:
        backoff = 1.0
        while True:
            try:
                return step()
            except _connection_errors() as exc:
                if self.stopping:
                    return False
                log.warning("database or Redis unreachable at start (%s); retrying in %.0f s", exc, backoff)
                self._disconnect()
                self._sleep(backoff)
                backoff = min(30.0, backoff * 2)

    def _disconnect(self) -> None:
        if not connection.in_atomic_block:
            connections.close_all()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))

    def stop(self, *_: object) -> None:
        """First call: finish the current batch, then stop. Second: abandon the batch (songs go back)."""
        if self.stopping:
            self.abort = True
        self.stopping = True

    def _install_signal_handlers(self) -> dict:
        previous = {}
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, self.stop)
        except ValueError:  # not the main thread: whoever started us calls stop()
            pass
        return previous

    def _parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid


class _Feed:
    """The running batch's source of songs: first the claimed ones, then, for rows that come free, songs
    claimed since under the same lease, looked for at most every poll interval.

    It stops taking songs when the worker is stopping, or once the batch has run WORKER_RUN_SECONDS (in
    RQ mode at most half the job timeout), so the batch drains and the worker's loop (and, in RQ mode,
    the job) comes round. Housekeeping (`Worker.maintain`: expired leases, pool refill) runs from here
    too, so a busy worker still does it. Any error here (a lost database, a failing pool refill) costs
    only the new songs: the running ones go on."""

    def __init__(self, worker: Worker, claim: queue.Claim):
        self.worker, self.claim = worker, claim
        self.first: list[int] | None = claim.ids
        seconds = settings.WORKER_RUN_SECONDS
        if settings.QUEUE_BACKEND == "rq":  # the run is one RQ job: it must end well inside the job's timeout
            seconds = min(seconds, settings.WORKER_JOB_TIMEOUT / 2)
        self.until = time.monotonic() + seconds
        self.looked = time.monotonic()

    def __call__(self, free: int) -> list[int]:
        if self.first is not None:
            first, self.first = self.first, None
            return first
        now = time.monotonic()
        if self.worker.stopping or now >= self.until or now - self.looked < self.worker.poll_seconds:
            return []
        self.looked = now
        try:
            self.worker.maintain()
            return [song.id for song in queue.claim_more(self.claim, free)]
        except Exception:  # noqa: BLE001 (whatever went wrong, the songs being written are not its victims)
            log.exception("could not take more songs into the running batch")
            return []


class _Heartbeat:
    """Renews a claim's lease from the token callback, at most every `every` seconds."""

    def __init__(self, claim: queue.Claim, every: float):
        self.claim = claim
        self.every = max(0.2, every)
        self.last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            queue.heartbeat(self.claim)


def _configured_factory() -> Callable[[str | None], Any]:
    if settings.WORKER_GENERATOR:
        module, _, name = settings.WORKER_GENERATOR.partition(":")
        return getattr(importlib.import_module(module), name)
    return _engine_generator


def _engine_generator(model: str | None) -> Any:
    from billionsongs.model.generate import Generator

    # Name $BILLIONSONGS_MODEL explicitly: the engine labels any unnamed model "bundled".
    return Generator(model or os.environ.get("BILLIONSONGS_MODEL") or None)
