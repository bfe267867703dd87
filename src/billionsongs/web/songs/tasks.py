"""The scale-out worker: RQ delivers "write a batch" jobs; the Song table says which songs.

A job carries no song IDs. `write_batch` claims whatever is pending (visitors' songs first) through the
same `Worker.run_once` as the database-polling worker, so a job that arrives twice, late, or never is
harmless: duplicates find nothing to claim, and lost ones are covered by the idle sweep below.

`billionsongs worker` with BILLIONSONGS_QUEUE=rq runs `run_rq_worker`: an RQ `SimpleWorker` (jobs run in
this process, so the model is loaded once, not per job) whose idle wait wakes every
WORKER_TICK_SECONDS to run `Worker.maintain` (expired leases, pool refill) and to enqueue a job if the
table has pending songs. RQ gives the rest: blocking dequeue, worker registry and heartbeats, Redis
reconnection with back-off, and warm shutdown (SIGTERM lets the running batch finish the songs it holds;
a second SIGTERM raises SystemExit inside it, and `run_once` returns the batch to the queue).
"""

import logging

from django.conf import settings
from django.db import close_old_connections

from billionsongs.web.songs import queue
from billionsongs.web.songs.backends import notify_workers, redis_client, rq_queue

log = logging.getLogger("billionsongs.worker")

_worker = None  # the Worker of this process, set by run_rq_worker


def write_batch() -> int:
    """RQ job: run one batch of pending songs (it takes songs requested meanwhile, for up to
    WORKER_RUN_SECONDS); queues a follow-up job while more are pending."""
    if _worker is None:
        raise RuntimeError("write_batch runs inside `billionsongs worker` (BILLIONSONGS_QUEUE=rq)")
    close_old_connections()
    try:
        took = _worker.run_once()
        if took and queue.pending():
            notify_workers("more songs pending")
        return took
    finally:
        close_old_connections()


def run_rq_worker(worker) -> int:
    global _worker
    from rq import SimpleWorker

    class SweepingWorker(SimpleWorker):
        def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
            tick = max(1, int(settings.WORKER_TICK_SECONDS))
            while True:
                if worker.stopping:  # SIGTERM reached our handler before RQ installed its own
                    return None  # no job: RQ's loop ends cleanly
                result = super().dequeue_job_and_maintain_ttl(tick, max_idle_time=tick)
                if result is not None or self._stop_requested:
                    return result
                _sweep(worker)

        def request_stop(self, signum, frame):
            worker.stopping = True  # the running batch takes no more songs, so the warm shutdown is one drain
            super().request_stop(signum, frame)

    _worker = worker
    worker._install_signal_handlers()  # SIGTERM while loading the model: stop before taking any job
    if not worker._with_retries(worker.start):
        return 0 if worker.stopping else 1
    if worker.stopping:
        return 0
    rq_worker = SweepingWorker([rq_queue()], connection=redis_client())
    log.info("RQ worker %s listening on queue %r", rq_worker.name, settings.RQ_QUEUE_NAME)
    rq_worker.work(logging_level=logging.getLevelName(log.getEffectiveLevel()))
    return 0


def _sweep(worker) -> None:
    """Idle tick: housekeeping, and a wake-up job for songs pending without one (lost message)."""
    from rq.exceptions import StopRequested

    close_old_connections()
    try:
        worker.maintain(force=True)
        if queue.pending():
            notify_workers("sweep found pending songs")
    except StopRequested:  # RQ's SIGTERM handler raises this when idle: it must reach RQ's loop
        raise
    except Exception as exc:  # noqa: BLE001 (database away: retried on the next tick)
        log.warning("queue sweep failed: %s", exc)
        close_old_connections()
        from django.db import connections

        connections.close_all()
