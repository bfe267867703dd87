"""Casting votes and keeping each song's counts right under concurrent voting."""

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Q

from billionsongs.web.songs.models import Song
from billionsongs.web.votes.models import Vote

TOP_CACHE_KEY = "votes:top"
VOTE_VALUES = {"up": Vote.UP, "down": Vote.DOWN, "clear": 0}
PENDING_VOTE = "votes:pending"  # session key: [song id, "up" or "down", unix time], clicked before logging in
# A vote clicked before logging in counts only if the login follows within this long: one left behind in a
# browser must not be cast by a login days later (another person's, on a shared computer).
PENDING_VOTE_SECONDS = 15 * 60


def cast_vote(user, song_id: int, value: int) -> Song:
    """Set `user`'s vote on a song to +1, -1 or 0 (no vote) and return the song with fresh counts.

    The song row is locked first (SELECT … FOR UPDATE on PostgreSQL; SQLite runs the whole transaction
    with the write lock held), so votes on one song apply one at a time and the counts are recounted
    from the Vote rows rather than incremented: they cannot drift, whatever arrives concurrently.
    """
    if value not in (Vote.UP, Vote.DOWN, 0):
        raise ValueError(f"vote must be 1, -1 or 0, not {value!r}")
    with transaction.atomic():
        song = Song.objects.select_for_update().get(pk=song_id)
        if value:
            Vote.objects.update_or_create(user=user, song=song, defaults={"value": value})
        else:
            Vote.objects.filter(user=user, song=song).delete()
        recount(song)
    return song


def recount(song: Song) -> None:
    """Store the song's up/down/score from its Vote rows (call inside the transaction that changed them)."""
    counts = Vote.objects.filter(song_id=song.pk).aggregate(up=Count("pk", filter=Q(value=Vote.UP)),
                                                      down=Count("pk", filter=Q(value=Vote.DOWN)))
    song.up_votes, song.down_votes = counts["up"], counts["down"]
    song.score = song.up_votes - song.down_votes
    Song.objects.filter(pk=song.pk).update(up_votes=song.up_votes, down_votes=song.down_votes, score=song.score)


def user_vote(user, song_id: int) -> int:
    """The user's vote on the song: 1, -1, or 0 for none (and for anonymous visitors)."""
    if not user.is_authenticated:
        return 0
    return Vote.objects.filter(user=user, song_id=song_id).values_list("value", flat=True).first() or 0


def top_songs(limit: int = 10, timeout: int = 300) -> list[dict]:
    """The chart: visible songs with the highest positive score, computed at most once per `timeout`."""
    def compute() -> list[dict]:
        rows = (Song.objects.visible().filter(score__gt=0).order_by("-score", "-up_votes", "pk")
                .values("id", "title", "up_votes", "down_votes", "score")[:limit])
        return list(rows)

    return cache.get_or_set(TOP_CACHE_KEY, compute, timeout)


def invalidate_top() -> None:
    cache.delete(TOP_CACHE_KEY)
