"""Live writing: the worker publishes each song's text as it is written; the song page streams it.

Writer side (`Publisher`), used by the worker from the engine's `on_token` callback: tokens are
collected per song and, at most every PROGRESS_SECONDS, decoded and published:
- database backend (embedded): the Song row's `partial` and `progress` columns (one UPDATE per song
  per interval, by the worker process that holds the claim);
- Redis backend (scale-out): a PUBLISH on the song's channel plus the latest state under a key with a
  short TTL, so a page opened mid-song starts from the text so far.

Reader side (`current`, `events`): the stream view reads these without holding locks, for a bounded
time (see `stream.py`).
"""

import json
import logging
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, connection

from billionsongs.lyrics.document import live_parts
from billionsongs.web.songs.models import Song, Status

log = logging.getLogger("billionsongs.progress")

PARTIAL_TTL = 900  # seconds a song's live text stays in Redis after its last update
MAX_TOKENS_KEY = "billionsongs:max-tokens"  # the worker's longest song, for the progress bar (DB mode)


def _use_redis() -> bool:
    return settings.QUEUE_BACKEND == "rq"


class Publisher:
    """Collects tokens for the songs of one running batch and publishes their text every PROGRESS_SECONDS."""

    def __init__(self, ids: list[int], decode: Callable[[list[int]], str], max_tokens: int | None,
                 on_flush: Callable[[], None] | None = None):
        self.tokens: dict[int, list[int]] = {i: [] for i in ids}
        self.decode = decode
        self.max_tokens = max_tokens
        self.dirty: set[int] = set()
        self.on_flush = on_flush
        self.last = time.monotonic()

    def token(self, song_id: int, token_id: int) -> None:
        self.tokens.setdefault(song_id, []).append(token_id)
        self.dirty.add(song_id)
        if time.monotonic() - self.last >= settings.PROGRESS_SECONDS:
            self.flush()

    def forget(self, song_id: int) -> None:
        """The song is stored: publish nothing more for it (its stored text supersedes the live one)."""
        self.tokens.pop(song_id, None)
        self.dirty.discard(song_id)

    def flush(self) -> None:
        self.last = time.monotonic()
        states = {i: (self.decode(self.tokens[i]), len(self.tokens[i])) for i in self.dirty}
        self.dirty.clear()
        try:
            if states:
                publish(states, self.max_tokens)
            if self.on_flush:
                self.on_flush()
        except Exception as exc:  # noqa: BLE001 (live text is best effort; the song itself is unaffected)
            log.warning("could not publish live text: %s", exc)


def publish(states: dict[int, tuple[str, int]], max_tokens: int | None) -> None:
    """Publish {song_id: (text so far, tokens so far)}."""
    if _use_redis():
        from billionsongs.web.songs.backends import key, redis_client

        pipe = redis_client().pipeline(transaction=False)
        for song_id, (text, tokens) in states.items():
            message = json.dumps({"text": text, "tokens": tokens, "max_tokens": max_tokens})
            pipe.set(key("partial", song_id), message, ex=PARTIAL_TTL)
            pipe.publish(key("song", song_id), message)
        pipe.execute()
    else:
        for song_id, (text, tokens) in states.items():
            Song.objects.filter(id=song_id, status=Status.GENERATING).update(partial=text, progress=tokens)


def finished(ids: list[int]) -> None:
    """Tell open streams that these songs are stored (RQ mode; the DB reader sees the status change)."""
    if not _use_redis() or not ids:
        return
    from billionsongs.web.songs.backends import key, redis_client

    try:
        pipe = redis_client().pipeline(transaction=False)
        for song_id in ids:
            pipe.publish(key("song", song_id), json.dumps({"done": True}))
            pipe.delete(key("partial", song_id))
        pipe.execute()
    except Exception as exc:  # noqa: BLE001
        log.warning("could not announce finished songs: %s", exc)


def shown(state: dict) -> dict:
    """A live state as pages show it: the text split into "title" and "text" (lyrics so far)."""
    title, text = live_parts(state.get("text", ""))
    return {**state, "title": title, "text": text}


def current(song: Song) -> dict:
    """The latest live state of a song being written, as `shown`: {"title", "text", "tokens", "max_tokens"}."""
    if _use_redis():
        from billionsongs.web.songs.backends import key, redis_client

        try:
            raw = redis_client().get(key("partial", song.id))
        except Exception:  # noqa: BLE001 (Redis down: the page still works, without the text so far)
            raw = None
        return shown(json.loads(raw) if raw else {"text": "", "tokens": 0, "max_tokens": None})
    return shown({"text": song.partial, "tokens": song.progress, "max_tokens": cache.get(MAX_TOKENS_KEY)})


def events(song_id: int, seconds: float) -> Iterator[tuple[str, dict]]:
    """("progress", state) whenever the text changes and finally ("done", {}) or ("failed", {}) or nothing
    (time is up), for at most `seconds`."""
    deadline = time.monotonic() + seconds
    if _use_redis():
        yield from _redis_events(song_id, deadline)
    else:
        yield from _db_events(song_id, deadline)


def _refresh_connection() -> None:
    """Long-lived stream loops drop broken connections between reads (not inside a transaction)."""
    if not connection.in_atomic_block:
        close_old_connections()


def _status(song_id: int) -> tuple[str | None, Song | None]:
    song = Song.objects.filter(pk=song_id).only("status", "partial", "progress", "hidden").first()
    return (song.status if song else None), song


def final_event(status: str | None) -> tuple[str, dict] | None:
    """("done", {}) or ("failed", {}) for a song that is no longer being written (None: no such song)."""
    if status == Status.DONE:
        return "done", {}
    if status in (Status.FAILED, None):
        return "failed", {}
    return None


def _db_events(song_id: int, deadline: float) -> Iterator[tuple[str, dict]]:
    last = -1
    while True:
        _refresh_connection()
        status, song = _status(song_id)
        if (final := final_event(status)) is not None:
            yield final
            return
        if song.progress != last:
            last = song.progress
            yield "progress", current(song)
        if time.monotonic() >= deadline:
            return
        time.sleep(min(settings.PROGRESS_SECONDS, max(0.05, deadline - time.monotonic())))


def _redis_events(song_id: int, deadline: float) -> Iterator[tuple[str, dict]]:
    from billionsongs.web.songs.backends import key, redis_client

    pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(key("song", song_id))  # subscribe first, then read the state: nothing falls between
        status, song = _status(song_id)
        if (final := final_event(status)) is not None:
            yield final
            return
        state = current(song)
        if state["tokens"]:
            yield "progress", state
        checked = time.monotonic()
        while (left := deadline - time.monotonic()) > 0:
            message = pubsub.get_message(timeout=min(left, 1.0))
            if message is not None:
                data = json.loads(message["data"])
                if data.get("done"):
                    status, _ = _status(song_id)
                    yield final_event(status) or ("done", {})
                    return
                yield "progress", shown(data)
            elif time.monotonic() - checked > 5:  # a missed "done" (Redis hiccup) is caught from the DB
                checked = time.monotonic()
                _refresh_connection()
                status, _ = _status(song_id)
                if (final := final_event(status)) is not None:
                    yield final
                    return
    finally:
        pubsub.close()
