"""The generation worker: takes pending songs from the queue and writes them in batches.

Runs as its own process (`billionsongs worker`, or the child that `billionsongs serve` starts) so that
generation never blocks a web request. The loop is deliberately plain — claim, generate, complete —
so a scale-out deployment can drive `Worker.run_once` from a task queue instead of polling.
"""

import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from billionsongs.web.songs import queue

log = logging.getLogger("billionsongs.worker")


class Worker:
    """One generator and the loop that feeds it from the queue.

    `generator_factory(model)` must return an object with `generate(ids, batch_size=...)` and
    `model_name`; by default the engine's `Generator`, built on first use so start-up stays fast.
    """

    def __init__(self, model: str | None = None, *, batch_size: int | None = None, poll_seconds: float | None = None,
                 stale_after: timedelta | None = None, reset_all_on_start: bool = False,
                 parent_pid: int | None = None, generator_factory: Callable[[str | None], Any] | None = None):
        self.model = model
        self.batch_size = batch_size or settings.WORKER_BATCH_SIZE
        self.poll_seconds = settings.WORKER_POLL_SECONDS if poll_seconds is None else poll_seconds
        self.stale_after = stale_after or timedelta(seconds=settings.WORKER_STALE_SECONDS)
        self.reset_all_on_start = reset_all_on_start
        self.parent_pid = parent_pid
        self.generator_factory = generator_factory or _engine_generator
        self.generator: Any = None
        self.stopping = False
        self.written = 0

    def load(self) -> None:
        """Load the model now (raises the engine's ModelLoadError with a readable message)."""
        if self.generator is None:
            started = time.perf_counter()
            self.generator = self.generator_factory(self.model)
            log.info("model %s loaded in %.1f s", self.generator.model_name, time.perf_counter() - started)

    def run_once(self) -> int:
        """Claim one batch, write it and store it; returns how many songs it took (0: queue empty)."""
        claim = queue.claim_batch(self.batch_size)
        if not claim.songs:
            return 0
        try:
            self.load()
            started = time.perf_counter()
            results = self.generator.generate(claim.ids, batch_size=self.batch_size)
        except BaseException:
            queue.release(claim, settings.WORKER_MAX_ATTEMPTS)
            raise
        saved = queue.complete(claim, results)
        self.written += saved
        log.info("wrote %d songs in %.1f s (%s)", saved, time.perf_counter() - started,
                 ", ".join(f"{r.id}{' ' + r.error if r.error else ''}" for r in results))
        return len(claim.songs)

    def run(self, *, until_empty: bool = False) -> int:
        """Poll the queue until stopped (SIGTERM/SIGINT finish the current batch first); returns an exit code."""
        previous = self._install_signal_handlers()
        try:
            return self._loop(until_empty)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _loop(self, until_empty: bool) -> int:
        try:
            self.load()
        except Exception as exc:  # a missing or corrupt model: say so once instead of failing every batch
            log.error("worker cannot start: %s", exc)
            return 1
        reset = queue.reset_stale(None if self.reset_all_on_start else self.stale_after)
        if reset:
            log.info("re-queued %d songs left unfinished by a previous worker", reset)
        last_stale_check = time.monotonic()
        while not self.stopping:
            if self._parent_gone():
                log.info("parent process exited; worker stopping")
                break
            if not connection.in_atomic_block:  # (tests run the loop inside a transaction)
                close_old_connections()  # drop connections that are too old or broken, so the loop reconnects
            try:
                took = self.run_once()
            except Exception:
                log.exception("batch failed; its songs were returned to the queue")
                took = 0
                time.sleep(min(30.0, max(1.0, self.poll_seconds * 10)))
            if took:
                continue
            if until_empty:
                break
            if time.monotonic() - last_stale_check > 60:
                queue.reset_stale(self.stale_after)
                last_stale_check = time.monotonic()
            time.sleep(self.poll_seconds)
        return 0

    def stop(self, *_: object) -> None:
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


def _engine_generator(model: str | None) -> Any:
    from billionsongs.model.generate import Generator

    # Name $BILLIONSONGS_MODEL explicitly: the engine labels any unnamed model "bundled".
    return Generator(model or os.environ.get("BILLIONSONGS_MODEL") or None)
