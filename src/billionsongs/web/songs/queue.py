"""The generation queue, kept in the Song table: request, claim, complete, release, reset.

Every step is a single conditional UPDATE, so any number of web processes and workers can share the
table without locks held across generation: a row moves pending → generating only for the worker
whose UPDATE matched it, and only that claim may complete or release it.
"""

import logging
import os
import re
import secrets
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billionsongs.ids import MAX_SONG_ID
from billionsongs.web.songs import progress, quality
from billionsongs.web.songs.backends import notify_workers
from billionsongs.web.songs.models import Song, Status

log = logging.getLogger("billionsongs.queue")

VISITOR, POOL = 0, 1  # Song.priority: a visitor's song is always claimed before songs written for the pool
CRASHED = "generation crashed"
# C0 control characters other than tab and newline: PostgreSQL refuses NUL in text, and none belong in lyrics.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _clean(text: str) -> str:
    return _CONTROL.sub("", text)


@dataclass
class Claim:
    """Rows one worker has taken; `token` proves ownership when completing or releasing them."""

    token: str
    songs: list[Song] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [song.id for song in self.songs]


def request_song(song_id: int) -> Song:
    """The row for `song_id`, queued as pending if it is new.

    The ID is the primary key, so when several requests ask for a new ID at once exactly one INSERT
    wins and the others read its row: one generation per ID.
    """
    song, created = Song.objects.get_or_create(id=song_id)
    if created:
        notify_workers(f"song {song_id} requested")
    elif song.status == Status.PENDING and song.priority != VISITOR:
        # Queued for the pool, and now a visitor waits for it: move it to the front.
        Song.objects.filter(id=song_id, status=Status.PENDING).update(priority=VISITOR)
    return song


def enqueue_fresh(count: int) -> int:
    """Queue `count` new random IDs to be written for the pool (behind every visitor's song)."""
    ids = {secrets.randbelow(MAX_SONG_ID + 1) for _ in range(count)}
    rows = Song.objects.bulk_create([Song(id=i, priority=POOL) for i in ids], ignore_conflicts=True)
    if rows:
        notify_workers("pool refill")
    return len(rows)


def pending(priority: int | None = None) -> int:
    rows = Song.objects.filter(status=Status.PENDING)
    return (rows if priority is None else rows.filter(priority=priority)).count()


def _claim_token() -> str:
    # Who holds a claim is visible in the table (host:pid), which helps when a worker dies.
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:16]}"


def claim_batch(limit: int) -> Claim:
    """Take up to `limit` pending rows for this worker: visitors' songs first, then the oldest."""
    claim = Claim(token=_claim_token())
    claim_more(claim, limit)
    return claim


def claim_more(claim: Claim, limit: int) -> list[Song]:
    """Take up to `limit` more pending rows under an existing claim (a running batch's free rows);
    returns the rows taken, which are also added to `claim.songs`."""
    pending = Song.objects.filter(status=Status.PENDING).order_by("priority", "created", "id")
    ids = list(pending.values_list("id", flat=True)[:limit])
    if not ids:
        return []
    # Only rows still pending are taken: if another worker got there first it keeps them. One transaction,
    # so rows are never taken without this claim knowing it (an UPDATE that stuck and a SELECT that failed).
    with transaction.atomic():
        Song.objects.filter(id__in=ids, status=Status.PENDING).update(
            status=Status.GENERATING, claim=claim.token, claimed_at=timezone.now(), attempts=F("attempts") + 1)
        taken = list(Song.objects.filter(id__in=ids, claim=claim.token, status=Status.GENERATING).order_by("id"))
    claim.songs += taken
    return taken


def complete(claim: Claim, results: list) -> int:
    """Store generated songs (objects with id, title, lyrics, model, tokens, error); returns rows saved.

    Each written song gets the quality gate's verdict; those that pass join the pool while it is
    below its target. Open live streams are told the songs are ready.
    """
    now = timezone.now()
    saved, passed = 0, []
    with transaction.atomic():
        for result in results:
            fields = {"model": result.model[:200], "tokens": result.tokens, "generated": now, "claim": "",
                      "claimed_at": None, "partial": "", "progress": 0}
            if result.error:
                fields.update(status=Status.FAILED, error=result.error[:200], title="", lyrics="", quality="")
            else:
                title = _clean(result.title)[:200].strip() or "Untitled"
                lyrics = _clean(result.lyrics)
                verdict = quality.check(title, lyrics)
                fields.update(status=Status.DONE, error="", title=title, lyrics=lyrics, quality=verdict)
            rows = Song.objects.filter(id=result.id, claim=claim.token, status=Status.GENERATING).update(**fields)
            saved += rows
            if rows and not result.error and not fields["quality"]:
                passed.append(result.id)
    if passed:
        _add_to_pool(passed)
    progress.finished([r.id for r in results])
    return saved


def _add_to_pool(ids: list[int]) -> None:
    from billionsongs.web.songs.pool import get_pool

    try:
        pool = get_pool()
        room = pool.deficit()
        if room:
            pool.add(ids[:room])
    except Exception as exc:  # noqa: BLE001 (Redis away: the songs are stored; `warm` can pool them later)
        log.warning("could not add %d songs to the pool: %s", len(ids), exc)


def heartbeat(claim: Claim) -> int:
    """Renew the lease on this claim's rows (see reset_stale); returns how many are still held."""
    return Song.objects.filter(claim=claim.token, status=Status.GENERATING).update(claimed_at=timezone.now())


def release(claim: Claim, max_attempts: int) -> None:
    """Give rows back after a failed batch: queued again, or failed for good after `max_attempts` tries."""
    mine = Song.objects.filter(claim=claim.token, status=Status.GENERATING)  # stored ones no longer match
    with transaction.atomic():
        mine.filter(attempts__gte=max_attempts).update(status=Status.FAILED, error=CRASHED, claim="",
                                                       claimed_at=None, generated=timezone.now())
        mine.update(status=Status.PENDING, claim="", claimed_at=None, partial="", progress=0)


def reset_stale(older_than: timedelta | None) -> int:
    """Queue again rows left "generating" by a worker that died (its lease, renewed by `heartbeat`
    while it writes, is older than `older_than`); None resets every such row.

    `None` is for a worker that knows it is the only one (the embedded `serve` set-up), so anything
    still generating when it starts was orphaned by a previous run.
    """
    rows = Song.objects.filter(status=Status.GENERATING)
    if older_than is not None:
        rows = rows.filter(claimed_at__lt=timezone.now() - older_than)
    return rows.update(status=Status.PENDING, claim="", claimed_at=None, partial="", progress=0)
