"""Which song "/" shows: the random-song provider.

Kept to one function so the generation service (issue 5) can swap in its pregenerated pool and
top-voted mix without touching the views.
"""

import random
import secrets

from django.conf import settings

from billionsongs.ids import MAX_SONG_ID
from billionsongs.web.songs.models import Song


def random_song_id(exclude: int | None = None) -> int:
    """A song ID to show next: a written, visible song, or (FRESH_SONG_SHARE of the time) a new ID.

    Written songs are picked uniformly by offset, which is fine for thousands of rows; the pool that
    replaces this keeps IDs in memory instead.
    """
    visible = Song.objects.visible()
    if exclude is not None:
        visible = visible.exclude(pk=exclude)
    if random.random() >= settings.FRESH_SONG_SHARE:
        count = visible.count()
        if count:
            try:
                return visible.order_by("pk").values_list("pk", flat=True)[secrets.randbelow(count)]
            except IndexError:  # rows hidden or removed since the count: fall back to a new ID
                pass
    while True:
        song_id = secrets.randbelow(MAX_SONG_ID + 1)
        if song_id != exclude:
            return song_id
