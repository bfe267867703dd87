"""A written song's karaoke track (billionsongs.music) for its page and /song/<id>/karaoke.mid.

Both are pure functions of (id, title, lyrics), so they are as cacheable as the page. The music code is
an extra: if it ever fails on some lyrics, the page falls back to plain lyrics without a player and the
MIDI route answers 404, rather than either becoming a 500.
"""

import logging

from django.utils.safestring import SafeString, mark_safe

from billionsongs.music import karaoke_bytes, karaoke_markup
from billionsongs.web.songs.models import Song, group_verses

log = logging.getLogger(__name__)


def karaoke_verses(song: Song) -> list[list[SafeString]] | None:
    """The lyrics grouped into verses of lines exactly as `Song.verses()` groups them, each line as the
    player's syllable markup (`<span class="syl" data-t=…>`, text unchanged). None if it cannot be made."""
    try:
        markup = karaoke_markup(song.id, song.title, song.lyrics)
    except Exception:
        log.exception("karaoke markup failed for song %s", song.id)
        return None
    lines = song.lyrics.splitlines()
    # The markup is one entry per lyrics.splitlines() line joined by "\n" (no line holds a line break).
    marked = markup.split("\n") if lines else []
    if len(marked) != len(lines):
        log.error("karaoke markup for song %s has %d lines, the lyrics %d", song.id, len(marked), len(lines))
        return None
    return group_verses(lines, [mark_safe(line) for line in marked])  # karaoke_markup escapes the lyrics itself


def karaoke_file(song: Song) -> bytes | None:
    """The song's karaoke MIDI file (byte-identical for the same song), or None if it cannot be made."""
    try:
        return karaoke_bytes(song.id, song.title, song.lyrics)
    except Exception:
        log.exception("karaoke MIDI failed for song %s", song.id)
        return None
