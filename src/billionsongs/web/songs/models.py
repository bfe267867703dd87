"""The Song row: one per ID ever requested, holding the generated song or where it is in the queue."""

from django.db import models


def group_verses(lines: list[str], shown: list) -> list[list]:
    """`shown[i]` (how line i is displayed) grouped into verses at the blank lines of `lines`."""
    verses, current = [], []
    for line, item in zip(lines, shown, strict=True):
        if line.strip():
            current.append(item)
        elif current:
            verses.append(current)
            current = []
    if current:
        verses.append(current)
    return verses


class Status(models.TextChoices):
    PENDING = "pending", "waiting to be written"
    GENERATING = "generating", "being written"
    DONE = "done", "written"
    FAILED = "failed", "no song"


class SongQuerySet(models.QuerySet):
    def visible(self) -> "SongQuerySet":
        """Songs a visitor may see: written and not hidden by an admin."""
        return self.filter(status=Status.DONE, hidden=False)


class Song(models.Model):
    """A song ID and, once written, its title and lyrics.

    The ID is the primary key (a signed 64-bit integer holds 0 … 2**63-1), so "one row per ID" is enforced
    by the database and concurrent requests for a new ID create a single pending row. Vote counts are
    denormalised here (kept in step by `billionsongs.web.votes.services`) so the Top chart and the vote
    widget read one row instead of counting votes.
    """

    id = models.BigIntegerField(primary_key=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    title = models.CharField(max_length=200, blank=True)
    lyrics = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="name of the model that wrote it")
    tokens = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=200, blank=True, help_text="why no song was produced")
    hidden = models.BooleanField(default=False, help_text="hidden songs answer 404 and leave Top and random picks")
    up_votes = models.PositiveIntegerField(default=0)
    down_votes = models.PositiveIntegerField(default=0)
    score = models.IntegerField(default=0, help_text="up votes minus down votes")
    created = models.DateTimeField(auto_now_add=True)
    generated = models.DateTimeField(null=True, blank=True)
    # Queue bookkeeping: which worker claim holds the row, since when, and how often it was tried.
    claim = models.CharField(max_length=64, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # 0: a visitor is waiting for it; 1: written ahead for the pool (claimed after every visitor's song).
    priority = models.PositiveSmallIntegerField(default=0)
    # Quality gate verdict once written: "" passed (may enter the pool), else why not (still reachable by ID).
    quality = models.CharField(max_length=40, blank=True)
    # Live writing (embedded mode): the text so far and its token count, cleared once the song is stored.
    partial = models.TextField(blank=True)
    progress = models.PositiveIntegerField(default=0)

    objects = SongQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["status", "priority", "created"], name="song_queue"),
            models.Index(fields=["status", "hidden", "score"], name="song_chart"),
        ]

    def __str__(self) -> str:
        return f"{self.id}: {self.title or self.get_status_display()}"

    @property
    def is_ready(self) -> bool:
        return self.status == Status.DONE

    @property
    def is_waiting(self) -> bool:
        return self.status in (Status.PENDING, Status.GENERATING)

    def verses(self) -> list[list[str]]:
        """Lyrics as verses (blank-line separated) of lines, for markup that keeps the song's shape."""
        lines = self.lyrics.splitlines()
        return group_verses(lines, [line.rstrip() for line in lines])

    def summary(self, max_chars: int = 160) -> str:
        """The first lines, for link previews (OpenGraph / Twitter descriptions)."""
        text = " / ".join(line.strip() for line in self.lyrics.splitlines() if line.strip())
        return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


class PoolEntry(models.Model):
    """A song in the pregenerated pool (database backend; the Redis backend keeps the same in a hash)."""

    song = models.OneToOneField(Song, on_delete=models.CASCADE, primary_key=True, related_name="pool_entry")
    shows = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.song_id} shown {self.shows}×"
