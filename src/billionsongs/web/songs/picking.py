"""Which song "/" shows: the random-song provider.

As in the original, picks come from the pregenerated pool and from the top-voted songs, 3:1 by default
(PICK_WEIGHTS, e.g. "pool=3,top=1,fresh=0"); a top-voted song is drawn with probability proportional to
its score. "fresh" (a brand-new ID, written on request) is off by default. With every weight 0, picks
are any written song.

A dry pool never hangs a request: an empty source falls through to the others, then to any written
song, and only when nothing is written yet to a new ID, whose page says clearly that it is being written.
"""

import logging
import random
import secrets
from typing import NamedTuple

from django.conf import settings
from django.core.cache import cache

from billionsongs.ids import MAX_SONG_ID
from billionsongs.web.songs.models import Song

log = logging.getLogger("billionsongs.picking")

TOP_CACHE_KEY = "billionsongs:top-picks"
TOP_CACHE_SECONDS = 60


class Pick(NamedTuple):
    """A song to show next. `visible`: this pick just checked that the song is written and visible, so the
    redirect need not ask again (a top-voted pick comes from a list cached for a minute, so it may be
    stale; a fresh ID is not written yet)."""

    song_id: int
    visible: bool


def random_pick(exclude: int | None = None) -> Pick:
    """The song to show next (see the module docstring)."""
    weights = settings.PICK_WEIGHTS
    sources = [name for name in ("pool", "top", "fresh") if weights.get(name, 0) > 0]
    first = random.choices(sources, weights=[weights[name] for name in sources])[0] if sources else None
    for source in [first] * (first is not None) + [s for s in ("pool", "top") if s != first]:
        picker, checked = _PICKERS[source]
        song_id = picker(exclude)
        if song_id is not None:
            return Pick(song_id, checked)
    song_id = _any_written(exclude)
    return Pick(_fresh(exclude), False) if song_id is None else Pick(song_id, True)


def _from_pool(exclude: int | None) -> int | None:
    from billionsongs.web.songs.pool import get_pool

    try:
        pool = get_pool()
        for _ in range(3):
            song_id = pool.take()
            if song_id is None:
                return None
            if song_id != exclude and Song.objects.visible().filter(pk=song_id).exists():
                return song_id
            if song_id != exclude:
                pool.remove([song_id])  # hidden by an admin since it was pooled
    except Exception as exc:  # noqa: BLE001 (Redis away: fall through to the other sources)
        log.warning("pool unavailable: %s", exc)
    return None


def _top_candidates() -> list[tuple[int, int]]:
    top = cache.get(TOP_CACHE_KEY)
    if top is None:
        top = list(Song.objects.visible().filter(score__gt=0).order_by("-score", "id")
                   .values_list("id", "score")[: settings.TOP_PICK_SIZE])
        cache.set(TOP_CACHE_KEY, top, TOP_CACHE_SECONDS)
    return top


def _from_top(exclude: int | None) -> int | None:
    top = [(song_id, score) for song_id, score in _top_candidates() if song_id != exclude]
    if not top:
        return None
    return random.choices([s for s, _ in top], weights=[score for _, score in top])[0]


def _any_written(exclude: int | None) -> int | None:
    """Any visible song: the first at or after a random ID between the lowest and highest written ones
    (index seeks only, so it stays fast with millions of rows; fair when IDs are spread out, as random
    picks and pool refills make them)."""
    visible = Song.objects.visible()
    if exclude is not None:
        visible = visible.exclude(pk=exclude)
    ids = visible.order_by("pk").values_list("pk", flat=True)
    low, high = ids.first(), visible.order_by("-pk").values_list("pk", flat=True).first()
    if low is None:
        return None
    start = low + secrets.randbelow(high - low + 1)
    song_id = ids.filter(pk__gte=start).first()
    return ids.first() if song_id is None else song_id


def _fresh(exclude: int | None) -> int:
    while True:
        song_id = secrets.randbelow(MAX_SONG_ID + 1)
        if song_id != exclude:
            return song_id


# source -> (picker, whether its pick has just been checked visible: `Pick.visible`)
_PICKERS = {"pool": (_from_pool, True), "top": (_from_top, False), "fresh": (_fresh, False)}

