"""The generation queue, kept in the Song table: request, claim, complete, release, reset.

Every step is a single conditional UPDATE, so any number of web processes and workers can share the
table without locks held across generation: a row moves pending → generating only for the worker
whose UPDATE matched it, and only that claim may complete or release it.
"""

import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billionsongs.web.songs.models import Song, Status

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
    song, _ = Song.objects.get_or_create(id=song_id)
    return song


def claim_batch(limit: int) -> Claim:
    """Take up to `limit` of the oldest pending rows for this worker."""
    claim = Claim(token=uuid.uuid4().hex)
    pending = Song.objects.filter(status=Status.PENDING).order_by("created", "id")
    ids = list(pending.values_list("id", flat=True)[:limit])
    if not ids:
        return claim
    # Only rows still pending are taken: if another worker got there first it keeps them.
    Song.objects.filter(id__in=ids, status=Status.PENDING).update(
        status=Status.GENERATING, claim=claim.token, claimed_at=timezone.now(), attempts=F("attempts") + 1)
    claim.songs = list(Song.objects.filter(id__in=ids, claim=claim.token, status=Status.GENERATING).order_by("id"))
    return claim


def complete(claim: Claim, results: list) -> int:
    """Store generated songs (objects with id, title, lyrics, model, tokens, error); returns rows saved."""
    now = timezone.now()
    saved = 0
    with transaction.atomic():
        for result in results:
            fields = {"model": result.model[:200], "tokens": result.tokens, "generated": now, "claim": "",
                      "claimed_at": None}
            if result.error:
                fields.update(status=Status.FAILED, error=result.error[:200], title="", lyrics="")
            else:
                fields.update(status=Status.DONE, error="", title=_clean(result.title)[:200].strip() or "Untitled",
                              lyrics=_clean(result.lyrics))
            saved += Song.objects.filter(id=result.id, claim=claim.token, status=Status.GENERATING).update(**fields)
    return saved


def release(claim: Claim, max_attempts: int) -> None:
    """Give rows back after a failed batch: queued again, or failed for good after `max_attempts` tries."""
    mine = Song.objects.filter(id__in=claim.ids, claim=claim.token, status=Status.GENERATING)
    with transaction.atomic():
        mine.filter(attempts__gte=max_attempts).update(status=Status.FAILED, error=CRASHED, claim="",
                                                       claimed_at=None, generated=timezone.now())
        mine.update(status=Status.PENDING, claim="", claimed_at=None)


def reset_stale(older_than: timedelta | None) -> int:
    """Queue again rows left "generating" by a worker that died; None resets every such row.

    `None` is for a worker that knows it is the only one (the embedded `serve` set-up), so anything
    still generating when it starts was orphaned by a previous run.
    """
    rows = Song.objects.filter(status=Status.GENERATING)
    if older_than is not None:
        rows = rows.filter(claimed_at__lt=timezone.now() - older_than)
    return rows.update(status=Status.PENDING, claim="", claimed_at=None)
