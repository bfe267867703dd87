"""Connections for the scale-out mode: one Redis client per process, key names, and waking workers.

Redis only carries signals and short-lived state (job wake-ups, the pool, live text); the Song table
stays the source of truth, so a lost Redis message or a flushed Redis delays songs but never loses one.
"""

import logging
import threading

from django.conf import settings

log = logging.getLogger("billionsongs.service")

_lock = threading.Lock()
_redis = None


def redis_client():
    """The process's Redis client (thread-safe connection pool; reconnects on its own after errors)."""
    global _redis
    if _redis is None:
        with _lock:
            if _redis is None:
                import redis

                _redis = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=30,
                                              health_check_interval=15, retry_on_timeout=True)
    return _redis


def reset_redis_client() -> None:
    """Forget the client (after a fork, or in tests switching REDIS_URL)."""
    global _redis
    _redis = None


def key(*parts: object) -> str:
    return ":".join([settings.REDIS_PREFIX, *map(str, parts)])


def rq_queue():
    from rq import Queue

    return Queue(settings.RQ_QUEUE_NAME, connection=redis_client())


def notify_workers(reason: str = "song requested") -> None:
    """Wake a worker (RQ mode): enqueue one "write a batch" job. No-op with the database queue.

    Failure to reach Redis is logged, not raised: the song is pending in the database and an idle
    worker's periodic sweep (WORKER_TICK_SECONDS) finds it anyway.
    """
    if settings.QUEUE_BACKEND != "rq":
        return
    try:
        rq_queue().enqueue("billionsongs.web.songs.tasks.write_batch", job_timeout=settings.WORKER_JOB_TIMEOUT,
                           result_ttl=0, failure_ttl=24 * 3600, description=reason)
    except Exception as exc:  # noqa: BLE001 (redis.ConnectionError and friends: the DB sweep covers it)
        log.warning("could not wake a worker through Redis (%s); the song waits for the next sweep", exc)
