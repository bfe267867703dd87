"""Music for every song: a melody fitted to the lyrics, a karaoke MIDI file, and a browser player.

Public API (all pure functions of (song_id, title, lyrics); the same input gives the same output):
  karaoke_bytes      the .kar-style MIDI file as bytes            (karaoke.py)
  syllable_timings   [(seconds, line, word, syllable)] per note   (karaoke.py)
  karaoke_markup     lyrics as highlightable syllable spans       (html.py, HTML contract there)
  karaoke_lines      the same as a nested structure               (html.py)
  arrange            the underlying Arrangement: key, chords, notes (melody.py)
Static player: static/billionsongs/music/karaoke.js and karaoke.css.
"""

from billionsongs.music.html import karaoke_lines, karaoke_markup
from billionsongs.music.karaoke import karaoke_bytes, syllable_timings
from billionsongs.music.melody import arrange

__all__ = ["arrange", "karaoke_bytes", "karaoke_lines", "karaoke_markup", "syllable_timings"]
