"""Lyrics as syllable spans for the browser karaoke player (static/billionsongs/music/karaoke.js).

HTML contract — what a page renders for the player to work:

    <link rel="stylesheet" href="{% static 'billionsongs/music/karaoke.css' %}">
    <script src="{% static 'billionsongs/music/karaoke.js' %}" defer></script>
    <button type="button" data-karaoke-play="/song/123/karaoke.mid" data-karaoke-lyrics="lyrics-123">Play</button>
    <div id="lyrics-123" class="bs-karaoke">{{ markup }}</div>   {# markup = karaoke_markup(...), already escaped #}

`karaoke_markup` returns the lyrics text unchanged (newlines included; style the container with
`white-space: pre-line`, karaoke.css does for .bs-karaoke) with each sung line wrapped in
<span class="bs-line" data-line="L"> and each syllable in
<span class="syl" data-t="SECONDS" data-d="SECONDS" data-line="L" data-word="W">text</span>,
where L is the index in lyrics.splitlines(), W the index in line.split(), data-t the syllable's
note-on time from the start of the MIDI file and data-d its note length. While playing, the script
gives the syllable being sung the class `bs-now` and those already sung `bs-sung`, sets
`bs-playing` on the button and changes its text to "Stop"; pressing again stops. Any number of
buttons may be on one page. Without a data-karaoke-lyrics attribute the button just plays.
"""

import html
import re

from billionsongs.music.melody import arrange


def karaoke_lines(song_id: int, title: str, lyrics: str) -> list[list[list[tuple[str, float, float]]]]:
    """Per line of lyrics.splitlines(), per word of line.split(): (syllable text, start s, length s).
    Lines that are not sung (blank, "[Chorus]") are empty lists."""
    arr = arrange(song_id, title, lyrics)
    per_step = 60.0 / arr.bpm / 4
    lines: list[list[list[tuple[str, float, float]]]] = [[] for _ in lyrics.splitlines()]
    for n in arr.notes:
        words = lines[n.line_index]
        if n.word_start:
            words.append([])
        words[-1].append((n.text, round(n.start * per_step, 3), round(n.length * per_step, 3)))
    return lines


def karaoke_markup(song_id: int, title: str, lyrics: str) -> str:
    """The lyrics as escaped HTML with syllable spans (see the module docstring for the contract)."""
    out = []
    for index, (raw, words) in enumerate(zip(lyrics.splitlines(), karaoke_lines(song_id, title, lyrics),
                                             strict=True)):
        if not words:
            out.append(html.escape(raw))
            continue
        pieces, pos = [], 0
        for w, match in enumerate(re.finditer(r"\S+", raw)):
            pieces.append(html.escape(raw[pos:match.start()]))
            pieces.extend(f'<span class="syl" data-t="{t:.3f}" data-d="{d:.3f}" data-line="{index}" '
                          f'data-word="{w}">{html.escape(text)}</span>' for text, t, d in words[w])
            pos = match.end()
        pieces.append(html.escape(raw[pos:]))
        out.append(f'<span class="bs-line" data-line="{index}">{"".join(pieces)}</span>')
    return "\n".join(out)
